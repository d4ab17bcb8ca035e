//! Token files, grants, and the guard in front of a real server on loopback.

use std::collections::HashSet;
use std::path::Path;

use axum::routing::{get, post};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpListener;
use tokio_util::sync::CancellationToken;

use super::*;

fn read(q: &str) -> EgressBatchRequest {
    let pairs: Vec<(String, String)> = form_urlencoded::parse(q.as_bytes()).into_owned().collect();
    crate::sse::request(&pairs).unwrap()
}

#[test]
fn scoped_readers_name_their_sources_and_never_join_a_shard_group() {
    let scoped = Read::Scoped {
        sources: ["a".to_owned()].into(),
        apps: ["web".to_owned()].into(),
    };
    assert_eq!(scoped.app_names(), ["web"]);
    let guids: HashSet<String> = ["guid-web".to_owned()].into();
    let names = &guids;
    assert!(scoped.may_subscribe(&read("source_id=a&log"), names));
    assert!(scoped.may_subscribe(&read("source_id=guid-web&log"), names));
    assert!(
        !scoped.may_subscribe(&read("source_id=guid-web&log"), &HashSet::new()),
        "an app scope reads nothing until the scheduler names its guid"
    );
    assert!(
        !scoped.may_subscribe(&read("log"), names),
        "the whole Firehose"
    );
    assert!(!scoped.may_subscribe(&read("source_id=a&source_id=b&log"), names));
    assert!(
        !scoped.may_subscribe(&read("source_id=a&log&shard_id=storage"), names),
        "joining a shard group takes data from its members"
    );
    assert!(Read::All.may_subscribe(&read("log&shard_id=storage"), names));
}

const FILE: &str = "tokens:\n  - token: root\n    admin: true\n  - token: team\n    sources: [s1]\n    apps: [web]\n  - token: grafana\n    read_all: true\n  - token: deployer\n    read_all: true\n    write: true\n";

#[test]
fn grants_admin_scoped_read_all_and_write() {
    let t = Tokens::parse(FILE, Path::new("t.yml")).unwrap();
    assert_eq!(t.check(Some("bearer root")), Some(Grant::admin()));
    assert_eq!(t.check(Some("Bearer root")), Some(Grant::admin()));
    assert_eq!(t.check(Some("BEARER root")), Some(Grant::admin()));
    assert_eq!(t.check(Some("root")), Some(Grant::admin()), "a bare token");
    let team = t.check(Some("bearer team")).unwrap();
    assert!(!team.write && !team.read.is_all());
    let web: HashSet<String> = ["guid-of-web".to_owned()].into();
    assert!(team.read.allows("s1", &HashSet::new()));
    assert!(team.read.allows("guid-of-web", &web));
    assert!(!team.read.allows("guid-of-web", &HashSet::new()));
    assert!(!team.read.allows("s2", &web));
    let grafana = t.check(Some("bearer grafana")).unwrap();
    assert!(grafana.read.is_all() && !grafana.write);
    assert!(t.check(Some("bearer deployer")).unwrap().write);
    assert_eq!(t.check(Some("bearer nope")), None);
    assert_eq!(t.check(Some("basic root")), None);
    assert_eq!(t.check(None), None);
    assert!(
        !format!("{t:?}").contains("root"),
        "tokens are never printed"
    );

    let one = Tokens::parse("  s3cret  \n", Path::new("token")).unwrap();
    assert_eq!(one.check(Some("bearer s3cret")), Some(Grant::admin()));
}

#[test]
fn errors_name_file_line_and_field() {
    let err = Tokens::parse(
        "tokens:\n  - token: x\n    colour: red\n",
        Path::new("a.yml"),
    )
    .unwrap_err()
    .to_string();
    assert!(err.starts_with("a.yml:3:5:"), "{err}");
    assert!(err.contains("unknown field `colour`"), "{err}");
    let err = Tokens::parse("tokens:\n  - token: x\n", Path::new("a.yml"))
        .unwrap_err()
        .to_string();
    assert_eq!(
        err,
        "a.yml: tokens[0]: set admin: true or read_all: true, or list sources and/or apps"
    );
    let err = Tokens::parse(
        "tokens:\n  - token: x\n    admin: true\n  - token: x\n    admin: true\n",
        Path::new("a.yml"),
    )
    .unwrap_err()
    .to_string();
    assert!(err.contains("tokens[1]: token: duplicates"), "{err}");
    let err = Tokens::parse("\n", Path::new("t")).unwrap_err().to_string();
    assert!(err.contains("the first line must hold a token"), "{err}");
}

#[test]
fn hosts_are_ip_addresses_localhost_or_allowed_names() {
    let mut a = Access::open();
    a.allowed_hosts = vec!["hydrant.internal".into()];
    for ok in [
        "127.0.0.1:8080",
        "127.0.0.1",
        "[::1]:80",
        "[::1]",
        "localhost:3000",
        "LOCALHOST",
        "hydrant.internal:8080",
        "10.0.0.5:1",
    ] {
        assert!(a.host_allowed(ok), "{ok}");
    }
    for bad in [
        "evil.example:8080",
        "evil.example",
        "127.0.0.1.nip.io:80",
        "localhost.evil",
    ] {
        assert!(!a.host_allowed(bad), "{bad}");
    }
}

/// One raw HTTP/1.1 request; the status code.
async fn status(addr: std::net::SocketAddr, request: &str) -> u16 {
    let mut conn = tokio::net::TcpStream::connect(addr).await.unwrap();
    conn.write_all(request.as_bytes()).await.unwrap();
    let mut out = String::new();
    tokio::time::timeout(
        std::time::Duration::from_secs(10),
        conn.read_to_string(&mut out),
    )
    .await
    .expect("an answer within 10 s")
    .unwrap();
    out.get(9..12).and_then(|s| s.parse().ok()).unwrap_or(0)
}

#[tokio::test]
async fn the_guard_checks_host_origin_token_and_scope_before_any_handler() {
    let router = Router::new()
        .route("/healthz", get(|| async { "ok" }))
        .route("/metrics", get(|| async { "m" }))
        .route("/v3/apps", get(|| async { "[]" }).post(|| async { "made" }));
    let tokens = Tokens::parse(FILE, Path::new("t.yml")).unwrap();
    let router = Guard::new(Access::tokens(tokens), reads_and_writes).wrap(router);
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let stop = CancellationToken::new();
    let server = tokio::spawn(crate::admin::serve(listener, router, None, stop.clone()));
    let req = |method: &str, path: &str, extra: &str| {
        format!(
            "{method} {path} HTTP/1.1\r\nhost: {addr}\r\n{extra}content-length: 0\r\nconnection: close\r\n\r\n"
        )
    };
    let cases = [
        (req("GET", "/healthz", ""), 200),
        (req("GET", "/v3/apps", ""), 401),
        (
            req("GET", "/v3/apps", "authorization: bearer nope\r\n"),
            401,
        ),
        (
            req("GET", "/v3/apps", "authorization: bearer team\r\n"),
            200,
        ),
        (
            req("GET", "/metrics", "authorization: bearer team\r\n"),
            403,
        ),
        (
            req("GET", "/metrics", "authorization: bearer grafana\r\n"),
            200,
        ),
        (
            req("POST", "/v3/apps", "authorization: bearer grafana\r\n"),
            403,
        ),
        (
            req("POST", "/v3/apps", "authorization: bearer deployer\r\n"),
            200,
        ),
        (req("POST", "/v3/apps", "authorization: root\r\n"), 200),
        // A web page on another origin, even with a token in hand.
        (
            req(
                "POST",
                "/v3/apps",
                "authorization: bearer root\r\norigin: http://evil.example\r\n",
            ),
            403,
        ),
        (
            req(
                "GET",
                "/v3/apps",
                &format!("authorization: bearer root\r\norigin: http://{addr}\r\n"),
            ),
            200,
        ),
        // DNS rebinding: the right address under someone else's name.
        (
            format!(
                "GET /v3/apps HTTP/1.1\r\nhost: evil.example:{}\r\nauthorization: bearer root\r\nconnection: close\r\n\r\n",
                addr.port()
            ),
            403,
        ),
    ];
    for (request, want) in cases {
        assert_eq!(status(addr, &request).await, want, "{request}");
    }
    stop.cancel();
    server.await.unwrap().unwrap();
    // Open: no token needed, browsers still kept out.
    let open = Guard::new(Access::open(), reads_and_writes)
        .wrap(Router::new().route("/v3/apps", post(|| async { "made" })));
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let stop = CancellationToken::new();
    let server = tokio::spawn(crate::admin::serve(listener, open, None, stop.clone()));
    let post = |extra: &str| {
        format!(
            "POST /v3/apps HTTP/1.1\r\nhost: {addr}\r\n{extra}content-length: 0\r\nconnection: close\r\n\r\n"
        )
    };
    assert_eq!(status(addr, &post("")).await, 200);
    assert_eq!(status(addr, &post("origin: null\r\n")).await, 403);
    stop.cancel();
    server.await.unwrap().unwrap();
}
