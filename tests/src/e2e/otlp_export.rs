//! The OTLP export nozzle: the Firehose's logs and metrics go out as OTLP/HTTP, checked two
//! ways. A round trip through Hydrant's own OTLP ingest (another agent and doppler) gives
//! back the same envelopes. A receiver decoding with OpenTelemetry's official protobuf
//! classes (Python `opentelemetry-proto`) reads them in Loggregator's mapping.

use std::time::Duration;

use hydrant::agent;
use hydrant::doppler;
use hydrant_proto::envelope;
use hydrant_proto::ingress::{Config, IngressClient};
use hydrant_proto::subscriber::{request, select};
use hydrant_proto::v2::Envelope;
use hydrant_proto::v2::envelope::Message;
use serde_json::Value;
use tokio_util::sync::CancellationToken;

use crate::guard::{Proc, Scratch};
use crate::{Collector, TestAgent, TestDoppler, eventually_within, listener};

/// An exporter reading `doppler`, sending to `endpoint`, running in-process; its stop and
/// its HTTP address.
async fn exporter(
    doppler: &TestDoppler,
    endpoint: &str,
) -> (CancellationToken, std::net::SocketAddr) {
    let config = hydrant_otlp::Config {
        source: hydrant_runtime::nozzle::Source {
            dopplers: vec![doppler.grpc.to_string()],
            ..Default::default()
        },
        endpoint: endpoint.to_owned(),
        headers: vec![("x-api-key".into(), "k".into())],
        http: hydrant_runtime::https::plain_client(),
        access: hydrant_runtime::access::Access::open(),
        self_metrics: None,
        grace: Duration::from_secs(5),
    };
    let http = listener().await;
    let addr = http.local_addr().unwrap();
    let stop = CancellationToken::new();
    tokio::spawn(hydrant_otlp::run(config, http, stop.clone()));
    eventually_within(
        "the exporter subscribed",
        Duration::from_secs(10),
        || async {
            doppler
                .metric(
                    hydrant::telemetry::names::DOPPLER_SUBSCRIPTIONS,
                    &[("shard_id", hydrant_otlp::SHARD_ID)],
                )
                .await
                == 1.0
        },
    )
    .await;
    (stop, addr)
}

/// A log, a two-metric gauge and a counter of `source`.
fn envelopes(source: &str) -> Vec<Envelope> {
    let mut log = envelope::log(source, "order 7 placed", true);
    log.instance_id = "2".into();
    log.tags.insert("source_type".into(), "APP/PROC/WEB".into());
    let mut gauge = envelope::gauge(
        source,
        [("cpu", 12.5, "percentage"), ("memory", 1024.0, "bytes")],
    );
    gauge.instance_id = "2".into();
    let mut counter = envelope::counter(source, "requests", 0);
    if let Some(Message::Counter(c)) = &mut counter.message {
        c.total = 40;
    }
    let now = envelope::now_nanos();
    [log, gauge, counter]
        .into_iter()
        .map(|mut e| {
            e.timestamp = now;
            e
        })
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn exported_envelopes_round_trip_through_hydrants_own_otlp_ingest() {
    let (a, b) = (
        TestDoppler::start(doppler::Config::default()).await,
        TestDoppler::start(doppler::Config::default()).await,
    );
    let http = std::sync::Arc::new(std::net::TcpListener::bind("127.0.0.1:0").unwrap());
    let http_addr = http.local_addr().unwrap();
    let agent_b = TestAgent::start_with(agent::Config {
        dopplers: vec![b.grpc.to_string()],
        otlp_http: Some(http),
        ..agent::Config::default()
    })
    .await;
    let c = Collector::start(b.grpc, request("", select::all("")), None);
    let (stop, _) = exporter(&a, &format!("http://{http_addr}")).await;
    let client = IngressClient::start(Config::new(vec![a.grpc.to_string()])).unwrap();
    for e in envelopes("rt-app") {
        client.send_envelope(&e);
    }
    eventually_within("everything came back", Duration::from_secs(20), || async {
        c.got
            .all()
            .iter()
            .filter(|e| e.source_id() == "rt-app")
            .count()
            == 4
    })
    .await;
    let back: Vec<Envelope> = c
        .got
        .all()
        .iter()
        .filter(|e| e.source_id() == "rt-app")
        .map(|e| e.decode())
        .collect();
    let log = back
        .iter()
        .find(|e| matches!(e.message, Some(Message::Log(_))))
        .unwrap();
    let Some(Message::Log(l)) = &log.message else {
        unreachable!()
    };
    assert_eq!((&l.payload[..], l.r#type), (&b"order 7 placed"[..], 1));
    assert_eq!(
        (log.instance_id.as_str(), log.tags["source_type"].as_str()),
        ("2", "APP/PROC/WEB")
    );
    let mut metrics: Vec<String> = back
        .iter()
        .filter_map(|e| match &e.message {
            Some(Message::Gauge(g)) => g
                .metrics
                .iter()
                .next()
                .map(|(k, v)| format!("{k}={}{}", v.value, v.unit)),
            Some(Message::Counter(c)) => Some(format!("{}={}", c.name, c.total)),
            _ => None,
        })
        .collect();
    metrics.sort();
    assert_eq!(
        metrics,
        ["cpu=12.5percentage", "memory=1024bytes", "requests=40"]
    );
    client.close(Duration::from_secs(5)).await;
    stop.cancel();
    c.stop().await.unwrap();
    agent_b.stop().await;
    a.stop().await;
    b.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_official_otlp_classes_read_what_is_exported() {
    let dir = Scratch::new("otlp-export");
    let out = dir.join("received.jsonl");
    let port = crate::servers::free_port().port();
    let mut receiver = Proc::new(
        std::process::Command::new(super::otlp::python())
            .arg(std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("otel/receive.py"))
            .arg(port.to_string())
            .arg(&out)
            .spawn()
            .unwrap(),
    );
    eventually_within("the receiver listens", Duration::from_secs(20), || async {
        tokio::net::TcpStream::connect(("127.0.0.1", port))
            .await
            .is_ok()
    })
    .await;
    let d = TestDoppler::start(doppler::Config::default()).await;
    let (stop, _) = exporter(&d, &format!("http://127.0.0.1:{port}")).await;
    let client = IngressClient::start(Config::new(vec![d.grpc.to_string()])).unwrap();
    for e in envelopes("py-app") {
        client.send_envelope(&e);
    }
    let read = || -> Vec<Value> {
        std::fs::read_to_string(&out)
            .unwrap_or_default()
            .lines()
            .map(|l| serde_json::from_str(l).unwrap())
            .collect()
    };
    eventually_within(
        "logs and metrics received",
        Duration::from_secs(20),
        || async {
            let got = read();
            got.iter().any(|l| l["path"] == "/v1/logs")
                && got.iter().any(|l| l["path"] == "/v1/metrics")
        },
    )
    .await;
    let got = read();
    assert!(
        got.iter().all(|l| l.get("error").is_none()),
        "every body parses: {got:?}"
    );
    assert!(
        got.iter()
            .all(|l| l["content_type"] == "application/x-protobuf")
    );
    let logs = got.iter().find(|l| l["path"] == "/v1/logs").unwrap();
    let rl = &logs["request"]["resourceLogs"][0];
    assert_eq!(rl["resource"]["attributes"][0]["key"], "service.name");
    assert_eq!(
        rl["resource"]["attributes"][0]["value"]["stringValue"],
        "py-app"
    );
    let record = &rl["scopeLogs"][0]["logRecords"][0];
    assert_eq!(record["body"]["stringValue"], "order 7 placed");
    assert_eq!(record["severityNumber"], "SEVERITY_NUMBER_ERROR");
    let attrs: Vec<(String, String)> = record["attributes"]
        .as_array()
        .unwrap()
        .iter()
        .map(|a| {
            (
                a["key"].as_str().unwrap().to_owned(),
                a["value"]["stringValue"].as_str().unwrap().to_owned(),
            )
        })
        .collect();
    assert_eq!(
        &attrs[..2],
        [
            ("instance_id".to_owned(), "2".to_owned()),
            ("source_id".to_owned(), "py-app".to_owned())
        ]
    );
    assert!(attrs.contains(&("source_type".to_owned(), "APP/PROC/WEB".to_owned())));
    let metrics = got.iter().find(|l| l["path"] == "/v1/metrics").unwrap();
    let all = metrics["request"]["resourceMetrics"][0]["scopeMetrics"][0]["metrics"]
        .as_array()
        .unwrap();
    let find = |name: &str| all.iter().find(|m| m["name"] == name).unwrap().clone();
    let requests = find("requests");
    assert_eq!(requests["sum"]["isMonotonic"], true);
    assert_eq!(
        requests["sum"]["aggregationTemporality"],
        "AGGREGATION_TEMPORALITY_CUMULATIVE"
    );
    assert_eq!(requests["sum"]["dataPoints"][0]["asInt"], "40");
    let cpu = find("cpu");
    assert_eq!(cpu["unit"], "percentage");
    assert_eq!(cpu["gauge"]["dataPoints"][0]["asDouble"], 12.5);
    client.close(Duration::from_secs(5)).await;
    stop.cancel();
    receiver.kill();
    d.stop().await;
}

/// An endpoint that fails: a 503 is retried (each attempt counted) until the attempts run
/// out, a 400 is not retried; both end as counted drops, and the exporter goes on.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn failed_exports_are_retried_then_dropped_and_counted() {
    use axum::http::StatusCode;
    let (recorder, url) = super::actuators::recorder(|s| {
        if s.uri.starts_with("/v1/logs") {
            (StatusCode::SERVICE_UNAVAILABLE, serde_json::json!({}))
        } else {
            (StatusCode::BAD_REQUEST, serde_json::json!({}))
        }
    })
    .await;
    let d = TestDoppler::start(doppler::Config::default()).await;
    let (stop, http) = exporter(&d, &url).await;
    let client = IngressClient::start(Config::new(vec![d.grpc.to_string()])).unwrap();
    let mut log = envelope::log("failing-app", "x", false);
    log.timestamp = envelope::now_nanos();
    let mut gauge = envelope::gauge("failing-app", [("cpu", 1.0, "percentage")]);
    gauge.timestamp = log.timestamp;
    client.send_envelope(&log);
    client.send_envelope(&gauge);
    eventually_within("both given up", Duration::from_secs(30), || async {
        crate::metric(
            http,
            "hydrant_otlp_export_dropped_envelopes_total",
            &[("reason", "failed")],
        )
        .await
            == 2.0
    })
    .await;
    let seen = recorder.seen();
    let logs = seen
        .iter()
        .filter(|s| s.uri.starts_with("/v1/logs"))
        .count();
    let metrics = seen
        .iter()
        .filter(|s| s.uri.starts_with("/v1/metrics"))
        .count();
    assert_eq!(
        (logs, metrics),
        (hydrant_otlp::ATTEMPTS as usize, 1),
        "503 retried, 400 not"
    );
    assert!(
        seen.iter().all(|s| s.header("x-api-key") == "k"),
        "headers go with every request"
    );
    assert_eq!(
        crate::metric(http, "hydrant_otlp_export_errors_total", &[]).await,
        f64::from(hydrant_otlp::ATTEMPTS) + 1.0
    );
    assert_eq!(
        crate::metric(
            http,
            "hydrant_otlp_export_sent_total",
            &[("signal", "logs")]
        )
        .await,
        0.0
    );
    client.close(Duration::from_secs(5)).await;
    stop.cancel();
    d.stop().await;
}
