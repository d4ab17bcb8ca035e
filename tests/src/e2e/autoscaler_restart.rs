//! The autoscaler keeps its history, cooldowns and firing alerts across a restart
//! (`--data-dir`), as CF keeps them in its database: after a restart `history` still lists
//! the decision, the alert still fires from when it started, and the app is still in the
//! cooldown that decision started, and takes no decision in it:
//! replaying the whole stretch from storage agrees.

use std::time::Duration;

use hydrant::doppler;
use hydrant_autoscaler::service;
use hydrant_proto::envelope;
use hydrant_proto::ingress::{Config, IngressClient};
use serde_json::Value;
use tokio_util::sync::CancellationToken;

use crate::guard::Scratch;
use crate::{TestDoppler, eventually_within, listener, wait_healthy};

const GUID: &str = "4a1e0000-0000-4000-8000-0000000000aa";

async fn get(url: String) -> Value {
    hydrant_runtime::https::plain_client()
        .get(url)
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn history_and_cooldowns_survive_a_restart() {
    let d = TestDoppler::start(doppler::Config::default()).await;
    let dir = Scratch::new("autoscaler-restart");
    let storage = super::storage::TestStorage::start(&d, dir.join("storage")).await;
    std::fs::create_dir_all(dir.join("policies")).unwrap();
    let policy = format!(
        "app: {GUID}\ninstance_min_count: 1\ninstance_max_count: 5\nscaling_rules:\n  - {{metric_type: cpu, operator: '>', threshold: 50, breach_duration: 2s, cool_down: 300s, adjustment: '+1'}}\n"
    );
    std::fs::write(dir.join("policies").join("app.yml"), &policy).unwrap();
    let start = |grpc: std::net::SocketAddr| {
        let dir = dir.to_path_buf();
        async move {
            let http = listener().await;
            let api = http.local_addr().unwrap();
            let config = service::Config {
                data_dir: Some(dir.join("state")),
                refresh: Duration::from_secs(3600),
                reload_poll: Duration::from_secs(60),
                shadow: true,
                ..super::autoscaler::service_config(vec![grpc.to_string()], dir.join("policies"))
            };
            let shutdown = CancellationToken::new();
            let task = tokio::spawn(service::run(config, http, shutdown.clone()));
            wait_healthy(api).await;
            (api, shutdown, task)
        }
    };
    let (api, shutdown, task) = start(d.grpc).await;
    let from = chrono::Utc::now().timestamp();
    let client = IngressClient::start(Config::new(vec![d.grpc.to_string()])).unwrap();
    let history =
        |api: std::net::SocketAddr| get(format!("http://{api}/v1/apps/{GUID}/scaling_histories"));
    eventually_within("a decision", Duration::from_secs(30), || async {
        let mut e = envelope::gauge(GUID, [("cpu", 90.0, "percentage")]);
        e.instance_id = "0".into();
        client.send_envelope(&e);
        history(api).await["total_results"].as_u64().unwrap_or(0) >= 1
    })
    .await;
    let before = history(api).await;
    let explain = |api: std::net::SocketAddr| get(format!("http://{api}/v1/apps/{GUID}/explain"));
    let alert_before = explain(api).await["rules"][0]["alert"].clone();
    assert_eq!(alert_before["state"], "firing", "{alert_before}");
    shutdown.cancel();
    tokio::time::timeout(Duration::from_secs(10), task)
        .await
        .unwrap()
        .unwrap()
        .unwrap();

    let (api, shutdown, task) = start(d.grpc).await;
    let after = history(api).await;
    assert_eq!(
        after["resources"], before["resources"],
        "the history came back"
    );
    let explain = explain(api).await;
    assert_eq!(
        explain["rules"][0]["alert"], alert_before,
        "the firing alert came back, with its start"
    );
    let remaining = explain["cooldown"]["scale_out_remaining_secs"]
        .as_i64()
        .unwrap_or(0);
    assert!(remaining > 200, "the 300 s cooldown continues: {explain}");
    // The load goes on after the restart; the cooldown holds, and replay agrees.
    for _ in 0..15 {
        let mut e = envelope::gauge(GUID, [("cpu", 90.0, "percentage")]);
        e.instance_id = "0".into();
        client.send_envelope(&e);
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    client.close(Duration::from_secs(5)).await;
    tokio::time::sleep(Duration::from_secs(2)).await;
    let live = super::replay_live::live_history(api, GUID).await;
    assert_eq!(live.len(), 1, "{live:#?}");
    super::replay_live::assert_replay_agrees(
        &storage.url,
        &policy,
        (from, chrono::Utc::now().timestamp()),
        1,
        super::autoscaler::service_config(Vec::new(), dir.to_path_buf()).settings,
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
