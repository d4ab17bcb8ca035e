//! OTLP ingest with the real OpenTelemetry Python SDK (PyPI `opentelemetry-sdk` and
//! `opentelemetry-exporter-otlp`, in a venv `.ci/run` makes): an instrumented script
//! exports logs and metrics to the agent over gRPC and over HTTP/protobuf, and they come
//! out of the Firehose as envelopes with the service as source id, the resource's
//! attributes as tags, ERR for error records, the counter as a counter and the histogram
//! as Prometheus-named series. Bad bodies are refused by name, and the agent carries on.

use std::path::PathBuf;
use std::time::Duration;

use hydrant::agent;
use hydrant::doppler;
use hydrant_proto::raw::Kind;
use hydrant_proto::subscriber::{request, select};
use hydrant_proto::v2::envelope::Message;

use crate::{Collector, TestAgent, TestDoppler, eventually_within};

/// The SDK's Python: `$HYDRANT_OTEL_PYTHON`, else the venv `.ci/run` makes.
pub(super) fn python() -> PathBuf {
    let p = std::env::var_os("HYDRANT_OTEL_PYTHON").map_or_else(
        || PathBuf::from("/opt/hydrant-otel/bin/python"),
        PathBuf::from,
    );
    assert!(
        p.exists(),
        "{} is missing: python3 -m venv /opt/hydrant-otel && /opt/hydrant-otel/bin/pip install \
         opentelemetry-sdk opentelemetry-exporter-otlp-proto-grpc opentelemetry-exporter-otlp-proto-http \
         (.ci/run does)",
        p.display()
    );
    p
}

fn emit(protocol: &str, endpoint: &str, service: &str, lines: usize) {
    let script = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("otel/emit.py");
    let out = std::process::Command::new(python())
        .arg(script)
        .args([protocol, endpoint, service, &lines.to_string()])
        .output()
        .expect("run the OpenTelemetry SDK script");
    assert!(
        out.status.success(),
        "emit.py {protocol}: {}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
}

fn bind() -> std::sync::Arc<std::net::TcpListener> {
    std::sync::Arc::new(std::net::TcpListener::bind("127.0.0.1:0").unwrap())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_opentelemetry_sdk_feeds_the_firehose_over_grpc_and_http() {
    let d = TestDoppler::start(doppler::Config::default()).await;
    let (grpc, http) = (bind(), bind());
    let (grpc_addr, http_addr) = (grpc.local_addr().unwrap(), http.local_addr().unwrap());
    let config = agent::Config {
        dopplers: vec![d.grpc.to_string()],
        otlp_grpc: Some(grpc),
        otlp_http: Some(http),
        ..agent::Config::default()
    };
    let agent = TestAgent::start_with(config).await;
    let c = Collector::start(d.grpc, request("", select::all("")), None);
    tokio::time::sleep(Duration::from_millis(300)).await;

    emit("grpc", &format!("http://{grpc_addr}"), "otel-grpc", 50);
    emit("http", &format!("http://{http_addr}"), "otel-http", 50);

    for service in ["otel-grpc", "otel-http"] {
        eventually_within(
            &format!("{service}'s logs"),
            Duration::from_secs(20),
            || async {
                c.got
                    .all()
                    .iter()
                    .filter(|e| e.source_id() == service && e.kind() == Kind::Log)
                    .count()
                    >= 51
            },
        )
        .await;
        let mine: Vec<_> = c
            .got
            .all()
            .iter()
            .filter(|e| e.source_id() == service)
            .map(|e| e.decode())
            .collect();
        let logs: Vec<(String, i32)> = mine
            .iter()
            .filter_map(|e| match &e.message {
                Some(Message::Log(l)) => {
                    Some((String::from_utf8_lossy(&l.payload).into_owned(), l.r#type))
                }
                _ => None,
            })
            .collect();
        let expected: Vec<(String, i32)> = (1..=50)
            .map(|i| (format!("line {i}"), 0))
            .chain([("it failed".to_owned(), 1)])
            .collect();
        assert_eq!(
            logs, expected,
            "{service}: every record, in order, ERR for the error"
        );
        let first = &mine[0];
        assert_eq!(first.instance_id, "7");
        assert_eq!(first.tags["team"], "shop");
        assert_eq!(first.tags["otel_scope_name"], "shop.orders");
        assert_eq!(first.tags["severity_text"], "INFO");

        eventually_within(
            &format!("{service}'s metrics"),
            Duration::from_secs(20),
            || async {
                c.got.all().iter().any(|e| {
                    e.source_id() == service
                        && e.kind() == Kind::Gauge
                        && e.gauge_names().any(|n| n == "latency_sum")
                })
            },
        )
        .await;
        let mine: Vec<_> = c
            .got
            .all()
            .iter()
            .filter(|e| e.source_id() == service)
            .map(|e| e.decode())
            .collect();
        let orders = mine
            .iter()
            .find_map(|e| match &e.message {
                Some(Message::Counter(c)) if c.name == "orders" => {
                    Some((c.total, e.tags["route"].clone()))
                }
                _ => None,
            })
            .expect("the counter");
        assert_eq!(orders, (5, "/buy".to_owned()));
        let gauge = |name: &str, le: Option<&str>| -> Option<f64> {
            mine.iter().find_map(|e| match &e.message {
                Some(Message::Gauge(g))
                    if le.is_none_or(|le| e.tags.get("le").map(String::as_str) == Some(le)) =>
                {
                    g.metrics.get(name).map(|v| v.value)
                }
                _ => None,
            })
        };
        assert_eq!(gauge("queue_depth", None), Some(42.0));
        assert_eq!(gauge("latency_count", None), Some(3.0));
        assert!((gauge("latency_sum", None).unwrap() - 0.95).abs() < 1e-9);
        // The SDK's default bounds start 0, 5, 10: all three fall at or under 5.
        assert_eq!(gauge("latency_bucket", Some("0")), Some(0.0));
        assert_eq!(gauge("latency_bucket", Some("5")), Some(3.0));
        assert_eq!(gauge("latency_bucket", Some("+Inf")), Some(3.0));
    }
    assert!(
        agent
            .metric("hydrant_agent_otlp_log_envelopes_total", &[])
            .await
            >= 102.0
    );

    // Bad input is answered by name; the agent keeps serving.
    let client = hydrant_runtime::https::plain_client();
    let post = |path: &str, kind: &str, body: Vec<u8>| {
        client
            .post(format!("http://{http_addr}{path}"))
            .header("content-type", kind)
            .body(body)
            .send()
    };
    let r = post("/v1/logs", "application/x-protobuf", vec![0x0a, 0xff, 0xff])
        .await
        .unwrap();
    assert_eq!(r.status().as_u16(), 400);
    assert!(
        r.text()
            .await
            .unwrap()
            .contains("not an ExportLogsServiceRequest")
    );
    let r = post("/v1/metrics", "application/json", b"{}".to_vec())
        .await
        .unwrap();
    assert_eq!(r.status().as_u16(), 415);
    let r = post("/v1/logs", "application/x-protobuf", Vec::new())
        .await
        .unwrap();
    assert_eq!(r.status().as_u16(), 200, "an empty export is a valid one");
    emit("http", &format!("http://{http_addr}"), "otel-after", 1);
    eventually_within("still taking exports", Duration::from_secs(20), || async {
        c.got.all().iter().any(|e| e.source_id() == "otel-after")
    })
    .await;
    c.stop().await.unwrap();
    agent.stop().await;
    d.stop().await;
}

/// What an OpenTelemetry-instrumented app sends reaches storage in a form PromQL works on:
/// the histogram's `_bucket` series answer `histogram_quantile`, the gauge and the counter
/// are there under the service's name as `source_id`.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn opentelemetry_metrics_are_queried_in_storage() {
    let dir = crate::guard::Scratch::new("otlp-storage");
    let d = TestDoppler::start(doppler::Config::default()).await;
    let storage = super::storage::TestStorage::start(&d, dir.join("storage")).await;
    let http = bind();
    let http_addr = http.local_addr().unwrap();
    let agent = TestAgent::start_with(agent::Config {
        dopplers: vec![d.grpc.to_string()],
        otlp_http: Some(http),
        ..agent::Config::default()
    })
    .await;
    emit("http", &format!("http://{http_addr}"), "otel-store", 1);
    let query = |q: &'static str| {
        let url = format!("{}/api/v1/query", storage.url);
        async move {
            let v = super::storage::get(&url, &[("query", q.to_owned())]).await;
            v["data"]["result"][0]["value"][1]
                .as_str()
                .and_then(|s| s.parse::<f64>().ok())
        }
    };
    eventually_within(
        "the histogram in storage",
        Duration::from_secs(30),
        || async {
            query(r#"sum(latency_count{source_id="otel-store"})"#)
                .await
                .is_some()
        },
    )
    .await;
    // 0.05, 0.2 and 0.7 all fall in the SDK's bucket (0, 5]: the median interpolates to 2.5.
    assert_eq!(
        query(r#"histogram_quantile(0.5, max by (le) (latency_bucket{source_id="otel-store"}))"#)
            .await,
        Some(2.5)
    );
    assert_eq!(
        query(r#"max(queue_depth{source_id="otel-store", team="shop"})"#).await,
        Some(42.0)
    );
    let sum = query(r#"max(latency_sum{source_id="otel-store"})"#)
        .await
        .unwrap();
    assert!((sum - 0.95).abs() < 1e-9, "{sum}");
    agent.stop().await;
    storage.stop().await;
    d.stop().await;
}
