//! A log cache started after its predecessor warms itself from the storage nozzle's `logs`
//! table: the lines from before the restart read back (once each, beside the new live
//! ones), `/healthz` says how many and how far back, and a storage nozzle that never
//! answers leaves an empty, working cache with the reason in `/healthz`.

use std::time::Duration;

use hydrant::doppler;
use hydrant_proto::envelope;
use hydrant_proto::ingress::{Config, IngressClient};
use serde_json::Value;

use super::storage::TestStorage;
use crate::guard::Scratch;
use crate::{TestDoppler, TestLogCache, eventually_within};

const APP: &str = "7a3c0000-0000-4000-8000-00000000warm";

async fn get(url: String) -> Value {
    hydrant_runtime::https::plain_client()
        .get(url)
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap()
}

/// The payloads of the app's cached log lines, oldest first.
async fn lines(cache: &TestLogCache) -> Vec<String> {
    use base64::Engine as _;
    let v = get(format!(
        "{}/api/v1/read/{APP}?envelope_types=LOG&limit=1000",
        cache.url
    ))
    .await;
    v["envelopes"]["batch"]
        .as_array()
        .into_iter()
        .flatten()
        .map(|e| {
            let bytes = base64::engine::general_purpose::STANDARD
                .decode(e["log"]["payload"].as_str().unwrap_or_default())
                .unwrap();
            String::from_utf8(bytes).unwrap()
        })
        .collect()
}

fn warm_config(d: &TestDoppler, storage: &str, patience: Duration) -> hydrant_logcache::Config {
    let mut config = hydrant_logcache::Config::new(vec![d.grpc.to_string()]);
    config.warm = Some(hydrant_logcache::warm::Warm {
        url: storage.to_owned(),
        token: None,
        http: hydrant_runtime::https::plain_client(),
        max_rows: hydrant_logcache::warm::DEFAULT_MAX_ROWS,
        lookback: hydrant_logcache::warm::DEFAULT_LOOKBACK,
        patience,
    });
    config
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_restarted_log_cache_reads_back_the_lines_storage_kept() {
    let d = TestDoppler::start(doppler::Config::default()).await;
    let dir = Scratch::new("logcache-warm");
    let storage = TestStorage::start(&d, dir.to_path_buf()).await;
    let client = IngressClient::start(Config::new(vec![d.grpc.to_string()])).unwrap();
    let send = |range: std::ops::Range<u32>| {
        for i in range {
            let mut e = envelope::log(APP, format!("line {i}"), i % 5 == 0);
            e.instance_id = "0".into();
            e.tags.insert("source_type".into(), "APP/PROC/WEB".into());
            client.send_envelope(&e);
        }
    };
    // Before the (new) log cache exists: only storage sees these.
    send(0..50);
    eventually_within("storage has the lines", Duration::from_secs(20), || async {
        crate::metric(storage.http, "hydrant_storage_log_rows", &[]).await >= 50.0
            || crate::metric(storage.http, "hydrant_storage_log_rows_written_total", &[]).await
                >= 50.0
    })
    .await;

    let cache = TestLogCache::start(
        warm_config(&d, &storage.url, Duration::from_secs(10)),
        &[&d],
    )
    .await;
    eventually_within("warmed", Duration::from_secs(20), || async {
        get(format!("{}/healthz", cache.url)).await["warm"]["status"] == "done"
    })
    .await;
    let health = get(format!("{}/healthz", cache.url)).await;
    assert_eq!(health["warm"]["envelopes"], 50, "{health}");
    assert_eq!(health["warm"]["sources"], 1, "{health}");
    assert!(
        health["warm"]["oldest"]
            .as_str()
            .is_some_and(|t| t.ends_with('Z')),
        "{health}"
    );
    let before: Vec<String> = (0..50).map(|i| format!("line {i}")).collect();
    assert_eq!(
        lines(&cache).await,
        before,
        "the lines from before, in order"
    );

    // New lines arrive live, after the warmed ones; nothing twice.
    send(50..60);
    eventually_within("live lines", Duration::from_secs(10), || async {
        lines(&cache).await.len() >= 60
    })
    .await;
    let all: Vec<String> = (0..60).map(|i| format!("line {i}")).collect();
    assert_eq!(lines(&cache).await, all);
    // The stream and the source type came back too.
    let v = get(format!(
        "{}/api/v1/read/{APP}?envelope_types=LOG&limit=1",
        cache.url
    ))
    .await;
    let first = &v["envelopes"]["batch"][0];
    assert_eq!(first["log"]["type"], "ERR", "{v}");
    assert_eq!(first["tags"]["source_type"], "APP/PROC/WEB", "{v}");
    cache.stop().await;

    // A storage nozzle that is not there: the cache serves, empty, and says why.
    let nowhere = format!("http://{}", crate::listener().await.local_addr().unwrap());
    // (the listener is dropped: connections are refused)
    let cache = TestLogCache::start(warm_config(&d, &nowhere, Duration::from_secs(2)), &[&d]).await;
    eventually_within("gave up", Duration::from_secs(10), || async {
        get(format!("{}/healthz", cache.url)).await["warm"]["status"] == "failed"
    })
    .await;
    let health = get(format!("{}/healthz", cache.url)).await;
    assert!(
        health["warm"]["error"]
            .as_str()
            .is_some_and(|e| e.contains(&nowhere)),
        "{health}"
    );
    assert_eq!(health["status"], "ok");
    cache.stop().await;
    client.close(Duration::from_secs(5)).await;
    storage.stop().await;
    d.stop().await;
}
