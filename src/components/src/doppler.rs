//! The doppler: receives envelopes from agents (`Ingress`) and fans them out as the Firehose
//! (`Egress`) on one gRPC port, with `/metrics` and `/healthz` on an HTTP port.
//!
//! Shutdown order: stop taking data (ingress streams end, new subscriptions are refused),
//! close every subscription buffer so subscribers receive what is buffered and their streams
//! end, then stop the servers — all within the grace period.

use std::sync::Arc;
use std::sync::atomic::Ordering::Relaxed;
use std::time::Duration;

use hydrant_proto::DEFAULT_MAX_MESSAGE_BYTES;
use hydrant_proto::raw::grpc::egress_server::EgressServer;
use hydrant_proto::transport::Tls;
use hydrant_runtime::selfmetrics;
use tokio::net::TcpListener;
use tokio_util::sync::CancellationToken;

use crate::inbound;
use crate::telemetry::names;
use hydrant_runtime::access::{self, Access, Grant, Guard};
use hydrant_runtime::admin::{self, Observe};
use hydrant_runtime::https;
use hydrant_runtime::instrument::Render;
use hydrant_runtime::lifecycle::{self, Lifecycle, Phase};
use hydrant_runtime::{shutdown, sse};

mod egress;
mod hub;

pub use hub::{BufferLimits, Hub, MAX_SHARD_LABELS};

/// Default per-subscription buffer, in envelopes. Loggregator's 1,000 overflows on a single
/// agent burst (41% loss at 10,000/s in the anchor measurement); 100,000 absorbs a fifth of
/// a second of the doppler's peak rate per subscriber.
pub const DEFAULT_SUBSCRIPTION_BUFFER: usize = 100_000;

/// Default per-subscription buffer, in bytes: caps memory at 64 MiB per subscriber however
/// large the envelopes are.
pub const DEFAULT_SUBSCRIPTION_BUFFER_BYTES: usize = 64 * 1024 * 1024;

/// Doppler settings.
#[derive(Debug, Clone)]
pub struct Config {
    /// mTLS on the gRPC port (clients must present a certificate from the CA).
    pub tls: Option<Tls>,
    /// Largest message accepted or sent.
    pub max_message_bytes: usize,
    /// Per-subscription buffer bounds.
    pub buffer: BufferLimits,
    /// Time allowed for an orderly stop.
    pub grace: Duration,
    /// Where to send the component's own metrics as envelopes (none: only `/metrics`).
    pub self_metrics: Option<hydrant_runtime::selfmetrics::SelfMetrics>,
    /// Who may use the HTTP port (`/metrics`, `/v2/read`).
    pub access: Access,
    /// Time a new gRPC connection has to send its first bytes.
    pub handshake_timeout: Duration,
    /// What half-received messages may hold (none: the defaults for `max_message_bytes`).
    pub pending: Option<crate::pending::Limits>,
}

impl Default for Config {
    fn default() -> Self {
        Config {
            pending: None,
            tls: None,
            max_message_bytes: DEFAULT_MAX_MESSAGE_BYTES,
            buffer: BufferLimits {
                envelopes: DEFAULT_SUBSCRIPTION_BUFFER,
                bytes: DEFAULT_SUBSCRIPTION_BUFFER_BYTES,
                selectors: crate::router::MAX_SELECTORS,
            },
            grace: shutdown::DEFAULT_GRACE,
            self_metrics: None,
            access: Access::open(),
            handshake_timeout: crate::connections::HANDSHAKE_TIMEOUT,
        }
    }
}

/// Errors running a doppler.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// The gRPC server failed (bad TLS material, listener error).
    #[error("doppler gRPC server: {0}")]
    Grpc(#[from] tonic::transport::Error),
    /// The self-metrics agent address is unusable.
    #[error("doppler: {0}")]
    Transport(#[from] hydrant_proto::transport::Error),
    /// The HTTP server failed.
    #[error("doppler HTTP server: {0}")]
    Http(#[from] std::io::Error),
}

/// Runs a doppler on the given listeners until `shutdown` fires, then stops in order.
pub async fn run(
    config: Config,
    grpc: TcpListener,
    http: TcpListener,
    shutdown: CancellationToken,
) -> Result<(), Error> {
    let hub = Arc::new(Hub::new(config.buffer));
    let mut life: Lifecycle<Error> = Lifecycle::new("doppler", config.grace);
    // Accept: ingress streams end and new ones are refused.
    let stop_ingress = life.token(Phase::Accept);
    let max = config.max_message_bytes;
    let ingress = inbound::ingress_server(Arc::clone(&hub), stop_ingress.clone(), max);
    let pusher = crate::v1::pusher_server(Arc::clone(&hub), stop_ingress, max);
    let egress = EgressServer::new(egress::EgressService {
        hub: Arc::clone(&hub),
    })
    .max_decoding_message_size(max)
    .max_encoding_message_size(max);
    let builder = inbound::server(config.tls.as_ref())?;
    let incoming = crate::connections::incoming(grpc, config.handshake_timeout);
    let limits = (config.pending).unwrap_or_else(|| crate::pending::Limits::for_max_message(max));
    let budget = inbound::budget(limits, &hub);
    let h = Arc::clone(&hub);
    life.on_stop(Phase::Accept, "ingress streams", async move {
        lifecycle::settled(|| h.stats.ingress_streams.get() <= 0).await;
        Ok(())
    });
    // Flush: new subscriptions are refused and every buffer is closed, so subscribers
    // receive what is buffered and their streams end.
    let h = Arc::clone(&hub);
    life.on_stop(Phase::Flush, "subscriptions", async move {
        h.close();
        lifecycle::settled(|| h.open_subscriptions() == 0).await;
        Ok(())
    });
    // Serve: the gRPC server (ingress and egress on one port) and the HTTP port.
    let grpc_stop = life.token(Phase::Serve);
    let grpc_server = builder
        .layer(inbound::remap_layer(Arc::clone(&hub)))
        .layer(crate::pending::layer(Arc::clone(&budget)))
        .add_service(ingress)
        .add_service(pusher)
        .add_service(egress)
        .serve_with_incoming_shutdown(incoming, async move { grpc_stop.cancelled().await });
    life.spawn(Phase::Serve, "grpc", async move {
        grpc_server.await.map_err(Error::from)
    });
    let observe: Arc<dyn Observe> = Arc::new(Observed(Arc::clone(&hub), budget));
    selfmetrics::register(
        &mut life,
        Arc::clone(&observe),
        config.self_metrics.as_ref(),
    )?;
    let source = Arc::new(egress::HubSource(Arc::clone(&hub)));
    let sse = axum::routing::get(
        move |axum::extract::RawQuery(raw): axum::extract::RawQuery,
              axum::Extension(grant): axum::Extension<Grant>| {
            let source = Arc::clone(&source);
            async move {
                let pairs: Vec<(String, String)> = raw
                    .map(|q| form_urlencoded::parse(q.as_bytes()).into_owned().collect())
                    .unwrap_or_default();
                // The whole Firehose and shard groups are for tokens that read everything;
                // a scoped token subscribes to its own source ids.
                // The doppler knows no scheduler: a scoped token reads its `sources` here.
                let none = std::collections::HashSet::new();
                let allowed = |req: &_| grant.read.may_subscribe(req, &none);
                sse::respond(source.as_ref(), sse::Timing::default(), &pairs, allowed).await
            }
        },
    );
    let router = admin::router(observe).route("/v2/read", sse);
    let router = Guard::new(config.access.clone(), access::reads_and_writes).wrap(router);
    admin::spawn(
        &mut life,
        http,
        router,
        https::server_tls(config.tls.as_ref()).map_err(std::io::Error::from)?,
    );
    let stopped = life.run(shutdown).await?;
    // Buffers of subscribers whose streams did not end in time: counted, never lost
    // silently. For every shard: delivered + dropped = routed to it.
    let discarded = hub.discard_buffered();
    let (mut delivered, mut dropped) = (0, 0);
    for (_, shard, _) in hub.shard_report() {
        delivered += shard.egress.load(Relaxed);
        dropped += shard.dropped.load(Relaxed);
    }
    tracing::info!(
        accepted = hub.stats.ingress.get(),
        delivered,
        dropped,
        discarded_at_stop = discarded,
        overran = stopped.overran.len(),
        "doppler stopped"
    );
    Ok(())
}

/// The doppler's `/metrics` and `/healthz`.
#[derive(Debug)]
struct Observed(Arc<Hub>, Arc<crate::pending::Budget>);

impl Observe for Observed {
    fn metrics(&self) -> String {
        let s = &self.0.stats;
        let mut t = crate::telemetry::text();
        t.sample(names::UP, &[("component", "doppler")], 1.0);
        s.render(&mut t);
        t.sample(names::DOPPLER_PENDING_BYTES, &[], self.1.held() as f64);
        let shards = self.0.shard_report();
        // Ingress never drops: routing pushes into drop-oldest buffers without waiting.
        t.sample(
            names::DOPPLER_DROPPED,
            &[("direction", "ingress"), ("shard_id", "")],
            0.0,
        );
        for (id, st, _) in &shards {
            let v = st.dropped.load(Relaxed) as f64;
            t.sample(
                names::DOPPLER_DROPPED,
                &[("direction", "egress"), ("shard_id", id)],
                v,
            );
        }
        for (id, st, _) in &shards {
            t.sample(
                names::DOPPLER_EGRESS,
                &[("shard_id", id)],
                st.egress.load(Relaxed) as f64,
            );
        }
        for (id, st, _) in &shards {
            let v = st.subscriptions.load(Relaxed) as f64;
            t.sample(names::DOPPLER_SUBSCRIPTIONS, &[("shard_id", id)], v);
        }
        for (id, _, buffered) in &shards {
            t.sample(
                names::DOPPLER_BUFFERED,
                &[("shard_id", id)],
                *buffered as f64,
            );
        }
        t.finish()
    }

    fn health(&self) -> (bool, serde_json::Value) {
        let s = &self.0.stats;
        (
            true,
            serde_json::json!({
                "component": "doppler",
                "status": "ok",
                "ingress_streams": s.ingress_streams.get(),
                "subscriptions": self.0.shard_report().iter()
                    .map(|(_, st, _)| st.subscriptions.load(Relaxed)).sum::<i64>(),
            }),
        )
    }
}
