//! The object tier against a local-directory object store: publish, read as a peer,
//! compaction's deletions, segment merging, restore, and refusal of a diverged node.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use promql_parser::label::{MatchOp, Matcher};

use super::peers::{self, split};
use super::upload::{self, Uploader};
use super::*;
use crate::logs::store::LogStore;
use crate::model::{Point, SeriesKey};
use crate::store::buffer::HOUR_MS;
use crate::store::maintain::Shared;
use crate::store::{self, Store};

fn dir(name: &str) -> PathBuf {
    let d = std::env::temp_dir().join(format!("hydrant-object-{name}-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&d);
    d
}

fn remote(bucket: &Path, node: &str) -> Remote {
    open(&Config {
        url: format!("file://{}", bucket.display()),
        options: Vec::new(),
        node: node.to_owned(),
        sync: DEFAULT_SYNC,
    })
    .unwrap()
}

struct Node {
    dir: PathBuf,
    shared: Arc<Shared>,
    logs: Mutex<LogStore>,
}

fn node(dir: &Path) -> Node {
    let store = Store::open(store::Config {
        dir: dir.to_owned(),
        wal: true,
        max_series_per_metric: 1000,
        retention: Duration::from_secs(1000 * 86_400),
        seal_rows: store::DEFAULT_SEAL_ROWS,
        part_cache_bytes: store::cache::DEFAULT_PART_CACHE_BYTES,
    })
    .unwrap();
    Node {
        dir: dir.to_owned(),
        shared: Shared::new(store),
        logs: Mutex::new(LogStore::open(dir, 1000)),
    }
}

const T0: i64 = 1_700_000_000_000 / HOUR_MS * HOUR_MS;

fn points(app: &str, from: i64, n: i64, scale: f64) -> Vec<Point> {
    (0..n)
        .map(|i| Point {
            key: SeriesKey {
                name: "cpu".into(),
                labels: BTreeMap::from([("app".to_owned(), app.to_owned())]),
            },
            ts: from + i * 10_000,
            value: i as f64 * scale,
            increment: false,
            distinct: false,
        })
        .collect()
}

fn cpu() -> Vec<Vec<Matcher>> {
    vec![vec![Matcher::new(MatchOp::Equal, "__name__", "cpu")]]
}

#[tokio::test]
async fn a_peer_reads_what_a_node_published_and_forgets_what_it_compacted() {
    let (bucket, da, db) = (dir("bucket1"), dir("a1"), dir("b1"));
    let a = node(&da);
    a.shared
        .lock()
        .ingest(&points("web", T0, 100, 1.0))
        .unwrap();
    a.shared.seal_due(i64::MAX).await.unwrap();
    let up = Uploader::start(remote(&bucket, "a"), &a.dir, 1)
        .await
        .unwrap();
    let out = up.publish(&a.shared, &a.logs).await.unwrap();
    assert_eq!((out.parts, out.series, out.published), (1, 1, true));
    // Nothing new: no second manifest.
    let again = up.publish(&a.shared, &a.logs).await.unwrap();
    assert!(!again.published);

    let b = node(&db);
    b.shared
        .lock()
        .ingest(&points("api", T0, 10, -1.0))
        .unwrap();
    b.shared.peers.attach(remote(&bucket, "b"), &db);
    assert!(b.shared.peers.refresh().await.unwrap().is_empty());
    let ids = crate::query::select(&b.shared, &cpu());
    assert_eq!(ids.len(), 2, "b's own series and a's");
    let theirs = *ids.iter().find(|id| split(**id).0 == 1).unwrap();
    let got = b.shared.fetch(&ids, T0, T0 + HOUR_MS).await.unwrap();
    assert_eq!(got[&theirs].len(), 100);
    assert_eq!(got[&theirs][99], (T0 + 990_000, 99.0));
    assert_eq!(b.shared.peers.stats.downloads.load(Relaxed), 1);
    let names = crate::query::label_values(&b.shared, "app", None);
    assert_eq!(names.into_iter().collect::<Vec<_>>(), ["api", "web"]);

    // A second part for the hour, then compaction: the manifest names only the merged
    // part, the old objects are deleted, and the peer is told to forget its copy.
    a.shared
        .lock()
        .ingest(&points("web", T0 + 1_000_000, 10, 1.0))
        .unwrap();
    a.shared.seal_due(i64::MAX).await.unwrap();
    up.publish(&a.shared, &a.logs).await.unwrap();
    assert_eq!(a.shared.compact().await.unwrap(), 1);
    let out = up.publish(&a.shared, &a.logs).await.unwrap();
    assert_eq!(out.parts, 1);
    assert_eq!(up.stats.deletes.load(Relaxed), 2);
    let stale = b.shared.peers.refresh().await.unwrap();
    assert_eq!(stale.len(), 1, "b had downloaded the first part only");
    b.shared.forget_peer_parts(&stale).await;
    assert!(!stale[0].exists());
    let got = b.shared.fetch(&[theirs], T0, T0 + HOUR_MS).await.unwrap();
    assert_eq!(got[&theirs].len(), 110);
    let m = manifest(up_store(&bucket).as_ref(), "a")
        .await
        .unwrap()
        .unwrap();
    assert_eq!(m.parts.len(), 1);
    assert_eq!(m.generation, 3);
}

use std::sync::atomic::Ordering::Relaxed;

fn up_store(bucket: &Path) -> Arc<dyn object_store::ObjectStore> {
    remote(bucket, "x").store
}

#[tokio::test]
async fn catalog_segments_are_merged_and_a_peer_keeps_ids_aligned() {
    let (bucket, da, db) = (dir("bucket2"), dir("a2"), dir("b2"));
    let a = node(&da);
    let up = Uploader::start(remote(&bucket, "a"), &a.dir, 0)
        .await
        .unwrap();
    let b = node(&db);
    b.shared.peers.attach(remote(&bucket, "b"), &db);
    for i in 0..(MAX_SEGMENTS as i64 + 3) {
        a.shared
            .lock()
            .ingest(&points(&format!("app{i}"), T0 + i * 1000, 1, 1.0))
            .unwrap();
        up.publish(&a.shared, &a.logs).await.unwrap();
        if i % 7 == 0 {
            b.shared.peers.refresh().await.unwrap();
        }
    }
    let m = manifest(up_store(&bucket).as_ref(), "a")
        .await
        .unwrap()
        .unwrap();
    assert!(m.series.len() < MAX_SEGMENTS, "{} segments", m.series.len());
    assert_eq!(m.series_count(), MAX_SEGMENTS as u64 + 3);
    b.shared.peers.refresh().await.unwrap();
    let nodes = b.shared.peers.nodes();
    let c = &nodes[0].catalog;
    assert_eq!(c.len(), MAX_SEGMENTS + 3);
    for id in 0..c.len() as u64 {
        assert_eq!(c.key(id).labels["app"], format!("app{id}"));
    }
}

#[tokio::test]
async fn an_empty_data_dir_is_restored_and_a_diverged_node_is_refused() {
    let (bucket, da, fresh) = (dir("bucket3"), dir("a3"), dir("a3-fresh"));
    let a = node(&da);
    a.shared.lock().ingest(&points("web", T0, 50, 2.0)).unwrap();
    a.shared.lock().ingest(&points("db", T0, 50, 3.0)).unwrap();
    a.shared.seal_due(i64::MAX).await.unwrap();
    let up = Uploader::start(remote(&bucket, "a"), &a.dir, 2)
        .await
        .unwrap();
    up.publish(&a.shared, &a.logs).await.unwrap();

    // A node whose disk is gone comes back with everything it published.
    let restored = upload::restore(&remote(&bucket, "a"), &fresh)
        .await
        .unwrap();
    assert_eq!(restored, 1);
    let again = node(&fresh);
    assert_eq!(again.shared.lock().catalog.len(), 2);
    let ids = crate::query::select(&again.shared, &cpu());
    let got = again.shared.fetch(&ids, T0, T0 + HOUR_MS).await.unwrap();
    assert_eq!(got.values().map(Vec::len).sum::<usize>(), 100);
    // It publishes nothing twice.
    let up2 = Uploader::start(remote(&bucket, "a"), &fresh, 2)
        .await
        .unwrap();
    assert!(
        !up2.publish(&again.shared, &again.logs)
            .await
            .unwrap()
            .published
    );
    // A non-empty dir is left alone.
    assert_eq!(
        upload::restore(&remote(&bucket, "a"), &fresh)
            .await
            .unwrap(),
        0
    );

    // A node with fewer series than it published must not write a second catalog.
    let e = Uploader::start(remote(&bucket, "a"), &dir("a3-other"), 1)
        .await
        .unwrap_err();
    assert!(
        matches!(
            e,
            Error::Diverged {
                published: 2,
                local: 1,
                ..
            }
        ),
        "{e}"
    );
}

#[tokio::test]
async fn a_damaged_download_is_refused() {
    let (bucket, da, db) = (dir("bucket4"), dir("a4"), dir("b4"));
    let a = node(&da);
    a.shared.lock().ingest(&points("web", T0, 20, 1.0)).unwrap();
    a.shared.seal_due(i64::MAX).await.unwrap();
    let up = Uploader::start(remote(&bucket, "a"), &a.dir, 1)
        .await
        .unwrap();
    up.publish(&a.shared, &a.logs).await.unwrap();
    // Flip a byte of the uploaded part.
    let m = manifest(up_store(&bucket).as_ref(), "a")
        .await
        .unwrap()
        .unwrap();
    let file = bucket.join("nodes/a").join(&m.parts[0].key);
    let mut bytes = std::fs::read(&file).unwrap();
    bytes[10] ^= 0xff;
    std::fs::write(&file, bytes).unwrap();
    let b = node(&db);
    b.shared.peers.attach(remote(&bucket, "b"), &db);
    b.shared.peers.refresh().await.unwrap();
    let ids = crate::query::select(&b.shared, &cpu());
    let e = b.shared.fetch(&ids, T0, T0 + HOUR_MS).await.unwrap_err();
    assert!(e.to_string().contains("fails its checksum"), "{e}");
    assert_eq!(peers::by_node(&ids).len(), 1);
}

#[tokio::test]
async fn a_part_larger_than_a_chunk_goes_up_in_parts() {
    let (bucket, da, db) = (dir("bucket5"), dir("a5"), dir("b5"));
    let a = node(&da);
    // Values that do not compress: the part is several chunks.
    let mut x = 0x2545_f491_4f6c_dd1du64;
    let mut pts = points("web", T0, 5000, 1.0);
    for (i, p) in pts.iter_mut().enumerate() {
        p.ts = T0 + i as i64 * 100;
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        p.value = f64::from_bits(x >> 2);
    }
    a.shared.lock().ingest(&pts).unwrap();
    a.shared.seal_due(i64::MAX).await.unwrap();
    let up = Uploader::start(remote(&bucket, "a"), &a.dir, 1)
        .await
        .unwrap()
        .with_chunk(4096);
    up.publish(&a.shared, &a.logs).await.unwrap();
    let m = manifest(up_store(&bucket).as_ref(), "a")
        .await
        .unwrap()
        .unwrap();
    assert!(m.parts[0].bytes > 3 * 4096, "{} bytes", m.parts[0].bytes);
    let b = node(&db);
    b.shared.peers.attach(remote(&bucket, "b"), &db);
    b.shared.peers.refresh().await.unwrap();
    let ids = crate::query::select(&b.shared, &cpu());
    let got = b.shared.fetch(&ids, T0, T0 + HOUR_MS).await.unwrap();
    let want: Vec<(i64, f64)> = pts.iter().map(|p| (p.ts, p.value)).collect();
    let got = &got[&ids[0]];
    assert_eq!(got.len(), want.len());
    assert!(
        got.iter()
            .zip(&want)
            .all(|(g, w)| g.0 == w.0 && g.1.to_bits() == w.1.to_bits())
    );
}

#[tokio::test]
async fn a_manifest_reaching_outside_its_node_is_refused() {
    use object_store::ObjectStoreExt;
    let bucket = dir("bucket6");
    let store = up_store(&bucket);
    let good = Manifest {
        format: FORMAT,
        node: "a".into(),
        generation: 1,
        written_ms: 0,
        series: vec![Segment {
            first: 0,
            count: 1,
            key: "series/000000000000-000000000001.jsonl".into(),
        }],
        parts: vec![Published {
            table: "metrics".into(),
            hour: 1,
            seq: 0,
            bytes: 1,
            key: "metrics/date=1970-01-01/hour=00/part-1-000000.00000000.parquet".into(),
        }],
    };
    let put = |m: &Manifest| {
        let (store, body) = (Arc::clone(&store), serde_json::to_vec(m).unwrap());
        async move {
            store
                .put(&key("a", "manifest.json"), body.into())
                .await
                .unwrap();
        }
    };
    put(&good).await;
    assert_eq!(
        manifest(store.as_ref(), "a").await.unwrap(),
        Some(good.clone())
    );
    let mut bad = Vec::new();
    for k in [
        "../../etc/x.parquet",
        "metrics/../../x",
        "metrics//x",
        "/metrics/x",
        "logs/x",
    ] {
        let mut m = good.clone();
        m.parts[0].key = k.into();
        bad.push(m);
    }
    let mut m = good.clone();
    m.series[0].key = "../series/x.jsonl".into();
    bad.push(m);
    let mut m = good.clone();
    m.node = "b".into();
    bad.push(m);
    let mut m = good.clone();
    m.series.push(Segment {
        first: 1,
        count: u64::MAX,
        key: "series/x.jsonl".into(),
    });
    bad.push(m);
    let mut m = good.clone();
    m.parts[0].key = "metrics/a\\b".into();
    bad.push(m);
    for m in &bad {
        put(m).await;
        let e = manifest(store.as_ref(), "a").await.unwrap_err();
        assert!(matches!(e, Error::Damaged { .. }), "{m:?}: {e}");
    }
}

#[test]
fn node_names_and_urls_are_checked() {
    assert!(valid_node("storage-0").is_ok());
    for bad in ["", ".", "..", "a/b", "ä", &"x".repeat(65)] {
        assert!(valid_node(bad).is_err(), "{bad:?}");
    }
    let config = |url: &str| Config {
        url: url.into(),
        options: Vec::new(),
        node: "n".into(),
        sync: DEFAULT_SYNC,
    };
    let e = open(&config("not a url")).unwrap_err().to_string();
    assert!(e.contains("is not a URL"), "{e}");
    let e = open(&config("memory:///")).unwrap_err().to_string();
    assert!(e.contains("not supported"), "{e}");
    let mut c = config("s3://bucket/prefix");
    c.options = vec![("no_such_option".into(), "1".into())];
    assert!(open(&c).is_err());
    c.options = vec![
        ("aws_endpoint".into(), "http://127.0.0.1:1".into()),
        ("aws_allow_http".into(), "true".into()),
        ("aws_region".into(), "us-east-1".into()),
    ];
    assert!(open(&c).is_ok());
}
