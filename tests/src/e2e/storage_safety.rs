//! The storage nozzle's guarantees: Prometheus-style errors for bad queries and SQL, and
//! no acknowledged sample lost to a `kill -9` of the real process.

use std::time::Duration;

use hydrant::doppler;
use hydrant::telemetry::names;
use hydrant_proto::envelope;
use hydrant_proto::ingress::{Config as IngressConfig, IngressClient};
use serde_json::Value;

use super::storage::{TestStorage, get};
use crate::guard::{Proc, Scratch};
use crate::{TestDoppler, eventually, eventually_within, wait_healthy};

/// A bad request: path, parameters, expected status, a phrase of the error.
type Case<'a> = (&'a str, &'a [(&'a str, &'a str)], u16, &'a str);

/// Bad queries get Prometheus' error JSON and status, never a panic or a wrong answer.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bad_queries_get_prometheus_errors() {
    let d = TestDoppler::start(doppler::Config::default()).await;
    let dir = Scratch::new("storage-bad");
    let storage = TestStorage::start(&d, dir.to_path_buf()).await;
    let http = hydrant_runtime::https::plain_client();
    let cases: &[Case<'_>] = &[
        ("/api/v1/query", &[("query", "sum(")], 400, "parse error"),
        (
            "/api/v1/query",
            &[("query", "mad_over_time(cpu[5m])")],
            400,
            "function \"mad_over_time\" is not supported",
        ),
        (
            "/api/v1/query",
            &[("query", "cpu[5m:0s]")],
            400,
            "greater than 0",
        ),
        ("/api/v1/query", &[], 400, "invalid parameter \"query\""),
        (
            "/api/v1/query",
            &[("query", "cpu"), ("time", "yesterday")],
            400,
            "cannot parse",
        ),
        (
            "/api/v1/query_range",
            &[
                ("query", "cpu"),
                ("start", "0"),
                ("end", "100000000"),
                ("step", "1"),
            ],
            400,
            "11,000 points",
        ),
        (
            "/api/v1/query_range",
            &[
                ("query", "cpu"),
                ("start", "10"),
                ("end", "0"),
                ("step", "1"),
            ],
            400,
            "end timestamp",
        ),
        (
            "/api/v1/query_range",
            &[
                ("query", "cpu"),
                ("start", "0"),
                ("end", "10"),
                ("step", "0"),
            ],
            400,
            "zero or negative",
        ),
        (
            "/api/v1/query_range",
            &[
                ("query", "cpu[5m]"),
                ("start", "0"),
                ("end", "10"),
                ("step", "1"),
            ],
            400,
            "range vector",
        ),
        (
            "/api/v1/format_query",
            &[("query", "sum(")],
            400,
            "parse error",
        ),
        ("/api/v1/series", &[], 400, "no match[]"),
        (
            "/api/v1/series",
            &[("match[]", "sum(cpu)")],
            400,
            "not a series selector",
        ),
    ];
    for (path, params, status, needle) in cases {
        let q: String = form_urlencoded::Serializer::new(String::new())
            .extend_pairs(params.iter())
            .finish();
        // GET, and the same as a form POST (Grafana's default).
        for post in [false, true] {
            let url = format!("{}{path}", storage.url);
            let req = if post {
                http.post(&url)
                    .header("content-type", "application/x-www-form-urlencoded")
                    .body(q.clone())
            } else {
                http.get(format!("{url}?{q}"))
            };
            let resp = req.send().await.unwrap();
            let code = resp.status().as_u16();
            let body: Value = resp.json().await.unwrap();
            if *path == "/api/v1/series" && post && params.is_empty() {
                assert_eq!(code, 400);
                continue;
            }
            assert_eq!(code, *status, "{path} {params:?}: {body}");
            assert_eq!(body["status"], "error", "{body}");
            assert_eq!(body["errorType"], "bad_data", "{body}");
            assert!(
                body["error"].as_str().unwrap().contains(needle),
                "{path} {params:?}: {body}"
            );
        }
    }
    // What Grafana probes answers success.
    for path in [
        "/api/v1/status/buildinfo",
        "/api/v1/metadata",
        "/api/v1/rules",
        "/api/v1/query_exemplars",
        "/api/v1/labels",
        "/api/v1/label/__name__/values",
    ] {
        let body: Value = http
            .get(format!("{}{path}", storage.url))
            .send()
            .await
            .unwrap()
            .json()
            .await
            .unwrap();
        assert_eq!(body["status"], "success", "{path}: {body}");
    }
    let build = get(&format!("{}/api/v1/status/buildinfo", storage.url), &[]).await;
    assert_eq!(
        build["data"]["version"], "2.42.0",
        "a Prometheus version, so Grafana turns on that version's API paths: {build}"
    );
    let formatted = get(
        &format!("{}/api/v1/format_query", storage.url),
        &[("query", "sum by(job)(rate(x{a=`b\\.c`}[5m]))".into())],
    )
    .await;
    assert_eq!(
        formatted["data"], r#"sum by (job) (rate(x{a="b\\.c"}[5m]))"#,
        "{formatted}"
    );
    let bad_name = http
        .get(format!("{}/api/v1/label/1x/values", storage.url))
        .send()
        .await
        .unwrap();
    assert_eq!(bad_name.status(), 400);
    let body: Value = bad_name.json().await.unwrap();
    assert_eq!(body["error"], r#"invalid label name: "1x""#, "{body}");
    let health = get(
        &format!("{}/api/v1/query", storage.url),
        &[("query", "1+1".into()), ("time", "4".into())],
    )
    .await;
    assert_eq!(
        health["data"],
        serde_json::json!({"resultType": "scalar", "result": [4, "2"]}),
        "Grafana's save & test"
    );
    // SQL: read-only, and errors name the problem.
    let sql = |q: &'static str| {
        let http = http.clone();
        let url = format!("{}/api/v1/sql", storage.url);
        async move { http.post(url).body(q).send().await.unwrap() }
    };
    let r = sql("SELECT count(*) AS n FROM samples").await;
    assert_eq!(r.status(), 200);
    let rows: Value = r.json().await.unwrap();
    assert_eq!(rows, serde_json::json!([{"n": 0}]));
    for bad in [
        "DROP TABLE samples",
        "CREATE TABLE x (a INT)",
        "SELEC 1",
        "SELECT * FROM nowhere",
    ] {
        let r = sql(bad).await;
        assert_eq!(r.status(), 400, "{bad}");
    }
    storage.stop().await;
    d.stop().await;
}

/// Crash safety: `kill -9` of a real `hydrant storage` during ingest loses nothing it had
/// counted as ingested (the WAL), and the files it left are readable after a restart.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn kill_9_during_ingest_loses_no_acknowledged_sample() {
    use std::process::{Command, Stdio};

    let d = TestDoppler::start(doppler::Config::default()).await;
    let dir = Scratch::new("storage-crash");
    let start = |addr: std::net::SocketAddr| {
        Proc::new(
            Command::new(crate::hydrant_bin())
                .args([
                    "storage",
                    "--insecure-open",
                    "--from",
                    &d.grpc.to_string(),
                    "--http",
                    &addr.to_string(),
                ])
                .arg("--data-dir")
                .arg(dir.path())
                .stdout(Stdio::null())
                .stderr(Stdio::null())
                .spawn()
                .expect("start hydrant storage"),
        )
    };
    let addr = crate::servers::free_port();
    let mut child = start(addr);
    wait_healthy(addr).await;
    eventually("storage subscribed", || async {
        d.metric(names::DOPPLER_SUBSCRIPTIONS, &[("shard_id", "storage")])
            .await
            >= 1.0
    })
    .await;

    // Emit steadily from a background task: 2 hours of history for 50 series, so the
    // crash also hits sealing of closed hours.
    let client = IngressClient::start(IngressConfig::new(vec![d.grpc.to_string()])).unwrap();
    let sender = client.sender();
    let now = chrono::Utc::now().timestamp();
    let emitting = tokio::spawn(async move {
        for k in 0..720i64 {
            let batch: Vec<_> = (0..50)
                .map(|i| {
                    let mut g = envelope::gauge(format!("src-{i}"), [("load", (k + i) as f64, "")]);
                    g.timestamp = (now - 7200 + k * 10) * 1_000_000_000;
                    hydrant_proto::raw::RawEnvelope::from_envelope(&g)
                })
                .collect();
            sender.send_all(batch);
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
    });
    eventually_within("ingest under way", Duration::from_secs(30), || async {
        crate::metric(addr, "hydrant_storage_ingested_samples_total", &[]).await >= 5_000.0
    })
    .await;
    let acknowledged = crate::metric(addr, "hydrant_storage_ingested_samples_total", &[]).await;
    child.kill();
    emitting.abort();
    drop(client);

    let addr = crate::servers::free_port();
    let mut child = start(addr);
    wait_healthy(addr).await;
    let http = hydrant_runtime::https::plain_client();
    let rows: Value = http
        .post(format!("http://{addr}/api/v1/sql"))
        .body("SELECT count(*) AS n, count(DISTINCT series_id) AS s FROM samples")
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let kept = rows[0]["n"].as_f64().unwrap_or_default();
    assert!(
        kept >= acknowledged,
        "{kept} samples after the crash, {acknowledged} acknowledged before it: {rows}"
    );
    // Everything is readable through PromQL too.
    let sum = get(
        &format!("http://{addr}/api/v1/query"),
        &[
            ("query", "count(count_over_time(load[3h]))".into()),
            ("time", now.to_string()),
        ],
    )
    .await;
    assert_eq!(sum["status"], "success", "{sum}");
    assert_eq!(sum["data"]["result"][0]["value"][1], "50", "{sum}");
    child.kill();
    d.stop().await;
}

/// Text import (VictoriaMetrics' format): samples land with their timestamps and are
/// queryable; a body with a bad line is refused whole, naming the line.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn text_import_is_all_or_nothing_and_names_the_bad_line() {
    let d = TestDoppler::start(doppler::Config::default()).await;
    let dir = Scratch::new("storage-import");
    let storage = TestStorage::start(&d, dir.to_path_buf()).await;
    let http = hydrant_runtime::https::plain_client();
    let url = format!("{}/api/v1/import/prometheus", storage.url);
    let t0 = (chrono::Utc::now().timestamp() - 600) * 1000;
    let good: String = (0..30)
        .map(|i| format!("imported{{job=\"a\"}} {i} {}\n", t0 + i * 10_000))
        .collect();
    let r = http.post(&url).body(good).send().await.unwrap();
    assert_eq!(r.status(), 204);
    let bad = format!("imported{{job=\"b\"}} 1 {t0}\nimported{{job=b}} 2 {t0}\n");
    let r = http.post(&url).body(bad).send().await.unwrap();
    assert_eq!(r.status(), 400);
    let body: Value = r.json().await.unwrap();
    assert_eq!(body["errorType"], "bad_data");
    assert!(
        body["error"]
            .as_str()
            .unwrap()
            .starts_with("line 2: label \"job\""),
        "{body}"
    );
    let r = http.post(&url).body(vec![0xff, 0xfe]).send().await.unwrap();
    assert_eq!(r.status(), 400);
    let body: Value = r.json().await.unwrap();
    assert!(
        body["error"]
            .as_str()
            .unwrap()
            .starts_with("line 1: not UTF-8 (byte 0"),
        "{body}"
    );
    // A body announced larger than the limit is refused before it is read.
    {
        use tokio::io::{AsyncReadExt, AsyncWriteExt};
        let mut c = tokio::net::TcpStream::connect(storage.http).await.unwrap();
        let head = format!(
            "POST /api/v1/import/prometheus HTTP/1.1\r\nHost: {}\r\nContent-Length: {}\r\n\r\nup 1\n",
            storage.http,
            300 * 1024 * 1024
        );
        c.write_all(head.as_bytes()).await.unwrap();
        let mut answer = vec![0u8; 512];
        let n = tokio::time::timeout(Duration::from_secs(10), c.read(&mut answer))
            .await
            .unwrap()
            .unwrap();
        let answer = String::from_utf8_lossy(&answer[..n]).into_owned();
        assert!(answer.starts_with("HTTP/1.1 413"), "{answer}");
    }

    let v = get(
        &format!("{}/api/v1/query_range", storage.url),
        &[
            ("query", "imported".to_owned()),
            ("start", (t0 / 1000).to_string()),
            ("end", (t0 / 1000 + 290).to_string()),
            ("step", "10".to_owned()),
        ],
    )
    .await;
    let result = v["data"]["result"].as_array().unwrap();
    assert_eq!(result.len(), 1, "job=b stored nothing: {v}");
    assert_eq!(result[0]["metric"]["job"], "a");
    let values = result[0]["values"].as_array().unwrap();
    assert_eq!(values.len(), 30);
    assert_eq!(values[29][1], "29");
    storage.stop().await;
}

/// `/labels`, `/label/{name}/values` and `/series` answer for the hours a `start`/`end`
/// range touches, sealed Parquet parts and the buffer alike.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn label_apis_honour_the_time_range() {
    let d = TestDoppler::start(doppler::Config::default()).await;
    let dir = Scratch::new("storage-range");
    let storage = TestStorage::start(&d, dir.to_path_buf()).await;
    let http = hydrant_runtime::https::plain_client();
    let now = chrono::Utc::now().timestamp();
    let old = (now - 5 * 3600) * 1000;
    let body = format!(
        "old_metric{{stale=\"yes\"}} 1 {old}\nfresh_metric{{fresh=\"yes\"}} 2 {}\n",
        now * 1000
    );
    let r = http
        .post(format!("{}/api/v1/import/prometheus", storage.url))
        .body(body)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 204);
    // The old hour is sealed into Parquet by the next maintenance pass.
    eventually_within(
        "the old hour is sealed",
        Duration::from_secs(10),
        || async { crate::metric(storage.http, "hydrant_storage_parquet_files", &[]).await >= 1.0 },
    )
    .await;

    let recent = [("start", (now - 600).to_string()), ("end", now.to_string())];
    let all_time = [
        ("start", (now - 86_400).to_string()),
        ("end", now.to_string()),
    ];
    let names = |v: Value| -> Vec<String> {
        v["data"]
            .as_array()
            .unwrap()
            .iter()
            .map(|x| x.as_str().unwrap().to_owned())
            .collect()
    };
    let url = |path: &str| format!("{}{path}", storage.url);
    let v = get(&url("/api/v1/label/__name__/values"), &recent).await;
    assert_eq!(names(v), ["fresh_metric"]);
    let v = get(&url("/api/v1/label/__name__/values"), &all_time).await;
    assert_eq!(names(v), ["fresh_metric", "old_metric"]);
    let v = get(&url("/api/v1/label/__name__/values"), &[]).await;
    assert_eq!(
        names(v),
        ["fresh_metric", "old_metric"],
        "no range: all time"
    );
    let v = get(&url("/api/v1/labels"), &recent).await;
    assert!(names(v.clone()).contains(&"fresh".to_owned()), "{v}");
    assert!(!names(v.clone()).contains(&"stale".to_owned()), "{v}");
    let v = get(&url("/api/v1/labels"), &all_time).await;
    assert!(names(v.clone()).contains(&"stale".to_owned()), "{v}");

    let mut q = recent.to_vec();
    q.push(("match[]", "old_metric".to_owned()));
    let v = get(&url("/api/v1/series"), &q).await;
    assert_eq!(v["data"], serde_json::json!([]), "{v}");
    let mut q = all_time.to_vec();
    q.push(("match[]", "old_metric".to_owned()));
    let v = get(&url("/api/v1/series"), &q).await;
    assert_eq!(v["data"][0]["stale"], "yes", "{v}");

    let v = get(
        &url("/api/v1/labels"),
        &[("start", now.to_string()), ("end", (now - 60).to_string())],
    )
    .await;
    assert_eq!(v["errorType"], "bad_data", "{v}");
    storage.stop().await;
}
