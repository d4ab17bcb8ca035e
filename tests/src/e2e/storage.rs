//! The storage nozzle against a real Prometheus-compatible engine: the same recorded series
//! go through doppler → `hydrant storage` and into VictoriaMetrics, and a table of queries
//! (every supported function, by/without, offsets, vector matching, ranges across the
//! Parquet/buffer boundary) must answer the same within float tolerance.

use hydrant_runtime::access::Access;
use std::collections::BTreeMap;
use std::time::Duration;

use hydrant::doppler;
use hydrant::telemetry::names;
use hydrant_proto::envelope;
use hydrant_proto::ingress::{Config as IngressConfig, IngressClient};
use hydrant_proto::v2::{self, envelope::Message};
use hydrant_storage::store;
use serde_json::Value;
use tokio_util::sync::CancellationToken;

use crate::guard::Scratch;
use crate::servers::VictoriaMetrics;
use crate::{TestDoppler, eventually, eventually_within, listener, wait_healthy};

/// A running storage nozzle.
pub(crate) struct TestStorage {
    pub(crate) url: String,
    pub(crate) http: std::net::SocketAddr,
    shutdown: CancellationToken,
    task: tokio::task::JoinHandle<Result<(), hydrant_storage::Error>>,
}

impl TestStorage {
    pub(crate) async fn start(d: &TestDoppler, dir: std::path::PathBuf) -> TestStorage {
        TestStorage::with_sinks(d, dir, Vec::new()).await
    }

    pub(crate) async fn with_sinks(
        d: &TestDoppler,
        dir: std::path::PathBuf,
        sinks: Vec<std::sync::Arc<dyn hydrant_storage::sink::Sink>>,
    ) -> TestStorage {
        let limits = hydrant_storage::queries::Limits::default();
        TestStorage::with_queries(d, dir, sinks, limits).await
    }

    pub(crate) async fn with_queries(
        d: &TestDoppler,
        dir: std::path::PathBuf,
        sinks: Vec<std::sync::Arc<dyn hydrant_storage::sink::Sink>>,
        queries: hydrant_storage::queries::Limits,
    ) -> TestStorage {
        TestStorage::launch(d, dir, sinks, queries, None).await
    }

    /// A node sharing `object` with others.
    pub(crate) async fn with_object(
        d: &TestDoppler,
        dir: std::path::PathBuf,
        object: hydrant_storage::object::Config,
    ) -> TestStorage {
        let limits = hydrant_storage::queries::Limits::default();
        TestStorage::launch(d, dir, Vec::new(), limits, Some(object)).await
    }

    async fn launch(
        d: &TestDoppler,
        dir: std::path::PathBuf,
        sinks: Vec<std::sync::Arc<dyn hydrant_storage::sink::Sink>>,
        queries: hydrant_storage::queries::Limits,
        object: Option<hydrant_storage::object::Config>,
    ) -> TestStorage {
        let http = listener().await;
        let addr = http.local_addr().unwrap();
        let config = hydrant_storage::Config {
            access: Access::open(),
            queries,
            self_metrics: None,
            dopplers: vec![d.grpc.to_string()],
            tls: None,
            discovery: Default::default(),
            store: store::Config {
                dir: dir.to_path_buf(),
                wal: true,
                max_series_per_metric: 10_000,
                retention: Duration::from_secs(15 * 86_400),
                seal_rows: store::DEFAULT_SEAL_ROWS,
                part_cache_bytes: store::cache::DEFAULT_PART_CACHE_BYTES,
            },
            max_log_rows: 10_000,
            maintenance: Duration::from_millis(500),
            sinks,
            grace: hydrant_runtime::shutdown::DEFAULT_GRACE,
            object,
        };
        let shutdown = CancellationToken::new();
        let task = tokio::spawn(hydrant_storage::run(config, http, shutdown.clone()));
        wait_healthy(addr).await;
        eventually("storage subscribed", || async {
            d.metric(names::DOPPLER_SUBSCRIPTIONS, &[("shard_id", "storage")])
                .await
                >= 1.0
        })
        .await;
        TestStorage {
            url: format!("http://{addr}"),
            http: addr,
            shutdown,
            task,
        }
    }

    pub(crate) async fn stop(self) {
        self.shutdown.cancel();
        tokio::time::timeout(Duration::from_secs(30), self.task)
            .await
            .expect("storage stops")
            .unwrap()
            .unwrap();
    }
}

const STEP: i64 = 10;

/// The recorded series: (Prometheus text line for VictoriaMetrics, envelope for Hydrant).
fn recording(base: i64, samples: i64) -> (String, Vec<v2::Envelope>) {
    let mut text = String::new();
    let mut envelopes = Vec::new();
    for k in 0..samples {
        let t = base + k * STEP;
        for i in 0..3 {
            let cpu = ((50.0 + 40.0 * ((k as f64) / 7.0 + i as f64).sin()) * 100.0).round() / 100.0;
            text.push_str(&format!(
                "cpu{{source_id=\"app-a\",instance_id=\"{i}\"}} {cpu} {}\n",
                t * 1000
            ));
            let mut g = envelope::gauge("app-a", [("cpu", cpu, "percentage")]);
            g.instance_id = i.to_string();
            g.timestamp = t * 1_000_000_000;
            envelopes.push(g);
            let total = (i + 1) * 3 * k;
            text.push_str(&format!(
                "requests_total{{source_id=\"app-a\",instance_id=\"{i}\"}} {total} {}\n",
                t * 1000
            ));
            let mut c = envelope::counter("app-a", "requests", 0);
            if let Some(Message::Counter(x)) = &mut c.message {
                x.total = total as u64;
            }
            c.instance_id = i.to_string();
            c.timestamp = t * 1_000_000_000;
            envelopes.push(c);
        }
        for (le, per) in [("0.1", 1), ("0.5", 3), ("1", 4), ("+Inf", 5)] {
            let v = k * per;
            text.push_str(&format!(
                "latency_seconds_bucket{{source_id=\"app-a\",le=\"{le}\"}} {v} {}\n",
                t * 1000
            ));
            let mut g = envelope::gauge("app-a", [("latency_seconds_bucket", v as f64, "")]);
            g.tags.insert("le".into(), le.into());
            g.timestamp = t * 1_000_000_000;
            envelopes.push(g);
        }
    }
    (text, envelopes)
}

/// Series of a Prometheus JSON answer, comparable: labels, points as (time, value).
type Normal = Vec<(String, Vec<(f64, f64)>)>;

/// Which labels and order [`normalize`] keeps.
#[derive(Debug, Clone, Copy)]
struct Keep {
    /// Keep `__name__` (engines differ on where they drop it).
    name: bool,
    /// Keep the answer's order instead of sorting by labels (`sort`, `sort_desc`).
    order: bool,
}

/// The result type and series of a Prometheus JSON answer.
fn normalize(body: &Value, keep: Keep) -> (String, Normal) {
    let data = &body["data"];
    let num = |x: &Value| -> f64 {
        match x.as_str() {
            Some(s) => s.parse().unwrap_or(f64::NAN),
            None => x.as_f64().unwrap_or(f64::NAN),
        }
    };
    let point = |p: &Value| (num(&p[0]), num(&p[1]));
    let labels = |m: &Value| -> String {
        let map: BTreeMap<&str, &str> = m
            .as_object()
            .map(|o| {
                o.iter()
                    .filter(|(k, _)| keep.name || k.as_str() != "__name__")
                    .map(|(k, v)| (k.as_str(), v.as_str().unwrap_or_default()))
                    .collect()
            })
            .unwrap_or_default();
        format!("{map:?}")
    };
    let kind = data["resultType"].as_str().unwrap_or_default().to_owned();
    let items = data["result"].as_array().cloned().unwrap_or_default();
    let mut out: Normal = match kind.as_str() {
        "matrix" => items
            .iter()
            .map(|s| {
                let pts = s["values"].as_array().into_iter().flatten().map(point);
                (labels(&s["metric"]), pts.collect())
            })
            .collect(),
        "vector" => items
            .iter()
            .map(|s| (labels(&s["metric"]), vec![point(&s["value"])]))
            .collect(),
        "scalar" | "string" => vec![(String::new(), vec![point(&data["result"])])],
        _ => Vec::new(),
    };
    if !keep.order {
        out.sort_by(|a, b| a.0.cmp(&b.0));
    }
    (kind, out)
}

/// Equal, both NaN, or within 1e-6 relative.
fn close(a: f64, b: f64) -> bool {
    (a.is_nan() && b.is_nan()) || a == b || (a - b).abs() <= 1e-6 * a.abs().max(b.abs()).max(1.0)
}

pub(crate) async fn get(url: &str, params: &[(&str, String)]) -> Value {
    let q: String = form_urlencoded::Serializer::new(String::new())
        .extend_pairs(params.iter().map(|(k, v)| (*k, v.as_str())))
        .finish();
    hydrant_runtime::https::plain_client()
        .get(format!("{url}?{q}"))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap()
}

const RANGE_QUERIES: &[&str] = &[
    "cpu",
    r#"cpu{instance_id="1"}"#,
    r#"cpu{instance_id!="1"}"#,
    r#"cpu{instance_id=~"0|2"}"#,
    r#"cpu{instance_id!~"0|2"}"#,
    "cpu offset 5m",
    "rate(requests_total[1m])",
    "irate(requests_total[1m])",
    "increase(requests_total[5m])",
    "delta(requests_total[5m])",
    "deriv(requests_total[5m])",
    "avg_over_time(cpu[5m])",
    "min_over_time(cpu[5m])",
    "max_over_time(cpu[5m])",
    "sum_over_time(cpu[5m])",
    "count_over_time(cpu[5m])",
    "last_over_time(cpu[5m])",
    "quantile_over_time(0.9, cpu[5m])",
    "stddev_over_time(cpu[5m])",
    "stdvar_over_time(cpu[5m])",
    "present_over_time(cpu[5m])",
    "sum(cpu)",
    "sum by (instance_id) (rate(requests_total[1m]))",
    "avg without (instance_id) (cpu)",
    "min by (source_id) (cpu)",
    "max(cpu)",
    "count(cpu)",
    "quantile(0.5, cpu)",
    "stddev(cpu)",
    "cpu * 2 - 1",
    "100 - cpu",
    "cpu > 50",
    "cpu > bool 50",
    "cpu / on (source_id) group_left sum by (source_id) (cpu)",
    "rate(requests_total[1m]) / ignoring (instance_id) group_left sum without (instance_id) (rate(requests_total[1m]))",
    "cpu and on (instance_id) (cpu > 50)",
    "cpu unless on (instance_id) (cpu > 50)",
    "histogram_quantile(0.9, sum by (le) (rate(latency_seconds_bucket[5m])))",
    "abs(50 - cpu)",
    "ceil(cpu)",
    "floor(cpu)",
    "round(cpu)",
    "round(cpu, 5)",
    "clamp(cpu, 30, 60)",
    "clamp_min(cpu, 40)",
    "clamp_max(cpu, 40)",
    "sqrt(cpu)",
    "ln(cpu)",
    "log2(cpu)",
    "log10(cpu)",
    "exp(cpu / 100)",
    "sgn(cpu - 50)",
    "sin(cpu)",
    "atan(cpu)",
    "deg(cpu)",
    "rad(cpu)",
    "time()",
    "vector(1)",
    "scalar(sum(cpu))",
    r#"label_replace(cpu, "inst", "i-$1", "instance_id", "(.*)")"#,
    "1 + 1",
];

const INSTANT_QUERIES: &[&str] = &[
    "topk(1, cpu)",
    "bottomk(2, cpu)",
    "topk by (instance_id) (1, cpu)",
];

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn promql_answers_match_victoriametrics() {
    let vm = VictoriaMetrics::start().await;
    let d = TestDoppler::start(doppler::Config::default()).await;
    let dir = Scratch::new("storage-e2e");
    let storage = TestStorage::start(&d, dir.to_path_buf()).await;

    // 68 minutes of samples every 10 s, ending 2 minutes ago: at least one closed hour is
    // sealed into Parquet while the rest stays in the buffer.
    let now = chrono::Utc::now().timestamp();
    let base = (now - 70 * 60) / 60 * 60;
    let samples = 68 * 6 + 1;
    let (text, envelopes) = recording(base, samples);
    vm.import(&text).await;
    let expected = envelopes.len() as f64;
    let client = IngressClient::start(IngressConfig::new(vec![d.grpc.to_string()])).unwrap();
    client.send_all(
        envelopes
            .iter()
            .map(hydrant_proto::raw::RawEnvelope::from_envelope),
    );
    client.close(Duration::from_secs(10)).await;
    eventually_within("every sample stored", Duration::from_secs(60), || async {
        crate::metric(storage.http, "hydrant_storage_ingested_samples_total", &[]).await >= expected
    })
    .await;
    eventually_within(
        "an hour sealed into Parquet",
        Duration::from_secs(60),
        || async {
            crate::metric(storage.http, "hydrant_storage_parquet_files", &[]).await >= 1.0
                && crate::metric(storage.http, "hydrant_storage_buffer_rows", &[]).await >= 1.0
        },
    )
    .await;

    let start = base + 15 * 60;
    let end = base + 68 * 60;
    let mut failures = Vec::new();
    for q in RANGE_QUERIES {
        let params = [
            ("query", (*q).to_owned()),
            ("start", start.to_string()),
            ("end", end.to_string()),
            ("step", "60".to_owned()),
        ];
        let ours = get(&format!("{}/api/v1/query_range", storage.url), &params).await;
        let theirs = get(&format!("{}/api/v1/query_range", vm.url), &params).await;
        compare(q, &ours, &theirs, &mut failures);
    }
    for q in INSTANT_QUERIES {
        let params = [
            ("query", (*q).to_owned()),
            ("time", (end - 120).to_string()),
        ];
        let ours = get(&format!("{}/api/v1/query", storage.url), &params).await;
        let theirs = get(&format!("{}/api/v1/query", vm.url), &params).await;
        compare(q, &ours, &theirs, &mut failures);
    }
    assert!(
        failures.is_empty(),
        "{} of {} queries differ:\n{}",
        failures.len(),
        RANGE_QUERIES.len() + INSTANT_QUERIES.len(),
        failures.join("\n")
    );

    storage.stop().await;
    d.stop().await;
}

fn compare(q: &str, ours: &Value, theirs: &Value, failures: &mut Vec<String>) {
    // VictoriaMetrics keeps `__name__` where Prometheus drops it: compared without.
    match differ(q, ours, theirs, false) {
        Ok(true) => {}
        Ok(false) => failures.push(format!(
            "{q}: no data (the comparison would prove nothing): {ours}"
        )),
        Err(why) => failures.push(format!("{q}: {why}")),
    }
}

/// Why two engines' answers to `q` differ, if they do (the same status and error type,
/// result type, series, labels — `__name__` only with `keep_name` —, times, values within
/// [`close`], and order for `sort*`); `Ok(true)` when both hold data.
pub(crate) fn differ(
    q: &str,
    ours: &Value,
    theirs: &Value,
    keep_name: bool,
) -> Result<bool, String> {
    match (ours["status"].as_str(), theirs["status"].as_str()) {
        (Some("success"), Some("success")) => {}
        (Some("error"), Some("error")) if ours["errorType"] == theirs["errorType"] => {
            return Ok(false);
        }
        _ => return Err(format!("hydrant {ours} vs prometheus {theirs}")),
    }
    let keep = Keep {
        name: keep_name,
        order: q.starts_with("sort"),
    };
    let (ka, a) = normalize(ours, keep);
    let (kb, b) = normalize(theirs, keep);
    if ka != kb {
        return Err(format!("result type {ka} vs {kb}"));
    }
    if a.len() != b.len() {
        let names = |n: &Normal| n.iter().map(|s| s.0.clone()).collect::<Vec<_>>();
        return Err(format!(
            "{} series vs {}: {:?} vs {:?}",
            a.len(),
            b.len(),
            names(&a),
            names(&b)
        ));
    }
    for ((la, pa), (lb, pb)) in a.iter().zip(&b) {
        if la != lb {
            return Err(format!("labels {la} vs {lb}"));
        }
        if pa.len() != pb.len() {
            return Err(format!("{la}: {} points vs {}", pa.len(), pb.len()));
        }
        for (x, y) in pa.iter().zip(pb) {
            if x.0 != y.0 || !close(x.1, y.1) {
                return Err(format!("{la}: {x:?} vs {y:?}"));
            }
        }
    }
    Ok(a.iter().any(|(_, points)| !points.is_empty()))
}
