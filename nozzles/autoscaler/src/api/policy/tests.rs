//! The policy routes driven over a real listener on 127.0.0.1:0, against an idle
//! autoscaler (policies loaded from a scratch directory, no Firehose or ticks).

use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use hydrant_runtime::access::{Access, Tokens};
use serde_json::Value;

use super::*;
use crate::fleet::Settings;
use crate::notify::Receivers;
use crate::service::{self, Config, ReplayFrom};

const WEB: &str = "app: web\ninstance_min_count: 1\ninstance_max_count: 3\nscaling_rules:\n  - {metric_type: cpu, operator: '>', threshold: 70, adjustment: '+1'}\n";

/// Line 5 holds a CPU threshold above CF's bound of 100.
const BAD_THRESHOLD: &str = "app: web\ninstance_min_count: 1\ninstance_max_count: 3\nscaling_rules:\n  - {metric_type: cpu, operator: '>', threshold: 500, adjustment: '+1'}\n";

fn scratch(name: &str) -> PathBuf {
    let d = std::env::temp_dir().join(format!("hydrant-api-policy-{name}-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&d);
    std::fs::create_dir_all(&d).unwrap();
    d
}

fn config(policies: Vec<PathBuf>, access: Access, replay_from: Option<ReplayFrom>) -> Config {
    Config {
        dopplers: Vec::new(),
        tls: None,
        discovery: Default::default(),
        policies,
        data_dir: None,
        actuator: Arc::new(crate::actuator::Webhook::new("http://127.0.0.1:9/", None)),
        receivers: Receivers::default(),
        emit_to: Vec::new(),
        tick: Duration::from_secs(10),
        refresh: Duration::from_secs(60),
        reload_poll: Duration::from_secs(60),
        settings: Settings::default(),
        shadow: true,
        member: None,
        self_metrics: None,
        grace: Duration::from_secs(1),
        access,
        replay_from,
    }
}

/// The API of an idle autoscaler over `config`, served on 127.0.0.1:0; its base URL.
async fn serve(config: &Config) -> String {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let router = crate::api::router(service::idle(config));
    tokio::spawn(async move { axum::serve(listener, router).await });
    format!("http://{addr}")
}

/// Sends `method path` with `body` (and `token`); the status and the JSON answer.
async fn call(
    method: reqwest::Method,
    url: &str,
    body: impl Into<reqwest::Body>,
    token: Option<&str>,
) -> (u16, Value) {
    let mut req = hydrant_runtime::https::plain_client()
        .request(method, url)
        .body(body);
    if let Some(t) = token {
        req = req.bearer_auth(t);
    }
    let resp = req.send().await.unwrap();
    let status = resp.status().as_u16();
    let text = resp.text().await.unwrap();
    (
        status,
        serde_json::from_str(&text).unwrap_or(Value::String(text)),
    )
}

async fn get(url: &str) -> (u16, Value) {
    call(reqwest::Method::GET, url, "", None).await
}

async fn put(url: &str, body: &str) -> (u16, Value) {
    call(reqwest::Method::PUT, url, body.to_owned(), None).await
}

async fn post(url: &str, body: impl Into<reqwest::Body>) -> (u16, Value) {
    call(reqwest::Method::POST, url, body, None).await
}

/// `/v1/apps` as (app, instance_max_count).
async fn maxes(base: &str) -> Vec<(String, u64)> {
    let (_, apps) = get(&format!("{base}/v1/apps")).await;
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
        .collect()
}

fn web_dir(name: &str) -> PathBuf {
    let dir = scratch(name);
    std::fs::write(dir.join("web.yml"), WEB).unwrap();
    dir
}

#[tokio::test]
async fn check_reports_a_bad_threshold_at_its_line_and_column() {
    let dir = web_dir("check");
    let base = serve(&config(vec![dir.clone()], Access::open(), None)).await;
    let (status, body) = post(&format!("{base}/v1/policy/check?app=web"), BAD_THRESHOLD).await;
    assert_eq!(status, 200, "{body}");
    let check: PolicyCheck = serde_json::from_value(body).unwrap();
    assert_eq!(check.app.as_deref(), Some("web"));
    assert_eq!((check.errors, check.warnings), (1, 0), "{check:?}");
    let p = &check.problems[0];
    let line5 = BAD_THRESHOLD.lines().nth(4).unwrap();
    let column = line5.find("500").unwrap() + 1;
    assert_eq!(
        (p.line, p.column, p.path.as_str(), p.severity),
        (
            5,
            column,
            "scaling_rules[0].threshold",
            ProblemSeverity::Error
        ),
        "{p:?}"
    );

    // A valid text, then one for another app than asked.
    let (_, body) = post(&format!("{base}/v1/policy/check"), WEB).await;
    let check: PolicyCheck = serde_json::from_value(body).unwrap();
    assert_eq!((check.app.as_deref(), check.errors), (Some("web"), 0));
    let (_, body) = post(&format!("{base}/v1/policy/check?app=api"), WEB).await;
    let check: PolicyCheck = serde_json::from_value(body).unwrap();
    assert_eq!(check.errors, 1, "{check:?}");
    assert_eq!(
        (check.problems[0].line, check.problems[0].path.as_str()),
        (1, "app")
    );
    // Without app:, the text is the asked app's.
    let unnamed = WEB.replace("app: web\n", "");
    let (_, body) = post(&format!("{base}/v1/policy/check?app=api"), unnamed).await;
    let check: PolicyCheck = serde_json::from_value(body).unwrap();
    assert_eq!((check.app.as_deref(), check.errors), (Some("api"), 0));
    let _ = std::fs::remove_dir_all(&dir);
}

#[tokio::test]
async fn get_returns_the_policy_file_and_404_for_an_unknown_app() {
    let dir = web_dir("get");
    let base = serve(&config(vec![dir.clone()], Access::open(), None)).await;
    let (status, body) = get(&format!("{base}/v1/apps/web/policy")).await;
    assert_eq!(status, 200, "{body}");
    let text: PolicyText = serde_json::from_value(body).unwrap();
    assert_eq!(text.app, "web");
    assert_eq!(text.text, WEB);
    assert_eq!(Path::new(&text.file), dir.join("web.yml"));
    let (status, body) = get(&format!("{base}/v1/apps/nope/policy")).await;
    assert_eq!((status, body["code"].as_str()), (404, Some("Not Found")));
    let _ = std::fs::remove_dir_all(&dir);
}

#[tokio::test]
async fn put_of_a_bad_policy_is_refused_and_leaves_the_file() {
    let dir = web_dir("put-bad");
    let base = serve(&config(vec![dir.clone()], Access::open(), None)).await;
    let (status, body) = put(&format!("{base}/v1/apps/web/policy"), BAD_THRESHOLD).await;
    assert_eq!(status, 422, "{body}");
    let refused: PolicyRefused = serde_json::from_value(body).unwrap();
    assert_eq!(refused.code, "Unprocessable Entity");
    assert!(
        refused.message.starts_with("1 error(s)"),
        "{}",
        refused.message
    );
    assert_eq!(refused.problems[0].line, 5);
    assert_eq!(std::fs::read_to_string(dir.join("web.yml")).unwrap(), WEB);
    assert_eq!(maxes(&base).await, [("web".to_owned(), 3)]);
    // Another app's text under web's name is refused too.
    let (status, _) = put(
        &format!("{base}/v1/apps/web/policy"),
        &WEB.replace("web", "api"),
    )
    .await;
    assert_eq!(status, 422);
    assert_eq!(std::fs::read_to_string(dir.join("web.yml")).unwrap(), WEB);
    let _ = std::fs::remove_dir_all(&dir);
}

#[tokio::test]
async fn put_of_a_good_policy_rewrites_the_file_and_is_in_force_at_once() {
    let dir = web_dir("put-good");
    let base = serve(&config(vec![dir.clone()], Access::open(), None)).await;
    let edited = WEB.replace("instance_max_count: 3", "instance_max_count: 12");
    let (status, body) = put(&format!("{base}/v1/apps/web/policy"), &edited).await;
    assert_eq!(status, 200, "{body}");
    let saved: PolicySaved = serde_json::from_value(body).unwrap();
    assert_eq!(
        (saved.app.as_str(), Path::new(&saved.file)),
        ("web", dir.join("web.yml").as_path())
    );
    assert_eq!(
        std::fs::read_to_string(dir.join("web.yml")).unwrap(),
        edited
    );
    assert_eq!(maxes(&base).await, [("web".to_owned(), 12)]);
    let (_, body) = get(&format!("{base}/v1/apps/web/policy")).await;
    assert_eq!(body["text"].as_str(), Some(edited.as_str()));

    // A new app goes to the directory as <app>.yml; no temporary file is left behind.
    let api = WEB.replace("web", "api");
    let (status, body) = put(&format!("{base}/v1/apps/api/policy"), &api).await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(std::fs::read_to_string(dir.join("api.yml")).unwrap(), api);
    assert_eq!(
        maxes(&base).await,
        [("api".to_owned(), 3), ("web".to_owned(), 12)]
    );
    let mut names: Vec<String> = std::fs::read_dir(&dir)
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .collect();
    names.sort();
    assert_eq!(names, ["api.yml", "web.yml"]);
    let _ = std::fs::remove_dir_all(&dir);
}

#[tokio::test]
async fn a_new_app_needs_a_policy_directory() {
    let dir = web_dir("single-files");
    let base = serve(&config(vec![dir.join("web.yml")], Access::open(), None)).await;
    let (status, body) = put(
        &format!("{base}/v1/apps/api/policy"),
        &WEB.replace("web", "api"),
    )
    .await;
    assert_eq!(status, 409, "{body}");
    assert!(
        body["message"].as_str().unwrap().contains("no directory"),
        "{body}"
    );
    assert!(!dir.join("api.yml").exists());
    let _ = std::fs::remove_dir_all(&dir);
}

#[tokio::test]
async fn a_new_app_must_name_a_file_inside_the_directory() {
    let dir = web_dir("names");
    let base = serve(&config(vec![dir.clone()], Access::open(), None)).await;
    let unnamed = WEB.replace("app: web\n", "");
    let (status, body) = put(&format!("{base}/v1/apps/..%2Fevil/policy"), &unnamed).await;
    assert_eq!(status, 400, "{body}");
    assert!(!dir.parent().unwrap().join("evil.yml").exists());
    // Without app:, the file name makes the text the new app's.
    let (status, body) = put(&format!("{base}/v1/apps/api/policy"), &unnamed).await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(
        maxes(&base).await,
        [("api".to_owned(), 3), ("web".to_owned(), 3)]
    );
    let _ = std::fs::remove_dir_all(&dir);
}

#[tokio::test]
async fn bodies_are_bounded_and_utf8() {
    let dir = web_dir("bodies");
    let base = serve(&config(vec![dir.clone()], Access::open(), None)).await;
    let big = format!("{WEB}#{}\n", "x".repeat(MAX_POLICY_BYTES));
    let (status, body) = post(&format!("{base}/v1/policy/check"), big).await;
    assert_eq!(
        (status, body["code"].as_str()),
        (413, Some("Payload Too Large"))
    );
    let mut bytes = WEB.as_bytes().to_vec();
    bytes.insert(4, 0xff);
    let (status, body) = post(&format!("{base}/v1/policy/check"), bytes).await;
    assert_eq!(status, 400);
    assert!(
        body["message"].as_str().unwrap().contains("offset 4"),
        "{body}"
    );
    let _ = std::fs::remove_dir_all(&dir);
}

#[tokio::test]
async fn writing_needs_a_write_token() {
    let dir = web_dir("access");
    let tokens = Tokens::parse(
        "tokens:\n  - {token: reader, read_all: true}\n  - {token: admin, admin: true}\n",
        Path::new("tokens.yml"),
    )
    .unwrap();
    let base = serve(&config(vec![dir.clone()], Access::tokens(tokens), None)).await;
    let url = format!("{base}/v1/apps/web/policy");
    let edited = WEB.replace("instance_max_count: 3", "instance_max_count: 5");
    let (status, _) = call(reqwest::Method::PUT, &url, edited.clone(), Some("reader")).await;
    assert_eq!(status, 403);
    assert_eq!(std::fs::read_to_string(dir.join("web.yml")).unwrap(), WEB);
    let (status, _) = call(reqwest::Method::GET, &url, "", Some("reader")).await;
    assert_eq!(status, 200);
    let check = format!("{base}/v1/policy/check");
    let (status, _) = call(
        reqwest::Method::POST,
        &check,
        edited.clone(),
        Some("reader"),
    )
    .await;
    assert_eq!(status, 200, "checking changes nothing");
    let (status, _) = call(reqwest::Method::PUT, &url, edited, Some("admin")).await;
    assert_eq!(status, 200);
    let _ = std::fs::remove_dir_all(&dir);
}

#[tokio::test]
async fn replay_without_replay_from_is_unavailable() {
    let dir = web_dir("replay-503");
    let base = serve(&config(vec![dir.clone()], Access::open(), None)).await;
    let (status, body) = post(&format!("{base}/v1/apps/web/policy/replay"), WEB).await;
    assert_eq!(status, 503, "{body}");
    assert!(
        body["message"].as_str().unwrap().contains("--replay-from"),
        "{body}"
    );
    let _ = std::fs::remove_dir_all(&dir);
}

#[tokio::test]
async fn replay_validates_forwards_the_callers_token_and_names_storage_errors() {
    // A storage that refuses every query, noting the Authorization it was given.
    let seen: Arc<Mutex<Vec<String>>> = Arc::default();
    let noted = Arc::clone(&seen);
    let storage = axum::Router::new().fallback(move |headers: HeaderMap| {
        let noted = Arc::clone(&noted);
        async move {
            let auth = headers
                .get(header::AUTHORIZATION)
                .map(|v| v.to_str().unwrap().to_owned());
            noted.lock().unwrap().extend(auth);
            (
                StatusCode::INTERNAL_SERVER_ERROR,
                axum::Json(serde_json::json!({"status": "error", "error": "disk on fire"})),
            )
        }
    });
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let storage_url = format!("http://{}", listener.local_addr().unwrap());
    tokio::spawn(async move { axum::serve(listener, storage).await });
    let dir = web_dir("replay-502");
    let from = ReplayFrom {
        url: storage_url.clone(),
        http: hydrant_runtime::https::plain_client(),
    };
    let tokens = Tokens::parse(
        "tokens:\n  - {token: reader, read_all: true}\n",
        Path::new("t.yml"),
    )
    .unwrap();
    let base = serve(&config(
        vec![dir.clone()],
        Access::tokens(tokens),
        Some(from),
    ))
    .await;
    let url = format!("{base}/v1/apps/web/policy/replay?from=-1h&step=30s");
    let (status, body) = call(reqwest::Method::POST, &url, BAD_THRESHOLD, Some("reader")).await;
    assert_eq!(status, 422, "{body}");
    assert!(
        seen.lock().unwrap().is_empty(),
        "a refused policy reads nothing"
    );
    let (status, body) = call(reqwest::Method::POST, &url, WEB, Some("reader")).await;
    assert_eq!(status, 502, "{body}");
    let message = body["message"].as_str().unwrap();
    assert!(
        message.contains(&storage_url) && message.contains("disk on fire"),
        "{message}"
    );
    assert_eq!(*seen.lock().unwrap(), ["Bearer reader"]);
    let (status, _) = call(
        reqwest::Method::POST,
        &format!("{url}&to=-2h"),
        WEB,
        Some("reader"),
    )
    .await;
    assert_eq!(status, 400, "from after to");
    let _ = std::fs::remove_dir_all(&dir);
}

#[test]
fn replay_windows_default_and_are_bounded() {
    let now = 1_000_000;
    assert_eq!(
        parse_window(None, now, 10),
        Ok(Window {
            from: now - 3 * 3600,
            to: now,
            step: 10
        })
    );
    assert_eq!(
        parse_window(Some("from=-1h&to=-30m&step=1m"), now, 10),
        Ok(Window {
            from: now - 3600,
            to: now - 1800,
            step: 60
        })
    );
    for bad in [
        "from=-8d",
        "from=-2d&step=1s",
        "step=0s",
        "step=abc",
        "from=tomorrow",
        "from=-1h&to=-2h",
    ] {
        let e = parse_window(Some(bad), now, 10).unwrap_err();
        assert_eq!(e.status, StatusCode::BAD_REQUEST, "{bad}");
    }
    // 100,000 steps is the most.
    assert!(parse_window(Some("from=-99999s&step=1s"), now, 10).is_ok());
    assert!(parse_window(Some("from=-100000s&step=1s"), now, 10).is_err());
}
