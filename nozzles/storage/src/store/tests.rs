//! The engine on a real directory: reads across buffer and Parquet, WAL replay after a
//! crash, compaction and retention keeping answers identical.

use std::collections::BTreeMap;
use std::time::Duration;

use super::maintain::Shared;
use super::*;
use crate::model::{Point, SeriesKey};

fn dir(name: &str) -> PathBuf {
    let d = std::env::temp_dir().join(format!("hydrant-store-{name}-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&d);
    d
}

fn config(dir: &Path) -> Config {
    Config {
        dir: dir.to_owned(),
        wal: true,
        max_series_per_metric: 1000,
        retention: Duration::from_secs(48 * 3600),
        seal_rows: DEFAULT_SEAL_ROWS,
        part_cache_bytes: super::cache::DEFAULT_PART_CACHE_BYTES,
    }
}

fn point(name: &str, app: &str, ts: i64, value: f64) -> Point {
    Point {
        key: SeriesKey {
            name: name.into(),
            labels: BTreeMap::from([("app".to_owned(), app.to_owned())]),
        },
        ts,
        value,
        increment: false,
        distinct: false,
    }
}

/// Three hours of a sample every 10 s for two series.
fn load(store: &mut Store) -> usize {
    let mut points = Vec::new();
    for i in 0..(3 * 360) {
        let ts = 1_700_000_000_000 / HOUR_MS * HOUR_MS + i * 10_000;
        points.push(point("cpu", "web", ts, i as f64));
        points.push(point("cpu", "api", ts, -(i as f64)));
    }
    store.ingest(&points).unwrap()
}

#[tokio::test]
async fn reads_span_buffer_and_parquet_and_survive_restarts() {
    let d = dir("reads");
    let mut store = Store::open(config(&d)).unwrap();
    assert_eq!(load(&mut store), 2160);
    let ids = store.catalog.select(&[promql_parser::label::Matcher::new(
        promql_parser::label::MatchOp::Equal,
        "__name__",
        "cpu",
    )]);
    assert_eq!(ids.len(), 2);
    let shared = Shared::new(store);
    let everything = shared.fetch(&ids, 0, i64::MAX).await.unwrap();
    assert_eq!(everything[&ids[0]].len(), 1080);

    // Seal the first two hours (the third is still open at "now").
    let start = everything[&ids[0]][0].0;
    let now = start + 2 * HOUR_MS + SEAL_GRACE_MS;
    assert_eq!(shared.seal_due(now).await.unwrap(), 2);
    {
        let s = shared.lock();
        assert_eq!(s.parts().0, 2);
        assert_eq!(s.buffer_rows(), 720);
        assert_eq!(
            wal::ids(&d.join("wal")).len(),
            1,
            "sealed hours drop their WAL"
        );
    }
    let mixed = shared
        .fetch(&ids, start + HOUR_MS - 20_000, start + HOUR_MS * 2 + 20_000)
        .await
        .unwrap();
    assert_eq!(
        mixed[&ids[0]].len(),
        2 + 360 + 3,
        "a range across Parquet and the buffer"
    );
    assert_eq!(shared.fetch(&ids, 0, i64::MAX).await.unwrap(), everything);

    // A late sample for a sealed hour lands in a new part; compaction merges it.
    shared
        .lock()
        .ingest(&[point("cpu", "web", start + 5_000, 99.0)])
        .unwrap();
    assert_eq!(shared.seal_due(now).await.unwrap(), 1);
    assert_eq!(shared.lock().parts().0, 3);
    let before = shared.fetch(&ids, 0, i64::MAX).await.unwrap();
    assert_eq!(shared.compact().await.unwrap(), 1);
    assert_eq!(shared.lock().parts().0, 2);
    assert_eq!(
        shared.fetch(&ids, 0, i64::MAX).await.unwrap(),
        before,
        "compaction keeps answers"
    );
    assert_eq!(before[&ids[0]][1], (start + 5_000, 99.0));

    // Restart: catalog, parts and the open hour's WAL come back.
    drop(shared);
    let store = Store::open(config(&d)).unwrap();
    assert_eq!(store.catalog.len(), 2);
    assert_eq!(store.stats.replayed, 720);
    let shared = Shared::new(store);
    assert_eq!(shared.fetch(&ids, 0, i64::MAX).await.unwrap(), before);

    // Retention drops whole hours.
    let later = start + 49 * HOUR_MS;
    assert_eq!(shared.expire(later).await, 1, "the first hour's part");
    let kept = shared.fetch(&ids, 0, i64::MAX).await.unwrap();
    assert_eq!(kept[&ids[0]].len(), 720);
    assert!(!d.join(parts::hour_dir(hour_of(start))).exists());
    let _ = std::fs::remove_dir_all(&d);
}

#[tokio::test]
async fn counted_series_accumulate_and_the_cap_refuses() {
    let d = dir("counted");
    let mut c = config(&d);
    c.max_series_per_metric = 1;
    let mut store = Store::open(c).unwrap();
    let mut p = point("log_lines_total", "web", 1_000, 1.0);
    p.increment = true;
    let q = Point {
        ts: 2_000,
        ..p.clone()
    };
    assert_eq!(
        store
            .ingest(&[p, q, point("log_lines_total", "api", 1_000, 1.0)])
            .unwrap(),
        2
    );
    assert_eq!(store.stats.refused, 1);
    assert_eq!(store.catalog.overflow["log_lines_total"], 1);
    let shared = Shared::new(store);
    let got = shared.fetch(&[0], 0, 10_000).await.unwrap();
    assert_eq!(got[&0], [(1_000, 1.0), (2_000, 2.0)]);
    let _ = std::fs::remove_dir_all(&d);
}

/// Timers of one series in one millisecond are distinct observations: each is kept, at
/// consecutive milliseconds (a gauge's repeat still replaces), and a restart replays them
/// from the WAL as stored.
#[tokio::test]
async fn timers_sharing_a_millisecond_are_all_kept() {
    let d = dir("timers");
    let mut store = Store::open(config(&d)).unwrap();
    let timer = |ts: i64, v: f64| Point {
        distinct: true,
        ..point("http_seconds", "web", ts, v)
    };
    store
        .ingest(&[
            timer(1_000, 0.1),
            timer(1_000, 0.2),
            timer(1_000, 0.3),
            timer(5_000, 0.4),
        ])
        .unwrap();
    store.ingest(&[timer(5_000, 0.5)]).unwrap();
    store
        .ingest(&[
            point("cpu", "web", 1_000, 1.0),
            point("cpu", "web", 1_000, 2.0),
        ])
        .unwrap();
    let want = [
        (1_000, 0.1),
        (1_001, 0.2),
        (1_002, 0.3),
        (5_000, 0.4),
        (5_001, 0.5),
    ];
    let shared = Shared::new(store);
    assert_eq!(shared.fetch(&[0], 0, 10_000).await.unwrap()[&0], want);
    assert_eq!(
        shared.fetch(&[1], 0, 10_000).await.unwrap()[&1],
        [(1_000, 2.0)]
    );
    drop(shared);
    let shared = Shared::new(Store::open(config(&d)).unwrap());
    assert_eq!(shared.fetch(&[0], 0, 10_000).await.unwrap()[&0], want);
    let _ = std::fs::remove_dir_all(&d);
}

#[tokio::test]
async fn a_torn_catalog_line_and_wal_tail_are_dropped() {
    let d = dir("torn");
    let mut store = Store::open(config(&d)).unwrap();
    store.ingest(&[point("m", "a", 1_000, 1.0)]).unwrap();
    drop(store);
    // Simulate a crash mid-write of a new series and of a WAL record.
    let mut log = OpenOptions::new()
        .append(true)
        .open(d.join("series.jsonl"))
        .unwrap();
    log.write_all(b"{\"id\":1,\"na").unwrap();
    let id = wal::ids(&d.join("wal"))[0];
    let mut w = OpenOptions::new()
        .append(true)
        .open(d.join("wal").join(format!("{}.{}.wal", id.hour, id.seq)))
        .unwrap();
    w.write_all(&[24, 0, 0, 0, 0]).unwrap();
    let mut store = Store::open(config(&d)).unwrap();
    assert_eq!(store.catalog.len(), 1);
    assert_eq!(store.stats.torn_wals, 1);
    assert_eq!(store.buffer_rows(), 1);
    store.ingest(&[point("m", "b", 2_000, 2.0)]).unwrap();
    drop(store);
    let store = Store::open(config(&d)).unwrap();
    assert_eq!(
        store.catalog.len(),
        2,
        "appends after the repair are intact"
    );
    assert_eq!(store.buffer_rows(), 2);
    let _ = std::fs::remove_dir_all(&d);
}

#[tokio::test]
async fn a_sample_arriving_while_its_hour_is_sealed_keeps_its_own_wal() {
    let d = dir("sealrace");
    let mut store = Store::open(config(&d)).unwrap();
    store.ingest(&[point("m", "a", 1_000, 1.0)]).unwrap();
    let (batch, seq) = store.take(0).unwrap();
    // Ingest goes on while the part is written.
    store.ingest(&[point("m", "a", 2_000, 2.0)]).unwrap();
    assert_eq!(
        store.buffer_rows(),
        2,
        "the sealing partition stays readable"
    );
    let part = parts::write(&d, 0, seq, &batch);
    store.sealed(0, part).unwrap();
    drop(store);
    // A crash now: the late sample must come back from its WAL.
    let store = Store::open(config(&d)).unwrap();
    assert_eq!(store.buffer_rows(), 1);
    let shared = Shared::new(store);
    let got = shared.fetch(&[0], 0, 10_000).await.unwrap();
    assert_eq!(got[&0], [(1_000, 1.0), (2_000, 2.0)]);
    let _ = std::fs::remove_dir_all(&d);
}

/// A damaged line in the middle of the catalog costs that line only: the series after it
/// keep their ids, the lost one keeps its place (and its WAL samples) under a placeholder,
/// and a new series never takes its id.
#[tokio::test]
async fn a_damaged_catalog_line_never_moves_or_reuses_an_id() {
    let d = dir("damaged");
    let mut store = Store::open(config(&d)).unwrap();
    for (i, app) in ["a", "b", "c"].iter().enumerate() {
        store
            .ingest(&[point("m", app, 1_000 + i as i64, i as f64)])
            .unwrap();
    }
    drop(store);
    let path = d.join("series.jsonl");
    let text = std::fs::read_to_string(&path).unwrap();
    let lines: Vec<&str> = text.lines().collect();
    assert_eq!(lines.len(), 3);
    // Flip one character of the second line's labels: its checksum no longer matches.
    let damaged = lines[1].replace("\"b\"", "\"x\"");
    std::fs::write(&path, format!("{}\n{damaged}\n{}\n", lines[0], lines[2])).unwrap();

    let mut store = Store::open(config(&d)).unwrap();
    assert_eq!(store.stats.corrupt_records, 1);
    assert_eq!(store.catalog.len(), 3);
    assert_eq!(store.catalog.key(0).labels["app"], "a");
    assert_eq!(
        store.catalog.key(1).name,
        LOST_SERIES,
        "the lost line keeps its id"
    );
    assert_eq!(store.catalog.key(2).labels["app"], "c");
    store.ingest(&[point("m", "b", 5_000, 5.0)]).unwrap();
    let b = store.catalog.id(&point("m", "b", 0, 0.0).key);
    assert_eq!(b, Some(3), "a new series never takes a lost id");
    drop(store);
    // The repaired catalog reads back whole, and the lost series' sample is still its own.
    let store = Store::open(config(&d)).unwrap();
    assert_eq!(store.stats.corrupt_records, 0);
    assert_eq!(store.catalog.len(), 4);
    assert_eq!(store.catalog.key(1).name, LOST_SERIES);
    assert_eq!(store.catalog.key(3).labels["app"], "b");
    let shared = Shared::new(store);
    let got = shared.fetch(&[1, 2, 3], 0, 10_000).await.unwrap();
    assert_eq!(got[&1], [(1_001, 1.0)]);
    assert_eq!(got[&2], [(1_002, 2.0)]);
    assert_eq!(got[&3], [(5_000, 5.0)]);
    let _ = std::fs::remove_dir_all(&d);
}

/// A part with flipped bytes, or an empty one, is set aside when the store opens: the
/// other parts still answer, and nothing serves values that were silently changed.
#[tokio::test]
async fn damaged_parts_are_quarantined_and_the_rest_still_answers() {
    let d = dir("quarantine");
    let mut store = Store::open(config(&d)).unwrap();
    for hour in 0..3 {
        store
            .ingest(&[point("m", "a", hour * HOUR_MS + 1_000, hour as f64)])
            .unwrap();
        let (batch, seq) = store.take(hour).unwrap();
        let part = parts::write(&d, hour, seq, &batch);
        store.sealed(hour, part).unwrap();
    }
    drop(store);
    let found = parts::discover(&d);
    assert_eq!((found.parts.len(), found.quarantined), (3, 0));
    let name = found.parts[0]
        .path
        .file_name()
        .unwrap()
        .to_string_lossy()
        .into_owned();
    assert!(
        name.ends_with(".parquet") && name.matches('.').count() == 2,
        "{name}"
    );
    // Flip bytes in the middle of hour 0's part; empty hour 1's.
    let mut bytes = std::fs::read(&found.parts[0].path).unwrap();
    let mid = bytes.len() / 2;
    for b in &mut bytes[mid..mid + 64] {
        *b ^= 0x5a;
    }
    std::fs::write(&found.parts[0].path, bytes).unwrap();
    std::fs::write(&found.parts[1].path, b"").unwrap();

    let store = Store::open(config(&d)).unwrap();
    assert_eq!(store.stats.quarantined_parts, 2);
    let quarantined = std::fs::read_dir(d.join(parts::QUARANTINE).join(parts::METRICS))
        .unwrap()
        .count();
    assert_eq!(quarantined, 2);
    let shared = Shared::new(store);
    let got = shared.fetch(&[0], 0, 4 * HOUR_MS).await.unwrap();
    assert_eq!(got[&0], [(2 * HOUR_MS + 1_000, 2.0)]);
    let _ = std::fs::remove_dir_all(&d);
}

#[tokio::test]
async fn decoded_parts_answer_as_datafusion_does() {
    // The same sealed hours read through the decoded-parts cache, and with a cache too
    // small for any part (every part read through DataFusion).
    let mut answers = Vec::new();
    for (name, budget) in [("cached", cache::DEFAULT_PART_CACHE_BYTES), ("uncached", 0)] {
        let d = dir(name);
        let mut store = Store::open(Config {
            part_cache_bytes: budget,
            ..config(&d)
        })
        .unwrap();
        load(&mut store);
        let ids = store.catalog.select(&[promql_parser::label::Matcher::new(
            promql_parser::label::MatchOp::Equal,
            "__name__",
            "cpu",
        )]);
        let shared = Shared::new(store);
        let start = shared.fetch(&ids, 0, i64::MAX).await.unwrap()[&ids[0]][0].0;
        assert_eq!(
            shared
                .seal_due(start + 3 * HOUR_MS + SEAL_GRACE_MS)
                .await
                .unwrap(),
            3
        );
        let mut got = Vec::new();
        for (from, to) in [
            (0, i64::MAX),
            (start + 600_000, start + HOUR_MS + 5_000),
            (start, start),
        ] {
            got.push(shared.fetch(&ids, from, to).await.unwrap());
            got.push(shared.fetch(&ids[1..], from, to).await.unwrap());
        }
        let (bytes, hits, misses) = shared.part_cache_stats();
        if budget == 0 {
            assert_eq!(bytes, 0, "nothing decoded whole");
        } else {
            assert!(
                bytes > 0 && hits > 0 && misses == 3,
                "{bytes} {hits} {misses}"
            );
        }
        answers.push(got);
        let _ = std::fs::remove_dir_all(&d);
    }
    assert_eq!(answers[0], answers[1]);
    assert_eq!(answers[0][0].values().map(Vec::len).sum::<usize>(), 2160);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn queries_missing_the_same_part_at_once_decode_it_once() {
    let d = dir("decode-once");
    let mut store = Store::open(config(&d)).unwrap();
    load(&mut store);
    let shared = Shared::new(store);
    shared.seal_due(i64::MAX).await.unwrap();
    let ids: Vec<u64> = (0..2).collect();
    let (t0, t1) = (1_600_000_000_000, 1_800_000_000_000);
    let reads: Vec<_> = (0..8)
        .map(|_| {
            let s = std::sync::Arc::clone(&shared);
            let ids = ids.clone();
            tokio::spawn(async move { s.fetch(&ids, t0, t1).await.unwrap() })
        })
        .collect();
    let mut answers = Vec::new();
    for r in reads {
        answers.push(r.await.unwrap());
    }
    assert!(answers.windows(2).all(|w| w[0] == w[1]));
    assert_eq!(answers[0].values().map(Vec::len).sum::<usize>(), 2160);
    // One miss per part: every other read found it decoded.
    let parts = shared.lock().parts().0 as u64;
    let (_, hits, misses) = shared.part_cache_stats();
    assert_eq!(misses, parts, "hits {hits}");
    assert_eq!(hits, 8 * parts - parts);
}
