//! The cell's scheduler API as a client sees it: Cloud Controller's errors for every bad
//! request, and who may call it (tokens, scopes, JSON only, no browser).

use hydrant::doppler;
use hydrant_runtime::access::{Access, Tokens};
use serde_json::{Value, json};

use crate::{TestCell, TestDoppler};

#[tokio::test]
async fn scheduler_api_errors_follow_cloud_controller() {
    let d = TestDoppler::start(doppler::Config::default()).await;
    let mut config = TestCell::config(d.grpc);
    config.access = Access::tokens(Tokens::admin("s3cret"));
    let cell = TestCell::start(config).await;
    let http = hydrant_runtime::https::plain_client();
    let call = |method: reqwest::Method, path: &str, body: Option<&str>, token: Option<&str>| {
        let mut req = http.request(method, format!("{}{path}", cell.url));
        if let Some(t) = token {
            req = req.bearer_auth(t);
        }
        if let Some(b) = body {
            req = req
                .header("content-type", "application/json")
                .body(b.to_owned());
        }
        async move {
            let resp = req.send().await.unwrap();
            let status = resp.status().as_u16();
            (status, resp.json::<Value>().await.unwrap_or(Value::Null))
        }
    };
    let ok = Some("s3cret");
    use reqwest::Method;

    assert_eq!(call(Method::GET, "/v3/apps", None, None).await.0, 401);
    let (status, body) = call(Method::GET, "/v3/apps", None, Some("wrong")).await;
    assert_eq!(
        (status, body["errors"][0]["title"].as_str()),
        (401, Some("CF-NotAuthenticated"))
    );
    assert_eq!(call(Method::GET, "/v3/apps", None, ok).await.0, 200);
    assert_eq!(
        call(Method::GET, "/healthz", None, None).await.0,
        200,
        "health needs no token"
    );

    let (status, body) = call(Method::GET, "/v3/apps/nope", None, ok).await;
    assert_eq!(status, 404);
    assert_eq!(
        body["errors"][0],
        json!({"code": 10010, "title": "CF-ResourceNotFound", "detail": "App not found"})
    );
    let (status, body) = call(Method::POST, "/v3/apps", Some("{\"name\": \"x\", "), ok).await;
    assert_eq!(
        (status, body["errors"][0]["title"].as_str()),
        (400, Some("CF-MessageParseError"))
    );
    let (status, body) = call(Method::POST, "/v3/apps", Some(r#"{"name": "x"}"#), ok).await;
    assert_eq!(status, 422);
    assert_eq!(body["errors"][0]["detail"], "Command can't be blank");
    let (status, body) = call(
        Method::POST,
        "/v3/apps",
        Some(r#"{"name": "", "command": "x", "instances": -1}"#),
        ok,
    )
    .await;
    assert_eq!(status, 422);
    assert_eq!(
        body["errors"][0]["detail"],
        "Name can't be blank, Instances must be greater than or equal to 0"
    );
    let (status, body) = call(
        Method::POST,
        "/v3/apps",
        Some(r#"{"name": "x", "command": "x", "colour": "red"}"#),
        ok,
    )
    .await;
    assert_eq!(status, 422);
    assert!(
        body["errors"][0]["detail"]
            .as_str()
            .unwrap()
            .contains("unknown field `colour`"),
        "{body}"
    );
    // Quotas that wrapped when turned into bytes, and environments a process cannot take.
    for (body, detail) in [
        (
            r#"{"name": "q", "command": "x", "memory_in_mb": 9223372036854775807}"#,
            "Memory in mb must be less than or equal to 1048576",
        ),
        (
            r#"{"name": "q", "command": "x", "disk_in_mb": 18014398509481984}"#,
            "Disk in mb must be less than or equal to 1048576",
        ),
        (
            r#"{"name": "q", "command": "x", "env": {"A\u0000B": "1"}}"#,
            "must be non-empty and contain neither '=' nor NUL",
        ),
        (
            r#"{"name": "q", "command": "x", "env": {"A": "x\u0000y"}}"#,
            "has a NUL in its value",
        ),
        (
            r#"{"name": "q", "command": "x", "env": {"VCAP_SERVICES": "{}", "PORT": "1"}}"#,
            "PORT cannot be set, Environment variable VCAP_SERVICES cannot start with VCAP_",
        ),
    ] {
        let (status, got) = call(Method::POST, "/v3/apps", Some(body), ok).await;
        assert_eq!(status, 422, "{body}: {got}");
        let got = got["errors"][0]["detail"].as_str().unwrap_or_default();
        assert!(got.contains(detail), "{body}: {got}");
    }
    let (status, body) = call(
        Method::POST,
        "/v3/apps",
        Some(r#"{"name": "x", "command": "sleep 60", "instances": 0}"#),
        ok,
    )
    .await;
    assert_eq!(status, 201, "{body}");
    let guid = body["guid"].as_str().unwrap().to_owned();
    let (status, _) = call(
        Method::POST,
        "/v3/apps",
        Some(r#"{"name": "x", "command": "y"}"#),
        ok,
    )
    .await;
    assert_eq!(status, 422, "names are unique");
    let scale = format!("/v3/apps/{guid}/processes/web/actions/scale");
    let (status, body) = call(Method::POST, &scale, Some(r#"{"instances": -2}"#), ok).await;
    assert_eq!(
        (status, body["errors"][0]["code"].as_u64()),
        (422, Some(10008))
    );
    let (status, _) = call(Method::POST, &scale, Some(r#"{"instances": 100000}"#), ok).await;
    assert_eq!(status, 422);
    let (status, body) = call(
        Method::POST,
        &scale,
        Some(r#"{"memory_in_mb": 9223372036854775807}"#),
        ok,
    )
    .await;
    assert_eq!(status, 422, "{body}");
    let (status, body) = call(
        Method::POST,
        &format!("/v3/processes/{guid}/actions/scale"),
        Some(r#"{"instances": 0}"#),
        ok,
    )
    .await;
    assert_eq!((status, body["type"].as_str()), (202, Some("web")));
    assert_eq!(
        call(
            Method::POST,
            "/v3/apps/nope/processes/web/actions/scale",
            Some(r#"{"instances": 1}"#),
            ok
        )
        .await
        .0,
        404
    );
    assert_eq!(
        call(Method::DELETE, &format!("/v3/apps/{guid}"), None, ok)
            .await
            .0,
        202
    );
    assert_eq!(
        call(Method::GET, &format!("/v3/apps/{guid}"), None, ok)
            .await
            .0,
        404
    );
    cell.stop().await;
    d.stop().await;
}

/// Reads and writes are separate, a body must be declared JSON, and a page on another
/// origin cannot call the API even with a token in hand.
#[tokio::test]
async fn only_tokens_that_write_push_and_only_json_from_this_origin() {
    let d = TestDoppler::start(doppler::Config::default()).await;
    let mut config = TestCell::config(d.grpc);
    let tokens = "tokens:\n  - token: reader\n    read_all: true\n  - token: writer\n    read_all: true\n    write: true\n";
    config.access = Access::tokens(Tokens::parse(tokens, std::path::Path::new("t.yml")).unwrap());
    let cell = TestCell::start(config).await;
    let http = hydrant_runtime::https::plain_client();
    let push = |token: &str, content_type: &str, origin: Option<&str>| {
        let mut req = http
            .post(format!("{}/v3/apps", cell.url))
            .bearer_auth(token)
            .header("content-type", content_type)
            .body(r#"{"name": "p", "command": "sleep 60", "instances": 0}"#);
        if let Some(o) = origin {
            req = req.header("origin", o);
        }
        async move {
            let resp = req.send().await.unwrap();
            let status = resp.status().as_u16();
            (status, resp.json::<Value>().await.unwrap_or(Value::Null))
        }
    };
    let (status, body) = push("reader", "application/json", None).await;
    assert_eq!(
        (status, body["errors"][0]["title"].as_str()),
        (403, Some("CF-NotAuthorized")),
        "{body}"
    );
    let (status, body) = push("writer", "text/plain", None).await;
    assert_eq!(status, 415, "{body}");
    let (status, body) = push("writer", "application/json", Some("http://evil.example")).await;
    assert_eq!(status, 403, "{body}");
    let (status, body) = push("writer", "application/json; charset=utf-8", None).await;
    assert_eq!(status, 201, "{body}");
    let list = http
        .get(format!("{}/v3/apps", cell.url))
        .bearer_auth("reader")
        .send()
        .await
        .unwrap();
    assert_eq!(list.status(), 200);
    let metrics = http
        .get(format!("{}/metrics", cell.url))
        .send()
        .await
        .unwrap();
    assert_eq!(metrics.status(), 401, "/metrics needs a token too");
}

/// `GET /v3/apps` filters and pages as Cloud Controller does: the cf CLI asks
/// `names=NAME` and takes `resources[0]`, so a filter that returned every app once gave it
/// the wrong app.
#[tokio::test]
async fn list_filters_orders_and_pages_as_cloud_controller() {
    let d = TestDoppler::start(doppler::Config::default()).await;
    let cell = TestCell::start(TestCell::config(d.grpc)).await;
    let http = hydrant_runtime::https::plain_client();
    let mut guids = Vec::new();
    for name in ["bravo", "alpha", "charlie"] {
        let resp = http
            .post(format!("{}/v3/apps", cell.url))
            .header("content-type", "application/json")
            .body(format!(
                r#"{{"name": "{name}", "command": "sleep 60", "instances": 0}}"#
            ))
            .send()
            .await
            .unwrap();
        assert_eq!(resp.status(), 201);
        let body: Value = resp.json().await.unwrap();
        guids.push(body["guid"].as_str().unwrap().to_owned());
        // Distinct creation times (RFC 3339 has whole seconds).
        tokio::time::sleep(std::time::Duration::from_millis(1100)).await;
    }
    let get = |query: String| {
        let req = http.get(format!("{}/v3/apps{query}", cell.url));
        async move {
            let resp = req.send().await.unwrap();
            let status = resp.status().as_u16();
            (status, resp.json::<Value>().await.unwrap())
        }
    };
    let names = |v: &Value| -> Vec<String> {
        v["resources"]
            .as_array()
            .unwrap()
            .iter()
            .map(|r| r["name"].as_str().unwrap().to_owned())
            .collect()
    };
    let (_, v) = get("?names=doesnotexist".into()).await;
    assert_eq!(v["resources"], json!([]), "{v}");
    assert_eq!(v["pagination"]["total_results"], 0);
    let (_, v) = get("?names=alpha,charlie".into()).await;
    assert_eq!(names(&v), ["alpha", "charlie"], "by creation");
    let (_, v) = get(format!("?guids={}", guids[0])).await;
    assert_eq!(names(&v), ["bravo"]);
    let (_, v) = get("?order_by=-name".into()).await;
    assert_eq!(names(&v), ["charlie", "bravo", "alpha"]);
    let (_, v) = get("?per_page=2&order_by=name".into()).await;
    assert_eq!(names(&v), ["alpha", "bravo"]);
    assert_eq!(v["pagination"]["total_pages"], 2);
    assert!(v["pagination"]["previous"].is_null());
    let next = v["pagination"]["next"]["href"].as_str().unwrap().to_owned();
    assert!(
        next.starts_with("http://") && next.contains("page=2"),
        "{next}"
    );
    let v: Value = http.get(&next).send().await.unwrap().json().await.unwrap();
    assert_eq!(
        names(&v),
        ["charlie"],
        "the next link keeps order and page size"
    );
    assert!(v["pagination"]["next"].is_null());
    for (query, detail) in [
        ("?per_page=0", "per_page must be between 1 and 5000"),
        ("?per_page=5001", "per_page must be between 1 and 5000"),
        ("?order_by=colour", "Order by can only be"),
        ("?colour=red", "Unknown query parameter(s): 'colour'"),
    ] {
        let (status, v) = get(query.to_owned()).await;
        assert_eq!(status, 400, "{query}: {v}");
        assert_eq!(v["errors"][0]["title"], "CF-BadQueryParameter", "{v}");
        let got = v["errors"][0]["detail"].as_str().unwrap();
        assert!(got.contains(detail), "{query}: {got}");
    }
}

/// `hydrant scale NAME -m 96M` (the real binary) changes the memory quota through Cloud
/// Controller's scale route, and the cell restarts the instances one at a time: lowest
/// index first, never more than one of them down, each back with the new quota.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn vertical_scale_rolls_through_the_instances() {
    use hydrant::cell::contract::InstanceState;
    use std::collections::BTreeMap;
    use std::time::Duration;

    let agent = crate::listener().await.local_addr().unwrap();
    let cell = TestCell::start(TestCell::config(agent)).await;
    let client = cell.client();
    let app = client
        .push("roller", "sleep 600", 3, 64, 64, &Default::default())
        .await
        .unwrap();
    client
        .wait_started("roller", &app.guid, 3, Duration::from_secs(30))
        .await
        .unwrap();
    let guids = |stats: &[hydrant::cell::contract::InstanceStats]| -> BTreeMap<u32, String> {
        stats
            .iter()
            .filter_map(|s| Some((s.index, s.detail.as_ref()?.instance_guid.clone())))
            .collect()
    };
    let before = guids(&client.stats(&app.guid).await.unwrap());
    assert_eq!(before.len(), 3);

    let out = std::process::Command::new(crate::hydrant_bin())
        .args(["scale", "roller", "-m", "96M", "--scheduler", &cell.url])
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(
        stdout.contains("scaled roller to 96M memory")
            && stdout.contains("3 instance(s) restart one at a time"),
        "{stdout}"
    );

    let new_quota = 96 * 1024 * 1024;
    let mut replaced: Vec<u32> = Vec::new();
    let deadline = tokio::time::Instant::now() + Duration::from_secs(60);
    loop {
        let stats = client.stats(&app.guid).await.unwrap();
        let down = stats
            .iter()
            .filter(|s| s.state != InstanceState::Running)
            .count();
        assert!(down <= 1, "more than one instance down at once: {stats:#?}");
        for (index, guid) in guids(&stats) {
            if guid != before[&index] && !replaced.contains(&index) {
                replaced.push(index);
            }
        }
        let done = stats.len() == 3
            && stats.iter().all(|s| {
                s.state == InstanceState::Running
                    && s.detail.as_ref().is_some_and(|d| d.mem_quota == new_quota)
            })
            && replaced.len() == 3;
        if done {
            break;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "the roll did not finish: {stats:#?}"
        );
        tokio::time::sleep(Duration::from_millis(40)).await;
    }
    assert_eq!(replaced, [0, 1, 2], "lowest index first, one at a time");
    cell.stop().await;
}
