//! A doppler restart under load: the agent reconnects and loss stays within its bound.

use std::collections::HashSet;
use std::time::Duration;

use crate::{Collector, TestAgent, TestDoppler, eventually};
use hydrant::telemetry::names;
use hydrant::{agent, doppler};
use hydrant_proto::ingress::{Config, IngressClient};
use hydrant_proto::raw::RawEnvelope;
use hydrant_proto::subscriber::{request, select};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn agent_reconnects_after_doppler_restart_with_bounded_loss() {
    let d1 = TestDoppler::start(doppler::Config::default()).await;
    let port = d1.grpc;
    let agent = TestAgent::start(agent::Config::default(), &[port]).await;
    let sub1 = Collector::start(port, request("", vec![select::log("")]), None);
    eventually("subscribed", || async {
        d1.metric(names::DOPPLER_SUBSCRIPTIONS, &[("shard_id", "")])
            .await
            == 1.0
    })
    .await;

    // An emitter sending 20,000 numbered envelopes at ~10,000/s for two seconds.
    let emitter = IngressClient::start(Config::new(vec![agent.grpc.to_string()])).unwrap();
    let total = 20_000u64;
    let load = async {
        for chunk in 0..200u64 {
            let batch = (0..100).map(|i| {
                let mut e = hydrant_proto::envelope::log("restart", "payload", false);
                e.tags.insert("seq".into(), (chunk * 100 + i).to_string());
                RawEnvelope::from_envelope(&e)
            });
            emitter.send_all(batch);
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
    };
    let restart = async {
        tokio::time::sleep(Duration::from_millis(600)).await;
        d1.stop().await;
        tokio::time::sleep(Duration::from_millis(300)).await;
        // Same port: the agent's address does not change.
        let listener = tokio::net::TcpListener::bind(port)
            .await
            .expect("rebind the doppler port");
        let d2 = TestDoppler::start_on(doppler::Config::default(), listener).await;
        let sub2 = Collector::start(port, request("", vec![select::log("")]), None);
        eventually("subscribed again", || async {
            d2.metric(names::DOPPLER_SUBSCRIPTIONS, &[("shard_id", "")])
                .await
                == 1.0
        })
        .await;
        (d2, sub2)
    };
    let ((), (d2, sub2)) = tokio::join!(load, restart);
    emitter.close(Duration::from_secs(10)).await;

    eventually("agent reconnected", || async {
        agent.metric(names::AGENT_RECONNECTS, &[]).await >= 1.0
    })
    .await;
    eventually("agent buffer flushed", || async {
        agent.metric(names::AGENT_BUFFERED, &[]).await == 0.0
            && agent.metric(names::AGENT_EGRESS, &[]).await >= total as f64 - 5_000.0
    })
    .await;
    tokio::time::sleep(Duration::from_millis(200)).await;
    let mut seen = HashSet::new();
    for c in [sub1, sub2] {
        for e in c.stop().await.unwrap().all() {
            seen.insert(e.tag("seq").unwrap().parse::<u64>().unwrap());
        }
    }
    let lost = total - seen.len() as u64;
    let agent_dropped = agent
        .metric(names::AGENT_DROPPED, &[("reason", "overflow")])
        .await;
    eprintln!(
        "doppler restart: sent {total}, received {}, lost {lost}, agent overflow drops {agent_dropped}",
        seen.len()
    );
    assert_eq!(agent_dropped, 0.0, "the agent buffer absorbs the outage");
    // Only what was in flight on the broken stream can be lost: at most a few batches.
    assert!(
        lost <= 2_000,
        "lost {lost} envelopes across a doppler restart"
    );
    assert!(
        d2.metric(names::DOPPLER_INGRESS, &[]).await > 0.0,
        "traffic resumed to the new doppler"
    );
    agent.stop().await;
    d2.stop().await;
}
