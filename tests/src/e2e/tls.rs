//! mTLS: with a CA configured, clients must present a certificate it signed.

use crate::guard::Scratch;
use crate::{Collector, TestDoppler, eventually};
use hydrant::telemetry::names;
use hydrant::{certs, doppler};
use hydrant_proto::ingress::{Config, IngressClient};
use hydrant_proto::subscriber::{request, select};
use hydrant_proto::transport::Tls;

fn tls(dir: &std::path::Path, name: &str, server_name: &str) -> Tls {
    Tls::from_files(
        Some(&dir.join("ca.pem")),
        Some(&dir.join(format!("{name}.pem"))),
        Some(&dir.join(format!("{name}-key.pem"))),
        server_name,
    )
    .unwrap()
    .unwrap()
}

#[tokio::test]
async fn clients_need_a_certificate_from_the_ca() {
    let dir = Scratch::new("tls");
    let names_: Vec<String> = ["doppler", "client"]
        .iter()
        .map(|s| s.to_string())
        .collect();
    certs::generate_all(&dir, &names_).unwrap();
    let other = dir.join("other");
    certs::generate_all(&other, &names_).unwrap();

    let config = doppler::Config {
        tls: Some(tls(&dir, "doppler", "doppler")),
        ..Default::default()
    };
    let d = TestDoppler::start(config).await;
    let good = tls(&dir, "client", "doppler");

    // A client whose certificate comes from another CA is refused (and cannot verify us).
    let stranger = Collector::start(
        d.grpc,
        request("", vec![select::log("")]),
        Some(&tls(&other, "client", "doppler")),
    );
    // A plaintext client is refused too.
    let plaintext = Collector::start(d.grpc, request("", vec![select::log("")]), None);
    let trusted = Collector::start(d.grpc, request("", vec![select::log("")]), Some(&good));
    eventually("trusted subscriber registered", || async {
        d.metric(names::DOPPLER_SUBSCRIPTIONS, &[("shard_id", "")])
            .await
            == 1.0
    })
    .await;

    let mut cfg = Config::new(vec![d.grpc.to_string()]);
    cfg.tls = Some(good.clone());
    let client = IngressClient::start(cfg).unwrap();
    client.send_envelope(&hydrant_proto::envelope::log("tls", "secret", false));
    client.close(std::time::Duration::from_secs(10)).await;
    eventually("delivered over mTLS", || async { trusted.got.len() == 1 }).await;

    tokio::time::sleep(std::time::Duration::from_millis(300)).await;
    assert_eq!(
        d.metric(names::DOPPLER_SUBSCRIPTIONS, &[("shard_id", "")])
            .await,
        1.0,
        "only the trusted one"
    );
    assert!(stranger.got.is_empty() && plaintext.got.is_empty());

    // A server name the certificate does not carry fails verification.
    let wrong_name = Collector::start(
        d.grpc,
        request("", vec![select::log("")]),
        Some(&tls(&dir, "client", "not-doppler")),
    );
    tokio::time::sleep(std::time::Duration::from_millis(300)).await;
    assert_eq!(
        d.metric(names::DOPPLER_SUBSCRIPTIONS, &[("shard_id", "")])
            .await,
        1.0
    );
    for c in [stranger, plaintext, wrong_name] {
        assert!(c.stop().await.unwrap().is_empty());
    }
    trusted.stop().await.unwrap();
    d.stop().await;
}

#[tokio::test]
async fn every_hop_can_run_mtls() {
    let dir = Scratch::new("tls-hops");
    let names_: Vec<String> = ["doppler", "metron", "client"]
        .iter()
        .map(|s| s.to_string())
        .collect();
    certs::generate_all(&dir, &names_).unwrap();
    let d = TestDoppler::start(doppler::Config {
        tls: Some(tls(&dir, "doppler", "doppler")),
        ..Default::default()
    })
    .await;
    let agent_config = hydrant::agent::Config {
        server_tls: Some(tls(&dir, "metron", "metron")),
        doppler_tls: Some(tls(&dir, "metron", "doppler")),
        ..Default::default()
    };
    let a = crate::TestAgent::start(agent_config, &[d.grpc]).await;
    let sub = Collector::start(
        d.grpc,
        request("", vec![select::log("")]),
        Some(&tls(&dir, "client", "doppler")),
    );
    eventually("subscribed and agent connected over mTLS", || async {
        d.metric(names::DOPPLER_SUBSCRIPTIONS, &[("shard_id", "")])
            .await
            == 1.0
            && a.metric(names::AGENT_DOPPLER_STREAMS, &[]).await == 1.0
    })
    .await;

    // Emitter → agent with the agent's name ("metron"), as Loggregator emitters do.
    let mut cfg = Config::new(vec![a.grpc.to_string()]);
    cfg.tls = Some(tls(&dir, "client", "metron"));
    let emitter = IngressClient::start(cfg).unwrap();
    emitter.send_envelope(&hydrant_proto::envelope::log("hops", "over mTLS", false));
    emitter.close(std::time::Duration::from_secs(10)).await;
    eventually("delivered through agent and doppler", || async {
        sub.got.len() == 1
    })
    .await;

    // A plaintext emitter gets nowhere: the agent never accepts its envelope.
    let plain = IngressClient::start(Config::new(vec![a.grpc.to_string()])).unwrap();
    plain.send_envelope(&hydrant_proto::envelope::log("hops", "plaintext", false));
    let stats = std::sync::Arc::clone(plain.stats());
    plain.close(std::time::Duration::from_millis(500)).await;
    assert!(
        stats.errors.load(std::sync::atomic::Ordering::Relaxed) >= 1,
        "the handshake fails"
    );
    assert_eq!(a.metric(names::AGENT_INGRESS, &[]).await, 1.0);
    assert_eq!(sub.got.len(), 1);

    // With certificates, the HTTP ports speak HTTPS only: a plain request gets no answer.
    for http in [d.http, a.http] {
        let plain = crate::http_get(http, "/healthz").await;
        assert!(
            !matches!(plain, Ok((200, _))),
            "plain HTTP answered on {http}: {plain:?}"
        );
        let (status, _) = crate::get_over(http, d.https.as_ref(), "/healthz")
            .await
            .unwrap();
        assert_eq!(status, 200);
    }
    sub.stop().await.unwrap();
    a.stop().await;
    d.stop().await;
}
