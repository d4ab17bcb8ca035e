//! Per-envelope costs on the hot path: validating parse (what agents and dopplers do) vs a
//! full prost decode (what Loggregator does at every hop), and encoding a forwarded batch.
//!
//! `cargo bench -p hydrant-proto --bench envelope`

use std::hint::black_box;

use bytes::Bytes;
use criterion::{Criterion, Throughput, criterion_group, criterion_main};
use hydrant_proto::raw::{RawBatch, RawEnvelope};
use hydrant_proto::v2::Envelope;
use prost::Message;

/// A 200-byte log line with the tags a Cloud Foundry app log carries.
fn app_log() -> Envelope {
    let mut e = hydrant_proto::envelope::log(
        "6d6c3a04-6c67-4b4f-9f12-8a3a1f6f1e2d",
        vec![b'x'; 200],
        false,
    );
    e.instance_id = "0".into();
    for (k, v) in [
        ("source_type", "APP/PROC/WEB"),
        ("app_name", "demo"),
        ("process_type", "web"),
        ("deployment", "cf"),
        ("seq", "123456"),
    ] {
        e.tags.insert(k.into(), v.into());
    }
    e
}

/// A cell's container metrics: five gauge metrics and the tags a Diego cell adds.
fn container_metrics() -> Envelope {
    let mut e = hydrant_proto::envelope::gauge(
        "6d6c3a04-6c67-4b4f-9f12-8a3a1f6f1e2d",
        [
            ("cpu", 12.5, "percentage"),
            ("memory", 2.5e8, "bytes"),
            ("disk", 1.2e8, "bytes"),
            ("memory_quota", 1.07e9, "bytes"),
            ("disk_quota", 1.07e9, "bytes"),
        ],
    );
    e.instance_id = "0".into();
    for (k, v) in [
        ("origin", "rep"),
        ("deployment", "cf"),
        ("job", "diego-cell"),
        ("index", "3"),
        ("ip", "10.0.1.23"),
    ] {
        e.tags.insert(k.into(), v.into());
    }
    e
}

fn bench(c: &mut Criterion) {
    let gauge = Bytes::from(container_metrics().encode_to_vec());
    let mut g = c.benchmark_group("gauge");
    g.throughput(Throughput::Elements(1));
    g.bench_function("raw_parse", |b| {
        b.iter(|| RawEnvelope::parse(black_box(gauge.clone())).unwrap())
    });
    let raw = RawEnvelope::parse(gauge.clone()).unwrap();
    // What the storage writer reads of each gauge it stores.
    g.bench_function("raw_read_tags_and_metrics", |b| {
        b.iter(|| {
            let raw = black_box(&raw);
            let tags = raw
                .tag_bytes()
                .map(|(k, v)| k.len() + v.len())
                .sum::<usize>();
            let metrics = raw
                .gauge_metrics()
                .map(|(n, v)| n.len() as f64 + v)
                .sum::<f64>();
            (tags, metrics)
        })
    });
    g.finish();

    let bytes = Bytes::from(app_log().encode_to_vec());
    let mut g = c.benchmark_group("envelope");
    g.throughput(Throughput::Elements(1));
    g.bench_function("raw_parse", |b| {
        b.iter(|| RawEnvelope::parse(black_box(bytes.clone())).unwrap())
    });
    g.bench_function("prost_decode", |b| {
        b.iter(|| Envelope::decode(black_box(bytes.clone())).unwrap())
    });
    let raw = RawEnvelope::parse(bytes.clone()).unwrap();
    g.bench_function("raw_tag_lookup", |b| {
        b.iter(|| black_box(&raw).tag("seq").map(str::len))
    });
    g.finish();

    let batch = RawBatch::from(vec![raw; 1000]);
    let mut g = c.benchmark_group("batch_1000");
    g.throughput(Throughput::Elements(1000));
    g.bench_function("raw_encode", |b| {
        b.iter(|| black_box(&batch).encode_to_vec())
    });
    let prost_batch = hydrant_proto::v2::EnvelopeBatch {
        batch: vec![app_log(); 1000],
    };
    g.bench_function("prost_encode", |b| {
        b.iter(|| black_box(&prost_batch).encode_to_vec())
    });
    g.finish();
}

criterion_group!(benches, bench);
criterion_main!(benches);
