//! `hydrant up` killed with `kill -9` and started again with the same `hydrant.yaml`: the
//! platform comes back as it was. The app has its guid and its instances run again, the
//! autoscaler's history holds the decision from before, and `hydrant logs APP --recent`
//! shows the lines logged before the kill (the log cache warms itself from storage).

use std::collections::BTreeSet;
use std::path::Path;
use std::time::Duration;

use serde_json::Value;

use super::up_harness::{self, Ports};
use crate::guard::Scratch;
use crate::hydrant_bin;

/// A CLI call against this `up` (its CA, token and ports); stdout, or a panic with stderr.
fn cli(data: &Path, p: &Ports, args: &[&str]) -> String {
    let token = std::fs::read_to_string(data.join("token")).unwrap();
    let out = std::process::Command::new(hydrant_bin())
        .args(args)
        .env("HYDRANT_TLS_CA", data.join("certs").join("ca.pem"))
        .env("HYDRANT_TOKEN", token.trim())
        .env("HYDRANT_SCHEDULER", format!("https://{}", p.cell))
        .env("HYDRANT_LOG_CACHE", format!("https://{}", p.logcache))
        .env("HYDRANT_AUTOSCALER", format!("https://{}", p.autoscaler))
        .output()
        .expect("run hydrant");
    assert!(
        out.status.success(),
        "hydrant {args:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).into_owned()
}

/// The app's lines in `hydrant logs hello --recent` (the text after `OUT `).
fn recent(data: &Path, p: &Ports) -> BTreeSet<String> {
    cli(data, p, &["logs", "hello", "--recent"])
        .lines()
        .filter_map(|l| l.split_once(" OUT ").map(|(_, t)| t.to_owned()))
        .filter(|t| t.starts_with("hello "))
        .collect()
}

async fn eventually<F: FnMut() -> bool>(what: &str, bound: Duration, mut check: F) {
    let deadline = tokio::time::Instant::now() + bound;
    while !check() {
        assert!(tokio::time::Instant::now() < deadline, "timed out: {what}");
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn kill_9_of_up_then_up_again_brings_the_platform_back() {
    let _cpu = crate::guard::cpu_heavy().await;
    let dir = Scratch::new("up-restart");
    let data = dir.join("data");
    let p = Ports::free();
    // A schedule in force from a minute ago: the autoscaler raises the app to 3 at once,
    // a decision its history must keep.
    let now = chrono::Utc::now();
    let fmt = |t: chrono::DateTime<chrono::Utc>| t.format("%Y-%m-%dT%H:%M").to_string();
    std::fs::create_dir_all(data.join("policies")).unwrap();
    std::fs::write(
        data.join("policies").join("hello.yml"),
        format!(
            "app: hello\ninstance_min_count: 1\ninstance_max_count: 4\nscaling_rules:\n  \
             - {{metric_type: cpu, operator: '>', threshold: 95, breach_duration: 600s, adjustment: '+1'}}\n\
             schedules:\n  timezone: UTC\n  specific_date:\n    \
             - {{start_date_time: '{}', end_date_time: '{}', instance_min_count: 3, instance_max_count: 4}}\n",
            fmt(now - chrono::Duration::minutes(1)),
            fmt(now + chrono::Duration::hours(2)),
        ),
    )
    .unwrap();
    let file = dir.join("hydrant.yaml");
    std::fs::write(
        &file,
        format!(
            "up:\n  data-dir: {}\n\
             doppler:\n  grpc: {}\n  http: {}\n\
             agent:\n  grpc: {}\n  http: {}\n  udp: 'off'\n\
             cell:\n  api: {}\n  metrics-interval: 1s\n  stop-grace: 3s\n\
             logcache:\n  http: {}\n\
             storage:\n  http: {}\n\
             autoscaler:\n  http: {}\n  tick: 1s\n  stat-window: 3s\n\
             console:\n  http: {}\n",
            data.display(),
            p.doppler_grpc,
            p.doppler_http,
            p.agent_grpc,
            p.agent_http,
            p.cell,
            p.logcache,
            p.storage,
            p.autoscaler,
            p.console
        ),
    )
    .unwrap();

    let mut up = up_harness::start(&dir, &file, &[]).await;
    cli(
        &data,
        &p,
        &[
            "push",
            "hello",
            "-i",
            "2",
            "--",
            "i=0; while :; do echo \"hello $CF_INSTANCE_GUID $i\"; i=$((i+1)); sleep 0.2; done",
        ],
    );
    let app = |data: &Path| -> Value {
        let out = cli(data, &p, &["app", "hello", "--json"]);
        serde_json::from_str(&out).unwrap()
    };
    let guid = app(&data)["app"]["guid"].as_str().unwrap().to_owned();
    eventually("the schedule scales to 3", Duration::from_secs(60), || {
        app(&data)["app"]["instances"] == 3
    })
    .await;
    let history = |data: &Path| -> Vec<Value> {
        let out = cli(data, &p, &["autoscaler", "history", "hello", "--json"]);
        let page: Value = serde_json::from_str(&out).unwrap();
        page["resources"].as_array().unwrap().clone()
    };
    let decided = history(&data);
    assert!(
        decided.iter().any(|r| r["new_instances"] == 3),
        "{decided:#?}"
    );

    // Lines in the log cache, and the newest of them in storage, then kill -9.
    eventually("lines in the log cache", Duration::from_secs(30), || {
        recent(&data, &p).len() >= 20
    })
    .await;
    let before = recent(&data, &p);
    let http = hydrant_runtime::https::client(
        &hydrant_runtime::https::ClientTls::ca_file(&data.join("certs").join("ca.pem")).unwrap(),
    )
    .unwrap();
    let token = std::fs::read_to_string(data.join("token")).unwrap();
    let stored = || {
        let (http, token) = (http.clone(), token.trim().to_owned());
        let sql = format!("SELECT count(*) AS n FROM logs WHERE source_id = '{guid}'");
        let url = format!("https://{}/api/v1/sql", p.storage);
        async move {
            let v: Value = http
                .post(url)
                .bearer_auth(token)
                .body(sql)
                .send()
                .await
                .unwrap()
                .json()
                .await
                .unwrap();
            v[0]["n"].as_u64().unwrap_or(0)
        }
    };
    let deadline = tokio::time::Instant::now() + Duration::from_secs(30);
    while stored().await < before.len() as u64 + 20 {
        assert!(tokio::time::Instant::now() < deadline, "storage lags");
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
    up.child.start_kill().unwrap();
    up.child.wait().await.unwrap();
    // Its components see their supervisor gone and stop; then the ports are free again.
    let deadline = tokio::time::Instant::now() + Duration::from_secs(60);
    let ports = [
        p.doppler_grpc,
        p.doppler_http,
        p.agent_grpc,
        p.agent_http,
        p.cell,
        p.logcache,
        p.storage,
        p.autoscaler,
    ];
    while ports
        .iter()
        .any(|a| std::net::TcpStream::connect(a).is_ok())
    {
        assert!(
            tokio::time::Instant::now() < deadline,
            "components outlived up"
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }

    let _up = up_harness::start(&dir, &file, &[]).await;
    let back = app(&data);
    assert_eq!(back["app"]["guid"], guid.as_str(), "{back}");
    eventually("its instances run again", Duration::from_secs(60), || {
        let a = app(&data);
        a["instances"]
            .as_array()
            .is_some_and(|i| i.iter().filter(|s| s["state"] == "RUNNING").count() == 3)
    })
    .await;
    let after = history(&data);
    assert!(
        decided.iter().all(|r| after.contains(r)),
        "the history came back: {after:#?}"
    );
    eventually("the log cache warmed", Duration::from_secs(60), || {
        before.is_subset(&recent(&data, &p))
    })
    .await;
}
