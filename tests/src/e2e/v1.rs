//! Loggregator v1 into Hydrant, as legacy components send it: dropsonde datagrams to the
//! agent's UDP port (one envelope each, as dropsonde's `udp_emitter` writes them), and a
//! loggregator-agent's `plumbing.DopplerIngestor/Pusher` stream into the doppler (one
//! envelope per message, the answer never read, the stream kept open past a bad payload).

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;

use hydrant::telemetry::names;
use hydrant::{agent, doppler};
use hydrant_proto::subscriber::{request, select};
use hydrant_proto::v1::{events, plumbing};
use hydrant_proto::v2::envelope::Message;
use prost::Message as _;

use crate::{Collector, TestAgent, TestDoppler, eventually};

fn log_message(origin: &str, app: &str, text: &str, ts: i64) -> events::Envelope {
    events::Envelope {
        origin: Some(origin.into()),
        event_type: Some(events::envelope::EventType::LogMessage as i32),
        timestamp: Some(ts),
        log_message: Some(events::LogMessage {
            message: Some(text.as_bytes().to_vec()),
            message_type: Some(events::log_message::MessageType::Out as i32),
            timestamp: Some(ts),
            app_id: Some(app.into()),
            source_type: Some("APP/PROC/WEB".into()),
            source_instance: Some("0".into()),
        }),
        ..Default::default()
    }
}

fn counter(origin: &str, delta: u64) -> events::Envelope {
    events::Envelope {
        origin: Some(origin.into()),
        event_type: Some(events::envelope::EventType::CounterEvent as i32),
        timestamp: Some(1),
        counter_event: Some(events::CounterEvent {
            name: Some("requests".into()),
            delta: Some(delta),
            total: None,
        }),
        ..Default::default()
    }
}

fn logs_of(c: &Collector, source: &str) -> Vec<String> {
    c.got
        .all()
        .iter()
        .filter(|e| e.source_id() == source)
        .filter_map(|e| match e.decode().message {
            Some(Message::Log(l)) => Some(String::from_utf8_lossy(&l.payload).into_owned()),
            _ => None,
        })
        .collect()
}

/// 50 log lines and two counter deltas as dropsonde datagrams reach the Firehose, converted
/// as Loggregator converts them; garbage and an envelope without its origin are counted and
/// dropped.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn dropsonde_datagrams_reach_the_firehose_through_the_agent() {
    let d = TestDoppler::start(doppler::Config::default()).await;
    let udp = std::net::UdpSocket::bind("127.0.0.1:0").unwrap();
    let udp_addr = udp.local_addr().unwrap();
    let config = agent::Config {
        udp: Some(Arc::new(udp)),
        tags: BTreeMap::from([
            ("deployment".to_owned(), "cf".to_owned()),
            ("job".to_owned(), "diego-cell".to_owned()),
        ]),
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

    let emitter = tokio::net::UdpSocket::bind("127.0.0.1:0").await.unwrap();
    for i in 0..50 {
        let e = log_message("legacy", "app-guid", &format!("v1 line {i}"), 1_000 + i);
        emitter.send_to(&e.encode_to_vec(), udp_addr).await.unwrap();
        // Paced: UDP on loopback drops what the receiver's buffer cannot hold.
        tokio::time::sleep(Duration::from_millis(2)).await;
    }
    for delta in [1, 2] {
        emitter
            .send_to(&counter("legacy-counter", delta).encode_to_vec(), udp_addr)
            .await
            .unwrap();
    }
    emitter
        .send_to(b"\x0a\xff\xff garbage", udp_addr)
        .await
        .unwrap();
    let mut no_origin = log_message("x", "app-guid", "no origin", 5);
    no_origin.origin = None;
    emitter
        .send_to(&no_origin.encode_to_vec(), udp_addr)
        .await
        .unwrap();

    eventually("50 lines and 2 counters", || async {
        logs_of(&c, "app-guid").len() == 50
            && c.got
                .all()
                .iter()
                .filter(|e| e.source_id() == "legacy-counter")
                .count()
                == 2
    })
    .await;
    let want: Vec<String> = (0..50).map(|i| format!("v1 line {i}")).collect();
    assert_eq!(logs_of(&c, "app-guid"), want, "each once, in order");
    let all = c.got.all();
    let line = all
        .iter()
        .find(|e| e.source_id() == "app-guid")
        .unwrap()
        .decode();
    assert_eq!(line.instance_id, "0");
    assert_eq!(line.timestamp, 1_000);
    for (k, v) in [
        ("origin", "legacy"),
        ("__v1_type", "LogMessage"),
        ("source_type", "APP/PROC/WEB"),
        ("deployment", "cf"),
        ("job", "diego-cell"),
    ] {
        assert_eq!(
            line.tags.get(k).map(String::as_str),
            Some(v),
            "{k}: {line:?}"
        );
    }
    // No source_id tag: the agent names the source by its origin; the agent keeps the
    // counter's running total.
    let totals: Vec<u64> = all
        .iter()
        .filter(|e| e.source_id() == "legacy-counter")
        .filter_map(|e| match e.decode().message {
            Some(Message::Counter(c)) => Some(c.total),
            _ => None,
        })
        .collect();
    assert_eq!(totals, [1, 3]);
    assert_eq!(
        a.metric(names::AGENT_REJECTED, &[("reason", "malformed")])
            .await,
        2.0
    );
    c.stop().await.unwrap();
    a.stop().await;
    d.stop().await;
}

/// A loggregator-agent's v1 hop: `Pusher` with one envelope per message. A bad payload is
/// counted and skipped, the stream stays open, and what follows arrives.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_loggregator_agents_pusher_stream_reaches_the_firehose() {
    let d = TestDoppler::start(doppler::Config::default()).await;
    let c = Collector::start(d.grpc, request("", select::all("")), None);
    eventually("subscribed", || async {
        d.metric(names::DOPPLER_SUBSCRIPTIONS, &[("shard_id", "")])
            .await
            == 1.0
    })
    .await;
    let channel = hydrant_proto::transport::endpoint(&d.grpc.to_string(), None)
        .unwrap()
        .connect()
        .await
        .unwrap();
    let mut client = plumbing::doppler_ingestor_client::DopplerIngestorClient::new(channel);
    let (tx, rx) = tokio::sync::mpsc::channel::<plumbing::EnvelopeData>(16);
    // The agent opens the stream and only ever sends; it never reads the answer.
    let call = tokio::spawn(async move {
        client
            .pusher(tokio_stream::wrappers::ReceiverStream::new(rx))
            .await
    });
    let data = |e: &events::Envelope| plumbing::EnvelopeData {
        payload: e.encode_to_vec(),
    };
    let mut with_source = log_message("router", "", "first", 10);
    with_source
        .tags
        .insert("source_id".into(), "gorouter".into());
    with_source.deployment = Some("cf".into());
    with_source.job = Some("router".into());
    tx.send(data(&with_source)).await.unwrap();
    tx.send(plumbing::EnvelopeData {
        payload: b"\xff\xff not dropsonde".to_vec(),
    })
    .await
    .unwrap();
    let mut second = with_source.clone();
    second.log_message.as_mut().unwrap().message = Some(b"second".to_vec());
    tx.send(data(&second)).await.unwrap();
    let mut deployment_job = counter("metron", 5);
    deployment_job.deployment = Some("cf".into());
    deployment_job.job = Some("diego-cell".into());
    tx.send(data(&deployment_job)).await.unwrap();

    eventually("three envelopes", || async { c.got.len() == 3 }).await;
    assert_eq!(logs_of(&c, "gorouter"), ["first", "second"]);
    let counter = c
        .got
        .all()
        .into_iter()
        .find(|e| e.source_id() == "cf/diego-cell")
        .expect("no source_id tag: deployment/job, as the router converts")
        .decode();
    assert_eq!(counter.tags["__v1_type"], "CounterEvent");
    assert_eq!(
        d.metric(names::DOPPLER_REJECTED, &[("reason", "malformed")])
            .await,
        1.0
    );
    assert!(!call.is_finished(), "the stream outlives a bad payload");
    drop(tx);
    let answer = tokio::time::timeout(Duration::from_secs(10), call)
        .await
        .unwrap()
        .unwrap();
    assert!(answer.is_ok(), "{answer:?}");
    c.stop().await.unwrap();
    d.stop().await;
}

/// The same two paths through real processes: `hydrant doppler` and `hydrant agent --udp`,
/// dropsonde datagrams into the agent and a Pusher stream into the doppler, read back
/// from the doppler's Firehose.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn v1_into_real_agent_and_doppler_processes() {
    use crate::guard::Proc;
    use crate::servers::free_port;
    use std::process::{Command, Stdio};

    let spawn = |args: Vec<String>| {
        Proc::new(
            Command::new(crate::hydrant_bin())
                .args(&args)
                .stdout(Stdio::null())
                .stderr(Stdio::inherit())
                .env("RUST_LOG", "warn")
                .spawn()
                .expect("spawn hydrant"),
        )
    };
    let (d_grpc, d_http, a_grpc, a_http) = (free_port(), free_port(), free_port(), free_port());
    let udp = {
        let s = std::net::UdpSocket::bind("127.0.0.1:0").unwrap();
        s.local_addr().unwrap()
    };
    let _doppler = spawn(
        [
            "doppler",
            "--insecure-open",
            "--grpc",
            &d_grpc.to_string(),
            "--http",
            &d_http.to_string(),
        ]
        .map(String::from)
        .to_vec(),
    );
    crate::wait_healthy(d_http).await;
    let _agent = spawn(
        [
            "agent",
            "--insecure-open",
            "--grpc",
            &a_grpc.to_string(),
            "--http",
            &a_http.to_string(),
            "--doppler",
            &d_grpc.to_string(),
            "--udp",
            &udp.to_string(),
        ]
        .map(String::from)
        .to_vec(),
    );
    crate::wait_healthy(a_http).await;
    let c = Collector::start(d_grpc, request("", select::all("")), None);
    eventually("subscribed, agent connected", || async {
        crate::metric(d_http, names::DOPPLER_SUBSCRIPTIONS, &[("shard_id", "")]).await == 1.0
            && crate::metric(a_http, names::AGENT_DOPPLER_STREAMS, &[]).await >= 1.0
    })
    .await;

    let emitter = tokio::net::UdpSocket::bind("127.0.0.1:0").await.unwrap();
    for i in 0..50 {
        let e = log_message("legacy", "udp-app", &format!("udp {i}"), 1_000 + i);
        emitter.send_to(&e.encode_to_vec(), udp).await.unwrap();
        tokio::time::sleep(Duration::from_millis(2)).await;
    }
    let channel = hydrant_proto::transport::endpoint(&d_grpc.to_string(), None)
        .unwrap()
        .connect()
        .await
        .unwrap();
    let mut client = plumbing::doppler_ingestor_client::DopplerIngestorClient::new(channel);
    let (tx, rx) = tokio::sync::mpsc::channel::<plumbing::EnvelopeData>(64);
    let call = tokio::spawn(async move {
        client
            .pusher(tokio_stream::wrappers::ReceiverStream::new(rx))
            .await
    });
    for i in 0..50 {
        let e = log_message("legacy", "grpc-app", &format!("grpc {i}"), 2_000 + i);
        tx.send(plumbing::EnvelopeData {
            payload: e.encode_to_vec(),
        })
        .await
        .unwrap();
    }
    eventually("50 + 50 lines", || async {
        logs_of(&c, "udp-app").len() == 50 && logs_of(&c, "grpc-app").len() == 50
    })
    .await;
    assert_eq!(
        logs_of(&c, "grpc-app"),
        (0..50).map(|i| format!("grpc {i}")).collect::<Vec<_>>()
    );
    drop(tx);
    assert!(call.await.unwrap().is_ok());
    c.stop().await.unwrap();
}
