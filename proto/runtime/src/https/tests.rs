//! HTTPS on a component's port: trusted clients are served, plain HTTP and untrusted
//! clients are not, and silent connections do not hold up a handshake.

use std::time::Duration;

use axum::Router;
use axum::routing::get;
use hydrant_proto::transport::Tls;
use rcgen::{BasicConstraints, CertificateParams, IsCa, Issuer, KeyPair};
use tokio::net::TcpListener;
use tokio_util::sync::CancellationToken;

use super::*;

/// A CA and one certificate for `localhost`/`127.0.0.1` signed by it, as PEM files.
fn material(dir: &Path) -> Tls {
    std::fs::create_dir_all(dir).unwrap();
    let ca_key = KeyPair::generate().unwrap();
    let mut ca = CertificateParams::new(Vec::<String>::new()).unwrap();
    ca.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
    let ca_cert = ca.self_signed(&ca_key).unwrap();
    let issuer = Issuer::new(ca, ca_key);
    let key = KeyPair::generate().unwrap();
    let cert = CertificateParams::new(vec!["localhost".into(), "127.0.0.1".into()])
        .unwrap()
        .signed_by(&key, &issuer)
        .unwrap();
    std::fs::write(dir.join("ca.pem"), ca_cert.pem()).unwrap();
    std::fs::write(dir.join("c.pem"), cert.pem()).unwrap();
    std::fs::write(dir.join("c-key.pem"), key.serialize_pem()).unwrap();
    Tls::from_files(
        Some(&dir.join("ca.pem")),
        Some(&dir.join("c.pem")),
        Some(&dir.join("c-key.pem")),
        "localhost",
    )
    .unwrap()
    .unwrap()
}

fn scratch(name: &str) -> PathBuf {
    std::env::temp_dir().join(format!("hydrant-https-{name}-{}", std::process::id()))
}

#[tokio::test]
async fn a_component_with_certificates_serves_https_only() {
    let dir = scratch("serve");
    let tls = material(&dir);
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let stop = CancellationToken::new();
    let router = Router::new().route("/healthz", get(|| async { "ok" }));
    let server = tokio::spawn(crate::admin::serve(
        listener,
        router,
        server_tls(Some(&tls)).unwrap(),
        stop.clone(),
    ));

    // Silent connections sit beside the real client: they never finish a handshake.
    let mut silent = Vec::new();
    for _ in 0..50 {
        silent.push(tokio::net::TcpStream::connect(addr).await.unwrap());
    }

    let trusted = client(&ClientTls::ca_file(&dir.join("ca.pem")).unwrap()).unwrap();
    let url = super::url(
        &addr.to_string(),
        &ClientTls::ca_file(&dir.join("ca.pem")).unwrap(),
    );
    assert!(url.starts_with("https://"), "{url}");
    let resp = tokio::time::timeout(
        Duration::from_secs(10),
        trusted.get(format!("{url}/healthz")).send(),
    )
    .await
    .expect("served beside silent connections")
    .unwrap();
    assert_eq!(resp.status(), 200);
    assert_eq!(resp.text().await.unwrap(), "ok");

    // With a client certificate from the CA too.
    let with_identity = client(&ClientTls::of(&tls)).unwrap();
    let resp = with_identity
        .get(format!("https://localhost:{}/healthz", addr.port()))
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 200);

    // Plain HTTP gets no HTTP answer; a client that does not trust the CA refuses.
    let plain = plain_client()
        .get(format!("http://{addr}/healthz"))
        .timeout(Duration::from_secs(10))
        .send()
        .await;
    assert!(plain.is_err(), "plain HTTP was answered: {plain:?}");
    let untrusted = plain_client()
        .get(format!("https://{addr}/healthz"))
        .send()
        .await;
    let e = untrusted.expect_err("a certificate outside the system's roots is trusted");
    assert!(e.is_connect(), "{e:?}");

    stop.cancel();
    drop(silent);
    tokio::time::timeout(Duration::from_secs(10), server)
        .await
        .expect("the server stops")
        .unwrap()
        .unwrap();
    let _ = std::fs::remove_dir_all(&dir);
}

#[test]
fn addresses_get_a_scheme_from_the_trust_and_urls_keep_theirs() {
    let with_ca = ClientTls {
        ca: Some(b"pem".to_vec()),
        identity: None,
    };
    let without = ClientTls::default();
    assert_eq!(url("127.0.0.1:9022", &with_ca), "https://127.0.0.1:9022");
    assert_eq!(url("127.0.0.1:9022/", &without), "http://127.0.0.1:9022");
    assert_eq!(url("http://a:1", &with_ca), "http://a:1");
    assert_eq!(url("https://a:1", &without), "https://a:1");
}

#[test]
fn bad_ca_files_are_named() {
    let dir = scratch("bad");
    std::fs::create_dir_all(&dir).unwrap();
    let path = dir.join("ca.pem");
    std::fs::write(&path, "not a certificate").unwrap();
    let e = ClientTls::ca_file(&path).unwrap_err().to_string();
    assert!(
        e.contains("ca.pem") && e.contains("no PEM certificate"),
        "{e}"
    );
    let e = ClientTls::ca_file(&dir.join("missing.pem"))
        .unwrap_err()
        .to_string();
    assert!(
        e.contains("missing.pem") && e.contains("cannot read"),
        "{e}"
    );
    let _ = std::fs::remove_dir_all(&dir);
}
