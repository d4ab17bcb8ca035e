//! `hydrant logs` against a running log cache: cf CLI output byte for byte, 429 halving,
//! filters, error exits, and live tailing that survives stream restarts.

use std::io::BufRead as _;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use hydrant::doppler;
use hydrant_proto::ingress::{Config, IngressClient};
use hydrant_proto::raw::RawEnvelope;
use hydrant_proto::v2::Envelope;
use serde_json::Value;

use super::logcache::{T0, app_log, cached, cf_line, get, send};
use crate::guard::Proc;
use crate::{TestDoppler, TestLogCache, eventually, hydrant_bin};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn recent_returns_the_newest_1000_formatted_like_the_cf_cli() {
    let d = TestDoppler::start(doppler::Config::default()).await;
    let lc = TestLogCache::start(
        hydrant_logcache::Config::new(vec![d.grpc.to_string()]),
        &[&d],
    )
    .await;
    // 250,000 lines over 30 sources, 1 ms apart per source; every 7th line is ERR.
    let mut all = Vec::with_capacity(250_000);
    for i in 0..250_000i64 {
        let source = format!("app-{}", i % 30);
        let err = i % 7 == 0;
        let text = if err {
            format!("err {i}")
        } else {
            format!("out {i}")
        };
        all.push(app_log(
            &source,
            T0 + i * 1_000_000 + 123_456,
            (i % 3) as u32,
            &text,
            err,
        ));
    }
    let want: Vec<String> = all
        .iter()
        .filter(|e| e.source_id == "app-7")
        .map(|e| match &e.message {
            Some(hydrant_proto::v2::envelope::Message::Log(l)) => {
                cf_line(e, std::str::from_utf8(&l.payload).unwrap())
            }
            _ => unreachable!(),
        })
        .collect();
    let want = want[want.len() - 1000..].join("\n") + "\n";
    send(d.grpc, all).await;
    eventually("250,000 cached", || async { cached(&lc).await == 250_000 }).await;

    let url = lc.url.clone();
    let out = tokio::task::spawn_blocking(move || {
        Command::new(hydrant_bin())
            .args([
                "logs",
                "app-7",
                "--recent",
                "--log-cache",
                &url,
                "--scheduler",
                "http://127.0.0.1:9",
            ])
            .env("TZ", "IST-5:30")
            .output()
            .unwrap()
    })
    .await
    .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let got = String::from_utf8(out.stdout).unwrap();
    assert_eq!(got.lines().count(), 1000);
    assert_eq!(got, want, "byte-for-byte cf CLI output");
    // The app name works too (resolved by the log cache from the app_name tag).
    let url = lc.url.clone();
    let by_name = tokio::task::spawn_blocking(move || {
        Command::new(hydrant_bin())
            .args([
                "logs",
                "name-app-7",
                "--recent",
                "--log-cache",
                &url,
                "--scheduler",
                "http://127.0.0.1:9",
            ])
            .env("TZ", "IST-5:30")
            .output()
            .unwrap()
    })
    .await
    .unwrap();
    assert_eq!(String::from_utf8(by_name.stdout).unwrap(), want);
    lc.stop().await;
    d.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn live_tail_is_prompt_and_survives_stream_restarts() {
    let d = TestDoppler::start(doppler::Config::default()).await;
    let mut config = hydrant_logcache::Config::new(vec![d.grpc.to_string()]);
    // Streams close every second, so the tail must resume several times.
    config.timing = hydrant_runtime::sse::Timing {
        heartbeat: Duration::from_millis(200),
        stream_timeout: Duration::from_secs(1),
    };
    let lc = TestLogCache::start(config, &[&d]).await;
    let mut child = Proc::new(
        Command::new(hydrant_bin())
            .args([
                "logs",
                "tail-app",
                "--log-cache",
                &lc.url,
                "--scheduler",
                "http://127.0.0.1:9",
            ])
            .env("TZ", "UTC")
            .stdout(Stdio::piped())
            .spawn()
            .unwrap(),
    );
    let stdout = child.child().stdout.take().unwrap();
    let (tx, mut rx) = tokio::sync::mpsc::unbounded_channel::<(Instant, String)>();
    std::thread::spawn(move || {
        for line in std::io::BufReader::new(stdout)
            .lines()
            .map_while(Result::ok)
        {
            let _ = tx.send((Instant::now(), line));
        }
    });
    let emitter = IngressClient::start(Config::new(vec![d.grpc.to_string()])).unwrap();
    let emit = |text: &str| {
        let e = app_log(
            "tail-app",
            hydrant_proto::envelope::now_nanos(),
            0,
            text,
            false,
        );
        emitter.send(RawEnvelope::from_envelope(&e));
    };
    // Wait until the tail is connected: a probe line shows up.
    let mut lines: Vec<(Instant, String)> = Vec::new();
    let deadline = Instant::now() + Duration::from_secs(5);
    while !lines.iter().any(|(_, l)| l.ends_with("probe")) && Instant::now() < deadline {
        emit("probe");
        if let Ok(Some(l)) = tokio::time::timeout(Duration::from_millis(200), rx.recv()).await {
            lines.push(l);
        }
    }
    assert!(
        lines.iter().any(|(_, l)| l.ends_with("probe")),
        "the tail never connected"
    );
    let mut sent = Vec::new();
    for i in 0..40 {
        emit(&format!("live {i}"));
        sent.push(Instant::now());
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    // Collect until every line is in (bounded), then stop the tail.
    let deadline = Instant::now() + Duration::from_secs(20);
    while Instant::now() < deadline
        && !(0..40).all(|i| {
            lines
                .iter()
                .any(|(_, l)| l.ends_with(&format!(" live {i}")))
        })
    {
        if let Ok(Some(l)) = tokio::time::timeout(Duration::from_millis(100), rx.recv()).await {
            lines.push(l);
        }
    }
    let _ = tokio::task::spawn_blocking(move || child.kill()).await;
    while let Ok(l) = rx.try_recv() {
        lines.push(l);
    }
    let mut latencies = Vec::new();
    for (i, at) in sent.iter().enumerate() {
        let hits: Vec<&(Instant, String)> = lines
            .iter()
            .filter(|(_, l)| l.ends_with(&format!(" live {i}")))
            .collect();
        assert_eq!(
            hits.len(),
            1,
            "line {i} printed exactly once across stream restarts"
        );
        latencies.push(hits[0].0.saturating_duration_since(*at));
        assert!(
            hits[0].1.starts_with("   ") && hits[0].1.contains("[APP/PROC/WEB/0] OUT live"),
            "{}",
            hits[0].1
        );
    }
    latencies.sort();
    let median = latencies[latencies.len() / 2];
    assert!(
        median < Duration::from_millis(100),
        "median latency {median:?}, all {latencies:?}"
    );
    assert!(
        latencies.iter().all(|l| *l < Duration::from_secs(2)),
        "{latencies:?}"
    );
    lc.stop().await;
    d.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn recent_halves_its_limit_on_429_and_filters() {
    let d = TestDoppler::start(doppler::Config::default()).await;
    let mut config = hydrant_logcache::Config::new(vec![d.grpc.to_string()]);
    config.max_response_bytes = 50_000;
    let lc = TestLogCache::start(config, &[&d]).await;
    let lines: Vec<Envelope> = (0..1000)
        .map(|i| {
            let err = i % 2 == 1;
            app_log(
                "big",
                T0 + i * 1_000_000,
                0,
                &format!(
                    "{} {i} {}",
                    if err { "err" } else { "out" },
                    "x".repeat(200)
                ),
                err,
            )
        })
        .collect();
    send(d.grpc, lines).await;
    eventually("cached", || async { cached(&lc).await == 1000 }).await;
    let (status, v) = get(format!("{}/api/v1/read/big?limit=1000", lc.url), None).await;
    assert_eq!(status, 429, "{v}");
    let url = lc.url.clone();
    let run = move |extra: &'static [&'static str]| {
        let url = url.clone();
        tokio::task::spawn_blocking(move || {
            let mut args = vec![
                "logs",
                "big",
                "--recent",
                "--log-cache",
                &url,
                "--scheduler",
                "http://127.0.0.1:9",
            ];
            args.extend(extra);
            Command::new(hydrant_bin())
                .args(args)
                .env("TZ", "UTC")
                .output()
                .unwrap()
        })
    };
    // The first limit in 1000, 500, 250, … that the API accepts.
    let mut fits = 1000;
    while get(
        format!("{}/api/v1/read/big?limit={fits}&descending=true", lc.url),
        None,
    )
    .await
    .0 == 429
    {
        fits /= 2;
    }
    assert!(fits < 1000 && fits > 1);
    let out = run(&[]).await.unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let text = String::from_utf8(out.stdout).unwrap();
    assert_eq!(
        text.lines().count(),
        fits,
        "the CLI halved down to the same limit"
    );
    assert!(
        text.lines().last().unwrap().contains(" ERR err 999 "),
        "{}",
        text.lines().last().unwrap()
    );
    assert!(
        text.lines()
            .next()
            .unwrap()
            .contains(&format!(" {} ", 1000 - fits)),
        "oldest first"
    );

    let out = run(&["--type", "ERR", "--json", "--grep", "err 99[0-9]"])
        .await
        .unwrap();
    let json: Vec<Value> = String::from_utf8(out.stdout)
        .unwrap()
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    assert_eq!(json.len(), 5, "991, 993, …, 999");
    assert!(
        json.iter()
            .all(|e| e["log"]["type"] == "ERR" && e["source_id"] == "big")
    );
    lc.stop().await;
    d.stop().await;
}

#[test]
fn logs_explains_an_unreachable_log_cache_and_bad_flags() {
    let out = Command::new(hydrant_bin())
        .args([
            "logs",
            "x",
            "--recent",
            "--log-cache",
            "http://127.0.0.1:9",
            "--scheduler",
            "http://127.0.0.1:9",
        ])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(1));
    assert!(
        String::from_utf8_lossy(&out.stderr)
            .contains("cannot reach the log cache at http://127.0.0.1:9")
    );
    let out = Command::new(hydrant_bin())
        .args(["logs", "x", "--grep", "("])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(2), "usage errors exit 2");
    assert!(String::from_utf8_lossy(&out.stderr).contains("invalid regular expression"));
    let out = Command::new(hydrant_bin())
        .args(["logs", "x", "--type", "WARN"])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(2));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn logs_says_when_an_app_is_unknown() {
    let d = TestDoppler::start(doppler::Config::default()).await;
    let lc = TestLogCache::start(
        hydrant_logcache::Config::new(vec![d.grpc.to_string()]),
        &[&d],
    )
    .await;
    let cell = crate::TestCell::start(crate::TestCell::config(d.grpc)).await;
    let (lc_url, cell_url) = (lc.url.clone(), cell.url.clone());
    let out = tokio::task::spawn_blocking(move || {
        Command::new(hydrant_bin())
            .args([
                "logs",
                "nope",
                "--recent",
                "--log-cache",
                &lc_url,
                "--scheduler",
                &cell_url,
            ])
            .output()
            .unwrap()
    })
    .await
    .unwrap();
    assert_eq!(out.status.code(), Some(1));
    assert!(
        String::from_utf8_lossy(&out.stderr).contains("app 'nope' not found"),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    cell.stop().await;
    lc.stop().await;
    d.stop().await;
}

/// Without a token, or with one the cache does not accept, `hydrant logs` says so and
/// exits 1 (Log Cache answers 404, so it once printed nothing and exited 0).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn logs_fails_loudly_when_the_cache_refuses_the_token() {
    use hydrant_runtime::access::{Access, Tokens};
    let d = TestDoppler::start(doppler::Config::default()).await;
    let mut config = hydrant_logcache::Config::new(vec![d.grpc.to_string()]);
    let tokens =
        "tokens:\n  - token: root\n    admin: true\n  - token: team\n    sources: [mine]\n";
    config.access = Access::tokens(Tokens::parse(tokens, std::path::Path::new("t.yml")).unwrap());
    let lc = TestLogCache::start(config, &[&d]).await;
    send(d.grpc, vec![app_log("theirs", T0, 0, "secret line", false)]).await;
    let lc_url = lc.url.clone();
    let run = move |token: Option<&str>| {
        let mut cmd = Command::new(hydrant_bin());
        cmd.args([
            "logs",
            "theirs",
            "--recent",
            "--log-cache",
            &lc_url,
            "--scheduler",
            "http://127.0.0.1:9",
        ])
        .env_remove("HYDRANT_TOKEN");
        if let Some(t) = token {
            cmd.args(["--token", t]);
        }
        cmd.output().unwrap()
    };
    crate::eventually("cached", || async {
        let run = run.clone();
        let out = tokio::task::spawn_blocking(move || run(Some("root")))
            .await
            .unwrap();
        String::from_utf8_lossy(&out.stdout).contains("secret line")
    })
    .await;
    // A scoped token that may not read the source gets what Log Cache gives it: nothing,
    // indistinguishable from a source with no logs (so tokens cannot probe).
    let team = run.clone();
    let out = tokio::task::spawn_blocking(move || team(Some("team")))
        .await
        .unwrap();
    assert!(!String::from_utf8_lossy(&out.stdout).contains("secret line"));
    for (token, needle) in [
        (None, "does not accept this token, or none was given"),
        (Some("wrong"), "does not accept this token"),
    ] {
        let run = run.clone();
        let out = tokio::task::spawn_blocking(move || run(token))
            .await
            .unwrap();
        let err = String::from_utf8_lossy(&out.stderr);
        assert_eq!(out.status.code(), Some(1), "{token:?}: {err}");
        assert!(err.contains(needle), "{token:?}: {err}");
        assert!(!String::from_utf8_lossy(&out.stdout).contains("secret line"));
    }
    lc.stop().await;
    d.stop().await;
}
