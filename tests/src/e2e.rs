//! End-to-end tests, one module per concern.

mod access;
mod actuators;
mod agent;
mod autoscaler;
mod autoscaler_alerts;
mod autoscaler_cf;
mod autoscaler_policies;
mod autoscaler_restart;
mod bad_input;
mod browser;
mod cell;
mod cell_api;
mod cell_lifetime;
mod cli;
mod compat;
mod console;
mod dashboards;
mod delivery;
mod discovery;
mod drains;
mod fanout;
mod hostile;
mod kubernetes;
mod logcache;
mod logcache_cluster;
mod logcache_cluster_query;
mod logcache_promql;
mod logcache_warm;
mod logs;
mod multihost;
mod netns;
mod otlp;
mod otlp_export;
mod pending;
mod pod_logs;
mod promql_diff;
mod promql_queries;
mod replay;
mod replay_live;
mod restart;
mod shutdown;
mod sinks;
mod storage;
mod storage_disk;
mod storage_logs;
mod storage_object;
mod storage_safety;
mod tidy;
mod tls;
mod up;
mod up_harness;
mod up_restart;
mod up_stop;
mod up_wiring;
mod v1;

use std::net::SocketAddr;
use std::time::Duration;

use hydrant_proto::ingress::{Config, IngressClient};
use hydrant_proto::raw::RawEnvelope;
use hydrant_proto::v2::Envelope;

/// Sends `envelopes` to `to` over BatchSender and waits until they are flushed.
async fn send(to: SocketAddr, envelopes: impl IntoIterator<Item = Envelope>) {
    let client = IngressClient::start(Config::new(vec![to.to_string()])).unwrap();
    let raw: Vec<RawEnvelope> = envelopes
        .into_iter()
        .map(|e| RawEnvelope::from_envelope(&e))
        .collect();
    let n = raw.len() as u64;
    let pushed = client.send_all(raw);
    assert_eq!(pushed.dropped, 0);
    let stats = std::sync::Arc::clone(client.stats());
    client.close(Duration::from_secs(20)).await;
    assert_eq!(
        stats.sent.load(std::sync::atomic::Ordering::Relaxed),
        n,
        "all envelopes written"
    );
}

/// Log envelopes `seq` 0..n from `source`, each tagged with its sequence number.
fn numbered_logs(source: &str, n: u64) -> Vec<Envelope> {
    (0..n)
        .map(|i| {
            let mut e = hydrant_proto::envelope::log(source, format!("line {i}"), false);
            e.tags.insert("seq".into(), i.to_string());
            e
        })
        .collect()
}
