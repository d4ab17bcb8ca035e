//! Alerts through a real Alertmanager as policies change under a running autoscaler: a
//! removed policy's alert resolves within a tick (it was once re-sent as firing forever),
//! and an edited threshold resolves the old rule's alert while the app's cooldown holds.

use std::sync::Arc;
use std::time::Duration;

use hydrant::doppler;
use hydrant_autoscaler::notify::Receivers;
use hydrant_autoscaler::service;
use hydrant_proto::envelope;
use hydrant_proto::ingress::{Config, IngressClient};
use serde_json::Value;
use tokio_util::sync::CancellationToken;

use crate::guard::Scratch;
use crate::servers::Alertmanager;
use crate::{TestDoppler, eventually_within, listener, wait_healthy};

const GUID: &str = "9d0e8f7a-0000-4000-8000-00000000a1e7";

fn policy(threshold: u32) -> String {
    format!(
        "app: {GUID}\ninstance_min_count: 1\ninstance_max_count: 5\nscaling_rules:\n  - {{metric_type: cpu, operator: '>', threshold: {threshold}, breach_duration: 2s, cool_down: 60s, adjustment: '+1'}}\n"
    )
}

/// Alertmanager's active alerts for the app, as (rule, summary).
async fn active(am: &Alertmanager) -> Vec<(String, String)> {
    let v: Value = hydrant_runtime::https::plain_client()
        .get(format!("{}/api/v2/alerts?active=true", am.url))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    v.as_array()
        .unwrap()
        .iter()
        .filter(|a| a["status"]["state"] == "active")
        .map(|a| {
            (
                a["labels"]["rule"].as_str().unwrap_or("").to_owned(),
                a["annotations"]["summary"]
                    .as_str()
                    .unwrap_or("")
                    .to_owned(),
            )
        })
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn edited_and_removed_policies_resolve_their_alerts_in_alertmanager() {
    let am = Alertmanager::start().await;
    let d = TestDoppler::start(doppler::Config::default()).await;
    let dir = Scratch::new("alerts-edit");
    let storage = super::storage::TestStorage::start(&d, dir.join("storage")).await;
    let policies = dir.join("policies");
    std::fs::create_dir_all(&policies).unwrap();
    std::fs::write(policies.join("app.yml"), policy(50)).unwrap();
    let http = listener().await;
    let api = http.local_addr().unwrap();
    let config = service::Config {
        receivers: Receivers {
            alertmanagers: vec![am.url.clone()],
            webhook: None,
            external_url: format!("http://{api}"),
        },
        // Decisions are recorded, not carried out: this test is about alerts.
        shadow: true,
        ..super::autoscaler::service_config(vec![d.grpc.to_string()], policies.clone())
    };
    let settings = config.settings;
    let shutdown = CancellationToken::new();
    let task = tokio::spawn(service::run(config, http, shutdown.clone()));
    wait_healthy(api).await;

    // cpu 90 every 200 ms, from one instance.
    let from = chrono::Utc::now().timestamp();
    let feed = CancellationToken::new();
    let feeder = {
        let (grpc, feed) = (d.grpc, feed.clone());
        tokio::spawn(async move {
            let client = IngressClient::start(Config::new(vec![grpc.to_string()])).unwrap();
            while !feed.is_cancelled() {
                let mut e = envelope::gauge(GUID, [("cpu", 90.0, "percentage")]);
                e.instance_id = "0".into();
                client.send_envelope(&e);
                tokio::time::sleep(Duration::from_millis(200)).await;
            }
            client.close(Duration::from_secs(5)).await;
        })
    };
    eventually_within("the > 50 alert fires", Duration::from_secs(20), || async {
        active(&am).await.iter().any(|(_, s)| s.contains("> 50"))
    })
    .await;
    // Up to the edit, replaying what storage kept takes the same decision (one shadow
    // scale) and fires the same alert.
    tokio::time::sleep(Duration::from_secs(2)).await;
    let live = super::replay_live::live_history(api, GUID).await;
    super::replay_live::assert_replay_agrees(
        &storage.url,
        &policy(50),
        (from, chrono::Utc::now().timestamp() - 1),
        1,
        settings,
        &live,
        Some(&[(0, "firing".to_owned())]),
    )
    .await;

    // A threshold edit: the old rule's alert resolves; the new one fires in its place.
    std::fs::write(policies.join("app.yml"), policy(60)).unwrap();
    eventually_within(
        "the old alert resolves",
        Duration::from_secs(10),
        || async {
            let a = active(&am).await;
            !a.iter().any(|(_, s)| s.contains("> 50"))
        },
    )
    .await;
    eventually_within("the > 60 alert fires", Duration::from_secs(20), || async {
        active(&am).await.iter().any(|(_, s)| s.contains("> 60"))
    })
    .await;
    // The cooldown of the first (shadow) scale was kept: explain still counts it down.
    let explain: Value = hydrant_runtime::https::plain_client()
        .get(format!("http://{api}/v1/apps/{GUID}/explain"))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let remaining = explain["cooldown"]["scale_out_remaining_secs"]
        .as_i64()
        .unwrap_or(0);
    assert!(remaining > 30, "cooldown kept across the edit: {explain}");

    // Removing the policy resolves its alert within a tick or two.
    let removed = tokio::time::Instant::now();
    std::fs::remove_file(policies.join("app.yml")).unwrap();
    eventually_within(
        "the removed policy's alert resolves",
        Duration::from_secs(10),
        || async { active(&am).await.is_empty() },
    )
    .await;
    assert!(
        removed.elapsed() < Duration::from_secs(5),
        "{:?}",
        removed.elapsed()
    );

    feed.cancel();
    feeder.await.unwrap();
    shutdown.cancel();
    tokio::time::timeout(Duration::from_secs(10), task)
        .await
        .unwrap()
        .unwrap()
        .unwrap();
    storage.stop().await;
    d.stop().await;
}

/// `--alert-webhook` payloads have the shape Alertmanager's own webhook notifications have:
/// the same keys, the same fingerprint for the same labels, the firing start kept on the
/// resolution. Checked against what a real Alertmanager sends for the same alert.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn alert_webhook_payloads_match_alertmanagers_own() {
    use axum::routing::post;
    use hydrant_autoscaler::alert::Transition;
    use hydrant_autoscaler::fleet::AlertChange;
    use hydrant_autoscaler::notify::Notifier;

    type Got = Arc<std::sync::Mutex<Vec<(String, Value)>>>;
    let got: Got = Arc::default();
    let sink = Arc::clone(&got);
    let hook = listener().await;
    let hook_addr = hook.local_addr().unwrap();
    let app = axum::Router::new().route(
        "/{who}",
        post(
            move |axum::extract::Path(who): axum::extract::Path<String>,
                  body: axum::Json<Value>| {
                let sink = Arc::clone(&sink);
                async move {
                    sink.lock().unwrap().push((who, body.0));
                    "ok"
                }
            },
        ),
    );
    tokio::spawn(async move { axum::serve(hook, app).await });
    let am = Alertmanager::start_with(&format!(
        "route:\n  receiver: hook\n  group_by: [alertname]\n  group_wait: 1s\n  group_interval: 2s\n  repeat_interval: 4h\nreceivers:\n  - name: hook\n    webhook_configs:\n      - url: http://{hook_addr}/alertmanager\n        send_resolved: true\n"
    ))
    .await;
    let cancel = CancellationToken::new();
    let (n, delivery) = Notifier::new(
        Receivers {
            alertmanagers: vec![am.url.clone()],
            webhook: Some(format!("http://{hook_addr}/hydrant")),
            external_url: "http://127.0.0.1:9500".into(),
        },
        cancel.clone(),
    );
    tokio::spawn(delivery);
    let now = chrono::Utc::now().timestamp();
    let change = |transition, at| AlertChange {
        app: "web".into(),
        target: "g1".into(),
        rule: 0,
        metric: "cpu".into(),
        summary: "cpu > 70% for 2 seconds".into(),
        adjustment: "+1".into(),
        transition,
        value: Some(90.0),
        since: now - 10,
        at,
    };
    n.send(change(Transition::Firing, now));
    let by = |who: &str, status: &str| {
        got.lock()
            .unwrap()
            .iter()
            .find(|(w, v)| w == who && v["status"] == status)
            .map(|(_, v)| v.clone())
    };
    eventually_within("both firing payloads", Duration::from_secs(20), || async {
        by("alertmanager", "firing").is_some() && by("hydrant", "firing").is_some()
    })
    .await;
    n.send(change(Transition::Resolved, chrono::Utc::now().timestamp()));
    for _ in 0..300 {
        if by("alertmanager", "resolved").is_some() && by("hydrant", "resolved").is_some() {
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert!(
        by("alertmanager", "resolved").is_some() && by("hydrant", "resolved").is_some(),
        "{:#?}",
        got.lock().unwrap()
    );
    let keys = |v: &Value| {
        let mut k: Vec<String> = v.as_object().unwrap().keys().cloned().collect();
        k.sort();
        k
    };
    for status in ["firing", "resolved"] {
        let (theirs, ours) = (
            by("alertmanager", status).unwrap(),
            by("hydrant", status).unwrap(),
        );
        assert_eq!(keys(&ours), keys(&theirs), "{status}: {ours}\n{theirs}");
        let (ta, oa) = (&theirs["alerts"][0], &ours["alerts"][0]);
        assert_eq!(keys(oa), keys(ta), "{status}: {oa}\n{ta}");
        assert_eq!(oa["fingerprint"], ta["fingerprint"], "{status}");
        assert_eq!(oa["labels"], ta["labels"], "{status}");
        assert_eq!(oa["status"], ta["status"], "{status}");
        assert_eq!(
            oa["startsAt"].as_str().map(|s| &s[..19]),
            ta["startsAt"].as_str().map(|s| &s[..19]),
            "{status}: the firing start"
        );
        assert_eq!(ours["commonLabels"], theirs["commonLabels"], "{status}");
        assert_eq!(
            ours["commonAnnotations"], theirs["commonAnnotations"],
            "{status}"
        );
        assert_eq!(ours["version"], theirs["version"]);
        assert_eq!(ours["truncatedAlerts"], theirs["truncatedAlerts"]);
        assert_eq!(ours["groupLabels"], theirs["groupLabels"]);
    }
    cancel.cancel();
}
