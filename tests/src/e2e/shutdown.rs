//! One lifecycle: real component processes stopped under load with a one-second grace
//! period. Each stop is bounded by that one period (not one per step), whatever was
//! accepted is either handed on or counted as dropped (the closing summary in the log adds
//! up), and a task that overran is named.

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use hydrant::doppler;
use hydrant_proto::envelope;
use hydrant_proto::ingress::{Config as IngressConfig, IngressClient};
use hydrant_proto::raw::RawEnvelope;
use hydrant_proto::subscriber::{request, select};
use hydrant_proto::v2::egress_client::EgressClient;

use crate::guard::{Proc, Scratch};
use crate::servers::free_port;
use crate::{TestDoppler, eventually, hydrant_bin, metric, wait_healthy};

/// The grace period every component here is given.
const GRACE_SECS: u64 = 1;

/// A stop may take the grace period plus this (process exit, the last log lines).
const STOP_SLACK: Duration = Duration::from_millis(2500);

/// Starts component `hydrant ARGS` (its HTTP API open: these tests read its `/metrics`)
/// with its log (info) in `log`.
fn start(args: &[String], log: &std::path::Path) -> Proc {
    let file = std::fs::File::create(log).expect("create log file");
    let (component, rest) = args.split_first().expect("a component");
    Proc::new(
        Command::new(hydrant_bin())
            .arg(component)
            .arg("--insecure-open")
            .args(rest)
            .env("RUST_LOG", "info")
            .stdout(Stdio::null())
            .stderr(file)
            .spawn()
            .expect("start hydrant"),
    )
}

/// Sends SIGTERM and waits for the exit; returns how long the stop took and the log.
async fn stop(p: &mut Proc, log: &std::path::Path) -> (Duration, String) {
    let pid = nix::unistd::Pid::from_raw(p.child().id() as i32);
    let started = Instant::now();
    nix::sys::signal::kill(pid, nix::sys::signal::Signal::SIGTERM).expect("SIGTERM");
    let mut child = std::mem::replace(p, Proc::empty());
    let status = tokio::task::spawn_blocking(move || child.child().wait())
        .await
        .unwrap()
        .expect("wait");
    let took = started.elapsed();
    let text = std::fs::read_to_string(log).unwrap_or_default();
    assert!(status.success(), "exit status {status}; log:\n{text}");
    (took, text)
}

/// The `key=value` numbers of the log line containing `message`.
fn summary(log: &str, message: &str) -> BTreeMap<String, u64> {
    let line = log
        .lines()
        .rev()
        .find(|l| l.contains(message))
        .unwrap_or_else(|| panic!("no \"{message}\" line in the log:\n{log}"));
    line.split_whitespace()
        .filter_map(|kv| kv.split_once('='))
        .filter_map(|(k, v)| Some((k.to_owned(), v.trim_matches('"').parse().ok()?)))
        .collect()
}

fn args(list: &[&str]) -> Vec<String> {
    list.iter().map(|s| (*s).to_owned()).collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_agent_that_cannot_flush_counts_everything_it_accepted() {
    let dir = Scratch::new("stop-agent");
    let log = dir.join("agent.log");
    let (grpc, http, nowhere) = (free_port(), free_port(), free_port());
    let mut agent = start(
        &args(&[
            "agent",
            "--grpc",
            &grpc.to_string(),
            "--http",
            &http.to_string(),
            "--doppler",
            &nowhere.to_string(),
            "--grace-secs",
            &GRACE_SECS.to_string(),
            "--no-self-metrics",
        ]),
        &log,
    );
    wait_healthy(http).await;
    super::send(grpc, super::numbered_logs("stop", 20_000)).await;
    eventually("all accepted", || async {
        metric(http, hydrant::telemetry::names::AGENT_INGRESS, &[]).await >= 20_000.0
    })
    .await;

    let (took, log) = stop(&mut agent, &log).await;
    assert!(
        took < Duration::from_secs(GRACE_SECS) + STOP_SLACK,
        "one grace period bounds the stop: {took:?}\n{log}"
    );
    let s = summary(&log, "agent stopped");
    assert_eq!(s["accepted"], 20_000, "{log}");
    assert_eq!(
        s["sent"] + s["dropped"],
        s["accepted"],
        "everything accepted is sent or counted as dropped:\n{log}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_doppler_names_a_subscriber_that_holds_up_its_stop_and_counts_its_buffer() {
    let dir = Scratch::new("stop-doppler");
    let log = dir.join("doppler.log");
    let (grpc, http) = (free_port(), free_port());
    let mut doppler = start(
        &args(&[
            "doppler",
            "--grpc",
            &grpc.to_string(),
            "--http",
            &http.to_string(),
            "--grace-secs",
            &GRACE_SECS.to_string(),
            "--no-self-metrics",
        ]),
        &log,
    );
    wait_healthy(http).await;
    // A subscriber that opens its stream and never reads from it.
    let mut client = EgressClient::connect(format!("http://{grpc}"))
        .await
        .expect("connect");
    let stuck = client
        .batched_receiver(request("", select::all("")))
        .await
        .expect("subscribe");
    // More than the subscription buffer (100,000) holds, in client-sized batches.
    let n = 150_000;
    for _ in 0..3 {
        super::send(grpc, super::numbered_logs("stop", n / 3)).await;
    }
    eventually("all accepted", || async {
        metric(http, hydrant::telemetry::names::DOPPLER_INGRESS, &[]).await >= n as f64
    })
    .await;

    let (took, log) = stop(&mut doppler, &log).await;
    drop(stuck);
    assert!(
        took < Duration::from_secs(GRACE_SECS) + STOP_SLACK,
        "one grace period bounds the stop: {took:?}\n{log}"
    );
    assert!(
        log.contains("did not stop within the grace period") && log.contains("flush/subscriptions"),
        "the overrunning step is named:\n{log}"
    );
    let s = summary(&log, "doppler stopped");
    assert_eq!(s["accepted"], n, "{log}");
    assert_eq!(
        s["delivered"] + s["dropped"],
        s["accepted"],
        "routed to the one subscriber = delivered + dropped:\n{log}"
    );
    assert!(s["overran"] >= 1, "{log}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn storage_names_a_sink_that_holds_up_its_stop_and_counts_its_queue() {
    // A remote-write server that takes connections and never answers.
    let black_hole = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let hole: SocketAddr = black_hole.local_addr().unwrap();
    let holding = tokio::spawn(async move {
        let mut held = Vec::new();
        while let Ok((s, _)) = black_hole.accept().await {
            held.push(s);
        }
    });
    let d = TestDoppler::start(doppler::Config::default()).await;
    let dir = Scratch::new("stop-storage");
    let log = dir.join("storage.log");
    let http = free_port();
    let mut storage = start(
        &[
            args(&["storage", "--from", &d.grpc.to_string()]),
            args(&[
                "--http",
                &http.to_string(),
                "--grace-secs",
                &GRACE_SECS.to_string(),
            ]),
            args(&["--no-self-metrics", "--remote-write-url"]),
            vec![format!("http://{hole}/api/v1/write")],
            vec!["--data-dir".into(), dir.join("data").display().to_string()],
        ]
        .concat(),
        &log,
    );
    wait_healthy(http).await;
    eventually("storage subscribed", || async {
        d.metric(
            hydrant::telemetry::names::DOPPLER_SUBSCRIPTIONS,
            &[("shard_id", "storage")],
        )
        .await
            >= 1.0
    })
    .await;
    let client = IngressClient::start(IngressConfig::new(vec![d.grpc.to_string()])).unwrap();
    let batch: Vec<RawEnvelope> = (0..20_000)
        .map(|i| {
            let g = envelope::gauge(format!("src-{}", i % 100), [("load", i as f64, "")]);
            RawEnvelope::from_envelope(&g)
        })
        .collect();
    client.send_all(batch);
    client.close(Duration::from_secs(10)).await;
    eventually("samples stored", || async {
        metric(http, "hydrant_storage_ingested_samples_total", &[]).await >= 20_000.0
    })
    .await;

    let (took, log) = stop(&mut storage, &log).await;
    assert!(
        took < Duration::from_secs(GRACE_SECS) + STOP_SLACK,
        "one grace period bounds the stop: {took:?}\n{log}"
    );
    assert!(
        log.contains("did not stop within the grace period")
            && log.contains(&format!("flush/sink remote_write http://{hole}")),
        "the overrunning sink is named:\n{log}"
    );
    let sink = summary(&log, "storage sink stopped");
    let stored = summary(&log, "storage stopped");
    assert_eq!(
        sink["sent"] + sink["failed"] + sink["overflow"] + sink["dropped_at_stop"],
        stored["ingested"],
        "every stored sample is sent or counted by the sink:\n{log}"
    );
    assert!(sink["dropped_at_stop"] > 0, "{log}");
    holding.abort();
    d.stop().await;
}

/// The log cache, the autoscaler and the cell, each a process reading or feeding a busy
/// pipeline, stop within their one grace period and exit cleanly; the cell's apps stop
/// with it.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_other_components_stop_within_their_grace_under_load() {
    let d = TestDoppler::start(doppler::Config::default()).await;
    let dir = Scratch::new("stop-others");
    std::fs::create_dir_all(dir.join("policies")).unwrap();
    std::fs::write(
        dir.join("policies/web.yml"),
        "app: web\ninstance_min_count: 1\ninstance_max_count: 2\nscaling_rules:\n  - {metric_type: cpu, operator: '>', threshold: 90, adjustment: '+1'}\n",
    )
    .unwrap();
    let grace = GRACE_SECS.to_string();
    let from = d.grpc.to_string();
    let (lc_http, as_http, cell_api) = (free_port(), free_port(), free_port());
    let mut logcache = start(
        &args(&[
            "logcache",
            "--from",
            &from,
            "--http",
            &lc_http.to_string(),
            "--grace-secs",
            &grace,
            "--no-self-metrics",
        ]),
        &dir.join("logcache.log"),
    );
    let mut autoscaler = start(
        &[
            args(&[
                "autoscaler",
                "--from",
                &from,
                "--http",
                &as_http.to_string(),
            ]),
            args(&["--grace-secs", &grace, "--no-self-metrics", "--scheduler"]),
            vec![format!("http://{cell_api}")],
            vec![
                "--policies".into(),
                dir.join("policies").display().to_string(),
            ],
        ]
        .concat(),
        &dir.join("autoscaler.log"),
    );
    let mut cell = start(
        &[
            args(&["cell", "--api", &cell_api.to_string(), "--agent", &from]),
            args(&["--stop-grace", "1s", "--no-self-metrics", "--data-dir"]),
            vec![dir.join("cell").display().to_string()],
        ]
        .concat(),
        &dir.join("cell.log"),
    );
    for addr in [lc_http, as_http, cell_api] {
        wait_healthy(addr).await;
    }
    // A chatty app on the cell (its lines go to the doppler), and load from an emitter.
    hydrant::apps::Client::new(
        &format!("http://{cell_api}"),
        None,
        hydrant_runtime::https::plain_client(),
    )
    .push(
        "web",
        "trap '' TERM; while :; do echo line; sleep 0.01; done",
        1,
        64,
        64,
        &BTreeMap::new(),
    )
    .await
    .unwrap();
    let client = IngressClient::start(IngressConfig::new(vec![from.clone()])).unwrap();
    let sender = client.sender();
    let load = tokio::spawn(async move {
        for k in 0..400 {
            let batch: Vec<RawEnvelope> = (0..500)
                .map(|i| {
                    let g = envelope::gauge("web", [("cpu", f64::from(k % 100 + i % 2), "")]);
                    RawEnvelope::from_envelope(&g)
                })
                .collect();
            sender.send_all(batch);
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
    });
    eventually("the log cache is ingesting", || async {
        metric(lc_http, "hydrant_logcache_ingress_envelopes_total", &[]).await > 10_000.0
    })
    .await;

    // The cell's whole stop is bounded by its instances' stop grace (1 s) plus 5 s for
    // the last envelopes; its app ignores SIGTERM and is killed after the 1 s.
    for (name, p, bound) in [
        ("logcache", &mut logcache, Duration::from_secs(GRACE_SECS)),
        (
            "autoscaler",
            &mut autoscaler,
            Duration::from_secs(GRACE_SECS),
        ),
        (
            "cell",
            &mut cell,
            Duration::from_secs(1) + hydrant::cell::FLUSH_GRACE,
        ),
    ] {
        let log = dir.join(format!("{name}.log"));
        let (took, text) = stop(p, &log).await;
        assert!(took < bound + STOP_SLACK, "{name} took {took:?}:\n{text}");
    }
    let leftovers: Vec<String> = std::fs::read_dir("/proc")
        .unwrap()
        .flatten()
        .filter_map(|e| std::fs::read_link(e.path().join("cwd")).ok())
        .map(|cwd| cwd.display().to_string())
        .filter(|cwd| cwd.starts_with(&dir.join("cell").display().to_string()))
        .collect();
    assert!(
        leftovers.is_empty(),
        "instances outlived the cell: {leftovers:?}"
    );
    load.abort();
    drop(client);
    d.stop().await;
}
