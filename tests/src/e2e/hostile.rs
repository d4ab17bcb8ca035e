//! One small hostile input never takes a component down: queries and YAML documents past
//! a limit are refused with the limit named, times far outside any data are answered,
//! subqueries of too many steps are refused, and the component keeps serving. Most cases
//! here once crashed a process (a stack overflow, or a panic that dropped the connection).

use std::process::Command;

use hydrant::doppler;
use serde_json::Value;

use super::storage::TestStorage;
use crate::guard::Scratch;
use crate::{TestDoppler, hydrant_bin};

fn encode(params: &[(&str, &str)]) -> String {
    form_urlencoded::Serializer::new(String::new())
        .extend_pairs(params.iter())
        .finish()
}

/// Each pathological query is refused with `bad_data` naming the limit, over GET and POST,
/// and storage answers `/healthz` after all of them.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn pathological_queries_are_refused_by_name_and_storage_keeps_serving() {
    let d = TestDoppler::start(doppler::Config::default()).await;
    let dir = Scratch::new("storage-hostile");
    let storage = TestStorage::start(&d, dir.to_path_buf()).await;
    let http = hydrant_runtime::https::plain_client();
    let deep = format!("{}x{}", "abs(".repeat(2_000), ")".repeat(2_000));
    let chain = format!("1{}", "+1".repeat(10_000));
    let ors = vec!["up"; 2_000].join(" or ");
    let many = (0..70)
        .map(|i| format!("m{i}"))
        .collect::<Vec<_>>()
        .join(" + on() ");
    let cases = [
        (deep.as_str(), "nests brackets deeper than 64 levels"),
        (chain.as_str(), "more than 256 operators"),
        (ors.as_str(), "more than 256 operators"),
        (many.as_str(), "reads 70 selectors, more than 64"),
    ];
    for (query, needle) in cases {
        for post in [false, true] {
            let url = format!("{}/api/v1/query", storage.url);
            let q = encode(&[("query", query)]);
            let req = if post {
                http.post(&url)
                    .header("content-type", "application/x-www-form-urlencoded")
                    .body(q)
            } else {
                http.get(format!("{url}?{q}"))
            };
            let resp = req
                .send()
                .await
                .expect("an answer, not a dropped connection");
            assert_eq!(resp.status(), 400, "{needle}");
            let body: Value = resp.json().await.unwrap();
            assert_eq!(body["errorType"], "bad_data", "{body}");
            let error = body["error"].as_str().unwrap();
            assert!(error.contains(needle), "{needle}: {error}");
            assert!(error.contains("Hydrant's limit"), "{error}");
        }
    }

    // Times far outside any data: answered (once a panic on a reversed range).
    for (path, params) in [
        ("/api/v1/query", vec![("query", "up"), ("time", "-1e18")]),
        (
            "/api/v1/query",
            vec![("query", "up offset 1000000000y"), ("time", "1e18")],
        ),
        (
            "/api/v1/series",
            vec![("match[]", "up"), ("start", "-1e18"), ("end", "1e18")],
        ),
        ("/api/v1/labels", vec![("start", "1e18"), ("end", "-1e18")]),
    ] {
        let resp = http
            .get(format!("{}{path}?{}", storage.url, encode(&params)))
            .send()
            .await
            .expect("an answer, not a dropped connection");
        let status = resp.status().as_u16();
        let body: Value = resp.json().await.unwrap();
        assert!(
            status == 200 || (status == 400 && body["errorType"] == "bad_data"),
            "{path} {params:?}: {status} {body}"
        );
    }
    // Subqueries of astronomically many steps, and `@` far outside any time: refused or
    // answered, each within the limit on inner steps, never a hung or dropped request.
    for (query, status) in [
        ("up[100y:1ms]", 422),
        ("max_over_time(max_over_time(up[1d:1ms])[1d:1ms])", 422),
        ("up offset 1e308", 400),
        ("up @ 1e15", 200),
        ("max_over_time(up[5m:1m] @ -1e15)", 200),
    ] {
        let started = std::time::Instant::now();
        let resp = http
            .get(format!(
                "{}/api/v1/query?{}",
                storage.url,
                encode(&[("query", query), ("time", "1700000000")])
            ))
            .send()
            .await
            .expect("an answer, not a dropped connection");
        assert_eq!(resp.status(), status, "{query}");
        let body: Value = resp.json().await.unwrap();
        if status == 422 {
            assert_eq!(body["errorType"], "execution", "{body}");
            let error = body["error"].as_str().unwrap();
            assert!(error.contains("more than 200000 steps"), "{query}: {error}");
        }
        assert!(
            started.elapsed() < std::time::Duration::from_secs(30),
            "{query} took {:?}",
            started.elapsed()
        );
    }
    let health = http
        .get(format!("{}/healthz", storage.url))
        .send()
        .await
        .unwrap();
    assert_eq!(health.status(), 200);
}

/// A policy 50,000 sequences deep (100 KB) once overflowed the stack of `policy check`
/// and of the live autoscaler; a hydrant.yaml the same. Both are refused at the line and
/// column where they pass the limit, with the other files still checked.
#[test]
fn deep_yaml_is_refused_where_it_passes_the_limit() {
    let dir = Scratch::new("deep-yaml");
    let deep = format!(
        "instance_min_count: 1\nscaling_rules:\n{}x\n",
        "- ".repeat(50_000)
    );
    std::fs::write(dir.join("deep.yml"), &deep).unwrap();
    std::fs::write(
        dir.join("web.yml"),
        "instance_min_count: 1\ninstance_max_count: 3\nscaling_rules:\n  - {metric_type: cpu, operator: '>', threshold: 70, adjustment: '+1'}\n",
    )
    .unwrap();
    let out = Command::new(hydrant_bin())
        .args(["policy", "check"])
        .arg(dir.path())
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert_eq!(out.status.code(), Some(1), "{stdout}");
    assert!(
        stdout.contains("deep.yml:3:127: error: refused: nested deeper than 64 levels"),
        "{stdout}"
    );
    assert!(stdout.contains("web.yml: ok"), "{stdout}");

    let big = format!("autoscaler:\n  tick: 1s\n# {}\n", "x".repeat(2 << 20));
    for (name, text, needle) in [
        (
            "deep.yaml",
            format!(
                "doppler:\n  grpc: {}1{}\n",
                "[".repeat(100),
                "]".repeat(100)
            ),
            ":2:",
        ),
        ("big.yaml", big, "over the 1048576-byte limit"),
    ] {
        let file = dir.join(name);
        std::fs::write(&file, text).unwrap();
        let out = Command::new(hydrant_bin())
            .args(["config", "check"])
            .arg(&file)
            .output()
            .unwrap();
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert_eq!(out.status.code(), Some(1), "{name}: {stderr}");
        assert!(stderr.contains(needle), "{name}: {stderr}");
        assert!(stderr.contains("refused:"), "{name}: {stderr}");
    }
}

/// A query that would run for hours (a three-way cross join once froze storage for 50 s,
/// and ingest with it) is stopped at the time limit with Prometheus' `timeout` error, one
/// that needs more memory than the pool is refused, and meanwhile `/healthz` and PromQL
/// answer at once.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn runaway_sql_is_stopped_and_never_blocks_the_api() {
    let d = TestDoppler::start(doppler::Config::default()).await;
    let dir = Scratch::new("storage-runaway");
    let limits = hydrant_storage::queries::Limits {
        timeout: std::time::Duration::from_secs(2),
        memory: 64 * 1024 * 1024,
        threads: 1,
        // --promql-max-operators 3.
        promql: hydrant_storage::promql::limits::Limits {
            max_operators: 3,
            ..Default::default()
        },
    };
    let storage = TestStorage::with_queries(&d, dir.to_path_buf(), Vec::new(), limits).await;
    let http = hydrant_runtime::https::plain_client();
    let sql = |statement: &'static str| {
        let req = http
            .post(format!("{}/api/v1/sql", storage.url))
            .body(statement);
        async move {
            let resp = req.send().await.expect("an answer");
            let status = resp.status().as_u16();
            (status, resp.json::<Value>().await.unwrap_or(Value::Null))
        }
    };
    let runaway = tokio::spawn(sql(
        "SELECT count(*) FROM generate_series(1, 100000) a, generate_series(1, 100000) b, generate_series(1, 1000) c",
    ));
    tokio::time::sleep(std::time::Duration::from_millis(300)).await;
    for path in ["/healthz", "/api/v1/query?query=vector(1)"] {
        let started = std::time::Instant::now();
        let resp = http
            .get(format!("{}{path}", storage.url))
            .send()
            .await
            .unwrap();
        assert_eq!(resp.status(), 200, "{path}");
        assert!(
            started.elapsed() < std::time::Duration::from_millis(1500),
            "{path} took {:?} beside a running query",
            started.elapsed()
        );
    }
    let resp = http
        .get(format!(
            "{}/api/v1/query?query=1%2B1%2B1%2B1%2B1",
            storage.url
        ))
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 400);
    let body: Value = resp.json().await.unwrap();
    assert!(
        body["error"]
            .as_str()
            .unwrap()
            .contains("more than 3 operators"),
        "{body}"
    );
    let (status, body) = runaway.await.unwrap();
    assert_eq!(status, 503, "{body}");
    assert_eq!(body["errorType"], "timeout", "{body}");
    assert!(
        body["error"].as_str().unwrap().contains("--query-timeout"),
        "{body}"
    );

    let (status, body) =
        sql("SELECT string_agg(repeat('x', 100000), ',') FROM generate_series(1, 2000)").await;
    assert_eq!(status, 400, "{body}");
    assert!(
        body["error"]
            .as_str()
            .unwrap()
            .contains("Resources exhausted"),
        "{body}"
    );
}

/// Idle TCP connections that never speak HTTP/2 once held every descriptor of a doppler
/// and locked all clients out: now a real client is served beside them, and the server
/// closes them after the handshake deadline.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn idle_connections_never_lock_clients_out_and_are_closed() {
    use hydrant::telemetry::names;
    use hydrant_proto::subscriber::{request, select};
    use tokio::io::AsyncReadExt as _;

    // --handshake-timeout 2s (10 s by default).
    let handshake = std::time::Duration::from_secs(2);
    let d = TestDoppler::start(doppler::Config {
        handshake_timeout: handshake,
        ..doppler::Config::default()
    })
    .await;
    let mut idle = Vec::new();
    for _ in 0..300 {
        idle.push(tokio::net::TcpStream::connect(d.grpc).await.unwrap());
    }
    let c = crate::Collector::start(d.grpc, request("", vec![select::log("")]), None);
    crate::eventually("subscribed beside 300 idle connections", || async {
        d.metric(names::DOPPLER_SUBSCRIPTIONS, &[("shard_id", "")])
            .await
            == 1.0
    })
    .await;
    super::send(d.grpc, [hydrant_proto::envelope::log("x", "y", false)]).await;
    crate::eventually("delivered", || async { c.got.len() == 1 }).await;

    tokio::time::sleep(handshake + std::time::Duration::from_secs(1)).await;
    let closed = tokio::time::timeout(std::time::Duration::from_secs(10), async {
        let mut closed = 0;
        for s in &mut idle {
            // The server's own HTTP/2 preface (its settings) may come first; then EOF or a
            // reset: the server let it go.
            let mut b = [0u8; 256];
            while matches!(s.read(&mut b).await, Ok(n) if n > 0) {}
            closed += 1;
        }
        closed
    })
    .await
    .expect("every idle connection closed by now");
    assert_eq!(closed, 300);
    c.stop().await.ok();
    d.stop().await;
}
