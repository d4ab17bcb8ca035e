//! The real binary: `hydrant doppler`, `agent`, `emit` and `firehose --stats` as separate
//! processes on loopback, and clear errors for bad flags.

use crate::guard::{Proc, Scratch};
use crate::{eventually, hydrant_bin, listener, wait_healthy};
use std::process::{Command, Stdio};

async fn free_port() -> std::net::SocketAddr {
    crate::servers::free_port()
}

/// Starts `hydrant ARGS`; a component with its HTTP API open (these tests read `/metrics`).
fn spawn(args: &[&str]) -> Proc {
    let (command, rest) = args.split_first().expect("a command");
    let open: &[&str] = if ["doppler", "agent"].contains(command) {
        &["--insecure-open"]
    } else {
        &[]
    };
    Proc::new(
        Command::new(hydrant_bin())
            .arg(command)
            .args(open)
            .args(rest)
            .env("RUST_LOG", "warn")
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit())
            .spawn()
            .expect("spawn hydrant"),
    )
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn processes_emit_through_agent_and_doppler_to_firehose_stats() {
    let (d_grpc, d_http, a_grpc, a_http) = (
        free_port().await,
        free_port().await,
        free_port().await,
        free_port().await,
    );
    let _doppler = spawn(&[
        "doppler",
        "--grpc",
        &d_grpc.to_string(),
        "--http",
        &d_http.to_string(),
    ]);
    wait_healthy(d_http).await;
    let _agent = spawn(&[
        "agent",
        "--grpc",
        &a_grpc.to_string(),
        "--http",
        &a_http.to_string(),
        "--doppler",
        &d_grpc.to_string(),
        "--tag",
        "deployment=test",
    ]);
    wait_healthy(a_http).await;
    eventually("agent connected to doppler", || async {
        crate::metric(
            a_http,
            hydrant::telemetry::names::AGENT_DOPPLER_STREAMS,
            &[],
        )
        .await
            >= 1.0
    })
    .await;
    let firehose = spawn(&[
        "firehose",
        "--from",
        &d_grpc.to_string(),
        "--stats",
        "--count",
        "20000",
        "--duration",
        "60s",
    ]);
    eventually("firehose subscribed", || async {
        crate::metric(
            d_http,
            hydrant::telemetry::names::DOPPLER_SUBSCRIPTIONS,
            &[("shard_id", "")],
        )
        .await
            == 1.0
    })
    .await;
    let emit = Command::new(hydrant_bin())
        .args([
            "emit",
            "--to",
            &a_grpc.to_string(),
            "--count",
            "20000",
            "--sources",
            "4",
            "--streams",
            "2",
        ])
        .output()
        .expect("run emit");
    assert!(
        emit.status.success(),
        "emit failed: {}",
        String::from_utf8_lossy(&emit.stderr)
    );
    let summary: serde_json::Value =
        serde_json::from_slice(&emit.stdout).expect("emit prints JSON");
    assert_eq!(summary["sent"], 20000);
    assert!(summary["rate"].as_f64().unwrap() > 0.0);

    // Bounded by the subscriber's own --duration.
    let out = tokio::task::spawn_blocking(move || firehose.wait_output())
        .await
        .unwrap();
    let stats: serde_json::Value = serde_json::from_str(out.trim()).expect("firehose prints JSON");
    assert_eq!(stats["received"], 20000, "{stats}");
    assert_eq!(stats["lost"], 0, "{stats}");
    assert_eq!(stats["duplicates"], 0, "{stats}");
    for key in ["rate", "p50_ms", "p99_ms", "max_ms"] {
        assert!(stats[key].as_f64().is_some(), "{key} missing in {stats}");
    }
}

#[test]
fn bad_flags_and_files_fail_clearly() {
    let run = |args: &[&str]| {
        let out = Command::new(hydrant_bin())
            .args(args)
            .output()
            .expect("run hydrant");
        (
            out.status.code(),
            String::from_utf8_lossy(&out.stderr).into_owned(),
        )
    };
    let (code, err) = run(&["doppler", "--grpc", "not-an-address"]);
    assert_eq!(code, Some(2));
    assert!(err.contains("--grpc"), "{err}");
    let (code, err) = run(&["emit", "--kind", "gauge", "--metrics", "0"]);
    assert_eq!(code, Some(2));
    assert!(err.contains("--metrics"), "{err}");

    // Secure by default: no token file and no --insecure-open is refused, by name.
    let (code, err) = run(&["doppler", "--grpc", "127.0.0.1:0", "--http", "127.0.0.1:0"]);
    assert_eq!(code, Some(1));
    assert!(
        err.contains("--token-file is required") && err.contains("--insecure-open"),
        "{err}"
    );
    let (code, err) = run(&["agent", "--token-file", "/nonexistent/token"]);
    assert_eq!(code, Some(1));
    assert!(
        err.contains("cannot read token file /nonexistent/token"),
        "{err}"
    );

    let (code, err) = run(&[
        "doppler",
        "--insecure-open",
        "--tls-ca",
        "/nonexistent/ca.pem",
        "--tls-cert",
        "/x",
        "--tls-key",
        "/y",
    ]);
    assert_eq!(code, Some(1));
    assert!(
        err.contains("--tls-ca") && err.contains("/nonexistent/ca.pem"),
        "{err}"
    );

    let (code, err) = run(&[
        "doppler",
        "--insecure-open",
        "--tls-ca",
        "/nonexistent/ca.pem",
    ]);
    assert_eq!(code, Some(1));
    assert!(err.contains("--tls-cert"), "{err}");

    let (code, err) = run(&["firehose", "--duration", "5 parsecs"]);
    assert_eq!(code, Some(2));
    assert!(err.contains("duration"), "{err}");

    let (code, err) = run(&["agent", "--tag", "novalue"]);
    assert_eq!(code, Some(2));
    assert!(err.contains("KEY=VALUE"), "{err}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sigterm_makes_the_agent_flush_what_it_accepted() {
    use hydrant_proto::subscriber::{request, select};
    let (d_grpc, d_http, a_grpc, a_http) = (
        free_port().await,
        free_port().await,
        free_port().await,
        free_port().await,
    );
    let _doppler = spawn(&[
        "doppler",
        "--grpc",
        &d_grpc.to_string(),
        "--http",
        &d_http.to_string(),
    ]);
    wait_healthy(d_http).await;
    let collector = crate::Collector::start(d_grpc, request("", vec![select::log("")]), None);
    eventually("subscribed", || async {
        crate::metric(
            d_http,
            hydrant::telemetry::names::DOPPLER_SUBSCRIPTIONS,
            &[("shard_id", "")],
        )
        .await
            == 1.0
    })
    .await;
    let mut agent = spawn(&[
        "agent",
        "--grpc",
        &a_grpc.to_string(),
        "--http",
        &a_http.to_string(),
        "--doppler",
        &d_grpc.to_string(),
    ]);
    wait_healthy(a_http).await;

    // Hand the agent 50,000 envelopes, then SIGTERM it straight away.
    super::send(a_grpc, super::numbered_logs("term", 50_000)).await;
    let pid = agent.child().id().to_string();
    let killed = Command::new("kill")
        .args(["-TERM", &pid])
        .status()
        .expect("run kill");
    assert!(killed.success());
    let status = tokio::task::spawn_blocking(move || agent.child().wait())
        .await
        .unwrap()
        .unwrap();
    assert!(status.success(), "agent exit status {status}");

    eventually("everything accepted arrived", || async {
        collector.got.len() >= 50_000
    })
    .await;
    let mut seqs = collector
        .stop()
        .await
        .unwrap()
        .seqs()
        .remove("term")
        .unwrap();
    seqs.sort();
    seqs.dedup();
    assert_eq!(seqs.len(), 50_000);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn push_apps_scale_delete_through_the_cli() {
    let agent = listener().await.local_addr().unwrap(); // nothing listens: the cell buffers
    let cell = crate::TestCell::start(crate::TestCell::config(agent)).await;
    let url = cell.url.clone();
    let run = move |args: Vec<String>| {
        let out = Command::new(hydrant_bin())
            .args(&args)
            .env("HYDRANT_SCHEDULER", &url)
            .output()
            .expect("run hydrant");
        (
            out.status.code(),
            String::from_utf8_lossy(&out.stdout).into_owned(),
            String::from_utf8_lossy(&out.stderr).into_owned(),
        )
    };
    let run = |args: &[&str]| {
        let args: Vec<String> = args.iter().map(|s| s.to_string()).collect();
        let run = run.clone();
        async move {
            tokio::task::spawn_blocking(move || run(args))
                .await
                .unwrap()
        }
    };
    let (code, out, err) = run(&[
        "push", "web", "-i", "2", "--memory", "128M", "--", "sleep", "300",
    ])
    .await;
    assert_eq!(code, Some(0), "{err}");
    assert!(out.contains("pushed web"), "{out}");
    assert!(out.contains("web: 2 of 2 instances running"), "{out}");
    let (code, _, err) = run(&["push", "web", "--", "sleep", "1"]).await;
    assert_eq!(code, Some(1));
    assert!(err.contains("already exists"), "{err}");

    // Several arguments after `--` are a program and its arguments, unchanged (joined
    // with spaces they once became `sh -c while` and a crash loop reported as success).
    let (code, out, err) = run(&[
        "push",
        "spin",
        "--",
        "sh",
        "-c",
        "while :; do sleep 1; done",
    ])
    .await;
    assert_eq!(code, Some(0), "{err}");
    assert!(out.contains("spin: 1 of 1 instances running"), "{out}");
    // An app that cannot start fails the push, naming the instance.
    let (code, _, err) = run(&["push", "crashy", "--", "sh", "-c", "exit 3"]).await;
    assert_eq!(code, Some(1), "{err}");
    assert!(
        err.contains("app 'crashy' did not start: instance 0 crashed")
            && err.contains("APP/PROC/WEB: Exited with status 3"),
        "{err}"
    );
    // `hydrant app` shows the last crash's reason, as `cf app` shows an instance's details.
    let (code, out, err) = run(&["app", "crashy"]).await;
    assert_eq!(code, Some(0), "{err}");
    assert!(
        out.contains("#0 last crash: APP/PROC/WEB: Exited with status 3 at 20"),
        "{out}"
    );
    assert_eq!(run(&["delete", "spin"]).await.0, Some(0));
    assert_eq!(run(&["delete", "crashy"]).await.0, Some(0));

    let client = cell.client();
    eventually("2 running", || async {
        let guid = client.find("web").await.unwrap().guid;
        client
            .stats(&guid)
            .await
            .unwrap()
            .iter()
            .filter(|s| s.state == hydrant::cell::contract::InstanceState::Running)
            .count()
            == 2
    })
    .await;
    let (code, out, _) = run(&["apps"]).await;
    assert_eq!(code, Some(0));
    let row = out
        .lines()
        .find(|l| l.starts_with("web "))
        .unwrap_or_else(|| panic!("{out}"));
    assert!(row.contains("started") && row.contains("2/2"), "{out}");
    // `hydrant app`: settings, then each instance with state, since, usage and quotas.
    let (code, out, err) = run(&["app", "web"]).await;
    assert_eq!(code, Some(0), "{err}");
    assert!(
        out.contains("name:              web") && out.contains("instances:         2/2"),
        "{out}"
    );
    assert!(out.contains("command:           sleep 300"), "{out}");
    for index in ["#0", "#1"] {
        let line = out
            .lines()
            .find(|l| l.starts_with(index))
            .unwrap_or_else(|| panic!("{out}"));
        assert!(
            line.contains("running") && line.contains("of 128.0M"),
            "{line}"
        );
    }
    let (code, out, _) = run(&["apps", "--json"]).await;
    assert_eq!(code, Some(0));
    let first: serde_json::Value =
        serde_json::from_str(out.lines().next().expect("a line per app")).expect("JSON");
    assert_eq!(first["app"]["name"], "web");
    let (code, out, _) = run(&["app", "web", "--json"]).await;
    assert_eq!(code, Some(0));
    let v: serde_json::Value = serde_json::from_str(&out).expect("JSON");
    assert_eq!(v["app"]["name"], "web");
    assert_eq!(v["instances"].as_array().map(Vec::len), Some(2));

    let (code, _, err) = run(&["scale", "web", "-i", "-1"]).await;
    assert_eq!(code, Some(1));
    assert!(
        err.contains("Instances must be greater than or equal to 0"),
        "{err}"
    );
    assert_eq!(run(&["scale", "web", "-i", "1"]).await.0, Some(0));
    let (code, _, err) = run(&["scale", "nope", "-i", "1"]).await;
    assert_eq!(code, Some(1));
    assert!(err.contains("app 'nope' not found"), "{err}");
    assert_eq!(run(&["delete", "web"]).await.0, Some(0));
    let (_, out, _) = run(&["apps"]).await;
    assert!(!out.contains("web "), "{out}");
    cell.stop().await;
}

#[test]
fn scheduler_unreachable_is_explained() {
    let out = Command::new(hydrant_bin())
        .args(["apps", "--scheduler", "http://127.0.0.1:9"])
        .output()
        .expect("run hydrant");
    assert_eq!(out.status.code(), Some(1));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("cannot reach the scheduler at http://127.0.0.1:9"),
        "{err}"
    );
}

#[test]
fn policy_check_reports_every_problem_and_exits_non_zero() {
    let dir = Scratch::new("policies");
    std::fs::create_dir_all(&dir).unwrap();
    std::fs::write(dir.join("web.yml"), "instance_min_count: 1\ninstance_max_count: 3\nscaling_rules:\n  - {metric_type: cpu, operator: '>', threshold: 70, adjustment: '+1'}\n").unwrap();
    let run = |args: &[&std::path::Path]| {
        Command::new(hydrant_bin())
            .arg("policy")
            .arg("check")
            .args(args)
            .output()
            .unwrap()
    };
    let out = run(&[&dir]);
    assert_eq!(
        out.status.code(),
        Some(0),
        "{}",
        String::from_utf8_lossy(&out.stdout)
    );
    assert!(String::from_utf8_lossy(&out.stdout).contains("web.yml: ok (app web, 1 rule(s))"));

    std::fs::write(dir.join("bad.json"), r#"{"instance_min_count": 4, "instance_max_count": 3, "scaling_rules": [{"metric_type": "cpu", "operator": "~", "threshold": 50, "adjustment": "+1"}]}"#).unwrap();
    let out = run(&[&dir]);
    assert_eq!(out.status.code(), Some(1));
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(stdout.contains("bad.json:1:24: error: instance_min_count: instance_min_count 4 is higher than instance_max_count 3"), "{stdout}");
    assert!(
        stdout
            .contains("error: scaling_rules[0].operator: must be one of <, <=, >, >= (got \"~\")"),
        "{stdout}"
    );
    assert!(
        stdout.contains("2 file(s): 2 error(s), 0 warning(s)"),
        "{stdout}"
    );
    // --json: the same result for scripts.
    let out = Command::new(hydrant_bin())
        .args(["policy", "check", "--json"])
        .arg(dir.path())
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(1));
    let v: serde_json::Value = serde_json::from_slice(&out.stdout).expect("JSON");
    assert_eq!(
        (v["files"].as_u64(), v["errors"].as_u64()),
        (Some(2), Some(2)),
        "{v}"
    );
    assert_eq!(v["problems"][0]["line"], 1, "{v}");
    assert_eq!(v["policies"][0]["app"], "web", "{v}");
    // A policy that may flap is a warning; --strict makes it an error.
    std::fs::remove_file(dir.join("bad.json")).unwrap();
    std::fs::write(dir.join("flap.yml"), "instance_min_count: 1\ninstance_max_count: 3\nscaling_rules:\n  - {metric_type: cpu, operator: '>', threshold: 50, adjustment: '+1'}\n  - {metric_type: cpu, operator: '<', threshold: 60, adjustment: '-1'}\n").unwrap();
    assert_eq!(run(&[&dir]).status.code(), Some(0), "CF accepts it");
    let strict = Command::new(hydrant_bin())
        .args(["policy", "check", "--strict"])
        .arg(dir.path())
        .output()
        .unwrap();
    assert_eq!(strict.status.code(), Some(1));
}

/// A component takes the hard descriptor limit at start (1,100 idle connections once
/// locked every client out of a doppler at the usual soft limit of 1,024).
#[tokio::test]
async fn components_raise_their_descriptor_limit() {
    let (grpc, http) = (free_port().await, free_port().await);
    let script = format!(
        "ulimit -Sn 256 && exec {} doppler --insecure-open --grpc {grpc} --http {http}",
        hydrant_bin().display()
    );
    let mut doppler = Proc::new(
        Command::new("/bin/sh")
            .args(["-c", &script])
            .stdout(Stdio::null())
            .stderr(Stdio::inherit())
            .spawn()
            .expect("start the doppler"),
    );
    wait_healthy(http).await;
    let limits = std::fs::read_to_string(format!("/proc/{}/limits", doppler.child().id())).unwrap();
    let line = limits
        .lines()
        .find(|l| l.starts_with("Max open files"))
        .expect("a descriptor limit");
    let fields: Vec<&str> = line.split_whitespace().collect();
    let (soft, hard) = (fields[3], fields[4]);
    assert_eq!(soft, hard, "{line}");
    assert_ne!(soft, "256", "{line}");
}

/// `hydrant firehose` against a doppler that speaks TLS, without certificates: it says why
/// it never connected and exits non-zero (it once printed zero stats and exited 0). With
/// the certificates it reads.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_firehose_that_never_connected_says_why_and_fails() {
    let dir = Scratch::new("firehose-tls");
    let names: Vec<String> = ["doppler", "client"]
        .iter()
        .map(|s| s.to_string())
        .collect();
    hydrant::certs::generate_all(&dir, &names).unwrap();
    let tls = hydrant_proto::transport::Tls::from_files(
        Some(&dir.join("ca.pem")),
        Some(&dir.join("doppler.pem")),
        Some(&dir.join("doppler-key.pem")),
        "doppler",
    )
    .unwrap();
    let d = crate::TestDoppler::start(hydrant::doppler::Config {
        tls,
        ..Default::default()
    })
    .await;
    let from = d.grpc.to_string();
    let run = |extra: Vec<String>| {
        let mut args: Vec<String> = ["firehose", "--stats", "--duration", "2s", "--from", &from]
            .iter()
            .map(|s| s.to_string())
            .collect();
        args.extend(extra);
        let dir = dir.to_path_buf();
        async move {
            tokio::task::spawn_blocking(move || {
                Command::new(hydrant_bin())
                    .args(&args)
                    // Away from any ./hydrant-data/certs a developer's `up` left behind.
                    .current_dir(&dir)
                    .output()
                    .expect("run hydrant")
            })
            .await
            .unwrap()
        }
    };
    let out = run(Vec::new()).await;
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "{err}");
    assert!(
        err.contains("never connected to the doppler") && err.contains("--tls-ca"),
        "{err}"
    );
    assert!(
        out.stdout.is_empty(),
        "no stats from a run that read nothing"
    );

    let file = |f: &str| dir.join(f).display().to_string();
    let out = run(vec![
        "--tls-ca".into(),
        file("ca.pem"),
        "--tls-cert".into(),
        file("client.pem"),
        "--tls-key".into(),
        file("client-key.pem"),
    ])
    .await;
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(0), "{err}");
    let stats: serde_json::Value =
        serde_json::from_slice(&out.stdout).expect("stats after a run that connected");
    assert_eq!(stats["received"], 0);
    d.stop().await;
}
