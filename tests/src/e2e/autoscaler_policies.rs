//! Policy files under a running autoscaler: edits reload, a broken file is refused on its
//! own (the others stay in force and their apps scale), and bad flags fail clearly.

use std::time::Duration;

use hydrant::doppler;
use hydrant_autoscaler::fleet::Settings;
use hydrant_autoscaler::service;
use serde_json::Value;
use tokio_util::sync::CancellationToken;

use super::autoscaler::{POLICY, get, instances, service_config};
use crate::guard::Scratch;
use crate::{
    TestCell, TestDoppler, eventually, eventually_within, hydrant_bin, listener, wait_healthy,
};

/// Policies reload when their files change; a broken edit is refused as a whole and the
/// previous policies stay in force.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn policies_reload_on_change_and_a_broken_edit_keeps_the_old_ones() {
    let dir = Scratch::new("reload");
    std::fs::create_dir_all(&dir).unwrap();
    let web = |max: u32| {
        POLICY.replace("app: burner", "app: web").replace(
            "instance_max_count: 3",
            &format!("instance_max_count: {max}"),
        )
    };
    std::fs::write(dir.join("web.yml"), web(3)).unwrap();
    let http = listener().await;
    let api = http.local_addr().unwrap();
    let config = service::Config {
        settings: Settings::default(),
        ..service_config(Vec::new(), dir.to_path_buf())
    };
    let shutdown = CancellationToken::new();
    let task = tokio::spawn(service::run(config, http, shutdown.clone()));
    wait_healthy(api).await;
    let base = format!("http://{api}");
    let maxes = || async {
        let apps = get(&format!("{base}/v1/apps")).await;
        apps["resources"]
            .as_array()
            .unwrap()
            .iter()
            .map(|a| {
                (
                    a["app"].as_str().unwrap().to_owned(),
                    a["instance_max_count"].as_u64().unwrap(),
                )
            })
            .collect::<Vec<_>>()
    };
    assert_eq!(maxes().await, [("web".to_owned(), 3)]);

    std::fs::write(dir.join("web.yml"), web(12)).unwrap();
    eventually("the edit is picked up", || async {
        maxes().await == [("web".to_owned(), 12)]
    })
    .await;

    std::fs::write(dir.join("api.yml"), "app: api\ninstance_min_count: 1\n").unwrap();
    eventually("the broken edit is refused", || async {
        crate::metric(
            api,
            "hydrant_autoscaler_policy_reloads_total",
            &[("result", "failed")],
        )
        .await
            >= 1.0
    })
    .await;
    assert_eq!(
        maxes().await,
        [("web".to_owned(), 12)],
        "the previous policies stay"
    );

    std::fs::write(dir.join("api.yml"), web(4).replace("app: web", "app: api")).unwrap();
    eventually("the fixed file is loaded", || async {
        maxes().await.len() == 2
    })
    .await;
    assert_eq!(
        crate::metric(
            api,
            "hydrant_autoscaler_policy_reloads_total",
            &[("result", "ok")]
        )
        .await,
        2.0
    );

    shutdown.cancel();
    tokio::time::timeout(Duration::from_secs(10), task)
        .await
        .unwrap()
        .unwrap()
        .unwrap();
}

/// A refused policy file does not stop `hydrant autoscaler`: the good file beside it is in
/// force (its app scales), `/healthz` says degraded with the error (file:line), and fixing
/// the file clears it. Bad flags still stop the process with a clear error and exit 1.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_bad_policy_file_leaves_the_others_in_force_and_bad_flags_fail_clearly() {
    let dir = Scratch::new("badpol");
    std::fs::create_dir_all(&dir).unwrap();
    let bad = "app: web\ninstance_min_count: 1\ninstance_max_count: 3\nscaling_rules:\n  - {metric_type: cpuutil, operator: '>', threshold: 170, adjustment: '+1'}\n";
    std::fs::write(dir.join("web.yml"), bad).unwrap();
    std::fs::write(
        dir.join("api.yml"),
        POLICY.replace("app: burner", "app: api"),
    )
    .unwrap();
    let policies = dir.to_str().unwrap();
    // The good file's app runs on a cell and reports cpu 90 through a doppler.
    let d = TestDoppler::start(doppler::Config::default()).await;
    let agent = listener().await.local_addr().unwrap();
    let cell = TestCell::start(TestCell::config(agent)).await;
    let guid = cell
        .client()
        .push("api", "sleep 600", 1, 64, 64, &Default::default())
        .await
        .unwrap()
        .guid;
    let http = crate::servers::free_port();
    let _autoscaler = crate::guard::Proc::new(
        std::process::Command::new(hydrant_bin())
            .args([
                "autoscaler",
                "--insecure-open",
                "--policies",
                policies,
                "--from",
                &d.grpc.to_string(),
                "--scheduler",
                &cell.url,
                "--tick",
                "1s",
                "--stat-window",
                "2s",
            ])
            .args(["--http", &http.to_string(), "--no-emit"])
            .stdout(std::process::Stdio::null())
            .stderr(std::process::Stdio::null())
            .spawn()
            .unwrap(),
    );
    crate::wait_healthy(http).await;
    let health = || async {
        let (_, body) = crate::http_get(http, "/healthz").await.unwrap();
        serde_json::from_str::<Value>(&body).unwrap()
    };
    let h = health().await;
    assert_eq!(h["status"], "degraded", "{h}");
    let problems = h["policy_problems"].to_string();
    assert!(
        problems.contains("web.yml:5:")
            && problems
                .contains("scaling_rules[0].threshold: must be between 1 and 100 for cpuutil"),
        "{h}"
    );
    let apps = get(&format!("http://{http}/v1/apps")).await;
    let names: Vec<&str> = apps["resources"]
        .as_array()
        .unwrap()
        .iter()
        .map(|a| a["app"].as_str().unwrap())
        .collect();
    assert_eq!(names, ["api"], "the good file is in force");
    let client =
        hydrant_proto::ingress::IngressClient::start(hydrant_proto::ingress::Config::new(vec![
            d.grpc.to_string(),
        ]))
        .unwrap();
    eventually_within("the good app scales", Duration::from_secs(30), || async {
        let mut e = hydrant_proto::envelope::gauge(guid.as_str(), [("cpu", 90.0, "percentage")]);
        e.instance_id = "0".into();
        client.send_envelope(&e);
        instances(&cell, &guid).await >= 2
    })
    .await;
    client.close(Duration::from_secs(5)).await;
    std::fs::write(dir.join("web.yml"), bad.replace("170", "70")).unwrap();
    eventually("the fixed file clears the problem", || async {
        health().await["status"] == "ok"
    })
    .await;

    let run = |args: &[&str]| {
        std::process::Command::new(hydrant_bin())
            .args(args)
            .output()
            .unwrap()
    };
    let out = run(&[
        "autoscaler",
        "--insecure-open",
        "--policies",
        policies,
        "--tick",
        "0s",
    ]);
    assert_eq!(out.status.code(), Some(1));
    assert!(String::from_utf8_lossy(&out.stderr).contains("--tick must be at least 1s"));
    let out = run(&[
        "autoscaler",
        "--insecure-open",
        "--actuator",
        "webhook",
        "--policies",
        policies,
    ]);
    assert_eq!(out.status.code(), Some(1));
    assert!(
        String::from_utf8_lossy(&out.stderr).contains("--actuator webhook needs --webhook-url")
    );
    let out = run(&[
        "autoscaler",
        "history",
        "web",
        "--autoscaler",
        "http://127.0.0.1:1",
    ]);
    assert_eq!(out.status.code(), Some(1));
    assert!(
        String::from_utf8_lossy(&out.stderr)
            .contains("cannot reach the autoscaler at http://127.0.0.1:1")
    );
    cell.stop().await;
    d.stop().await;
}
