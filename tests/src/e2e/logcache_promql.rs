//! Log Cache's PromQL on Hydrant's log cache, asked as its clients ask it, and diffed
//! against the same queries on the storage nozzle over the same envelopes. The names
//! differ by design (Log Cache: a counter is its bare name with its total, a timer its
//! name with stop − start in ns; storage: `_total`, `_seconds`), so each pair of queries
//! asks the same question in each one's names.

use std::collections::BTreeMap;
use std::time::Duration;

use hydrant::doppler;
use hydrant_proto::envelope;
use hydrant_proto::v2::Envelope;
use serde_json::Value;

use super::logcache::send;
use super::storage::TestStorage;
use crate::guard::Scratch;
use crate::{TestDoppler, TestLogCache, eventually};

const APP: &str = "5f0c1e2a-aaaa-4bbb-8ccc-000000000042";

/// Two minutes of an app, every 10 s, on whole seconds: cpu per instance, a request counter,
/// and gorouter-style `http` timers (peer_type Client).
fn recording(now_s: i64) -> Vec<Envelope> {
    let mut out = Vec::new();
    for k in 0..12i64 {
        let t = (now_s - 120 + k * 10) * 1_000_000_000;
        for i in 0..2u32 {
            let mut g = envelope::gauge(
                APP,
                [("cpu", 10.0 * f64::from(i + 1) + k as f64, "percentage")],
            );
            g.timestamp = t;
            g.instance_id = i.to_string();
            out.push(g);
            let mut c = envelope::counter(APP, "requests", 0);
            if let Some(hydrant_proto::v2::envelope::Message::Counter(counter)) = &mut c.message {
                counter.total = (k as u64 + 1) * 100 * u64::from(i + 1);
            }
            c.timestamp = t;
            c.instance_id = i.to_string();
            out.push(c);
            for r in 0..3i64 {
                let mut h = envelope::timer(APP, "http", t, t + (k + r + 1) * 1_000_000);
                h.instance_id = i.to_string();
                h.timestamp = t;
                h.tags.insert("peer_type".into(), "Client".into());
                out.push(h);
            }
        }
    }
    out
}

/// `GET /api/v1/query?query=…&time=<seconds, 3 decimals>` as go-log-cache's `PromQL` sends
/// it; the result as instance_id → value.
async fn log_cache_query(base: &str, q: &str, t: i64) -> BTreeMap<String, f64> {
    let url = format!(
        "{base}/api/v1/query?{}",
        form_urlencoded::Serializer::new(String::new())
            .append_pair("query", q)
            .append_pair("time", &format!("{:.3}", t as f64))
            .finish()
    );
    let v = get(&url).await;
    for s in v["data"]["result"].as_array().into_iter().flatten() {
        assert!(
            s["metric"].get("__name__").is_none(),
            "no metric name, as Log Cache: {s}"
        );
    }
    by_instance(&v, q)
}

async fn storage_query(base: &str, q: &str, t: i64) -> BTreeMap<String, f64> {
    let url = format!(
        "{base}/api/v1/query?{}",
        form_urlencoded::Serializer::new(String::new())
            .append_pair("query", q)
            .append_pair("time", &t.to_string())
            .finish()
    );
    by_instance(&get(&url).await, q)
}

async fn get(url: &str) -> Value {
    let resp = hydrant_runtime::https::plain_client()
        .get(url)
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 200, "{url}");
    resp.json().await.unwrap()
}

fn by_instance(v: &Value, q: &str) -> BTreeMap<String, f64> {
    assert_eq!(v["status"], "success", "{q}: {v}");
    assert_eq!(v["data"]["resultType"], "vector", "{q}: {v}");
    v["data"]["result"]
        .as_array()
        .unwrap()
        .iter()
        .map(|s| {
            let instance = s["metric"]["instance_id"].as_str().unwrap_or("").to_owned();
            let value = s["value"][1].as_str().unwrap().parse::<f64>().unwrap();
            (instance, value)
        })
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn log_cache_promql_agrees_with_stored_data() {
    let d = TestDoppler::start(doppler::Config::default()).await;
    let lc = TestLogCache::start(
        hydrant_logcache::Config::new(vec![d.grpc.to_string()]),
        &[&d],
    )
    .await;
    let dir = Scratch::new("lc-promql");
    let storage = TestStorage::start(&d, dir.to_path_buf()).await;
    let now_s = hydrant_proto::envelope::now_nanos() / 1_000_000_000;
    let envelopes = recording(now_s);
    let n = envelopes.len() as u64;
    send(d.grpc, envelopes).await;
    eventually("cached and stored", || async {
        super::logcache::cached(&lc).await == n
            && crate::metric(storage.http, "hydrant_storage_ingested_samples_total", &[]).await
                >= n as f64
    })
    .await;
    tokio::time::sleep(Duration::from_millis(200)).await;

    let t = now_s - 5;
    let sel = format!("source_id=\"{APP}\"");
    for (lc_q, st_q) in [
        (format!("cpu{{{sel}}}"), format!("cpu{{{sel}}}")),
        (
            format!("max_over_time(cpu{{{sel}}}[1m])"),
            format!("max_over_time(cpu{{{sel}}}[1m])"),
        ),
        (
            format!("sum by (instance_id) (rate(requests{{{sel}}}[1m]))"),
            format!("sum by (instance_id) (rate(requests_total{{{sel}}}[1m]))"),
        ),
        (
            format!("max by (instance_id) (max_over_time(http{{{sel}}}[1m])) / 1e9"),
            format!("max by (instance_id) (max_over_time(http_seconds{{{sel}}}[1m]))"),
        ),
    ] {
        let from_cache = log_cache_query(&lc.url, &lc_q, t).await;
        let stored = storage_query(&storage.url, &st_q, t).await;
        assert_eq!(from_cache.len(), 2, "{lc_q}: {from_cache:?}");
        assert_eq!(
            from_cache.keys().collect::<Vec<_>>(),
            stored.keys().collect::<Vec<_>>(),
            "{lc_q}"
        );
        for (instance, x) in &from_cache {
            let y = stored[instance];
            assert!(
                (x - y).abs() <= 1e-9 * x.abs().max(1.0),
                "{lc_q} vs {st_q}, instance {instance}: {x} vs {y}"
            );
        }
    }

    // CF app-autoscaler's throughput and response-time queries (eventgenerator's fetcher),
    // as it sends them, with its 40 s window.
    let throughput = format!(
        "sum by (instance_id) (count_over_time(http{{source_id='{APP}',peer_type='Client'}}[40s])) / 40"
    );
    let got = log_cache_query(&lc.url, &throughput, t).await;
    // The last 40 s hold four 10-s ticks of three requests each (the window is left-open).
    assert_eq!(
        got,
        BTreeMap::from([("0".into(), 0.3), ("1".into(), 0.3)]),
        "{throughput}"
    );
    let response_time = format!(
        "avg by (instance_id) (max_over_time(http{{source_id='{APP}',peer_type='Client'}}[40s])) / (1000 * 1000)"
    );
    let got = log_cache_query(&lc.url, &response_time, t).await;
    // The newest tick (k = 11) is inside the window: its slowest request took 14 ms.
    assert_eq!(
        got,
        BTreeMap::from([("0".into(), 14.0), ("1".into(), 14.0)]),
        "{response_time}"
    );

    // Log Cache's errors: a selector without source_id, and a range query.
    let resp = hydrant_runtime::https::plain_client()
        .get(format!("{}/api/v1/query?query=cpu", lc.url))
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 400);
    let body: Value = resp.json().await.unwrap();
    assert_eq!(
        body["error"],
        "metric 'cpu' does not have a 'source_id' label"
    );
    let range = hydrant_runtime::https::plain_client()
        .get(format!(
            "{}/api/v1/query_range?{}",
            lc.url,
            form_urlencoded::Serializer::new(String::new())
                .append_pair("query", &format!("cpu{{{sel},instance_id=\"0\"}}"))
                .append_pair("start", &format!("{:.3}", (now_s - 60) as f64))
                .append_pair("end", &format!("{:.3}", now_s as f64))
                .append_pair("step", "10s")
                .finish()
        ))
        .send()
        .await
        .unwrap();
    let v: Value = range.json().await.unwrap();
    assert_eq!(v["data"]["resultType"], "matrix", "{v}");
    let series = v["data"]["result"].as_array().unwrap();
    assert_eq!(series.len(), 1, "{v}");
    assert!(
        series[0]["metric"].get("__name__").is_none(),
        "no metric name, as Log Cache"
    );
    assert_eq!(series[0]["values"].as_array().unwrap().len(), 7, "{v}");

    storage.stop().await;
    lc.stop().await;
    d.stop().await;
}
