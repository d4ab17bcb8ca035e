//! CF app-autoscaler's metric semantics and circuit breaker, end to end: envelopes go
//! through a real doppler into a running autoscaler, and its live `explain` and history
//! must show CF's numbers (the ones issue 14 was filed with).

use std::sync::{Arc, Mutex};
use std::time::Duration;

use hydrant::doppler;
use hydrant_autoscaler::fleet::Settings;
use hydrant_autoscaler::service;
use hydrant_proto::envelope;
use hydrant_proto::ingress::{Config, IngressClient};
use serde_json::Value;
use tokio_util::sync::CancellationToken;

use super::autoscaler::{get, service_config};
use crate::guard::Scratch;
use crate::{TestDoppler, eventually_within, listener, wait_healthy};

const GUID: &str = "c0f5e3a1-0000-4000-8000-0000000000cf";
const MIB: f64 = 1024.0 * 1024.0;

/// Starts an autoscaler on `d` with `policy` and `config` on top of the test defaults.
async fn start(
    d: &TestDoppler,
    dir: &Scratch,
    policy: &str,
    config: impl FnOnce(service::Config) -> service::Config,
) -> (
    std::net::SocketAddr,
    CancellationToken,
    tokio::task::JoinHandle<()>,
) {
    std::fs::create_dir_all(dir.join("policies")).unwrap();
    std::fs::write(dir.join("policies").join("app.yml"), policy).unwrap();
    let http = listener().await;
    let api = http.local_addr().unwrap();
    let config = config(service_config(
        vec![d.grpc.to_string()],
        dir.join("policies"),
    ));
    let shutdown = CancellationToken::new();
    let task = tokio::spawn({
        let shutdown = shutdown.clone();
        async move { service::run(config, http, shutdown).await.unwrap() }
    });
    wait_healthy(api).await;
    eventually_within("autoscaler subscribed", Duration::from_secs(10), || async {
        d.metric(
            hydrant::telemetry::names::DOPPLER_SUBSCRIPTIONS,
            &[("shard_id", "autoscaler")],
        )
        .await
            == 1.0
    })
    .await;
    (api, shutdown, task)
}

fn http_timer(instance: &str, millis: i64, peer: &str) -> hydrant_proto::v2::Envelope {
    let mut e = envelope::timer(GUID, "http", 0, millis * 1_000_000);
    e.instance_id = instance.into();
    e.tags.insert("peer_type".into(), peer.into());
    e
}

/// responsetime is the mean of per-instance means (10 ms at 10/s and 400 ms at 1/s give
/// 205 ms, not the request-weighted 45); throughput is rounded up (10 and 1 rps: 6); only
/// `peer_type=Client` timers count (the 1 s server timers change nothing); usage and quota
/// in separate envelopes of one instance and timestamp are one memoryutil sample; a custom
/// metric is rounded up.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn cf_metric_semantics_with_the_issues_numbers() {
    let d = TestDoppler::start(doppler::Config::default()).await;
    let dir = Scratch::new("autoscaler-cf");
    // Long breaches: nothing is decided, the test reads the aggregates.
    let policy = format!(
        "app: {GUID}\ninstance_min_count: 1\ninstance_max_count: 5\nscaling_rules:
  - {{metric_type: responsetime, operator: '>', threshold: 100, breach_duration: 600s, adjustment: '+1'}}
  - {{metric_type: throughput, operator: '>', threshold: 5, breach_duration: 600s, adjustment: '+1'}}
  - {{metric_type: memoryutil, operator: '>', threshold: 90, breach_duration: 600s, adjustment: '+1'}}
  - {{metric_type: queue_depth, operator: '>', threshold: 10, breach_duration: 600s, adjustment: '+1'}}
"
    );
    let (api, shutdown, task) = start(&d, &dir, &policy, |c| service::Config {
        shadow: true,
        settings: Settings {
            stat_window: 4,
            ..Settings::default()
        },
        ..c
    })
    .await;

    let client = IngressClient::start(Config::new(vec![d.grpc.to_string()])).unwrap();
    let explain = || async { get(&format!("http://{api}/v1/apps/{GUID}/explain")).await };
    let values = |x: &Value| -> Vec<Option<f64>> {
        x["rules"]
            .as_array()
            .unwrap()
            .iter()
            .map(|r| r["value"].as_f64())
            .collect()
    };
    // Ten ticks of 100 ms make a second; the aggregates are read once 6 s have passed.
    let mut tick = tokio::time::interval(Duration::from_millis(100));
    let mut seen = Vec::new();
    for n in 0..150 {
        tick.tick().await;
        client.send_envelope(&http_timer("0", 10, "Client"));
        client.send_envelope(&http_timer("0", 1000, "Server"));
        if n % 10 == 0 {
            client.send_envelope(&http_timer("1", 400, "Client"));
            let at = envelope::now_nanos();
            for instance in ["0", "1"] {
                for (name, value) in [
                    ("memory", 25.0 * MIB),
                    ("memory_quota", 100.0 * MIB),
                    ("queue_depth", 2.2),
                ] {
                    let mut e = envelope::gauge(GUID, [(name, value, "")]);
                    e.instance_id = instance.into();
                    e.timestamp = at;
                    client.send_envelope(&e);
                }
            }
        }
        if n >= 60 && n % 10 == 5 {
            seen = values(&explain().await);
            if seen == [Some(205.0), Some(6.0), Some(25.0), Some(3.0)] {
                break;
            }
        }
    }
    assert_eq!(
        seen,
        [Some(205.0), Some(6.0), Some(25.0), Some(3.0)],
        "responsetime, throughput, memoryutil, queue_depth: {:#}",
        explain().await
    );
    client.close(Duration::from_secs(5)).await;
    shutdown.cancel();
    tokio::time::timeout(Duration::from_secs(10), task)
        .await
        .unwrap()
        .unwrap();
    d.stop().await;
}

/// CF's breaker: three failed scales open it for the backoff; after it one trial call,
/// whose failure opens it again at once for twice as long. Every failed row records the
/// count it tried to reach, and no row is written for the ticks in between.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_failing_scheduler_opens_the_breaker_then_one_trial_then_double() {
    use axum::routing::post;
    let calls: Arc<Mutex<Vec<tokio::time::Instant>>> = Arc::default();
    let hook = listener().await;
    let url = format!("http://{}/scale", hook.local_addr().unwrap());
    let app = axum::Router::new().route(
        "/scale",
        post({
            let calls = Arc::clone(&calls);
            move || async move {
                calls.lock().unwrap().push(tokio::time::Instant::now());
                (axum::http::StatusCode::INTERNAL_SERVER_ERROR, "down")
            }
        }),
    );
    tokio::spawn(async move { axum::serve(hook, app).await });

    let d = TestDoppler::start(doppler::Config::default()).await;
    let dir = Scratch::new("autoscaler-breaker");
    let policy = format!(
        "app: {GUID}\ninstance_min_count: 1\ninstance_max_count: 5\nscaling_rules:
  - {{metric_type: cpu, operator: '>', threshold: 50, breach_duration: 1s, cool_down: 60s, adjustment: '+1'}}
"
    );
    let (api, shutdown, task) = start(&d, &dir, &policy, |c| service::Config {
        actuator: Arc::new(hydrant_autoscaler::actuator::Webhook::new(&url, None)),
        settings: Settings {
            stat_window: 2,
            breaker_backoff: Duration::from_secs(3),
            ..Settings::default()
        },
        ..c
    })
    .await;
    let client = IngressClient::start(Config::new(vec![d.grpc.to_string()])).unwrap();
    let deadline = tokio::time::Instant::now() + Duration::from_secs(40);
    while calls.lock().unwrap().len() < 5 && tokio::time::Instant::now() < deadline {
        let mut e = envelope::gauge(GUID, [("cpu", 90.0, "percentage")]);
        e.instance_id = "0".into();
        client.send_envelope(&e);
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    client.close(Duration::from_secs(5)).await;
    let calls = calls.lock().unwrap().clone();
    assert_eq!(calls.len(), 5, "three failures, a trial, a second trial");
    let gaps: Vec<Duration> = calls.windows(2).map(|w| w[1] - w[0]).collect();
    // The first three come a tick or so apart; then the 3 s open period; then 6 s.
    assert!(gaps[2] >= Duration::from_millis(2900), "{gaps:?}");
    assert!(gaps[3] >= Duration::from_millis(5900), "{gaps:?}");
    assert!(gaps[3] > gaps[2] + Duration::from_secs(2), "{gaps:?}");

    let history = get(&format!(
        "http://{api}/v1/apps/{GUID}/scaling_histories?order-direction=asc"
    ))
    .await;
    let rows = history["resources"].as_array().unwrap();
    assert_eq!(rows.len(), 5, "one row per call: {history:#}");
    for row in rows {
        assert_eq!(row["status"], 1, "failed: {row:#}");
        assert_eq!(row["new_instances"], 2, "the count it tried: {row:#}");
    }
    shutdown.cancel();
    tokio::time::timeout(Duration::from_secs(10), task)
        .await
        .unwrap()
        .unwrap();
    d.stop().await;
}
