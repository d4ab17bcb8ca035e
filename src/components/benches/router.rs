//! The cost of routing one batch as subscriptions and selectors grow: a subscriber with a
//! thousand selectors must not slow routing for everyone (once it cut a doppler's ingest
//! from 100,000/s to 8,600/s).
//!
//! `cargo bench -p hydrant-components --bench router`

use std::hint::black_box;

use criterion::{Criterion, Throughput, criterion_group, criterion_main};
use hydrant_components::router::{MAX_SELECTORS, Registry, Routed, Spec};
use hydrant_proto::envelope;
use hydrant_proto::raw::RawEnvelope;
use hydrant_proto::subscriber::{request, select};

/// 100 log envelopes over 10 sources, as an agent batch.
fn batch() -> Vec<RawEnvelope> {
    (0..100)
        .map(|i| {
            let e = envelope::log(format!("app-{}", i % 10), vec![b'x'; 200], false);
            RawEnvelope::from_envelope(&e)
        })
        .collect()
}

/// The usual nozzles: log cache, storage and autoscaler shard groups, two members each.
fn nozzles(reg: &mut Registry) {
    for shard in ["log-cache", "storage", "autoscaler"] {
        for _ in 0..2 {
            let spec = Spec::from_request(&request(
                shard,
                vec![
                    select::log(""),
                    select::gauge("", &[]),
                    select::counter("", ""),
                ],
            ))
            .unwrap();
            reg.subscribe(spec);
        }
    }
}

fn bench(c: &mut Criterion) {
    let batch = batch();
    let mut g = c.benchmark_group("route_100");
    g.throughput(Throughput::Elements(batch.len() as u64));
    let mut plain = Registry::default();
    nozzles(&mut plain);
    let mut wide = Registry::default();
    nozzles(&mut wide);
    for sub in 0..100 {
        let selectors = (0..MAX_SELECTORS)
            .map(|i| select::log(&format!("other-{sub}-{i}")))
            .collect();
        wide.subscribe(Spec::from_request(&request("", selectors)).unwrap());
    }
    for (name, reg) in [
        ("6_nozzles", &plain),
        ("6_nozzles_plus_100x1024_selectors", &wide),
    ] {
        let table = reg.table();
        let mut routed = Routed::default();
        g.bench_function(name, |b| {
            b.iter(|| table.route(black_box(&batch), &mut routed))
        });
    }
    g.finish();
}

criterion_group!(benches, bench);
criterion_main!(benches);
