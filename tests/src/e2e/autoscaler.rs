//! The autoscaler end to end with real processes: a cell runs an app whose instances burn
//! CPU while a switch file exists; agent → doppler → autoscaler (in-process) evaluates
//! `cpu > 25 for 5 s → +1` (max 3) and `cpu < 10 for 5 s → -1` (min 1), scales through the
//! cell's API, sends alerts to a real Alertmanager, and emits its decisions into the
//! Firehose, where the log cache and `hydrant logs` show them.

use hydrant_runtime::access::Access;
use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;

use hydrant::telemetry::names;
use hydrant::{agent, doppler};
use hydrant_autoscaler::actuator::{Auth, CloudController};
use hydrant_autoscaler::fleet::Settings;
use hydrant_autoscaler::notify::Receivers;
use hydrant_autoscaler::service;
use serde_json::Value;
use tokio_util::sync::CancellationToken;

use crate::guard::Scratch;
use crate::servers::Alertmanager;
use crate::{
    TestAgent, TestCell, TestDoppler, TestLogCache, eventually, eventually_within, hydrant_bin,
    listener, wait_healthy,
};

pub(super) const POLICY: &str = "app: burner
instance_min_count: 1
instance_max_count: 3
scaling_rules:
  - {metric_type: cpu, operator: '>', threshold: 25, breach_duration: 5s, cool_down: 5s, adjustment: '+1'}
  - {metric_type: cpu, operator: '<', threshold: 10, breach_duration: 5s, cool_down: 5s, adjustment: '-1'}
";

/// Burns CPU in a shell loop while `$BURN` exists, otherwise sleeps.
const BURNER: &str = r#"while :; do if [ -e "$BURN" ]; then i=0; while [ $i -lt 20000 ]; do i=$((i+1)); done; else sleep 0.2; fi; done"#;

/// An open autoscaler reading `dopplers` and `policies`, ticking every second over a 2 s
/// stat window, whose scales go nowhere (a webhook to the discard port); tests set what
/// they need on top.
pub(super) fn service_config(
    dopplers: Vec<String>,
    policies: std::path::PathBuf,
) -> service::Config {
    service::Config {
        data_dir: None,
        access: Access::open(),
        replay_from: None,
        self_metrics: None,
        grace: hydrant_runtime::shutdown::DEFAULT_GRACE,
        dopplers,
        tls: None,
        discovery: Default::default(),
        policies: vec![policies],
        actuator: Arc::new(hydrant_autoscaler::actuator::Webhook::new(
            "http://127.0.0.1:9/",
            None,
        )),
        receivers: Receivers::default(),
        emit_to: Vec::new(),
        tick: Duration::from_secs(1),
        refresh: Duration::from_secs(60),
        reload_poll: Duration::from_millis(100),
        settings: Settings {
            stat_window: 2,
            ..Settings::default()
        },
        shadow: false,
        member: None,
    }
}

pub(super) async fn get(url: &str) -> Value {
    hydrant_runtime::https::plain_client()
        .get(url)
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap()
}

pub(super) async fn instances(cell: &TestCell, guid: &str) -> u64 {
    let app = get(&format!("{}/v3/apps/{guid}", cell.url)).await;
    app["instances"].as_u64().unwrap_or(0)
}

fn run_cli(args: &[&str]) -> String {
    let out = std::process::Command::new(hydrant_bin())
        .args(args)
        .output()
        .expect("run hydrant");
    assert!(
        out.status.success(),
        "hydrant {args:?} failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).into_owned()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn burning_cpu_scales_out_in_steps_then_back_in() {
    let _cpu = crate::guard::cpu_heavy().await;
    let am = Alertmanager::start().await;
    let d = TestDoppler::start(doppler::Config::default()).await;
    let a = TestAgent::start(agent::Config::default(), &[d.grpc]).await;
    let cache = TestLogCache::start(
        hydrant_logcache::Config::new(vec![d.grpc.to_string()]),
        &[&d],
    )
    .await;
    let cell = TestCell::start(TestCell::config(a.grpc)).await;

    let dir = Scratch::new("autoscaler");
    std::fs::create_dir_all(&dir).unwrap();
    std::fs::write(dir.join("burner.yml"), POLICY).unwrap();
    let burn = dir.join("burn");
    std::fs::write(&burn, "").unwrap();
    // Storage keeps the same stream, for the replay at the end.
    let storage = super::storage::TestStorage::start(&d, dir.join("storage")).await;

    let http = listener().await;
    let api = http.local_addr().unwrap();
    let config = service::Config {
        actuator: Arc::new(CloudController::new(
            &cell.url,
            Auth::None,
            hydrant_runtime::https::plain_client(),
        )),
        receivers: Receivers {
            alertmanagers: vec![am.url.clone()],
            webhook: None,
            external_url: format!("http://{api}"),
        },
        emit_to: vec![d.grpc.to_string()],
        refresh: Duration::from_secs(1),
        reload_poll: Duration::from_millis(500),
        ..service_config(vec![d.grpc.to_string()], dir.to_path_buf())
    };
    let shutdown = CancellationToken::new();
    let task = tokio::spawn(service::run(config, http, shutdown.clone()));
    wait_healthy(api).await;
    eventually("autoscaler subscribed", || async {
        d.metric(names::DOPPLER_SUBSCRIPTIONS, &[("shard_id", "autoscaler")])
            .await
            == 1.0
    })
    .await;
    // The app starts under a running autoscaler, so replay from here sees all it saw.
    let from = chrono::Utc::now().timestamp();
    let env = BTreeMap::from([("BURN".to_owned(), burn.display().to_string())]);
    let app = cell
        .client()
        .push("burner", BURNER, 1, 64, 64, &env)
        .await
        .unwrap();
    let guid = app.guid;

    // Out: 1 → 2 → 3, one step per breach plus cooldown.
    eventually_within("scaled out to 3", Duration::from_secs(180), || async {
        instances(&cell, &guid).await == 3
    })
    .await;
    eventually_within("alert in Alertmanager", Duration::from_secs(30), || async {
        am.alerts().await.iter().any(|a| {
            a["labels"]["alertname"] == "HydrantScalingRule"
                && a["labels"]["app"] == "burner"
                && a["labels"]["rule"] == "0"
                && a["status"]["state"] == "active"
        })
    })
    .await;

    // Load stops: back in to the minimum.
    std::fs::remove_file(&burn).unwrap();
    eventually_within("scaled back in to 1", Duration::from_secs(180), || async {
        instances(&cell, &guid).await == 1
    })
    .await;

    let base = format!("http://{api}");
    let history = get(&format!(
        "{base}/v1/apps/burner/scaling_histories?order-direction=asc"
    ))
    .await;
    let rows: Vec<&Value> = history["resources"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|r| r["status"] == 0)
        .collect();
    let steps: Vec<(i64, i64)> = rows
        .iter()
        .map(|r| {
            (
                r["old_instances"].as_i64().unwrap(),
                r["new_instances"].as_i64().unwrap(),
            )
        })
        .collect();
    assert_eq!(steps, [(1, 2), (2, 3), (3, 2), (2, 1)], "{history:#}");
    for pair in rows.windows(2) {
        let gap = pair[1]["timestamp"].as_i64().unwrap() - pair[0]["timestamp"].as_i64().unwrap();
        assert!(
            gap >= 5_000_000_000,
            "cooldown of 5 s respected: {gap} ns apart"
        );
    }
    assert_eq!(rows[0]["app_id"], guid.as_str());
    assert_eq!(
        rows[0]["reason"],
        "+1 instance(s) because cpu > 25% for 5 seconds"
    );
    assert_eq!(rows[0]["window"]["metric"], "cpu");
    assert!(
        rows[0]["window"]["min"].as_f64().unwrap() > 25.0,
        "{:#}",
        rows[0]
    );
    assert_eq!(
        rows[3]["reason"],
        "-1 instance(s) because cpu < 10% for 5 seconds"
    );

    // The CLI renders the same history and the live explanation.
    let table = run_cli(&["autoscaler", "history", "burner", "--autoscaler", &base]);
    for step in ["1->2", "2->3", "3->2", "2->1"] {
        assert!(table.contains(step), "{table}");
    }
    assert!(table.starts_with("Scaling Type"), "{table}");
    let explained = run_cli(&["autoscaler", "explain", &guid, "--autoscaler", &base]);
    assert!(explained.contains("app burner"), "{explained}");
    assert!(
        explained.contains("rule 0: cpu > 25 for 5 seconds (+1)"),
        "{explained}"
    );
    // The overview, one row per app as `kubectl get hpa`.
    let status = run_cli(&["autoscaler", "status", "--autoscaler", &base]);
    assert!(status.starts_with("APP "), "{status}");
    let row = status
        .lines()
        .find(|l| l.starts_with("burner "))
        .unwrap_or_else(|| panic!("{status}"));
    let cells: Vec<&str> = row
        .split("   ")
        .map(str::trim)
        .filter(|c| !c.is_empty())
        .collect();
    assert_eq!(cells.len(), 6, "{status}");
    assert!(
        cells[1].contains("/>25") && cells[1].contains("/<10"),
        "{status}"
    );
    assert_eq!(&cells[2..5], ["1", "3", "1"], "{status}");
    // The last decision: the scale-in to 1, or the rule held at the minimum after it.
    assert!(
        cells[5].starts_with("2->1 ") || cells[5].starts_with("ignored (limited by min"),
        "{status}"
    );

    // Decisions and alerts are in the app's logs.
    let logs = || {
        let out = std::process::Command::new(hydrant_bin())
            .args([
                "logs",
                "burner",
                "--recent",
                "--log-cache",
                &cache.url,
                "--scheduler",
                &cell.url,
            ])
            .output()
            .unwrap();
        String::from_utf8_lossy(&out.stdout).into_owned()
    };
    eventually_within("decisions in hydrant logs", Duration::from_secs(20), || async {
        let text = logs();
        text.contains("[AUTOSCALER/0] OUT Scaled app burner from 1 to 2 instances: +1 instance(s) because cpu > 25% for 5 seconds")
            && text.contains("[AUTOSCALER/0] OUT Alert firing: cpu > 25 for 5 seconds")
            && text.contains("Scaled app burner from 2 to 1 instances")
    })
    .await;

    // Replaying what storage kept takes the same decisions and sends the same alerts.
    let to = chrono::Utc::now().timestamp();
    let live = super::replay_live::live_history(api, "burner").await;
    let alerts: Vec<(usize, String)> = logs()
        .lines()
        .filter_map(|l| {
            let (_, rest) = l.split_once("OUT Alert ")?;
            let (state, rest) = rest.split_once(": ")?;
            let rule = rest.split_once("(rule ")?.1.split_once(',')?.0;
            (state != "pending").then(|| (rule.parse().unwrap(), state.to_owned()))
        })
        .collect();
    super::replay_live::assert_replay_agrees(
        &storage.url,
        POLICY,
        (from, to),
        1,
        Settings {
            stat_window: 2,
            ..Settings::default()
        },
        &live,
        Some(&alerts),
    )
    .await;

    let metrics = crate::metric(
        api,
        "hydrant_autoscaler_decisions_total",
        &[("status", "succeeded"), ("type", "dynamic")],
    )
    .await;
    assert_eq!(metrics, 4.0);
    assert!(
        crate::metric(
            api,
            "hydrant_autoscaler_alert_notifications_total",
            &[("receiver", "alertmanager"), ("result", "ok")]
        )
        .await
            >= 1.0
    );

    shutdown.cancel();
    tokio::time::timeout(Duration::from_secs(10), task)
        .await
        .expect("autoscaler stops")
        .unwrap()
        .unwrap();
    cell.stop().await;
    cache.stop().await;
    storage.stop().await;
    a.stop().await;
    d.stop().await;
}

/// Reference scenario 20 with a real Alertmanager (times scaled down: group_wait 3 s,
/// group_interval 10 s): alerts A and B of one app, A resolving before the group's first
/// flush, give one notification with B firing and A not firing.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn case_20_alertmanager_groups_an_apps_alerts() {
    use axum::routing::post;
    use hydrant_autoscaler::alert::Transition;
    use hydrant_autoscaler::fleet::AlertChange;
    use hydrant_autoscaler::notify::Notifier;

    let got: Arc<std::sync::Mutex<Vec<Value>>> = Arc::default();
    let sink = Arc::clone(&got);
    let hook = listener().await;
    let hook_addr = hook.local_addr().unwrap();
    let app = axum::Router::new().route(
        "/hook",
        post(move |body: axum::Json<Value>| {
            let sink = Arc::clone(&sink);
            async move {
                sink.lock().unwrap().push(body.0);
                "ok"
            }
        }),
    );
    tokio::spawn(async move { axum::serve(hook, app).await });
    let am = Alertmanager::start_with(&format!(
        "route:\n  receiver: hook\n  group_by: [app]\n  group_wait: 3s\n  group_interval: 10s\n  repeat_interval: 4h\nreceivers:\n  - name: hook\n    webhook_configs:\n      - url: http://{hook_addr}/hook\n"
    ))
    .await;
    let cancel = CancellationToken::new();
    let (n, delivery) = Notifier::new(
        Receivers {
            alertmanagers: vec![am.url.clone()],
            webhook: None,
            external_url: "http://127.0.0.1:9500".into(),
        },
        cancel.clone(),
    );
    tokio::spawn(delivery);
    let now = chrono::Utc::now().timestamp();
    let change = |rule: usize, transition, at| AlertChange {
        app: "web".into(),
        target: "g1".into(),
        rule,
        metric: "cpu".into(),
        summary: format!("rule {rule}"),
        adjustment: "+1".into(),
        transition,
        value: Some(90.0),
        since: now,
        at,
    };
    n.send(change(0, Transition::Firing, now));
    tokio::time::sleep(Duration::from_secs(1)).await;
    n.send(change(1, Transition::Firing, now + 1));
    tokio::time::sleep(Duration::from_secs(1)).await;
    n.send(change(0, Transition::Resolved, now + 2));
    eventually_within(
        "the group's first notification",
        Duration::from_secs(20),
        || async { !got.lock().unwrap().is_empty() },
    )
    .await;
    // Nothing changes afterwards: no second notification within the group interval.
    tokio::time::sleep(Duration::from_secs(6)).await;
    let notes = got.lock().unwrap().clone();
    assert_eq!(notes.len(), 1, "{notes:#?}");
    let firing: Vec<&Value> = notes[0]["alerts"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|a| a["status"] == "firing")
        .collect();
    assert_eq!(firing.len(), 1, "{notes:#?}");
    assert_eq!(firing[0]["labels"]["rule"], "1", "B fires");
    assert_eq!(notes[0]["groupLabels"]["app"], "web");
    cancel.cancel();
}
