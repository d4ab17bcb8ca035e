//! Forwarding sinks against real servers: Prometheus remote write into Prometheus 2.42
//! (`--web.enable-remote-write-receiver`), InfluxDB v2 line protocol into VictoriaMetrics
//! (`/api/v2/write`); a third sink whose server is down retries, then drops with counters,
//! without blocking ingest or the other sinks.

use std::sync::Arc;
use std::time::Duration;

use hydrant::doppler;
use hydrant_proto::envelope;
use hydrant_proto::ingress::{Config as IngressConfig, IngressClient};
use hydrant_storage::sink::Sink;
use hydrant_storage::sink::influx::{Config as InfluxConfig, Influx};
use hydrant_storage::sink::remote_write::RemoteWrite;
use serde_json::Value;

use super::storage::{TestStorage, get};
use crate::guard::Scratch;
use crate::servers::{Prometheus, VictoriaMetrics};
use crate::{TestDoppler, eventually_within};

fn series_count(body: &Value) -> usize {
    body["data"]["result"].as_array().map_or(0, Vec::len)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sinks_deliver_to_real_servers_and_a_dead_one_never_blocks() {
    let prom = Prometheus::start().await;
    let vm = VictoriaMetrics::start().await;
    let d = TestDoppler::start(doppler::Config::default()).await;
    let dir = Scratch::new("sinks");
    let sinks: Vec<Arc<dyn Sink>> = vec![
        Arc::new(RemoteWrite::new(&format!("{}/api/v1/write", prom.url))),
        Arc::new(Influx::new(InfluxConfig {
            url: vm.url.clone(),
            org: "hydrant".into(),
            bucket: "firehose".into(),
            token: "unused".into(),
        })),
        // Nothing listens on port 1.
        Arc::new(RemoteWrite::new("http://127.0.0.1:1/api/v1/write")),
    ];
    let storage = TestStorage::with_sinks(&d, dir.to_path_buf(), sinks).await;

    // Three instances, 20 samples each over the last 200 s.
    let now = chrono::Utc::now().timestamp();
    let mut envelopes = Vec::new();
    for k in 0..20i64 {
        for i in 0..3 {
            let mut g = envelope::gauge("app-s", [("cpu", (i * 100 + k) as f64, "percentage")]);
            g.instance_id = i.to_string();
            g.timestamp = (now - 200 + k * 10) * 1_000_000_000;
            envelopes.push(hydrant_proto::raw::RawEnvelope::from_envelope(&g));
        }
    }
    let client = IngressClient::start(IngressConfig::new(vec![d.grpc.to_string()])).unwrap();
    client.send_all(envelopes);
    client.close(Duration::from_secs(10)).await;

    let at = (now - 10).to_string();
    eventually_within(
        "remote write reached Prometheus",
        Duration::from_secs(60),
        || async {
            let body = get(
                &format!("{}/api/v1/query", prom.url),
                &[
                    ("query", r#"cpu{source_id="app-s"}"#.into()),
                    ("time", at.clone()),
                ],
            )
            .await;
            series_count(&body) == 3
        },
    )
    .await;
    let body = get(
        &format!("{}/api/v1/query", prom.url),
        &[
            ("query", r#"cpu{source_id="app-s",instance_id="2"}"#.into()),
            ("time", at.clone()),
        ],
    )
    .await;
    assert_eq!(
        body["data"]["result"][0]["value"][1], "219",
        "the newest sample: {body}"
    );
    eventually_within(
        "line protocol reached VictoriaMetrics",
        Duration::from_secs(60),
        || async {
            let _ = hydrant_runtime::https::plain_client()
                .get(format!("{}/internal/force_flush", vm.url))
                .send()
                .await;
            let body = get(
                &format!("{}/api/v1/query", vm.url),
                &[
                    ("query", r#"cpu_value{source_id="app-s"}"#.into()),
                    ("time", at.clone()),
                ],
            )
            .await;
            series_count(&body) == 3
        },
    )
    .await;

    // The dead sink retried, then dropped what it could not send; the others sent all 60.
    eventually_within(
        "the dead sink gives up on its batch",
        Duration::from_secs(60),
        || async {
            crate::metric(
                storage.http,
                "hydrant_storage_sink_samples_total",
                &[
                    ("sink", "remote_write"),
                    ("target", "http://127.0.0.1:1/api/v1/write"),
                    ("result", "failed"),
                ],
            )
            .await
                >= 60.0
        },
    )
    .await;
    let sent = |target: String| {
        let http = storage.http;
        async move {
            crate::metric(
                http,
                "hydrant_storage_sink_samples_total",
                &[
                    ("sink", "remote_write"),
                    ("target", &target),
                    ("result", "sent"),
                ],
            )
            .await
        }
    };
    assert_eq!(sent(format!("{}/api/v1/write", prom.url)).await, 60.0);
    // /healthz says degraded, naming the dead sink (and only it); `up` prints it.
    let (_, body) = crate::http_get(storage.http, "/healthz").await.unwrap();
    let health: serde_json::Value = serde_json::from_str(&body).unwrap();
    assert_eq!(health["status"], "degraded", "{health}");
    let problems = health["problems"].as_array().unwrap();
    assert_eq!(problems.len(), 1, "{health}");
    assert!(
        problems[0]
            .as_str()
            .unwrap()
            .starts_with("sink remote_write (http://127.0.0.1:1/api/v1/write) is failing: "),
        "{health}"
    );
    assert!(
        crate::metric(
            storage.http,
            "hydrant_storage_sink_retries_total",
            &[
                ("sink", "remote_write"),
                ("target", "http://127.0.0.1:1/api/v1/write")
            ]
        )
        .await
            >= 3.0
    );
    assert_eq!(
        crate::metric(storage.http, "hydrant_storage_ingested_samples_total", &[]).await,
        60.0,
        "ingest never waited"
    );
    storage.stop().await;
    d.stop().await;
}
