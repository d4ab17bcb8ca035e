//! Delivery guarantees: no loss under capacity, and a slow subscriber losing only its own
//! data, counted exactly.

use std::collections::HashMap;

use crate::{Collector, TestAgent, TestDoppler, eventually};
use hydrant::telemetry::names;
use hydrant::{agent, doppler};
use hydrant_proto::envelope;
use hydrant_proto::subscriber::{request, select};
use hydrant_proto::v2::Envelope;

use std::time::Duration;

use hydrant_proto::ingress::{Config, IngressClient};
use hydrant_proto::raw::RawEnvelope;

use super::send;

/// `per_source` numbered logs from each of `sources` sources, interleaved.
fn workload(sources: usize, per_source: u64) -> Vec<Envelope> {
    let mut out = Vec::new();
    for i in 0..per_source {
        for s in 0..sources {
            let mut e = envelope::log(format!("src-{s}"), vec![b'x'; 200], false);
            e.tags.insert("seq".into(), i.to_string());
            out.push(e);
        }
    }
    out
}

/// Asserts every source has exactly 0..per_source, once each.
fn exactly_once(seqs: HashMap<String, Vec<u64>>, sources: usize, per_source: u64) {
    assert_eq!(seqs.len(), sources);
    for (source, mut got) in seqs {
        got.sort();
        let dupes = got.windows(2).filter(|w| w[0] == w[1]).count();
        got.dedup();
        assert_eq!(dupes, 0, "{source}: duplicates");
        assert_eq!(
            got.len() as u64,
            per_source,
            "{source}: lost {}",
            per_source - got.len() as u64
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn no_loss_under_capacity_through_agent_to_two_shard_groups() {
    let d = TestDoppler::start(doppler::Config::default()).await;
    let agent = TestAgent::start(agent::Config::default(), &[d.grpc]).await;
    let groups: Vec<Vec<Collector>> = ["storage", "logcache"]
        .iter()
        .map(|g| {
            (0..2)
                .map(|_| Collector::start(d.grpc, request(g, vec![select::log("")]), None))
                .collect()
        })
        .collect();
    eventually("4 subscriptions", || async {
        d.metric(names::DOPPLER_SUBSCRIPTIONS, &[("shard_id", "storage")])
            .await
            == 2.0
            && d.metric(names::DOPPLER_SUBSCRIPTIONS, &[("shard_id", "logcache")])
                .await
                == 2.0
    })
    .await;

    let (sources, per_source) = (10, 5_000u64);
    let total = sources * per_source as usize;
    send(agent.grpc, workload(sources, per_source)).await;
    for group in &groups {
        eventually("group received everything", || async {
            group.iter().map(|c| c.got.len()).sum::<usize>() >= total
        })
        .await;
    }
    agent.stop().await;
    for group in groups {
        let mut merged: HashMap<String, Vec<u64>> = HashMap::new();
        for c in group {
            for (s, seqs) in c.stop().await.unwrap().seqs() {
                merged.entry(s).or_default().extend(seqs);
            }
        }
        exactly_once(merged, sources, per_source);
    }
    assert_eq!(d.metric(names::DOPPLER_INGRESS, &[]).await, total as f64);
    for shard in ["storage", "logcache"] {
        let dropped = d
            .metric(
                names::DOPPLER_DROPPED,
                &[("direction", "egress"), ("shard_id", shard)],
            )
            .await;
        assert_eq!(dropped, 0.0);
    }
    d.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn slow_subscriber_loses_only_its_own_data_counted_exactly() {
    const BUFFER: usize = 20_000;
    let mut config = doppler::Config::default();
    config.buffer.envelopes = BUFFER;
    let d = TestDoppler::start(config).await;

    // The slow subscriber: a raw gRPC stream we do not read until the end.
    let channel = hydrant_proto::transport::endpoint(&d.grpc.to_string(), None)
        .unwrap()
        .connect()
        .await
        .unwrap();
    let mut slow_client = hydrant_proto::raw::grpc::egress_client::EgressClient::new(channel)
        .max_decoding_message_size(hydrant_proto::DEFAULT_MAX_MESSAGE_BYTES);
    let mut slow = slow_client
        .batched_receiver(request("slow", vec![select::log("")]))
        .await
        .unwrap()
        .into_inner();
    let fast = Collector::start(d.grpc, request("fast", vec![select::log("")]), None);
    eventually("subscribed", || async {
        d.metric(names::DOPPLER_SUBSCRIPTIONS, &[("shard_id", "fast")])
            .await
            == 1.0
    })
    .await;

    let (sources, per_source) = (4, 25_000u64);
    let total = sources * per_source as usize;
    // ~50,000/s: well within what the fast subscriber reads, far beyond what the stalled
    // one can buffer (its 20,000 plus its HTTP/2 window).
    let client = IngressClient::start(Config::new(vec![d.grpc.to_string()])).unwrap();
    let all: Vec<RawEnvelope> = workload(sources, per_source)
        .iter()
        .map(RawEnvelope::from_envelope)
        .collect();
    for chunk in all.chunks(2_500) {
        client.send_all(chunk.iter().cloned());
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    client.close(Duration::from_secs(20)).await;
    eventually("fast subscriber complete", || async {
        fast.got.len() >= total
    })
    .await;
    let dropped_slow = d
        .metric(
            names::DOPPLER_DROPPED,
            &[("direction", "egress"), ("shard_id", "slow")],
        )
        .await;
    assert!(
        dropped_slow > 0.0,
        "the stalled subscriber must have overflowed its buffer"
    );
    assert_eq!(
        d.metric(
            names::DOPPLER_DROPPED,
            &[("direction", "egress"), ("shard_id", "fast")]
        )
        .await,
        0.0
    );
    assert_eq!(
        d.metric(names::DOPPLER_INGRESS, &[]).await,
        total as f64,
        "ingest was not held back"
    );

    // Now drain the slow subscriber: what it gets plus what was dropped for it is everything.
    let mut received = 0u64;
    while received + (dropped_slow as u64) < total as u64 {
        let batch = tokio::time::timeout(crate::WAIT, slow.message())
            .await
            .expect("more data")
            .unwrap()
            .unwrap();
        received += batch.batch.len() as u64;
    }
    assert_eq!(
        received + dropped_slow as u64,
        total as u64,
        "delivered + dropped = sent"
    );
    exactly_once(fast.stop().await.unwrap().seqs(), sources, per_source);
    d.stop().await;
}
