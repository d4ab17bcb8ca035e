//! Contract tests: each actuator and alert receiver against a recording server on loopback,
//! checking the request it sends against the platform's documented format (Cloud
//! Foundry's v3 scale call and UAA client credentials, Kubernetes' scale subresource over
//! TLS with a bearer token, the webhook, Alertmanager's webhook payload).

use std::sync::{Arc, Mutex};
use std::time::Duration;

use axum::Router;
use axum::body::Bytes;
use axum::extract::{Request, State};
use axum::http::{HeaderMap, Method, StatusCode, Uri};
use axum::response::{IntoResponse, Response};
use hydrant_autoscaler::actuator::{self, Actuator, Auth, CloudController, Kubernetes, Webhook};
use hydrant_autoscaler::alert::Transition;
use hydrant_autoscaler::fleet::{AlertChange, Kind, ScaleRequest};
use hydrant_autoscaler::notify::{Delivery, Notifier, Receivers};
use serde_json::{Value, json};
use tokio_util::sync::CancellationToken;

use crate::guard::Scratch;
use crate::{eventually, listener};

/// One request as the server saw it.
#[derive(Debug, Clone)]
pub(super) struct Seen {
    pub(super) method: Method,
    pub(super) uri: String,
    pub(super) headers: HeaderMap,
    pub(super) body: Vec<u8>,
}

impl Seen {
    fn json(&self) -> Value {
        serde_json::from_slice(&self.body).unwrap_or(Value::Null)
    }
    pub(super) fn header(&self, name: &str) -> &str {
        self.headers
            .get(name)
            .and_then(|v| v.to_str().ok())
            .unwrap_or_default()
    }
}

type Answer = Arc<dyn Fn(&Seen) -> (StatusCode, Value) + Send + Sync>;

#[derive(Clone)]
pub(super) struct Recorder {
    seen: Arc<Mutex<Vec<Seen>>>,
    answer: Answer,
}

impl Recorder {
    pub(super) fn seen(&self) -> Vec<Seen> {
        self.seen.lock().unwrap().clone()
    }
}

async fn record(State(r): State<Recorder>, req: Request) -> Response {
    let (parts, body) = req.into_parts();
    let body: Bytes = axum::body::to_bytes(body, 1 << 20)
        .await
        .unwrap_or_default();
    let seen = Seen {
        method: parts.method,
        uri: parts.uri.to_string(),
        headers: parts.headers,
        body: body.to_vec(),
    };
    let (status, value) = (r.answer)(&seen);
    r.seen.lock().unwrap().push(seen);
    (status, axum::Json(value)).into_response()
}

/// A recording HTTP server; returns it and its base URL.
pub(super) async fn recorder(
    answer: impl Fn(&Seen) -> (StatusCode, Value) + Send + Sync + 'static,
) -> (Recorder, String) {
    let r = Recorder {
        seen: Arc::default(),
        answer: Arc::new(answer),
    };
    let l = listener().await;
    let url = format!("http://{}", l.local_addr().unwrap());
    let app = Router::new().fallback(record).with_state(r.clone());
    tokio::spawn(async move { axum::serve(l, app).await });
    (r, url)
}

fn request(target: &str, from: u32, to: u32) -> ScaleRequest {
    ScaleRequest {
        app: "web".into(),
        target: target.into(),
        from,
        to,
        kind: Kind::Dynamic(Some(0)),
        reason: "+1 instance(s) because cpu > 70% for 300 seconds".into(),
        message: String::new(),
    }
}

fn path(s: &Seen) -> String {
    s.uri.parse::<Uri>().unwrap().path().to_owned()
}

#[tokio::test]
async fn cloud_controller_scales_with_the_v3_call_and_lists_every_page() {
    let base = Arc::new(Mutex::new(String::new()));
    let b = Arc::clone(&base);
    let (r, url) = recorder(move |s| {
        let base = b.lock().unwrap().clone();
        match (s.method.as_str(), s.uri.as_str()) {
            ("POST", "/v3/apps/g1/processes/web/actions/scale") => (StatusCode::ACCEPTED, json!({"guid": "g1", "type": "web", "instances": 3})),
            ("GET", "/v3/apps") => (StatusCode::OK, json!({
                "pagination": {"next": {"href": format!("{base}/v3/apps?page=2")}},
                "resources": [{"guid": "g1", "name": "web"}]})),
            ("GET", "/v3/apps?page=2") => (StatusCode::OK, json!({
                "pagination": {"next": null},
                "resources": [{"guid": "g2", "name": "api"}]})),
            ("GET", "/v3/processes?types=web") => (StatusCode::OK, json!({
                "pagination": {"next": null},
                "resources": [
                    {"guid": "p1", "type": "web", "instances": 2, "relationships": {"app": {"data": {"guid": "g1"}}}},
                    {"guid": "p2", "type": "web", "instances": 5, "relationships": {"app": {"data": {"guid": "g2"}}}}]})),
            _ => (StatusCode::NOT_FOUND, json!({"errors": [{"title": "CF-ResourceNotFound"}]})),
        }
    })
    .await;
    *base.lock().unwrap() = url.clone();
    let cc = CloudController::new(
        &url,
        Auth::Bearer("tok".into()),
        hydrant_runtime::https::plain_client(),
    );
    let answer = cc.scale(&request("g1", 2, 3)).await.unwrap();
    assert_eq!(answer, "202 (instances 3)");
    let seen = r.seen();
    let call = &seen[0];
    assert_eq!(call.method, Method::POST);
    assert_eq!(call.uri, "/v3/apps/g1/processes/web/actions/scale");
    assert_eq!(
        call.json(),
        json!({"instances": 3}),
        "absolute count: idempotent"
    );
    assert_eq!(call.header("authorization"), "Bearer tok");
    assert!(call.header("content-type").starts_with("application/json"));

    let listed = cc.list().await.unwrap().unwrap();
    let got: Vec<(String, String, u32)> = listed
        .into_iter()
        .map(|i| (i.id, i.name, i.instances))
        .collect();
    assert_eq!(
        got,
        [
            ("g1".into(), "web".into(), 2),
            ("g2".into(), "api".into(), 5)
        ]
    );

    let e = cc.scale(&request("missing", 1, 2)).await.unwrap_err();
    assert!(
        matches!(&e, actuator::Error::Status { status: 404, .. }),
        "{e}"
    );
}

#[tokio::test]
async fn cloud_foundry_tokens_come_from_uaa_client_credentials_and_are_reused() {
    let (uaa, uaa_url) = recorder(|_| {
        (
            StatusCode::OK,
            json!({"access_token": "from-uaa", "token_type": "bearer", "expires_in": 600}),
        )
    })
    .await;
    let (cc_rec, cc_url) = recorder(|_| (StatusCode::ACCEPTED, json!({"instances": 2}))).await;
    let cc = CloudController::new(
        &cc_url,
        Auth::Uaa {
            url: uaa_url,
            client_id: "autoscaler".into(),
            client_secret: "s3cret".into(),
        },
        hydrant_runtime::https::plain_client(),
    );
    cc.scale(&request("g1", 1, 2)).await.unwrap();
    cc.scale(&request("g1", 2, 3)).await.unwrap();
    let token_calls = uaa.seen();
    assert_eq!(
        token_calls.len(),
        1,
        "the token is cached until it nears expiry"
    );
    let t = &token_calls[0];
    assert_eq!(
        (t.method.as_str(), path(t).as_str()),
        ("POST", "/oauth/token")
    );
    // Basic base64("autoscaler:s3cret").
    assert_eq!(t.header("authorization"), "Basic YXV0b3NjYWxlcjpzM2NyZXQ=");
    assert_eq!(
        t.header("content-type"),
        "application/x-www-form-urlencoded"
    );
    assert_eq!(t.body, b"grant_type=client_credentials");
    for call in cc_rec.seen() {
        assert_eq!(call.header("authorization"), "Bearer from-uaa");
    }
}

#[tokio::test]
async fn webhook_posts_the_scale_as_json() {
    let (r, url) = recorder(|_| (StatusCode::OK, json!({}))).await;
    let hook = Webhook::new(&format!("{url}/scale"), Some("hook-token".into()));
    assert!(
        hook.list().await.unwrap().is_none(),
        "counts come from observed instances"
    );
    hook.scale(&request("g1", 1, 2)).await.unwrap();
    let call = &r.seen()[0];
    assert_eq!(
        (call.method.as_str(), call.uri.as_str()),
        ("POST", "/scale")
    );
    assert_eq!(call.header("authorization"), "Bearer hook-token");
    let body = call.json();
    assert_eq!(body["app"], "web");
    assert_eq!(body["app_id"], "g1");
    assert_eq!(
        (body["old_instances"].clone(), body["instances"].clone()),
        (json!(1), json!(2))
    );
    assert_eq!(body["scaling_type"], "dynamic");
    assert_eq!(
        body["reason"],
        "+1 instance(s) because cpu > 70% for 300 seconds"
    );
    let (_, down) = recorder(|_| (StatusCode::SERVICE_UNAVAILABLE, json!({"error": "busy"}))).await;
    let e = Webhook::new(&down, None)
        .scale(&request("g1", 1, 2))
        .await
        .unwrap_err();
    assert!(e.to_string().contains("503"), "{e}");
}

#[tokio::test]
async fn alert_webhook_gets_alertmanager_payloads_with_retries() {
    let calls = Arc::new(Mutex::new(0));
    let c = Arc::clone(&calls);
    let (r, url) = recorder(move |_| {
        let mut n = c.lock().unwrap();
        *n += 1;
        // The first delivery attempt fails; the retry succeeds.
        if *n == 1 {
            (StatusCode::SERVICE_UNAVAILABLE, json!({}))
        } else {
            (StatusCode::OK, json!({}))
        }
    })
    .await;
    let cancel = CancellationToken::new();
    let (n, delivery) = Notifier::new(
        Receivers {
            alertmanagers: Vec::new(),
            webhook: Some(format!("{url}/alerts")),
            external_url: "http://autoscaler:9500".into(),
        },
        cancel.clone(),
    );
    tokio::spawn(delivery);
    let change = |transition, at| AlertChange {
        app: "web".into(),
        target: "g1".into(),
        rule: 0,
        metric: "cpu".into(),
        summary: "cpu > 70 for 300 seconds".into(),
        adjustment: "+1".into(),
        transition,
        value: Some(91.0),
        since: 1_700_000_000,
        at,
    };
    n.send(change(Transition::Pending, 1_700_000_000));
    n.send(change(Transition::Firing, 1_700_000_300));
    eventually("webhook delivered", || async {
        n.stats.deliveries.get(Delivery::WebhookOk) == 1
    })
    .await;
    n.send(change(Transition::Resolved, 1_700_000_900));
    eventually("resolution delivered", || async {
        n.stats.deliveries.get(Delivery::WebhookOk) == 2
    })
    .await;
    let seen = r.seen();
    assert_eq!(
        seen.len(),
        3,
        "one failed attempt, then firing, then resolved"
    );
    let firing = seen[1].json();
    assert_eq!(firing["version"], "4");
    assert_eq!(firing["status"], "firing");
    let alerts = firing["alerts"].as_array().unwrap();
    assert_eq!(alerts.len(), 1, "pending alerts are not sent");
    let a = &alerts[0];
    assert_eq!(a["labels"]["alertname"], "HydrantScalingRule");
    assert_eq!(a["labels"]["app"], "web");
    assert_eq!(a["labels"]["app_id"], "g1");
    assert_eq!(a["startsAt"], "2023-11-14T22:13:20Z");
    assert_eq!(
        a["generatorURL"],
        "http://autoscaler:9500/v1/apps/web/explain"
    );
    let resolved = seen[2].json();
    assert_eq!(resolved["status"], "resolved");
    assert_eq!(resolved["alerts"][0]["endsAt"], "2023-11-14T22:28:20Z");
    cancel.cancel();
}

#[tokio::test]
async fn kubernetes_patches_the_scale_subresource_over_tls() {
    let dir = Scratch::new("kube");
    hydrant::certs::generate_all(&dir, &["kube".to_owned()]).unwrap();
    std::fs::write(dir.join("token"), "sa-token\n").unwrap();
    let (r, addr) = tls_recorder(&dir, |s| match s.method.as_str() {
        "GET" => (
            StatusCode::OK,
            json!({"kind": "DeploymentList", "items": [
            {"metadata": {"name": "web"}, "spec": {"replicas": 2}},
            {"metadata": {"name": "worker"}, "spec": {"replicas": 0}}]}),
        ),
        _ => (
            StatusCode::OK,
            json!({"kind": "Scale", "spec": {"replicas": 4}}),
        ),
    })
    .await;
    let kube = Kubernetes::new(
        &format!("https://127.0.0.1:{}", addr.port()),
        "shop",
        Some(dir.join("token")),
        Some(dir.join("ca.pem")),
    )
    .unwrap();
    let listed = kube.list().await.unwrap().unwrap();
    assert_eq!(listed.len(), 2);
    assert_eq!((listed[0].id.as_str(), listed[0].instances), ("web", 2));
    assert_eq!(
        kube.scale(&request("web", 2, 4)).await.unwrap(),
        "200 (instances 4)"
    );
    let seen = r.seen();
    assert_eq!(seen[0].uri, "/apis/apps/v1/namespaces/shop/deployments");
    let patch = &seen[1];
    assert_eq!(patch.method, Method::PATCH);
    assert_eq!(
        patch.uri,
        "/apis/apps/v1/namespaces/shop/deployments/web/scale"
    );
    assert_eq!(patch.header("content-type"), "application/merge-patch+json");
    assert_eq!(patch.header("authorization"), "Bearer sa-token");
    assert_eq!(patch.json(), json!({"spec": {"replicas": 4}}));
    // The kubelet rotates the service account token: the next request sends the new one.
    std::fs::write(dir.join("token"), "rotated-token\n").unwrap();
    kube.scale(&request("web", 4, 3)).await.unwrap();
    assert_eq!(r.seen()[2].header("authorization"), "Bearer rotated-token");

    // A CA that did not sign the server's certificate is refused.
    let other = dir.join("other");
    hydrant::certs::generate_all(&other, &["x".to_owned()]).unwrap();
    let wrong = Kubernetes::new(
        &format!("https://127.0.0.1:{}", addr.port()),
        "shop",
        None,
        Some(other.join("ca.pem")),
    )
    .unwrap();
    let e = wrong.list().await.unwrap_err();
    assert!(e.to_string().contains("TLS handshake failed"), "{e}");
    // Unusable files are named.
    let e = Kubernetes::new("https://x", "ns", None, Some(dir.join("token"))).unwrap_err();
    assert!(e.to_string().contains("token"), "{e}");
}

/// The recorder behind TLS with `dir/kube.pem`.
pub(super) async fn tls_recorder(
    dir: &std::path::Path,
    answer: impl Fn(&Seen) -> (StatusCode, Value) + Send + Sync + 'static,
) -> (Recorder, std::net::SocketAddr) {
    use rustls::pki_types::pem::PemObject;
    use rustls::pki_types::{CertificateDer, PrivateKeyDer};
    let certs: Vec<CertificateDer<'static>> = CertificateDer::pem_file_iter(dir.join("kube.pem"))
        .unwrap()
        .map(Result::unwrap)
        .collect();
    let key = PrivateKeyDer::from_pem_file(dir.join("kube-key.pem")).unwrap();
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let config = rustls::ServerConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .unwrap()
        .with_no_client_auth()
        .with_single_cert(certs, key)
        .unwrap();
    let acceptor = tokio_rustls::TlsAcceptor::from(Arc::new(config));
    let r = Recorder {
        seen: Arc::default(),
        answer: Arc::new(answer),
    };
    let app = Router::new().fallback(record).with_state(r.clone());
    let l = listener().await;
    let addr = l.local_addr().unwrap();
    tokio::spawn(async move {
        for _ in 0..100 {
            let Ok((tcp, _)) = l.accept().await else {
                return;
            };
            let acceptor = acceptor.clone();
            let app = app.clone();
            tokio::spawn(async move {
                let Ok(tls) =
                    tokio::time::timeout(Duration::from_secs(5), acceptor.accept(tcp)).await
                else {
                    return;
                };
                let Ok(tls) = tls else { return };
                let service = hyper_util::service::TowerToHyperService::new(app);
                let _ = hyper::server::conn::http1::Builder::new()
                    .serve_connection(hyper_util::rt::TokioIo::new(tls), service)
                    .await;
            });
        }
    });
    (r, addr)
}
