//! Storage nozzle costs. Run with `cargo bench -p hydrant-storage --bench storage`.
//!
//! - `ingest/…`: `Store::ingest` of 10,000 gauge samples (1,000 series × 10), WAL on
//!   (one sync per call, as per Firehose batch) and off.
//! - `query_range/1h_15s/{100,1000}_series`: `avg_over_time(load[1m])` and `load` over one
//!   hour at a 15 s step, data every 10 s, the older part in Parquet and the rest in the
//!   buffer, through the same code as the HTTP API (DataFusion read included).
//!
//! Setup prints bytes per sample on disk for the sealed data.

use std::collections::BTreeMap;
use std::hint::black_box;
use std::path::PathBuf;
use std::time::Duration;

use criterion::{Criterion, criterion_group, criterion_main};
use hydrant_storage::model::{Point, SeriesKey};
use hydrant_storage::query;
use hydrant_storage::store::maintain::Shared;
use hydrant_storage::store::{self, Store};

const HOUR: i64 = 3_600_000;

fn config(dir: PathBuf, wal: bool) -> store::Config {
    store::Config {
        dir,
        wal,
        max_series_per_metric: 1_000_000,
        retention: Duration::from_secs(365 * 86_400),
        seal_rows: usize::MAX,
        part_cache_bytes: hydrant_storage::store::cache::DEFAULT_PART_CACHE_BYTES,
    }
}

fn key(i: usize) -> SeriesKey {
    SeriesKey {
        name: "load".into(),
        labels: BTreeMap::from([
            ("source_id".to_owned(), format!("app-{}", i / 10)),
            ("instance_id".to_owned(), (i % 10).to_string()),
            ("job".to_owned(), "bench".to_owned()),
        ]),
    }
}

fn points(series: usize, from: i64, n: i64, step: i64) -> Vec<Point> {
    let keys: Vec<SeriesKey> = (0..series).map(key).collect();
    let mut out = Vec::with_capacity(series * n as usize);
    for k in 0..n {
        for (i, key) in keys.iter().enumerate() {
            out.push(Point {
                key: key.clone(),
                ts: from + k * step,
                // A gauge that moves a little, like real CPU.
                value: 40.0 + ((k as usize * 7 + i * 13) % 23) as f64 * 0.5,
                increment: false,
                distinct: false,
            });
        }
    }
    out
}

fn scratch(name: &str) -> PathBuf {
    let d = std::env::temp_dir().join(format!("hydrant-bench-{name}-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&d);
    d
}

fn bench(c: &mut Criterion) {
    let rt = tokio::runtime::Runtime::new().expect("runtime");
    for wal in [true, false] {
        let dir = scratch(if wal { "wal" } else { "nowal" });
        let mut s = Store::open(config(dir.clone(), wal)).expect("open");
        let mut t = 0i64;
        let name = if wal {
            "ingest/10k_samples_wal"
        } else {
            "ingest/10k_samples_no_wal"
        };
        c.bench_function(name, |b| {
            b.iter(|| {
                t += 10 * 10_000;
                black_box(s.ingest(&points(1000, t, 10, 10_000)).expect("ingest"))
            })
        });
        drop(s);
        let _ = std::fs::remove_dir_all(&dir);
    }

    for series in [100usize, 1000] {
        let dir = scratch(&format!("q{series}"));
        let now = 1_700_000_000_000 / HOUR * HOUR + HOUR / 2;
        let start = now - 2 * HOUR;
        let mut s = Store::open(config(dir.clone(), false)).expect("open");
        // Two hours every 10 s: the first hour sealed into Parquet, the rest buffered.
        for chunk in 0..72 {
            s.ingest(&points(series, start + chunk * 100_000, 10, 10_000))
                .expect("ingest");
        }
        let shared = Shared::new(s);
        rt.block_on(shared.seal_due(now)).expect("seal");
        let (parts, bytes) = shared.lock().parts();
        let sealed_samples = (series * 720 - shared.lock().buffer_rows()) as f64;
        eprintln!(
            "{series} series: {parts} part(s), {bytes} bytes for {sealed_samples} sealed samples = {:.3} bytes/sample",
            bytes as f64 / sealed_samples
        );
        let (q_start, q_end) = (now - HOUR - 10 * 60_000, now - 10 * 60_000);
        for q in ["load", "avg_over_time(load[1m])"] {
            let name = format!(
                "query_range/1h_15s/{series}_series/{}",
                if q == "load" {
                    "selector"
                } else {
                    "avg_over_time"
                }
            );
            c.bench_function(&name, |b| {
                b.iter(|| {
                    rt.block_on(query::range(
                        &shared,
                        q,
                        q_start,
                        q_end,
                        15_000,
                        &Default::default(),
                    ))
                    .expect("query")
                })
            });
        }
        drop(shared);
        let _ = std::fs::remove_dir_all(&dir);
    }
}

criterion_group! {
    name = benches;
    config = Criterion::default().sample_size(20);
    targets = bench
}
criterion_main!(benches);
