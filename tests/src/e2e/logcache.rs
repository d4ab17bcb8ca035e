//! The log cache and `hydrant logs`: recent logs formatted like the cf CLI, the read API's
//! parameters and errors, eviction, access control, and live tailing with resume.

use hydrant_runtime::access::{Access, Tokens};
use std::time::{Duration, Instant};

use hydrant::doppler;
use hydrant_logcache::store::Limits;
use hydrant_proto::envelope;
use hydrant_proto::ingress::{Config, IngressClient};
use hydrant_proto::raw::RawEnvelope;
use hydrant_proto::v2::Envelope;
use serde_json::Value;

use crate::{TestDoppler, TestLogCache, eventually};

/// A base time: 2026-01-01T00:00:00Z.
pub(super) const T0: i64 = 1_767_225_600_000_000_000;

pub(super) fn app_log(source: &str, ts: i64, instance: u32, text: &str, err: bool) -> Envelope {
    let mut e = envelope::log(source, text.to_owned(), err);
    e.timestamp = ts;
    e.instance_id = instance.to_string();
    e.tags.insert("source_type".into(), "APP/PROC/WEB".into());
    e.tags.insert("app_name".into(), format!("name-{source}"));
    e
}

/// Sends envelopes to the doppler in paced chunks and waits until they are flushed.
pub(super) async fn send(to: std::net::SocketAddr, envelopes: Vec<Envelope>) {
    let client = IngressClient::start(Config::new(vec![to.to_string()])).unwrap();
    for chunk in envelopes.chunks(5_000) {
        client.send_all(chunk.iter().map(RawEnvelope::from_envelope));
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    client.close(Duration::from_secs(20)).await;
}

pub(super) async fn get(url: String, token: Option<&'static str>) -> (u16, Value) {
    let mut req = hydrant_runtime::https::plain_client().get(url);
    if let Some(t) = token {
        req = req.bearer_auth(t);
    }
    let resp = req.send().await.unwrap();
    (
        resp.status().as_u16(),
        resp.json().await.unwrap_or(Value::Null),
    )
}

pub(super) async fn cached(lc: &TestLogCache) -> u64 {
    cached_with(lc, "").await
}

/// Envelopes cached, as `/api/v1/meta` counts them for `token` (none when empty).
pub(super) async fn cached_with(lc: &TestLogCache, token: &'static str) -> u64 {
    let token = (!token.is_empty()).then_some(token);
    let (_, meta) = get(format!("{}/api/v1/meta", lc.url), token).await;
    meta["meta"].as_object().map_or(0, |m| {
        m.values()
            .map(|v| v["count"].as_str().unwrap().parse::<u64>().unwrap())
            .sum()
    })
}

/// What the cf CLI prints for `e` in a zone 5:30 east of UTC, computed independently of
/// `hydrant::logs`.
pub(super) fn cf_line(e: &Envelope, text: &str) -> String {
    let secs = e.timestamp.div_euclid(1_000_000_000) + 5 * 3600 + 1800;
    let centis = e.timestamp.rem_euclid(1_000_000_000) / 10_000_000;
    let t = chrono::DateTime::from_timestamp(secs, 0)
        .unwrap()
        .naive_utc();
    let stream = if text.starts_with("err") {
        "ERR"
    } else {
        "OUT"
    };
    format!(
        "   {}.{centis:02}+0530 [APP/PROC/WEB/{}] {stream} {text}",
        t.format("%Y-%m-%dT%H:%M:%S"),
        e.instance_id
    )
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn read_api_parameters_and_errors() {
    let d = TestDoppler::start(doppler::Config::default()).await;
    let lc = TestLogCache::start(
        hydrant_logcache::Config::new(vec![d.grpc.to_string()]),
        &[&d],
    )
    .await;
    let mut envs: Vec<Envelope> = (0..10)
        .map(|i| app_log("s", T0 + i, 0, &format!("l{i}"), false))
        .collect();
    let mut c = envelope::counter("s", "requests", 1);
    c.timestamp = T0 + 20;
    let mut g = envelope::gauge("s", [("cpu", 5.0, "percentage"), ("memory", 7.0, "bytes")]);
    g.timestamp = T0 + 21;
    envs.extend([c, g]);
    send(d.grpc, envs).await;
    eventually("12 cached", || async { cached(&lc).await == 12 }).await;
    let read = |q: &str| get(format!("{}/api/v1/read/s?{q}", lc.url), None);
    let batch = |v: &Value| {
        v["envelopes"]["batch"]
            .as_array()
            .cloned()
            .unwrap_or_default()
    };
    let ts = |v: &Value| v["timestamp"].as_str().unwrap().parse::<i64>().unwrap() - T0;

    let (status, v) = read("").await;
    assert_eq!((status, batch(&v).len()), (200, 12));
    let (_, v) = read(&format!("start_time={}&end_time={}", T0 + 3, T0 + 6)).await;
    assert_eq!(
        batch(&v).iter().map(ts).collect::<Vec<_>>(),
        [3, 4, 5],
        "[start, end)"
    );
    let (_, v) = read("limit=2&descending=true").await;
    assert_eq!(batch(&v).iter().map(ts).collect::<Vec<_>>(), [21, 20]);
    let (_, v) = read("envelope_types=LOG&limit=3").await;
    assert_eq!(batch(&v).len(), 3);
    assert_eq!(batch(&v)[0]["log"]["payload"], "bDA=", "payload base64");
    assert_eq!(batch(&v)[0]["log"]["type"], "OUT");
    let (_, v) = read("envelope_types=COUNTER&envelope_types=GAUGE").await;
    assert_eq!(batch(&v).len(), 2);
    assert_eq!(
        batch(&v)[0]["counter"]["delta"],
        "1",
        "64-bit integers as strings"
    );
    let (_, v) = read("name_filter=cpu").await;
    let b = batch(&v);
    assert_eq!(b.len(), 1, "logs, events and other names are excluded");
    assert_eq!(
        b[0]["gauge"]["metrics"]
            .as_object()
            .unwrap()
            .keys()
            .collect::<Vec<_>>(),
        ["cpu"]
    );

    for (q, msg) in [
        ("limit=1001", "limit (1001) must be 1000 or less"),
        (
            &format!("start_time={}&end_time={}", T0 + 5, T0 + 1),
            "must be before EndTime",
        ),
        (
            "name_filter=%28",
            "name filter must be a valid regular expression",
        ),
        (
            "envelope_types=BOGUS",
            "parsing list \"envelope_types\": \"BOGUS\" is not a valid value",
        ),
        (
            "limit=1&limit=2",
            "too many values for field \"limit\": 1, 2",
        ),
        (
            "descending=yes",
            "parsing field \"descending\": strconv.ParseBool",
        ),
    ] {
        let (status, v) = read(q).await;
        assert_eq!(status, 400, "{q}");
        assert!(v["message"].as_str().unwrap().contains(msg), "{q}: {v}");
        // grpc-gateway v2's error body: exactly code, message and details.
        assert_eq!(v["code"], 3, "{q}: {v}");
        assert_eq!(v["details"], serde_json::json!([]), "{q}: {v}");
        assert_eq!(v.as_object().unwrap().len(), 3, "{q}: {v}");
    }
    // As Log Cache: a start in the future is an empty answer, end_time=0 is now, limit=0
    // the default, and envelope types go by number too.
    let future = hydrant_proto::envelope::now_nanos() + 3_600_000_000_000;
    let (status, v) = read(&format!("start_time={future}")).await;
    assert_eq!((status, batch(&v).len()), (200, 0), "{v}");
    let (status, v) = read("end_time=0&limit=0").await;
    assert_eq!((status, batch(&v).len()), (200, 12), "{v}");
    let (_, v) = read("envelope_types=1&limit=3&descending=T").await;
    assert_eq!(batch(&v).len(), 3);
    assert!(batch(&v).iter().all(|e| e.get("log").is_some()), "{v}");
    let (status, v) = get(format!("{}/api/v1/read/unknown", lc.url), None).await;
    assert_eq!((status, batch(&v).len()), (200, 0));
    let (_, meta) = get(format!("{}/api/v1/meta", lc.url), None).await;
    assert_eq!(meta["meta"]["s"]["count"], "12");
    assert_eq!(meta["meta"]["s"]["oldest_timestamp"], T0.to_string());
    // go-log-cache's path choice (client.go, getBaseApiPath): `/api/v1/info`'s version,
    // 404 meaning 1.4.7; `/api/v1` from 2.0.0 on, else `/v1`. The cf CLI's name filter
    // needs 2.1.0.
    let (status, info) = get(format!("{}/api/v1/info", lc.url), None).await;
    assert_eq!(status, 200);
    let version: Vec<u64> = info["version"]
        .as_str()
        .expect("a version")
        .split('.')
        .map(|p| p.parse().expect("semver"))
        .collect();
    assert_eq!(version.len(), 3, "{info}");
    assert!(version >= vec![2, 1, 0], "{info}");
    let base = if version >= vec![2, 0, 0] {
        "/api/v1"
    } else {
        "/v1"
    };
    let (status, v) = get(format!("{}{base}/read/s?start_time=0", lc.url), None).await;
    assert_eq!((status, batch(&v).len()), (200, 12), "{v}");
    lc.stop().await;
    d.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_noisy_source_cannot_evict_quiet_ones() {
    let d = TestDoppler::start(doppler::Config::default()).await;
    let mut config = hydrant_logcache::Config::new(vec![d.grpc.to_string()]);
    config.limits = Limits {
        max_per_source: 20_000,
        memory_bytes: 2 * 1024 * 1024,
    };
    let lc = TestLogCache::start(config, &[&d]).await;
    let quiet: Vec<Envelope> = (0..5)
        .flat_map(|q| (0..100).map(move |i| app_log(&format!("quiet-{q}"), T0 + i, 0, "q", false)))
        .collect();
    send(d.grpc, quiet).await;
    eventually("quiet cached", || async { cached(&lc).await == 500 }).await;
    let noisy: Vec<Envelope> = (0..100_000)
        .map(|i| app_log("noisy", T0 + 1_000 + i, 0, &"n".repeat(100), false))
        .collect();
    send(d.grpc, noisy).await;
    eventually("flood ingested", || async {
        crate::metric(lc.http, hydrant_logcache::telemetry::names::INGRESS, &[]).await == 100_500.0
    })
    .await;
    let (_, meta) = get(format!("{}/api/v1/meta", lc.url), None).await;
    for q in 0..5 {
        assert_eq!(
            meta["meta"][format!("quiet-{q}")]["count"],
            "100",
            "quiet sources keep their history: {meta}"
        );
    }
    let noisy_count: u64 = meta["meta"]["noisy"]["count"]
        .as_str()
        .unwrap()
        .parse()
        .unwrap();
    assert!(noisy_count <= 20_000, "per-source cap: {noisy_count}");
    assert_eq!(
        meta["meta"]["noisy"]["newest_timestamp"],
        (T0 + 1_000 + 99_999).to_string()
    );
    let memory = crate::metric(lc.http, hydrant_logcache::telemetry::names::MEMORY, &[]).await;
    assert!(
        memory <= 2.0 * 1024.0 * 1024.0,
        "memory budget holds: {memory}"
    );
    assert!(
        crate::metric(
            lc.http,
            hydrant_logcache::telemetry::names::EVICTED,
            &[("reason", "memory")]
        )
        .await
            > 0.0
    );
    lc.stop().await;
    d.stop().await;
}

/// Tokens read their own sources: by source id, or by app name through the scheduler's
/// guid for it (as Log Cache asks Cloud Controller), never by the `app_name` tag an
/// emitter wrote: a source tagged `app_name=web` by anyone is not the app "web".
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tokens_read_only_their_own_sources() {
    let d = TestDoppler::start(doppler::Config::default()).await;
    // The scheduler: a real cell with an app "name-b".
    let agent = crate::listener().await.local_addr().unwrap();
    let cell = crate::TestCell::start(crate::TestCell::config(agent)).await;
    let app = cell
        .client()
        .push(
            "name-b",
            "sleep 300",
            0,
            64,
            64,
            &std::collections::BTreeMap::new(),
        )
        .await
        .unwrap();
    let b = app.guid.clone();
    let yaml = "tokens:\n  - token: root\n    admin: true\n  - token: team\n    sources: [a]\n    apps: [name-b]\n";
    let mut config = hydrant_logcache::Config::new(vec![d.grpc.to_string()]);
    config.access = Access::tokens(Tokens::parse(yaml, std::path::Path::new("auth.yml")).unwrap());
    config.scheduler = Some(hydrant_logcache::directory::Scheduler {
        url: cell.url.clone(),
        token: None,
        http: hydrant_runtime::https::plain_client(),
    });
    // A cluster of one, so the peers' ingest route is served (and guarded).
    let http = crate::listener().await;
    config.cluster = Some(hydrant_logcache::cluster::Cluster {
        nodes: vec![format!("http://{}", http.local_addr().unwrap())],
        index: 0,
        token: None,
        http: hydrant_runtime::https::plain_client(),
    });
    let lc = TestLogCache::start_on(http, config, &[&d]).await;
    // "spoof" tags itself app_name=name-b (app_log tags name-<source>, so rename it).
    let mut spoof = app_log("spoof", T0, 0, "x", false);
    spoof.tags.insert("app_name".into(), "name-b".into());
    send(
        d.grpc,
        vec![
            app_log("a", T0, 0, "x", false),
            app_log(&b, T0, 0, "x", false),
            app_log("c", T0, 0, "x", false),
            spoof,
        ],
    )
    .await;
    let count = |v: &Value| v["envelopes"]["batch"].as_array().map_or(0, Vec::len);
    eventually("cached", || async {
        let (_, v) = get(format!("{}/api/v1/read/c", lc.url), Some("root")).await;
        count(&v) == 1
    })
    .await;
    let read = |s: &str, t: Option<&'static str>| get(format!("{}/api/v1/read/{s}", lc.url), t);
    assert_eq!(read("c", Some("root")).await.0, 200);
    // The cluster peers' ingest route takes only a token that may write.
    let post = |t: &'static str| {
        hydrant_runtime::https::plain_client()
            .post(format!(
                "{}{}",
                lc.url,
                hydrant_logcache::cluster::INGEST_PATH
            ))
            .bearer_auth(t)
            .body(Vec::<u8>::new())
            .send()
    };
    assert_eq!(
        post("team").await.unwrap().status().as_u16(),
        404,
        "a reading token"
    );
    assert_eq!(
        post("nobody").await.unwrap().status().as_u16(),
        404,
        "an unknown token"
    );
    assert_eq!(count(&read("a", Some("team")).await.1), 1, "own source id");
    assert_eq!(
        count(&read(&b, Some("team")).await.1),
        1,
        "own app, by its guid"
    );
    assert_eq!(
        read("spoof", Some("team")).await.0,
        404,
        "an app_name tag grants nothing"
    );
    assert_eq!(
        read("c", Some("team")).await.0,
        404,
        "others are not revealed"
    );
    assert_eq!(
        read("nonexistent", Some("team")).await.0,
        404,
        "same answer as for a hidden source"
    );
    assert_eq!(read("a", Some("wrong")).await.0, 404);
    assert_eq!(read("a", None).await.0, 404);
    let (_, meta) = get(format!("{}/api/v1/meta", lc.url), Some("team")).await;
    let mut keys: Vec<&str> = meta["meta"]
        .as_object()
        .unwrap()
        .keys()
        .map(String::as_str)
        .collect();
    keys.sort();
    let mut want = vec!["a", b.as_str()];
    want.sort();
    assert_eq!(keys, want, "meta lists only readable sources");
    let sse = |q: String| get(format!("{}/v2/read?{q}", lc.url), Some("team"));
    assert_eq!(
        sse("source_id=spoof&log".into()).await.0,
        404,
        "nor does it open a subscription"
    );
    assert_eq!(
        get(format!("{}/metrics", lc.url), Some("team")).await.0,
        404,
        "metrics are admin-only"
    );
    let resp = hydrant_runtime::https::plain_client()
        .get(format!("{}/metrics", lc.url))
        .bearer_auth("root")
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status().as_u16(), 200);
    assert_eq!(
        get(format!("{}/v2/read?log", lc.url), Some("team")).await.0,
        404,
        "the whole Firehose is admin-only"
    );
    assert_eq!(get(format!("{}/healthz", lc.url), None).await.0, 200);
    lc.stop().await;
    cell.stop().await;
    d.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn reads_several_dopplers_and_dopplers_serve_sse_too() {
    let d1 = TestDoppler::start(doppler::Config::default()).await;
    let d2 = TestDoppler::start(doppler::Config::default()).await;
    let config = hydrant_logcache::Config::new(vec![d1.grpc.to_string(), d2.grpc.to_string()]);
    let lc = TestLogCache::start(config, &[&d1, &d2]).await;
    send(d1.grpc, vec![app_log("multi", T0 + 1, 0, "via one", false)]).await;
    send(d2.grpc, vec![app_log("multi", T0 + 2, 1, "via two", false)]).await;
    eventually("both cached", || async { cached(&lc).await == 2 }).await;

    // The doppler's own HTTP port streams the Firehose as server-sent events.
    let resp = hydrant_runtime::https::plain_client()
        .get(format!("http://{}/v2/read?source_id=multi&log", d1.http))
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status().as_u16(), 200);
    assert_eq!(resp.headers()["content-type"], "text/event-stream");
    let mut body = resp.bytes_stream();
    eventually("SSE subscription on the doppler", || async {
        d1.metric(
            hydrant::telemetry::names::DOPPLER_SUBSCRIPTIONS,
            &[("shard_id", "")],
        )
        .await
            == 1.0
    })
    .await;
    send(
        d1.grpc,
        vec![app_log("multi", T0 + 3, 0, "live over SSE", false)],
    )
    .await;
    let mut text = String::new();
    let deadline = Instant::now() + Duration::from_secs(10);
    while !text.contains("\n\n") && Instant::now() < deadline {
        use futures::StreamExt as _;
        match tokio::time::timeout(Duration::from_secs(5), body.next()).await {
            Ok(Some(Ok(chunk))) => text.push_str(&String::from_utf8_lossy(&chunk)),
            _ => break,
        }
    }
    let data = text
        .lines()
        .find_map(|l| l.strip_prefix("data: "))
        .unwrap_or_else(|| panic!("{text}"));
    let batch: Value = serde_json::from_str(data).unwrap();
    assert_eq!(batch["batch"][0]["log"]["payload"], "bGl2ZSBvdmVyIFNTRQ==");
    let bad = hydrant_runtime::https::plain_client()
        .get(format!("http://{}/v2/read?source_id=multi", d1.http))
        .send()
        .await
        .unwrap();
    assert_eq!(bad.status().as_u16(), 400, "a type flag is required");
    drop(body);
    lc.stop().await;
    d1.stop().await;
    d2.stop().await;
}
