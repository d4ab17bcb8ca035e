//! Replay agrees with the live autoscaler: a load profile goes through the real pipeline
//! (doppler → the live autoscaler, in shadow mode, and the storage nozzle), then replay
//! reads what storage kept and must take the same decisions, in the same order.

use std::sync::Arc;
use std::time::Duration;

use hydrant::doppler;
use hydrant_autoscaler::actuator::{Auth, CloudController};
use hydrant_autoscaler::fleet::Settings;
use hydrant_autoscaler::{policy, replay, service};
use hydrant_proto::envelope;
use hydrant_proto::ingress::{Config, IngressClient};
use serde_json::Value;
use tokio_util::sync::CancellationToken;

use super::storage::TestStorage;
use crate::guard::Scratch;
use crate::{TestCell, TestDoppler, eventually, listener, wait_healthy};

const POLICY: &str = "app: GUID
instance_min_count: 1
instance_max_count: 4
scaling_rules:
  - {metric_type: cpu, operator: '>', threshold: 70, breach_duration: 3s, cool_down: 4s, adjustment: '+1'}
  - {metric_type: cpu, operator: '<', threshold: 20, breach_duration: 3s, cool_down: 4s, adjustment: '-1'}
";

/// The load, by second since the start: high, low, high again (with a gap), low.
fn cpu_at(s: i64) -> Option<f64> {
    match s {
        0..=11 => Some(90.0),
        12..=21 => Some(10.0),
        // A 2 s gap in the middle of the second burst: no samples at all.
        24..=25 => None,
        22..=31 => Some(92.0),
        _ => Some(8.0),
    }
}

const SECONDS: i64 = 40;

/// (status, old, new) of each decision.
fn decisions(records: &[Value]) -> Vec<(i64, i64, i64)> {
    records
        .iter()
        .map(|r| {
            (
                r["status"].as_i64().unwrap(),
                r["old_instances"].as_i64().unwrap(),
                r["new_instances"].as_i64().unwrap(),
            )
        })
        .collect()
}

/// The live autoscaler's history of `app`, oldest first.
pub(super) async fn live_history(api: std::net::SocketAddr, app: &str) -> Vec<Value> {
    let page: Value = hydrant_runtime::https::plain_client()
        .get(format!(
            "http://{api}/v1/apps/{app}/scaling_histories?order-direction=asc&results-per-page=100"
        ))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    page["resources"].as_array().unwrap().clone()
}

/// Replays `policy` over what `storage` kept in `span` (UNIX seconds), starting from
/// `instances`, and asserts that it takes the `live` decisions ((status, old, new), in
/// order) and, when given, sends the live alerts ((rule, "firing"/"resolved"), in order).
pub(super) async fn assert_replay_agrees(
    storage: &str,
    policy: &str,
    span: (i64, i64),
    instances: u32,
    settings: Settings,
    live: &[Value],
    live_alerts: Option<&[(usize, String)]>,
) {
    let loaded = policy::parse(policy, std::path::Path::new("live.yml"));
    let outcome = replay::run(&replay::Replay {
        policy: loaded.policy.unwrap(),
        storage: storage.to_owned(),
        token: None,
        http: hydrant_runtime::https::plain_client(),
        from: span.0,
        to: span.1,
        step: 1,
        instances: Some(instances),
        settings,
    })
    .await
    .unwrap();
    let replayed: Vec<Value> = outcome
        .records
        .iter()
        .map(|r| serde_json::to_value(r).unwrap())
        .collect();
    assert_eq!(
        decisions(&replayed),
        decisions(live),
        "replay {replayed:#?}\nlive {live:#?}"
    );
    if let Some(live_alerts) = live_alerts {
        let alerts: Vec<(usize, String)> = outcome
            .alerts
            .iter()
            .map(|a| {
                let state = match a.transition {
                    hydrant_autoscaler::alert::Transition::Firing => "firing",
                    _ => "resolved",
                };
                (a.rule, state.to_owned())
            })
            .collect();
        assert_eq!(alerts, live_alerts, "replayed alerts {:#?}", outcome.alerts);
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn replay_takes_the_live_decisions_over_the_same_load() {
    // Real-time ticks: kept apart from the CPU-heavy tests, like the other timing ones.
    let _cpu = crate::guard::cpu_heavy().await;
    let d = TestDoppler::start(doppler::Config::default()).await;
    let dir = Scratch::new("replay-live");
    let storage = TestStorage::start(&d, dir.join("storage")).await;
    // The scheduler the live autoscaler reads its count from (1 instance; shadow mode
    // never changes it).
    let agent = listener().await.local_addr().unwrap();
    let cell = TestCell::start(TestCell::config(agent)).await;
    let app = cell
        .client()
        .push("live", "sleep 600", 1, 64, 64, &Default::default())
        .await
        .unwrap();
    let guid = app.guid;
    let policies = dir.join("policies");
    std::fs::create_dir_all(&policies).unwrap();
    let text = POLICY.replace("GUID", &guid);
    std::fs::write(policies.join("live.yml"), &text).unwrap();
    let http = listener().await;
    let api = http.local_addr().unwrap();
    let settings = Settings {
        stat_window: 2,
        ..Settings::default()
    };
    let config = service::Config {
        actuator: Arc::new(CloudController::new(
            &cell.url,
            Auth::None,
            hydrant_runtime::https::plain_client(),
        )),
        refresh: Duration::from_secs(3600),
        reload_poll: Duration::from_secs(60),
        settings,
        shadow: true,
        ..super::autoscaler::service_config(vec![d.grpc.to_string()], policies.clone())
    };
    let shutdown = CancellationToken::new();
    let task = tokio::spawn(service::run(config, http, shutdown.clone()));
    wait_healthy(api).await;
    eventually("autoscaler subscribed", || async {
        d.metric(
            hydrant::telemetry::names::DOPPLER_SUBSCRIPTIONS,
            &[("shard_id", "autoscaler")],
        )
        .await
            == 1.0
    })
    .await;

    // Two samples a second of instance 0, in real time.
    let client = IngressClient::start(Config::new(vec![d.grpc.to_string()])).unwrap();
    let start = hydrant_proto::envelope::now_nanos() / 1_000_000_000 + 1;
    let mut at = tokio::time::Instant::now()
        + Duration::from_nanos(
            (start * 1_000_000_000 - hydrant_proto::envelope::now_nanos()) as u64,
        );
    for half in 0..SECONDS * 2 {
        tokio::time::sleep_until(at).await;
        at += Duration::from_millis(500);
        if let Some(v) = cpu_at(half / 2) {
            let mut e = envelope::gauge(guid.clone(), [("cpu", v, "percentage")]);
            e.instance_id = "0".into();
            client.send_envelope(&e);
        }
    }
    client.close(Duration::from_secs(5)).await;
    tokio::time::sleep(Duration::from_secs(2)).await;
    let live = live_history(api, &guid).await;

    // The profile scales out and in twice each; replay sees exactly that, in order.
    assert!(decisions(&live).len() >= 4, "{live:#?}");
    assert_replay_agrees(
        &storage.url,
        &text,
        (start, start + SECONDS + 1),
        1,
        settings,
        &live,
        None,
    )
    .await;

    shutdown.cancel();
    tokio::time::timeout(Duration::from_secs(10), task)
        .await
        .unwrap()
        .unwrap()
        .unwrap();
    storage.stop().await;
    d.stop().await;
}
