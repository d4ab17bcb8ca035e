//! Firehose fan-out semantics through a real doppler over gRPC.

use crate::{Collector, TestDoppler, eventually};
use hydrant::doppler;
use hydrant::router::MAX_SELECTORS;
use hydrant::telemetry::names;
use hydrant_proto::envelope;
use hydrant_proto::subscriber::{request, select};
use hydrant_proto::v2::Selector;

use super::{numbered_logs, send};

async fn subscribed(d: &TestDoppler, shard: &str, n: f64) {
    eventually("subscriptions registered", || async {
        d.metric(names::DOPPLER_SUBSCRIPTIONS, &[("shard_id", shard)])
            .await
            == n
    })
    .await;
}

fn sub(d: &TestDoppler, shard: &str, selectors: Vec<Selector>) -> Collector {
    Collector::start(d.grpc, request(shard, selectors), None)
}

#[tokio::test]
async fn broadcast_split_and_independent_groups() {
    let d = TestDoppler::start(doppler::Config::default()).await;
    let b1 = sub(&d, "", vec![select::log("")]);
    let b2 = sub(&d, "", vec![select::log("")]);
    subscribed(&d, "", 2.0).await;
    let split: Vec<Collector> = (0..3)
        .map(|_| sub(&d, "split", vec![select::log("")]))
        .collect();
    subscribed(&d, "split", 3.0).await;
    let other = sub(&d, "other", vec![select::log("")]);
    subscribed(&d, "other", 1.0).await;

    let n = 3000;
    send(d.grpc, numbered_logs("app", n)).await;
    let want = n as usize;
    eventually("every group complete", || async {
        b1.got.len() == want
            && b2.got.len() == want
            && other.got.len() == want
            && split.iter().map(|c| c.got.len()).sum::<usize>() == want
    })
    .await;
    for c in &split {
        let share = c.got.len();
        assert!(
            (800..=1200).contains(&share),
            "uneven split: {share} of {want}"
        );
    }
    // Each shard group saw every sequence number exactly once.
    let mut seqs: Vec<u64> = split
        .iter()
        .flat_map(|c| c.got.seqs().remove("app").unwrap())
        .collect();
    seqs.sort();
    assert_eq!(seqs, (0..n).collect::<Vec<_>>());
    assert_eq!(
        d.metric(names::DOPPLER_EGRESS, &[("shard_id", "split")])
            .await,
        n as f64
    );
    d.stop().await;
}

#[tokio::test]
async fn selectors_by_source_type_counter_name_and_gauge_names() {
    let d = TestDoppler::start(doppler::Config::default()).await;
    let a_logs = sub(&d, "", vec![select::log("a")]);
    let requests = sub(&d, "", vec![select::counter("", "requests")]);
    let cpu_mem = sub(&d, "", vec![select::gauge("", &["cpu", "memory"])]);
    let timers = sub(&d, "", vec![select::timer("b")]);
    let events = sub(&d, "", vec![select::event("")]);
    subscribed(&d, "", 5.0).await;
    send(
        d.grpc,
        vec![
            envelope::log("a", "yes", false),
            envelope::log("b", "no", false),
            envelope::counter("a", "requests", 1),
            envelope::counter("a", "errors", 1),
            envelope::gauge("a", [("cpu", 1.0, "percentage")]),
            envelope::gauge("a", [("cpu", 1.0, "percentage"), ("memory", 5.0, "bytes")]),
            envelope::timer("a", "http", 1, 2),
            envelope::timer("b", "http", 1, 2),
            envelope::event("c", "title", "body"),
        ],
    )
    .await;
    eventually("deliveries", || async {
        [&a_logs, &requests, &cpu_mem, &timers, &events]
            .iter()
            .all(|c| c.got.len() == 1)
    })
    .await;
    assert_eq!(a_logs.got.all()[0].source_id(), "a");
    assert_eq!(requests.got.all()[0].name(), "requests");
    assert_eq!(cpu_mem.got.all()[0].gauge_names().count(), 2);
    assert_eq!(timers.got.all()[0].source_id(), "b");
    // Nothing else arrives late.
    tokio::time::sleep(std::time::Duration::from_millis(100)).await;
    assert!(
        [&a_logs, &requests, &cpu_mem, &timers, &events]
            .iter()
            .all(|c| c.got.len() == 1)
    );
    d.stop().await;
}

#[tokio::test]
async fn deterministic_name_keeps_each_counter_on_one_consumer() {
    let d = TestDoppler::start(doppler::Config::default()).await;
    let mut consumers = Vec::new();
    for i in 0..2 {
        let mut req = request("agg", vec![select::counter("", "")]);
        req.deterministic_name = format!("agg-{i}");
        consumers.push(Collector::start(d.grpc, req, None));
    }
    subscribed(&d, "agg", 2.0).await;
    let names = [
        "requests", "errors", "bytes", "hits", "misses", "latency", "retries", "drops",
    ];
    let envs: Vec<_> = (0..20)
        .flat_map(|round| {
            names
                .iter()
                .map(move |n| envelope::counter("s", *n, round + 1))
        })
        .collect();
    let total = envs.len();
    send(d.grpc, envs).await;
    eventually("all counters", || async {
        consumers.iter().map(|c| c.got.len()).sum::<usize>() == total
    })
    .await;
    let mut owner = std::collections::HashMap::new();
    for (i, c) in consumers.iter().enumerate() {
        for e in c.got.all() {
            let prev = owner.insert(e.name().to_owned(), i);
            assert!(
                prev.is_none() || prev == Some(i),
                "{} reached both consumers",
                e.name()
            );
        }
    }
    assert_eq!(owner.len(), names.len());
    d.stop().await;
}

#[tokio::test]
async fn subscription_without_selectors_or_with_too_many_is_refused() {
    let d = TestDoppler::start(doppler::Config::default()).await;
    let too_many: Vec<_> = (0..100_000)
        .map(|i| select::log(&format!("s{i}")))
        .collect();
    for (selectors, message) in [
        (vec![], "Selectors cannot be empty".to_owned()),
        (
            too_many,
            format!("100000 selectors, more than the {MAX_SELECTORS} one subscription may have"),
        ),
    ] {
        let c = Collector::start(d.grpc, request("", selectors), None);
        eventually("refusal", || async { c.is_finished() }).await;
        let status = c.stop().await.expect_err("refused");
        assert_eq!(status.code(), tonic::Code::InvalidArgument);
        assert!(status.message().contains(&message), "{status:?}");
    }
    assert_eq!(
        d.metric(names::DOPPLER_SUBSCRIPTIONS_REJECTED, &[]).await,
        2.0
    );
    d.stop().await;

    // --max-selectors 2.
    let mut config = doppler::Config::default();
    config.buffer.selectors = 2;
    let d = TestDoppler::start(config).await;
    let three = vec![select::log("a"), select::log("b"), select::log("c")];
    let c = Collector::start(d.grpc, request("", three), None);
    eventually("refusal", || async { c.is_finished() }).await;
    let status = c.stop().await.expect_err("refused");
    assert!(
        status.message().contains("3 selectors, more than the 2"),
        "{status:?}"
    );
    d.stop().await;
}

#[tokio::test]
async fn receiver_streams_single_envelopes() {
    let d = TestDoppler::start(doppler::Config::default()).await;
    let channel = hydrant_proto::transport::endpoint(&d.grpc.to_string(), None)
        .unwrap()
        .connect()
        .await
        .unwrap();
    let mut client = hydrant_proto::v2::egress_client::EgressClient::new(channel);
    let req = hydrant_proto::v2::EgressRequest {
        selectors: vec![select::log("r")],
        ..Default::default()
    };
    let mut stream = client.receiver(req).await.unwrap().into_inner();
    subscribed(&d, "", 1.0).await;
    send(d.grpc, numbered_logs("r", 5)).await;
    for i in 0..5 {
        let e = tokio::time::timeout(crate::WAIT, stream.message())
            .await
            .unwrap()
            .unwrap()
            .unwrap();
        assert_eq!(e.tags["seq"], i.to_string());
    }
    d.stop().await;
}
