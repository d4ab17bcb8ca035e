//! The agent: every Ingress RPC, envelope completion, several dopplers, and flushing.

use std::collections::BTreeMap;
use std::sync::atomic::Ordering::Relaxed;
use std::time::Duration;

use crate::{Collector, TestAgent, TestDoppler, eventually};
use hydrant::telemetry::names;
use hydrant::{agent, doppler};
use hydrant_proto::envelope;
use hydrant_proto::ingress::{Config, IngressClient};
use hydrant_proto::raw::RawEnvelope;
use hydrant_proto::subscriber::{request, select};
use hydrant_proto::v2::ingress_client::IngressClient as ProstIngressClient;
use hydrant_proto::v2::{EnvelopeBatch, envelope::Message};

#[tokio::test]
async fn sender_and_send_rpcs_get_counter_totals_tags_and_origin() {
    let d = TestDoppler::start(doppler::Config::default()).await;
    let config = agent::Config {
        tags: BTreeMap::from([("deployment".to_owned(), "test".to_owned())]),
        ..Default::default()
    };
    let a = TestAgent::start(config, &[d.grpc]).await;
    let c = Collector::start(d.grpc, request("", select::all("")), None);
    eventually("subscribed", || async {
        d.metric(names::DOPPLER_SUBSCRIPTIONS, &[("shard_id", "")])
            .await
            == 1.0
    })
    .await;

    let channel = hydrant_proto::transport::endpoint(&a.grpc.to_string(), None)
        .unwrap()
        .connect()
        .await
        .unwrap();
    let mut client = ProstIngressClient::new(channel);
    // Sender: a stream of single envelopes (counter deltas 1, 2, 3).
    let deltas = (1..=3).map(|d| envelope::counter("app", "requests", d));
    client.sender(futures::stream::iter(deltas)).await.unwrap();
    // Send: one unary batch, with a legacy emitter's empty source id and `origin` tag.
    let mut legacy = envelope::log("", "from an old emitter", false);
    legacy.tags.insert("origin".into(), "legacy-router".into());
    legacy.tags.insert("deployment".into(), "mine".into());
    legacy.timestamp = 0;
    client
        .send(EnvelopeBatch {
            batch: vec![legacy],
        })
        .await
        .unwrap();

    eventually("4 envelopes", || async { c.got.len() == 4 }).await;
    let got: Vec<_> = c.got.all().iter().map(RawEnvelope::decode).collect();
    let totals: Vec<u64> = got
        .iter()
        .filter_map(|e| match &e.message {
            Some(Message::Counter(c)) => Some(c.total),
            _ => None,
        })
        .collect();
    assert_eq!(totals, [1, 3, 6], "the agent keeps the running total");
    let log = got
        .iter()
        .find(|e| matches!(e.message, Some(Message::Log(_))))
        .unwrap();
    assert_eq!(
        log.source_id, "legacy-router",
        "source id taken from the origin tag"
    );
    assert!(log.timestamp > 0, "a missing timestamp is stamped");
    assert_eq!(log.tags["deployment"], "mine", "an emitter's own tag wins");
    assert!(
        got.iter()
            .filter(|e| e.source_id == "app")
            .all(|e| e.tags["deployment"] == "test")
    );
    assert_eq!(a.metric(names::AGENT_INGRESS, &[]).await, 4.0);
    c.stop().await.unwrap();
    a.stop().await;
    d.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn spreads_load_over_dopplers_and_keeps_going_when_one_leaves() {
    let d1 = TestDoppler::start(doppler::Config::default()).await;
    let d2 = TestDoppler::start(doppler::Config::default()).await;
    let a = TestAgent::start(agent::Config::default(), &[d1.grpc, d2.grpc]).await;
    let c1 = Collector::start(d1.grpc, request("", vec![select::log("")]), None);
    let c2 = Collector::start(d2.grpc, request("", vec![select::log("")]), None);
    eventually("both subscribed and agent connected to both", || async {
        d1.metric(names::DOPPLER_SUBSCRIPTIONS, &[("shard_id", "")])
            .await
            == 1.0
            && d2
                .metric(names::DOPPLER_SUBSCRIPTIONS, &[("shard_id", "")])
                .await
                == 1.0
            && a.metric(names::AGENT_DOPPLER_STREAMS, &[]).await == 2.0
    })
    .await;

    let emitter = IngressClient::start(Config::new(vec![a.grpc.to_string()])).unwrap();
    let first = super::numbered_logs("spread", 100_000);
    for chunk in first.chunks(1_000) {
        emitter.send_all(chunk.iter().map(RawEnvelope::from_envelope));
        tokio::task::yield_now().await;
    }
    eventually("first 100,000 delivered", || async {
        c1.got.len() + c2.got.len() == 100_000
    })
    .await;
    let (n1, n2) = (c1.got.len(), c2.got.len());
    assert!(n1 > 0 && n2 > 0, "both dopplers carry load: {n1} / {n2}");

    // Doppler 2 goes away; the rest flows through doppler 1.
    d2.stop().await;
    let _ = c2.stop().await;
    let second: Vec<_> = (100_000..150_000u64)
        .map(|i| {
            let mut e = envelope::log("spread", "after", false);
            e.tags.insert("seq".into(), i.to_string());
            e
        })
        .collect();
    for chunk in second.chunks(1_000) {
        emitter.send_all(chunk.iter().map(RawEnvelope::from_envelope));
        tokio::time::sleep(Duration::from_millis(2)).await;
    }
    emitter.close(Duration::from_secs(10)).await;
    eventually("second batch through doppler 1", || async {
        c1.got
            .seqs()
            .get("spread")
            .map_or(0, |s| s.iter().filter(|&&q| q >= 100_000).count())
            >= 49_000
    })
    .await;
    tokio::time::sleep(Duration::from_millis(200)).await;
    let after = c1.got.seqs()["spread"]
        .iter()
        .filter(|&&q| q >= 100_000)
        .count();
    let lost = 50_000 - after;
    assert!(
        lost <= 1_000,
        "only envelopes in flight on the closed stream may be lost: {lost}"
    );
    assert_eq!(
        a.metric(names::AGENT_DROPPED, &[("reason", "overflow")])
            .await,
        0.0
    );
    c1.stop().await.unwrap();
    a.stop().await;
    d1.stop().await;
}

#[tokio::test]
async fn closing_with_no_doppler_counts_what_could_not_be_sent() {
    // A port with nothing listening.
    let dead = crate::listener().await.local_addr().unwrap();
    let client = IngressClient::start(Config::new(vec![dead.to_string()])).unwrap();
    client.send_all(
        (0..1_000).map(|i| RawEnvelope::from_envelope(&envelope::log("s", format!("{i}"), false))),
    );
    let stats = std::sync::Arc::clone(client.stats());
    client.close(Duration::from_millis(300)).await;
    assert_eq!(
        stats.dropped_shutdown.load(Relaxed),
        1_000,
        "reported, not silently lost"
    );
    assert_eq!(stats.sent.load(Relaxed), 0);
    assert!(
        stats.errors.load(Relaxed) >= 1,
        "connection failures are counted"
    );
}

#[tokio::test]
async fn the_agent_rejects_bad_input_too() {
    let d = TestDoppler::start(doppler::Config::default()).await;
    let a = TestAgent::start(agent::Config::default(), &[d.grpc]).await;
    let status = super::bad_input::call_with_frame(
        a.grpc,
        "/loggregator.v2.Ingress/Send",
        super::bad_input::BAD_UTF8_BATCH.to_vec(),
    )
    .await;
    assert_eq!(status.code(), tonic::Code::InvalidArgument, "{status:?}");
    assert!(status.message().contains("source_id is not valid UTF-8"));
    assert_eq!(
        a.metric(names::AGENT_REJECTED, &[("reason", "invalid_utf8")])
            .await,
        1.0
    );
    a.stop().await;
    d.stop().await;
}

/// An emitter's stream is never ended `OK` while what it sent is left unread: what arrives
/// after the stop (in flight, or in the connection's buffers) is still taken and
/// forwarded, and a client that keeps sending is told `Unavailable` (it once got `OK`
/// while its last 80–125 envelopes were dropped uncounted).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_stopping_agent_takes_what_was_sent_or_says_unavailable() {
    let d = TestDoppler::start(doppler::Config::default()).await;
    let c = Collector::start(d.grpc, request("", vec![select::log("")]), None);
    eventually("subscribed", || async {
        d.metric(names::DOPPLER_SUBSCRIPTIONS, &[("shard_id", "")])
            .await
            == 1.0
    })
    .await;
    for keeps_sending in [false, true] {
        let a = TestAgent::start(agent::Config::default(), &[d.grpc]).await;
        let channel = hydrant_proto::transport::endpoint(&a.grpc.to_string(), None)
            .unwrap()
            .connect()
            .await
            .unwrap();
        let mut client = ProstIngressClient::new(channel);
        let (tx, rx) = tokio::sync::mpsc::channel(1024);
        let call = tokio::spawn(async move {
            client
                .batch_sender(tokio_stream::wrappers::ReceiverStream::new(rx))
                .await
        });
        let source = format!("stopping-{keeps_sending}");
        let batch = |i: usize| EnvelopeBatch {
            batch: vec![envelope::log(source.as_str(), format!("line {i}"), false)],
        };
        for i in 0..300 {
            tx.send(batch(i)).await.unwrap();
        }
        // The stream is open and taking data; then the stop, with more on the way.
        eventually("300 taken", || async {
            a.metric(names::AGENT_INGRESS, &[]).await >= 300.0
        })
        .await;
        a.begin_stop();
        let mut sent = 300;
        if keeps_sending {
            // Past STOP_READ_MAX, bounded by the 3 s loop.
            let until = tokio::time::Instant::now() + Duration::from_secs(3);
            while tokio::time::Instant::now() < until && tx.send(batch(sent)).await.is_ok() {
                sent += 1;
                tokio::time::sleep(Duration::from_millis(5)).await;
            }
        } else {
            for i in 300..500 {
                tx.send(batch(i)).await.unwrap();
            }
            sent = 500;
            drop(tx);
        }
        let status = tokio::time::timeout(Duration::from_secs(10), call)
            .await
            .expect("the stream ends")
            .unwrap();
        a.stop().await;
        let forwarded = || {
            c.got
                .all()
                .iter()
                .filter(|e| e.source_id() == source)
                .count()
        };
        if keeps_sending {
            let status = status.expect_err("a client still sending is told");
            assert_eq!(status.code(), tonic::Code::Unavailable, "{status:?}");
            eventually("the first 300 forwarded", || async { forwarded() >= 300 }).await;
            // Unavailable says "not all was taken"; whatever was taken went on.
            assert!(forwarded() <= sent, "{} of {sent}", forwarded());
        } else {
            status.expect("everything sent was taken");
            eventually("all 500 forwarded", || async { forwarded() == 500 }).await;
        }
    }
    c.stop().await.ok();
    d.stop().await;
}

/// A Loggregator router's `BatchSender` (loggregator-release, router ingress): it reads
/// the stream until `Recv` returns `io.EOF` and returns that error, never a response, so
/// grpc-go answers every closed stream `Unknown` "EOF". What it read is counted here.
struct RouterLike {
    received: std::sync::Arc<std::sync::atomic::AtomicU64>,
}

#[tonic::async_trait]
impl hydrant_proto::v2::ingress_server::Ingress for RouterLike {
    async fn sender(
        &self,
        _: tonic::Request<tonic::Streaming<hydrant_proto::v2::Envelope>>,
    ) -> Result<tonic::Response<hydrant_proto::v2::IngressResponse>, tonic::Status> {
        Err(tonic::Status::unimplemented("not used"))
    }

    async fn batch_sender(
        &self,
        request: tonic::Request<tonic::Streaming<EnvelopeBatch>>,
    ) -> Result<tonic::Response<hydrant_proto::v2::BatchSenderResponse>, tonic::Status> {
        let mut stream = request.into_inner();
        loop {
            match stream.message().await {
                Ok(Some(b)) => {
                    self.received.fetch_add(b.batch.len() as u64, Relaxed);
                }
                Ok(None) => return Err(tonic::Status::unknown("EOF")),
                Err(e) => return Err(e),
            }
        }
    }

    async fn send(
        &self,
        _: tonic::Request<EnvelopeBatch>,
    ) -> Result<tonic::Response<hydrant_proto::v2::SendResponse>, tonic::Status> {
        Err(tonic::Status::unimplemented("not used"))
    }
}

/// Closing a stream to a real router is acknowledged the router's way ("EOF"): the final
/// flush counts no error and logs no "not acknowledged", and everything arrived.
#[tokio::test]
async fn a_routers_eof_answer_acknowledges_the_final_flush() {
    let received = std::sync::Arc::new(std::sync::atomic::AtomicU64::new(0));
    let listener = crate::listener().await;
    let addr = listener.local_addr().unwrap();
    let stop = tokio_util::sync::CancellationToken::new();
    let server = tokio::spawn(
        tonic::transport::Server::builder()
            .add_service(hydrant_proto::v2::ingress_server::IngressServer::new(
                RouterLike {
                    received: std::sync::Arc::clone(&received),
                },
            ))
            .serve_with_incoming_shutdown(
                tokio_stream::wrappers::TcpListenerStream::new(listener),
                stop.clone().cancelled_owned(),
            ),
    );
    let client = IngressClient::start(Config::new(vec![addr.to_string()])).unwrap();
    for i in 0..500 {
        client.send_envelope(&envelope::log("app", format!("line {i}"), false));
    }
    let stats = std::sync::Arc::clone(client.stats());
    client.close(Duration::from_secs(10)).await;
    assert_eq!(received.load(Relaxed), 500);
    assert_eq!(
        stats.errors.load(Relaxed),
        0,
        "EOF is the router's acknowledgement"
    );
    stop.cancel();
    server.await.unwrap().unwrap();
}
