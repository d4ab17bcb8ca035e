//! Two storage nodes sharing Parquet on a real S3-compatible server (moto), through a proxy
//! that cuts connections mid-request: the Firehose is split between them by source id,
//! each answers PromQL, series and SQL over both nodes' data, and an upload cut by a lost
//! connection loses nothing: the node reports it, keeps the part on disk, and publishes it
//! once the network is back.

use std::time::Duration;

use hydrant::doppler;
use hydrant::telemetry::names;
use hydrant_proto::envelope;
use hydrant_proto::ingress::{Config as IngressConfig, IngressClient};
use hydrant_storage::object;
use object_store::ObjectStoreExt;
use serde_json::Value;

use super::storage::{TestStorage, get};
use crate::guard::Scratch;
use crate::s3::{Proxy, S3};
use crate::{TestDoppler, eventually_within};

const SOURCES: usize = 8;

fn config(proxy: &Proxy, node: &str) -> object::Config {
    let option = |k: &str, v: &str| (k.to_owned(), v.to_owned());
    object::Config {
        url: "s3://hydrant/cluster".into(),
        options: vec![
            option("aws_endpoint", &format!("http://{}", proxy.addr)),
            option("aws_allow_http", "true"),
            option("aws_access_key_id", "test"),
            option("aws_secret_access_key", "test"),
            option("aws_region", "us-east-1"),
        ],
        node: node.to_owned(),
        sync: Duration::from_secs(1),
    }
}

/// `n` gauges per source, a second apart from `from` (s); the value names source and step.
async fn send(d: &TestDoppler, from: i64, offset: i64, n: i64) {
    let client = IngressClient::start(IngressConfig::new(vec![d.grpc.to_string()])).unwrap();
    let mut all = Vec::new();
    for s in 0..SOURCES {
        for k in 0..n {
            let v = (s * 100_000) as f64 + (offset + k) as f64;
            let mut g = envelope::gauge(format!("app-{s}"), [("cpu", v, "percentage")]);
            g.instance_id = "0".into();
            g.timestamp = (from + k) * 1_000_000_000;
            all.push(hydrant_proto::raw::RawEnvelope::from_envelope(&g));
        }
        let mut log = envelope::log(format!("app-{s}"), format!("line {offset}"), false);
        log.timestamp = from * 1_000_000_000;
        all.push(hydrant_proto::raw::RawEnvelope::from_envelope(&log));
    }
    client.send_all(all);
    client.close(Duration::from_secs(10)).await;
}

/// Per source: (count, sum) of `cpu` over the last `window` at `at` (s), as one node answers.
async fn per_source(node: &TestStorage, window: &str, at: i64) -> Vec<(String, f64, f64)> {
    let url = format!("{}/api/v1/query", node.url);
    let ask = |q: String| {
        let url = url.clone();
        async move { get(&url, &[("query", q), ("time", at.to_string())]).await }
    };
    let count = ask(format!("count_over_time(cpu[{window}])")).await;
    let sum = ask(format!("sum_over_time(cpu[{window}])")).await;
    let rows = |v: &Value| -> Vec<(String, f64)> {
        let mut out: Vec<(String, f64)> = v["data"]["result"]
            .as_array()
            .into_iter()
            .flatten()
            .map(|r| {
                let src = r["metric"]["source_id"].as_str().unwrap_or("").to_owned();
                let x = r["value"][1]
                    .as_str()
                    .unwrap_or("NaN")
                    .parse()
                    .unwrap_or(f64::NAN);
                (src, x)
            })
            .collect();
        out.sort_by(|a, b| a.0.cmp(&b.0));
        out
    };
    rows(&count)
        .into_iter()
        .zip(rows(&sum))
        .map(|((s, c), (_, x))| (s, c, x))
        .collect()
}

/// What every node must answer after `n` samples per source starting at offset 0.
fn expected(n: i64) -> Vec<(String, f64, f64)> {
    let mut out: Vec<_> = (0..SOURCES)
        .map(|s| {
            let base = (s * 100_000) as f64;
            let sum = base * n as f64 + (n * (n - 1) / 2) as f64;
            (format!("app-{s}"), n as f64, sum)
        })
        .collect();
    out.sort_by(|a, b| a.0.cmp(&b.0));
    out
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_nodes_share_parquet_on_s3_and_a_cut_upload_loses_nothing() {
    let scratch = Scratch::new("storage-object");
    let s3 = S3::start().await;
    s3.create_bucket("hydrant").await;
    let proxy = Proxy::start(s3.addr).await;
    let d = TestDoppler::start(doppler::Config::default()).await;
    let a = TestStorage::with_object(&d, scratch.join("a"), config(&proxy, "a")).await;
    let b = TestStorage::with_object(&d, scratch.join("b"), config(&proxy, "b")).await;
    eventually_within("both nodes subscribed", Duration::from_secs(30), || async {
        d.metric(names::DOPPLER_SUBSCRIPTIONS, &[("shard_id", "storage")])
            .await
            >= 2.0
    })
    .await;

    // Phase 1: the Firehose is split by source id, and each node answers for all.
    let now = chrono::Utc::now().timestamp();
    let start = now - 900;
    send(&d, start, 0, 30).await;
    let ingested = |n: &TestStorage| {
        let http = n.http;
        async move { crate::metric(http, "hydrant_storage_ingested_samples_total", &[]).await }
    };
    // 30 gauges per source, and the log-line counter its log line adds.
    let total = (SOURCES * 31) as f64;
    eventually_within(
        "every sample stored once",
        Duration::from_secs(30),
        || async { ingested(&a).await + ingested(&b).await >= total },
    )
    .await;
    let (ia, ib) = (ingested(&a).await, ingested(&b).await);
    assert!(
        ia > 0.0 && ib > 0.0,
        "the sources are split: a {ia}, b {ib}"
    );
    assert_eq!(ia + ib, total, "no source reached both nodes");
    for node in [&a, &b] {
        eventually_within(
            "a node answers for both",
            Duration::from_secs(60),
            || async { per_source(node, "20m", now).await == expected(30) },
        )
        .await;
    }
    // The series API and SQL see both nodes too.
    let series = get(
        &format!("{}/api/v1/series", b.url),
        &[("match[]", "cpu".to_owned())],
    )
    .await;
    assert_eq!(
        series["data"].as_array().map(Vec::len),
        Some(SOURCES),
        "{series}"
    );
    let sql = |node: &TestStorage, statement: &str| {
        let (url, statement) = (format!("{}/api/v1/sql", node.url), statement.to_owned());
        async move {
            let body = hydrant_runtime::https::plain_client()
                .post(url)
                .body(statement)
                .send()
                .await
                .unwrap()
                .json::<Value>()
                .await
                .unwrap();
            body[0]["n"].as_u64().unwrap_or_default()
        }
    };
    let joined = "SELECT count(*) AS n FROM samples s JOIN series x ON s.series_id = x.series_id \
                  WHERE x.name = 'cpu'";
    assert_eq!(sql(&a, joined).await, (SOURCES * 30) as u64);
    // Log rows of both nodes (written to parts at each sync).
    eventually_within("both nodes' log rows", Duration::from_secs(30), || async {
        sql(&a, "SELECT count(DISTINCT source_id) AS n FROM logs").await == SOURCES as u64
    })
    .await;

    // Phase 2: the network to S3 cuts every request after 2 KiB, mid-upload.
    proxy.cutting(true);
    send(&d, start + 60, 30, 300).await;
    let failing = |n: &TestStorage| {
        let http = n.http;
        async move {
            crate::metric(
                http,
                "hydrant_storage_errors_total",
                &[("stage", "object_publish")],
            )
            .await
                >= 1.0
                && crate::metric(http, "hydrant_storage_object_pending_parts", &[]).await >= 1.0
        }
    };
    // Health reports the last sync: a sync that only had parts small enough to pass the
    // cut succeeds, so "degraded" is looked for while uploads fail, not at one instant.
    let degraded = |n: &TestStorage| {
        let http = n.http;
        async move {
            let (status, health) = crate::http_get(http, "/healthz").await.unwrap();
            status == 200 && health.contains("degraded") && health.contains("object store")
        }
    };
    eventually_within(
        "uploads fail while cut, and health says so",
        Duration::from_secs(60),
        || async { failing(&a).await && failing(&b).await && degraded(&a).await },
    )
    .await;
    assert!(proxy.cut.load(std::sync::atomic::Ordering::Relaxed) >= 2);

    // The network is back: everything is published, and both nodes answer all of it.
    proxy.cutting(false);
    for node in [&a, &b] {
        eventually_within("everything published", Duration::from_secs(60), || async {
            per_source(node, "20m", now).await == expected(330)
        })
        .await;
    }
    for node in [&a, &b] {
        eventually_within("nothing pending", Duration::from_secs(30), || async {
            crate::metric(node.http, "hydrant_storage_object_pending_parts", &[]).await == 0.0
        })
        .await;
    }

    // Stopped (a last sync each), the bucket holds what the manifests name, whole, and
    // nothing else: what cut attempts uploaded without publishing was deleted.
    a.stop().await;
    b.stop().await;
    let remote = object::open(&config(&proxy, "check")).unwrap();
    for node in ["a", "b"] {
        let m = object::manifest(remote.store.as_ref(), node)
            .await
            .unwrap()
            .expect("a manifest");
        assert!(!m.parts.is_empty());
        for p in &m.parts {
            let head = remote.store.head(&object::key(node, &p.key)).await.unwrap();
            assert_eq!(head.size, p.bytes, "{}", p.key);
        }
        let prefix = object_store::path::Path::from(format!("nodes/{node}"));
        let listed: Vec<String> =
            futures::TryStreamExt::try_collect::<Vec<_>>(remote.store.list(Some(&prefix)))
                .await
                .unwrap()
                .into_iter()
                .map(|o| o.location.to_string())
                .collect();
        for k in &listed {
            let rel = k.strip_prefix(&format!("nodes/{node}/")).unwrap_or(k);
            let named = rel == "manifest.json"
                || m.parts.iter().any(|p| p.key == rel)
                || m.series.iter().any(|s| s.key == rel);
            assert!(named, "{k} is in the bucket but not in {node}'s manifest");
        }
    }
}
