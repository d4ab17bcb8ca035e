//! The console's server against a small HTTP API that answers what it received: the page,
//! signing in, and forwarding (headers kept and dropped, bodies, event streams, errors).

use std::net::SocketAddr;
use std::time::Duration;

use axum::http::HeaderMap;
use axum::routing::{any, get};
use futures::StreamExt as _;
use hydrant_runtime::access::Tokens;

use super::*;

const TOKEN: &str = "s3cret-token";

/// An API that echoes each request (method, path, query, headers, body) as JSON, and
/// `/v2/read` as an event stream of three events 50 ms apart.
async fn echo_api() -> SocketAddr {
    async fn echo(req: Request) -> axum::Json<Value> {
        let (parts, body) = req.into_parts();
        let body = axum::body::to_bytes(body, usize::MAX).await.unwrap();
        let headers: serde_json::Map<String, Value> = parts
            .headers
            .iter()
            .map(|(k, v)| (k.to_string(), Value::from(v.to_str().unwrap_or("?"))))
            .collect();
        axum::Json(json!({
            "method": parts.method.as_str(),
            "path": parts.uri.path(),
            "query": parts.uri.query(),
            "headers": headers,
            "body": String::from_utf8_lossy(&body),
        }))
    }
    async fn events() -> Response {
        let stream = futures::stream::iter(0..3).then(|i| async move {
            tokio::time::sleep(Duration::from_millis(50)).await;
            Ok::<_, std::io::Error>(format!("data: {{\"n\":{i}}}\n\n"))
        });
        (
            [(header::CONTENT_TYPE, "text/event-stream")],
            axum::body::Body::from_stream(stream),
        )
            .into_response()
    }
    let app = Router::new()
        .route("/v2/read", get(events))
        .fallback(any(echo));
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move { axum::serve(listener, app).await });
    addr
}

/// A console with `TOKEN`, whose cell and log cache are `api` and whose storage is a
/// closed port; nothing serves the autoscaler.
async fn console(api: SocketAddr) -> (String, CancellationToken) {
    let closed = {
        let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        l.local_addr().unwrap()
    };
    let config = Config {
        upstreams: vec![
            (Upstream::Cell, format!("http://{api}")),
            (Upstream::Logcache, format!("http://{api}")),
            (Upstream::Storage, format!("http://{closed}")),
        ],
        components: vec![
            ("cell".into(), format!("http://{api}")),
            ("storage".into(), format!("http://{closed}")),
        ],
        http: hydrant_runtime::https::plain_client(),
        access: Access::tokens(Tokens::admin(TOKEN)),
        tls: None,
        self_metrics: None,
        grace: Duration::from_secs(1),
    };
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!("http://{}", listener.local_addr().unwrap());
    let stop = CancellationToken::new();
    tokio::spawn(run(config, listener, stop.clone()));
    (url, stop)
}

fn client() -> reqwest::Client {
    hydrant_runtime::https::plain_client()
}

fn cookie_of(headers: &HeaderMap) -> String {
    let set = headers
        .get(header::SET_COOKIE)
        .expect("a cookie")
        .to_str()
        .unwrap();
    set.split(';').next().unwrap().to_owned()
}

#[tokio::test]
async fn the_page_and_its_assets_are_served_with_a_strict_policy() {
    let (url, stop) = console(echo_api().await).await;
    let http = client();
    for path in ["/", "/apps/demo", "/policies"] {
        let r = http.get(format!("{url}{path}")).send().await.unwrap();
        assert_eq!(r.status(), 200, "{path}");
        let csp = r.headers()[header::CONTENT_SECURITY_POLICY]
            .to_str()
            .unwrap();
        assert!(csp.contains("script-src 'self'"), "{csp}");
        assert_eq!(r.headers()[header::X_CONTENT_TYPE_OPTIONS], "nosniff");
        let text = r.text().await.unwrap();
        assert!(text.contains("/assets/app.js"), "{path}: {text}");
    }
    for (path, kind) in assets::ASSETS.iter().map(|(p, k, _)| (*p, *k)) {
        let r = http
            .get(format!("{url}/assets/{path}"))
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), 200, "{path}");
        assert_eq!(r.headers()[header::CONTENT_TYPE], kind, "{path}");
    }
    let r = http
        .get(format!("{url}/assets/nothing.js"))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 404);
    stop.cancel();
}

/// Every file under `assets/` is embedded, so none is forgotten in the table.
#[test]
fn every_asset_file_is_embedded() {
    let dir = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("src/console/assets");
    let mut files = Vec::new();
    let mut stack = vec![dir.clone()];
    while let Some(d) = stack.pop() {
        for e in std::fs::read_dir(&d).unwrap() {
            let p = e.unwrap().path();
            if p.is_dir() {
                stack.push(p);
            } else {
                let rel = p.strip_prefix(&dir).unwrap().display().to_string();
                files.push(rel);
            }
        }
    }
    for f in files {
        if f == "index.html" {
            continue;
        }
        assert!(
            assets::ASSETS.iter().any(|(p, _, _)| *p == f),
            "{f} is not in assets::ASSETS"
        );
    }
}

#[tokio::test]
async fn signing_in_keeps_the_token_in_a_strict_cookie_that_reaches_the_apis() {
    let api = echo_api().await;
    let (url, stop) = console(api).await;
    let http = client();
    let r = http.get(format!("{url}/api/session")).send().await.unwrap();
    let v: Value = r.json().await.unwrap();
    assert_eq!(v["authenticated"], false, "{v}");
    let r = http
        .get(format!("{url}/api/cell/v3/apps"))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 401, "no call goes on without a token");
    let r = http
        .post(format!("{url}/api/session"))
        .json(&json!({"token": "wrong"}))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 401);
    assert!(r.headers().get(header::SET_COOKIE).is_none());
    let r = http
        .post(format!("{url}/api/session"))
        .json(&json!({"token": TOKEN}))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 204);
    let set = r.headers()[header::SET_COOKIE].to_str().unwrap().to_owned();
    assert!(
        set.contains("HttpOnly") && set.contains("SameSite=Strict"),
        "{set}"
    );
    let cookie = cookie_of(r.headers());
    let r = http
        .get(format!("{url}/api/session"))
        .header(header::COOKIE, &cookie)
        .send()
        .await
        .unwrap();
    let v: Value = r.json().await.unwrap();
    assert_eq!(v["authenticated"], true, "{v}");
    assert_eq!(v["write"], true, "{v}");
    // A call goes on with the token as its bearer, without the cookie or the origin.
    let r = http
        .post(format!("{url}/api/cell/v3/apps?names=a%20b&x=1"))
        .header(header::COOKIE, &cookie)
        .header(header::ORIGIN, url.clone())
        .header(header::CONTENT_TYPE, "application/json")
        .header("x-other", "dropped")
        .body(r#"{"name":"demo"}"#)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    let seen: Value = r.json().await.unwrap();
    assert_eq!(seen["method"], "POST");
    assert_eq!(seen["path"], "/v3/apps");
    assert_eq!(seen["query"], "names=a%20b&x=1");
    assert_eq!(seen["body"], r#"{"name":"demo"}"#);
    assert_eq!(seen["headers"]["authorization"], format!("Bearer {TOKEN}"));
    assert_eq!(seen["headers"]["content-type"], "application/json");
    for dropped in ["cookie", "origin", "x-other"] {
        assert!(seen["headers"].get(dropped).is_none(), "{dropped}: {seen}");
    }
    // Another site's page cannot use the cookie.
    let r = http
        .post(format!("{url}/api/cell/v3/apps"))
        .header(header::COOKIE, &cookie)
        .header(header::ORIGIN, "http://evil.example")
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 403);
    let r = http
        .delete(format!("{url}/api/session"))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 204);
    assert!(
        r.headers()[header::SET_COOKIE]
            .to_str()
            .unwrap()
            .contains("Max-Age=0")
    );
    stop.cancel();
}

#[tokio::test]
async fn forwarding_streams_events_and_names_what_failed() {
    let api = echo_api().await;
    let (url, stop) = console(api).await;
    let http = client();
    let bearer = format!("Bearer {TOKEN}");
    // The event stream arrives event by event, not at its end.
    let r = http
        .get(format!("{url}/api/logcache/v2/read?log&source_id=x"))
        .header(header::AUTHORIZATION, &bearer)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    assert_eq!(r.headers()[header::CONTENT_TYPE], "text/event-stream");
    let mut body = r.bytes_stream();
    let first = tokio::time::timeout(Duration::from_secs(5), body.next())
        .await
        .expect("the first event in time")
        .unwrap()
        .unwrap();
    assert!(
        String::from_utf8_lossy(&first).starts_with("data: {\"n\":0}"),
        "{first:?}"
    );
    let mut rest = Vec::new();
    while let Some(chunk) = tokio::time::timeout(Duration::from_secs(5), body.next())
        .await
        .unwrap()
    {
        rest.extend_from_slice(&chunk.unwrap());
    }
    assert!(String::from_utf8_lossy(&rest).contains("{\"n\":2}"));
    // A component that does not answer is named; one that was not given is said so.
    let r = http
        .get(format!("{url}/api/storage/api/v1/query?query=up"))
        .header(header::AUTHORIZATION, &bearer)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 502);
    let e: Value = r.json().await.unwrap();
    assert!(
        e["message"].as_str().unwrap().contains("storage API"),
        "{e}"
    );
    let r = http
        .get(format!("{url}/api/autoscaler/v1/apps"))
        .header(header::AUTHORIZATION, &bearer)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 503);
    let e: Value = r.json().await.unwrap();
    assert!(
        e["message"].as_str().unwrap().contains("--autoscaler"),
        "{e}"
    );
    let r = http
        .get(format!("{url}/api/nothing/x"))
        .header(header::AUTHORIZATION, &bearer)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 404);
    // A body over the limit is refused before anything is forwarded.
    let r = http
        .put(format!("{url}/api/cell/v3/apps"))
        .header(header::AUTHORIZATION, &bearer)
        .body(vec![b'x'; proxy::MAX_BODY + 1])
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 413);
    // Health of every component, the unreachable one said so.
    let r = http
        .get(format!("{url}/api/components"))
        .header(header::AUTHORIZATION, &bearer)
        .send()
        .await
        .unwrap();
    let v: Value = r.json().await.unwrap();
    let status = |name: &str| {
        v["components"]
            .as_array()
            .unwrap()
            .iter()
            .find(|c| c["name"] == name)
            .map(|c| c["status"].as_str().unwrap().to_owned())
    };
    assert_eq!(status("storage").as_deref(), Some("unreachable"), "{v}");
    // The echo API answers its /healthz as 200 without a status field.
    assert_eq!(status("cell").as_deref(), Some("ok"), "{v}");
    // The console counts what it forwarded.
    let m = http
        .get(format!("{url}/metrics"))
        .header(header::AUTHORIZATION, &bearer)
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    assert!(
        m.contains(r#"hydrant_console_api_failures_total{api="storage"} 1"#),
        "{m}"
    );
    assert!(m.contains("hydrant_console_open_streams 0"), "{m}");
    stop.cancel();
}
