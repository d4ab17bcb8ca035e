//! Clients of the Log Cache ecosystem, ported line by line from their sources and run
//! against Hydrant's log cache unchanged: go-log-cache's `Client.Read` (with its
//! `/api/v1/info` preflight) and `Walk`, and the cf CLI's `cf logs --recent` and `cf logs`
//! loops. Each port sends what the original sends (paths, parameter spelling and order,
//! the `Authorization` value) and reads the answer as the original decodes it.
//!
//! Sources: cloudfoundry/go-log-cache `client.go` (`Read`, `getBaseApiPath`), `walk.go`
//! (`Walk`, the backoffs, the 2 ns default delay); cloudfoundry/cli
//! `actor/sharedaction/logging.go` (`GetRecentLogs`, `GetStreamingLogs`,
//! `latestEnvelopeTimestamp`, `cliRetryBackoff`).

use std::collections::BTreeMap;
use std::time::Duration;

use hydrant::doppler;
use hydrant_runtime::access::{Access, Tokens};
use serde_json::Value;

use super::logcache::{T0, app_log, send};
use crate::{TestDoppler, TestLogCache, eventually};

/// The cf CLI's `start_time` for "from the beginning": Go's zero `time.Time` in UNIX
/// nanoseconds, which overflows `int64`.
const GO_ZERO_TIME_NANOS: i64 = -6_795_364_578_871_345_152;

/// go-log-cache's `Client`: an address, the HTTP client the caller injects (here one that
/// sets `Authorization` as the cf CLI does: `bearer <token>`), and the base path it
/// learns once from `/api/v1/info`.
struct GoLogCache {
    addr: String,
    authorization: Option<String>,
    http: reqwest::Client,
    base_api_path: tokio::sync::OnceCell<String>,
    /// Every request sent, for the assertions on what the port sends.
    sent: std::sync::Mutex<Vec<String>>,
}

/// One read option (go-log-cache's `ReadOption`s write query parameters).
#[derive(Clone)]
enum ReadOption {
    EndTime(i64),
    Limit(i64),
    EnvelopeTypes(Vec<&'static str>),
    Descending,
    NameFilter(String),
}

impl GoLogCache {
    fn new(addr: &str, token: Option<&str>) -> GoLogCache {
        GoLogCache {
            addr: addr.trim_end_matches('/').to_owned(),
            authorization: token.map(|t| format!("bearer {t}")),
            http: hydrant_runtime::https::plain_client(),
            base_api_path: tokio::sync::OnceCell::new(),
            sent: std::sync::Mutex::new(Vec::new()),
        }
    }

    async fn get(&self, url: String) -> Result<(u16, String), String> {
        self.sent.lock().unwrap().push(url.clone());
        let mut req = self.http.get(&url);
        if let Some(a) = &self.authorization {
            req = req.header("Authorization", a);
        }
        let resp = req.send().await.map_err(|e| e.to_string())?;
        let status = resp.status().as_u16();
        Ok((status, resp.text().await.map_err(|e| e.to_string())?))
    }

    /// `getBaseApiPath`: `/api/v1` from version 2.0.0 on, `/v1` before (a 404 is 1.4.7).
    async fn base_api_path(&self) -> Result<String, String> {
        self.base_api_path
            .get_or_try_init(|| async {
                let (status, body) = self.get(format!("{}/api/v1/info", self.addr)).await?;
                let version = match status {
                    404 => "1.4.7".to_owned(),
                    200 => {
                        let info: Value = serde_json::from_str(&body).map_err(|e| e.to_string())?;
                        info["version"].as_str().ok_or("no version")?.to_owned()
                    }
                    other => return Err(format!("unexpected status code {other}")),
                };
                let semver: Vec<u64> = version
                    .split('.')
                    .map(|p| p.parse().map_err(|_| format!("bad version {version}")))
                    .collect::<Result<_, _>>()?;
                Ok(if semver >= vec![2, 0, 0] {
                    "/api/v1".to_owned()
                } else {
                    "/v1".to_owned()
                })
            })
            .await
            .cloned()
    }

    /// `Client.Read`: `start_time` always, the options, keys sorted and form-encoded
    /// (Go's `url.Values.Encode`); any status but 200 is `unexpected status code N`.
    async fn read(
        &self,
        source_id: &str,
        start: i64,
        opts: &[ReadOption],
    ) -> Result<Vec<Value>, String> {
        let base = self.base_api_path().await?;
        let mut q: BTreeMap<&str, Vec<String>> = BTreeMap::new();
        q.insert("start_time", vec![start.to_string()]);
        for o in opts {
            match o {
                ReadOption::EndTime(t) => {
                    q.insert("end_time", vec![t.to_string()]);
                }
                ReadOption::Limit(n) => {
                    q.insert("limit", vec![n.to_string()]);
                }
                ReadOption::EnvelopeTypes(types) => {
                    let e = q.entry("envelope_types").or_default();
                    e.extend(types.iter().map(|t| (*t).to_owned()));
                }
                ReadOption::Descending => {
                    q.insert("descending", vec!["true".to_owned()]);
                }
                ReadOption::NameFilter(f) => {
                    q.insert("name_filter", vec![f.clone()]);
                }
            }
        }
        let mut encoded = form_urlencoded::Serializer::new(String::new());
        for (k, vs) in &q {
            for v in vs {
                encoded.append_pair(k, v);
            }
        }
        let url = format!("{}{base}/read/{source_id}?{}", self.addr, encoded.finish());
        let (status, body) = self.get(url).await?;
        if status != 200 {
            return Err(format!("unexpected status code {status}"));
        }
        let v: Value = serde_json::from_str(&body).map_err(|e| e.to_string())?;
        Ok(v["envelopes"]["batch"]
            .as_array()
            .cloned()
            .unwrap_or_default())
    }
}

fn timestamp(e: &Value) -> i64 {
    // protojson: int64 as a string (numbers accepted too).
    match &e["timestamp"] {
        Value::String(s) => s.parse().unwrap(),
        v => v.as_i64().unwrap(),
    }
}

fn payload(e: &Value) -> String {
    use base64::Engine as _;
    let b64 = e["log"]["payload"].as_str().unwrap_or_default();
    String::from_utf8(
        base64::engine::general_purpose::STANDARD
            .decode(b64)
            .unwrap(),
    )
    .unwrap()
}

/// go-log-cache's backoffs: what to do on an error or an empty page (sleeping as told).
trait Backoff {
    fn on_err(&mut self) -> impl std::future::Future<Output = bool>;
    fn on_empty(&mut self) -> impl std::future::Future<Output = bool>;
    fn reset(&mut self);
}

/// `AlwaysDoneBackoff`: the walk ends at the first error or empty page.
struct AlwaysDone;

impl Backoff for AlwaysDone {
    async fn on_err(&mut self) -> bool {
        false
    }
    async fn on_empty(&mut self) -> bool {
        false
    }
    fn reset(&mut self) {}
}

/// The cf CLI's `cliRetryBackoff`: empty pages wait and retry forever; errors, up to
/// `max` in a row. Bounded here by a deadline, since a test's loop must end.
struct CliRetry {
    interval: Duration,
    max: usize,
    errors: usize,
    until: tokio::time::Instant,
}

impl Backoff for CliRetry {
    async fn on_err(&mut self) -> bool {
        self.errors += 1;
        if self.errors >= self.max {
            return false;
        }
        tokio::time::sleep(self.interval).await;
        tokio::time::Instant::now() < self.until
    }
    async fn on_empty(&mut self) -> bool {
        tokio::time::sleep(self.interval).await;
        tokio::time::Instant::now() < self.until
    }
    fn reset(&mut self) {
        self.errors = 0;
    }
}

/// `Walk`: reads from `start` on, drops from each page's tail what is newer than
/// `now - delay` (read again later), gives pages to `visit` (false ends the walk), and
/// asks for `last timestamp + 1` next. Returns the requests it made.
async fn walk(
    client: &GoLogCache,
    source_id: &str,
    mut start: i64,
    delay: Duration,
    opts: &[ReadOption],
    backoff: &mut impl Backoff,
    mut visit: impl FnMut(&[Value]) -> bool,
) -> usize {
    let mut reads = 0;
    loop {
        reads += 1;
        let page = match client.read(source_id, start, opts).await {
            Ok(p) => p,
            Err(_) => {
                if !backoff.on_err().await {
                    return reads;
                }
                continue;
            }
        };
        let newest = hydrant_proto::envelope::now_nanos() - delay.as_nanos() as i64;
        let kept: Vec<Value> = {
            let mut p = page;
            while p.last().is_some_and(|e| timestamp(e) > newest) {
                p.pop();
            }
            p
        };
        if kept.is_empty() {
            if !backoff.on_empty().await {
                return reads;
            }
            continue;
        }
        backoff.reset();
        if !visit(&kept) {
            return reads;
        }
        start = timestamp(kept.last().unwrap()) + 1;
    }
}

async fn cache(token: &str) -> (TestDoppler, TestLogCache) {
    let d = TestDoppler::start(doppler::Config::default()).await;
    let mut config = hydrant_logcache::Config::new(vec![d.grpc.to_string()]);
    config.access = Access::tokens(Tokens::parse(token, std::path::Path::new("token")).unwrap());
    let lc = TestLogCache::start(config, &[&d]).await;
    (d, lc)
}

/// 5,000 lines walked page by page (100 a page, the server's default) through the
/// version-negotiated path: each once, in order, none missing.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn go_log_cache_walks_5000_lines_without_gaps_or_duplicates() {
    let (d, lc) = cache("walk-token").await;
    let guid = "6d6c3a04-0c55-4b1f-9d39-2f1e8a0c1d00";
    let lines: Vec<_> = (0..5_000)
        .map(|i| {
            app_log(
                guid,
                T0 + i * 1_000,
                (i % 3) as u32,
                &format!("line {i}"),
                false,
            )
        })
        .collect();
    send(d.grpc, lines).await;
    eventually("5,000 lines cached", || async {
        super::logcache::cached_with(&lc, "walk-token").await == 5_000
    })
    .await;

    let client = GoLogCache::new(&lc.url, Some("walk-token"));
    let mut seen = Vec::new();
    let mut pages = 0;
    let reads = walk(
        &client,
        guid,
        0,
        Duration::from_nanos(2),
        &[ReadOption::EnvelopeTypes(vec!["LOG"])],
        &mut AlwaysDone,
        |page| {
            pages += 1;
            seen.extend(page.iter().map(payload));
            true
        },
    )
    .await;
    assert_eq!(seen.len(), 5_000, "every line once");
    let want: Vec<String> = (0..5_000).map(|i| format!("line {i}")).collect();
    assert_eq!(seen, want, "in order, no gap, no duplicate");
    assert_eq!(pages, 50, "100 a page");
    assert_eq!(reads, 51, "then one empty page ends the walk");
    let sent = client.sent.lock().unwrap().clone();
    assert_eq!(sent[0], format!("{}/api/v1/info", lc.url), "one preflight");
    assert_eq!(
        sent.iter().filter(|u| u.ends_with("/api/v1/info")).count(),
        1
    );
    assert!(
        sent[1].ends_with(&format!(
            "/api/v1/read/{guid}?envelope_types=LOG&start_time=0"
        )),
        "{}",
        sent[1]
    );

    // A wrong token is a 404, as Log Cache's auth proxy answers.
    let stranger = GoLogCache::new(&lc.url, Some("not-the-token"));
    let e = stranger.read(guid, 0, &[]).await.unwrap_err();
    assert_eq!(e, "unexpected status code 404");
    lc.stop().await;
    d.stop().await;
}

/// `cf logs --recent`: the newest 1,000 log lines, descending from Go's zero time, shown
/// oldest first; a 429 halves the limit and retries.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn cf_logs_recent_reads_the_newest_thousand() {
    let (d, lc) = cache("cli-token").await;
    let guid = "0b6f6c2e-8d8a-4bd4-9d59-1e4a8c2b3f00";
    let mut envelopes: Vec<_> = (0..1_500)
        .map(|i| app_log(guid, T0 + i * 1_000, 0, &format!("line {i}"), false))
        .collect();
    // A gauge among the logs: filtered out by envelope_types=LOG.
    let mut gauge = hydrant_proto::envelope::gauge(guid, [("cpu", 1.0, "percentage")]);
    gauge.timestamp = T0 + 1_499 * 1_000 + 1;
    envelopes.push(gauge);
    send(d.grpc, envelopes).await;
    eventually("cached", || async {
        super::logcache::cached_with(&lc, "cli-token").await == 1_501
    })
    .await;

    let client = GoLogCache::new(&lc.url, Some("cli-token"));
    let mut limit = 1000;
    let page = loop {
        match client
            .read(
                guid,
                GO_ZERO_TIME_NANOS,
                &[
                    ReadOption::EnvelopeTypes(vec!["LOG"]),
                    ReadOption::Limit(limit),
                    ReadOption::Descending,
                ],
            )
            .await
        {
            Ok(page) => break page,
            Err(e) if e == "unexpected status code 429" && limit > 1 => limit /= 2,
            Err(e) => panic!("Failed to retrieve logs from Log Cache: {e}"),
        }
    };
    let mut lines: Vec<String> = page.iter().rev().map(payload).collect();
    assert_eq!(lines.len(), 1_000);
    assert_eq!(lines.remove(0), "line 500");
    assert_eq!(lines.last().unwrap(), "line 1499");
    let sent = client.sent.lock().unwrap().clone();
    assert!(
        sent.last().unwrap().ends_with(&format!(
            "/api/v1/read/{guid}?descending=true&envelope_types=LOG&limit=1000&start_time={GO_ZERO_TIME_NANOS}"
        )),
        "{sent:?}"
    );
    lc.stop().await;
    d.stop().await;
}

/// `cf logs`: find the newest envelope (limit=1, descending, any type), then walk log
/// lines from a second before it with a 2 s delay, retrying empty pages every 250 ms.
/// Lines written while it walks arrive once each, in order.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn cf_logs_streams_new_lines_in_order() {
    let (d, lc) = cache("stream-token").await;
    let guid = "c0ffee00-0000-4000-8000-000000000001";
    let now = hydrant_proto::envelope::now_nanos();
    send(
        d.grpc,
        vec![app_log(guid, now - 5_000_000_000, 0, "before", false)],
    )
    .await;
    eventually("cached", || async {
        super::logcache::cached_with(&lc, "stream-token").await == 1
    })
    .await;
    let client = GoLogCache::new(&lc.url, Some("stream-token"));

    // latestEnvelopeTimestamp: a walk whose reads force limit=1 and descending.
    let mut latest = None;
    let mut finder = CliRetry {
        interval: Duration::from_millis(250),
        max: 5,
        errors: 0,
        until: tokio::time::Instant::now() + Duration::from_secs(10),
    };
    let mut start = GO_ZERO_TIME_NANOS;
    loop {
        let page = client
            .read(guid, start, &[ReadOption::Limit(1), ReadOption::Descending])
            .await
            .unwrap();
        if let Some(e) = page.first() {
            latest = Some(timestamp(e));
            break;
        }
        if !finder.on_empty().await {
            break;
        }
        start = GO_ZERO_TIME_NANOS;
    }
    let latest = latest.expect("the newest envelope");

    // New lines arrive while the walk runs.
    let writer = {
        let grpc = d.grpc;
        tokio::spawn(async move {
            for i in 0..20 {
                let ts = hydrant_proto::envelope::now_nanos();
                send(
                    grpc,
                    vec![app_log(guid, ts, 0, &format!("live {i}"), false)],
                )
                .await;
                tokio::time::sleep(Duration::from_millis(100)).await;
            }
        })
    };
    let mut seen = Vec::new();
    let mut backoff = CliRetry {
        interval: Duration::from_millis(250),
        max: 5,
        errors: 0,
        until: tokio::time::Instant::now() + Duration::from_secs(30),
    };
    walk(
        &client,
        guid,
        latest - 1_000_000_000,
        Duration::from_secs(2),
        &[ReadOption::EnvelopeTypes(vec!["LOG"])],
        &mut backoff,
        |page| {
            seen.extend(page.iter().map(payload));
            seen.len() < 21
        },
    )
    .await;
    writer.await.unwrap();
    let mut want = vec!["before".to_owned()];
    want.extend((0..20).map(|i| format!("live {i}")));
    assert_eq!(seen, want);
    lc.stop().await;
    d.stop().await;
}

/// CF app-autoscaler's metric poller (`eventgenerator/aggregator/metric_poller.go`,
/// `fetcher.go`): `Read(app, now - window, WithEndTime(now), WithEnvelopeTypes(GAUGE),
/// WithNameFilter("cpu"))` with no limit, so the server's 100; gauges come back reduced
/// to the metrics the filter names, and logs never.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn app_autoscaler_reads_filtered_gauges() {
    let (d, lc) = cache("as-token").await;
    let guid = "a5a5a5a5-0000-4000-8000-000000000002";
    let now = hydrant_proto::envelope::now_nanos();
    let mut envelopes = Vec::new();
    for i in 0..150i64 {
        let mut g = hydrant_proto::envelope::gauge(
            guid,
            [("cpu", i as f64, "percentage"), ("memory", 1e6, "bytes")],
        );
        g.timestamp = now - 60_000_000_000 + i * 1_000_000;
        g.instance_id = "0".into();
        envelopes.push(g);
    }
    envelopes.push(app_log(guid, now - 1_000, 0, "a log line", false));
    send(d.grpc, envelopes).await;
    eventually("cached", || async {
        super::logcache::cached_with(&lc, "as-token").await == 151
    })
    .await;
    let client = GoLogCache::new(&lc.url, Some("as-token"));
    let page = client
        .read(
            guid,
            now - 120_000_000_000,
            &[
                ReadOption::EndTime(now),
                ReadOption::EnvelopeTypes(vec!["GAUGE"]),
                ReadOption::NameFilter("cpu".into()),
            ],
        )
        .await
        .unwrap();
    assert_eq!(page.len(), 100, "the server's default limit");
    for e in &page {
        let metrics = e["gauge"]["metrics"].as_object().expect("a gauge");
        assert_eq!(metrics.keys().collect::<Vec<_>>(), ["cpu"], "{e}");
    }
    assert_eq!(page[0]["gauge"]["metrics"]["cpu"]["value"], 0.0);
    let sent = client.sent.lock().unwrap().clone();
    assert!(
        sent.last().unwrap().contains(&format!(
            "?end_time={now}&envelope_types=GAUGE&name_filter=cpu&start_time="
        )),
        "{sent:?}"
    );
    lc.stop().await;
    d.stop().await;
}
