//! The agent: runs on every cell, accepts envelopes from local emitters (`Ingress`: `Sender`,
//! `BatchSender` and `Send`), completes them (counter totals, configured tags, origin
//! mapping, timestamps), and forwards them in adaptive batches to one or more dopplers.
//!
//! It never blocks an emitter: ingress only validates and queues. Envelopes that need no
//! change (most logs and gauges) are forwarded as the bytes they arrived in.
//! Shutdown order: stop ingress, flush the queue to the dopplers (bounded by the grace
//! period; what cannot be sent is counted), stop the HTTP server.

use std::collections::BTreeMap;
use std::sync::atomic::Ordering::Relaxed;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use hydrant_proto::DEFAULT_MAX_MESSAGE_BYTES;
use hydrant_proto::ingress::{self as client, IngressClient, Sender};
use hydrant_proto::raw::{Kind, RawEnvelope};
use hydrant_proto::transport::{self, Tls};
use hydrant_runtime::instrument::{Counter, Gauge, Render};
use hydrant_runtime::selfmetrics;
use tokio::net::TcpListener;
use tokio_util::sync::CancellationToken;

use crate::inbound;
use crate::status::RejectionCounts;
use crate::telemetry::names;
use hydrant_runtime::access::{self, Access, Guard};
use hydrant_runtime::admin::{self, Observe};
use hydrant_runtime::https;
use hydrant_runtime::lifecycle::{self, Lifecycle, Phase};
use hydrant_runtime::shutdown;

mod counters;
pub mod cri;
pub mod otlp;

pub use counters::{MAX_COUNTER_KEYS, Totals};

/// Agent settings.
#[derive(Debug, Clone)]
pub struct Config {
    /// mTLS for emitters connecting to the agent.
    pub server_tls: Option<Tls>,
    /// Dopplers to forward to (load is spread across all of them).
    pub dopplers: Vec<String>,
    /// mTLS towards the dopplers.
    pub doppler_tls: Option<Tls>,
    /// How a doppler given as a DNS name is resolved (every address it has gets streams).
    pub discovery: hydrant_proto::discovery::Discovery,
    /// Tags added to every envelope that does not already carry them.
    pub tags: BTreeMap<String, String>,
    /// Forwarding buffer bound, in envelopes.
    pub buffer_envelopes: usize,
    /// Forwarding buffer bound, in bytes.
    pub buffer_bytes: usize,
    /// Streams per doppler.
    pub streams_per_doppler: usize,
    /// Pacing of small batches towards dopplers (zero: none).
    pub min_batch_interval: Duration,
    /// Largest message accepted from emitters.
    pub max_message_bytes: usize,
    /// Time allowed for flushing on stop.
    pub grace: Duration,
    /// Where to send the component's own metrics as envelopes (none: only `/metrics`).
    pub self_metrics: Option<hydrant_runtime::selfmetrics::SelfMetrics>,
    /// Who may read `/metrics`.
    pub access: Access,
    /// Time a new gRPC connection has to send its first bytes.
    pub handshake_timeout: Duration,
    /// What half-received messages may hold (none: the defaults for `max_message_bytes`).
    pub pending: Option<crate::pending::Limits>,
    /// A bound socket to read dropsonde (Loggregator v1) datagrams from (none: no UDP).
    pub udp: Option<Arc<std::net::UdpSocket>>,
    /// The kubelet's pod log directory to tail (`/var/log/pods`; none: no pod logs).
    pub cri_logs: Option<std::path::PathBuf>,
    /// Syslog drains: where bindings come from, aggregate drains.
    pub drains: crate::drain::bindings::Config,
    /// A bound socket for OTLP over gRPC (none: no OTLP/gRPC).
    pub otlp_grpc: Option<Arc<std::net::TcpListener>>,
    /// A bound socket for OTLP over HTTP (none: no OTLP/HTTP).
    pub otlp_http: Option<Arc<std::net::TcpListener>>,
}

impl Default for Config {
    fn default() -> Self {
        Config {
            pending: None,
            udp: None,
            cri_logs: None,
            drains: crate::drain::bindings::Config::default(),
            otlp_grpc: None,
            otlp_http: None,
            server_tls: None,
            dopplers: vec!["127.0.0.1:8082".into()],
            doppler_tls: None,
            discovery: hydrant_proto::discovery::Discovery::default(),
            tags: BTreeMap::new(),
            buffer_envelopes: client::DEFAULT_BUFFER_ENVELOPES,
            buffer_bytes: client::DEFAULT_BUFFER_BYTES,
            streams_per_doppler: 1,
            min_batch_interval: client::MIN_BATCH_INTERVAL,
            max_message_bytes: DEFAULT_MAX_MESSAGE_BYTES,
            grace: shutdown::DEFAULT_GRACE,
            self_metrics: None,
            access: Access::open(),
            handshake_timeout: crate::connections::HANDSHAKE_TIMEOUT,
        }
    }
}

/// Errors running an agent.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// A doppler address or TLS setting is unusable.
    #[error("agent: {0}")]
    Transport(#[from] transport::Error),
    /// The gRPC server failed.
    #[error("agent gRPC server: {0}")]
    Grpc(#[from] tonic::transport::Error),
    /// The HTTP server failed.
    #[error("agent HTTP server: {0}")]
    Http(#[from] std::io::Error),
}

hydrant_runtime::instruments! {
    /// The agent's ingress counters (forwarding counts its own, in the `IngressClient`).
    pub struct Stats {
        /// Envelopes accepted from emitters.
        pub ingress: Counter = names::AGENT_INGRESS,
        /// Messages refused.
        pub rejected: RejectionCounts = names::AGENT_REJECTED,
        /// Open ingress streams.
        pub ingress_streams: Gauge = names::AGENT_INGRESS_STREAMS,
        /// Log envelopes from OTLP.
        pub otlp_logs: Counter = names::AGENT_OTLP_LOGS,
        /// Metric envelopes from OTLP.
        pub otlp_metrics: Counter = names::AGENT_OTLP_METRICS,
    }
}

/// What the ingress service shares.
#[derive(Debug)]
pub struct State {
    forward: Sender,
    drains: Arc<crate::drain::bindings::Drains>,
    totals: Mutex<Totals>,
    tags: Vec<(String, String)>,
    /// Counters.
    pub stats: Stats,
}

impl State {
    /// Completes and queues a batch. Never blocks.
    pub fn accept(&self, batch: Vec<RawEnvelope>) {
        self.stats.ingress.add(batch.len() as u64);
        // Envelopes needing more than default tags are decoded; tags alone are appended to
        // the encoded bytes.
        let needs_decode = |e: &RawEnvelope| {
            e.kind() == Kind::Counter || e.source_id().is_empty() || e.timestamp() == 0
        };
        if !batch.iter().any(needs_decode) {
            if self.tags.is_empty() {
                self.drains.offer(&batch);
                self.forward.send_all(batch);
            } else if self.drains.active() {
                let tagged: Vec<RawEnvelope> = batch
                    .iter()
                    .map(|e| e.with_default_tags(self.tag_pairs()))
                    .collect();
                self.drains.offer(&tagged);
                self.forward.send_all(tagged);
            } else {
                // No drains: the tagged envelopes go straight into the queue, uncollected.
                self.forward
                    .send_all(batch.iter().map(|e| e.with_default_tags(self.tag_pairs())));
            }
            return;
        }
        // Sync mutex: held for a loop over one batch, never across an await.
        let mut totals = self.totals.lock().unwrap_or_else(|p| p.into_inner());
        let done: Vec<RawEnvelope> = batch
            .into_iter()
            .map(|raw| {
                if !needs_decode(&raw) {
                    return raw.with_default_tags(self.tag_pairs());
                }
                let mut env = raw.decode();
                self.complete(&mut env, &mut totals);
                RawEnvelope::from_envelope(&env)
            })
            .collect();
        drop(totals);
        self.drains.offer(&done);
        self.forward.send_all(done);
    }

    fn tag_pairs(&self) -> impl Iterator<Item = (&str, &str)> {
        self.tags.iter().map(|(k, v)| (k.as_str(), v.as_str()))
    }

    fn complete(&self, env: &mut hydrant_proto::v2::Envelope, totals: &mut Totals) {
        client::stamp_if_unset(env);
        if env.source_id.is_empty() {
            // Loggregator's origin mapping for emitters that predate source ids.
            if let Some(origin) = env.tags.get("origin").cloned().or_else(|| {
                env.deprecated_tags
                    .get("origin")
                    .map(hydrant_proto::envelope::value_to_string)
            }) {
                env.source_id = origin;
            }
        }
        for (k, v) in &self.tags {
            env.tags.entry(k.clone()).or_insert_with(|| v.clone());
        }
        totals.apply(env);
    }
}

impl crate::inbound::Sink for State {
    const NAME: &'static str = "agent";

    fn accept(&self, batch: Vec<RawEnvelope>) {
        State::accept(self, batch);
    }

    fn open_streams(&self) -> &Gauge {
        &self.stats.ingress_streams
    }

    fn rejected(&self) -> &RejectionCounts {
        &self.stats.rejected
    }
}

/// Runs an agent on the given listeners until `shutdown` fires, then flushes and stops.
pub async fn run(
    config: Config,
    grpc: TcpListener,
    http: TcpListener,
    shutdown: CancellationToken,
) -> Result<(), Error> {
    let mut forward_config = client::Config::new(config.dopplers.clone());
    forward_config.tls = config.doppler_tls.clone();
    forward_config.discovery = config.discovery;
    forward_config.buffer_envelopes = config.buffer_envelopes;
    forward_config.buffer_bytes = config.buffer_bytes;
    forward_config.streams_per_target = config.streams_per_doppler;
    forward_config.min_batch_interval = config.min_batch_interval;
    let forward = IngressClient::start(forward_config)?;
    let drains = Arc::new(crate::drain::bindings::Drains::default());
    let state = Arc::new(State {
        forward: forward.sender(),
        drains: Arc::clone(&drains),
        totals: Mutex::default(),
        tags: config.tags.clone().into_iter().collect(),
        stats: Stats::default(),
    });

    let mut life: Lifecycle<Error> = Lifecycle::new("agent", config.grace);
    // Accept: the ingress streams end and the gRPC server stops taking them.
    let stop_ingress = life.token(Phase::Accept);
    let service = inbound::ingress_server(
        Arc::clone(&state),
        stop_ingress.clone(),
        config.max_message_bytes,
    );
    let builder = inbound::server(config.server_tls.as_ref())?;
    let incoming = crate::connections::incoming(grpc, config.handshake_timeout);
    let limits = (config.pending)
        .unwrap_or_else(|| crate::pending::Limits::for_max_message(config.max_message_bytes));
    let budget = inbound::budget(limits, &state);
    // The server says GOAWAY only once every open stream has been read out (what its
    // client sent before the stop is taken; see `inbound::drain`).
    let open = Arc::clone(&state);
    let grpc_server = builder
        .layer(inbound::remap_layer(Arc::clone(&state)))
        .layer(crate::pending::layer(Arc::clone(&budget)))
        .add_service(service)
        .serve_with_incoming_shutdown(incoming, async move {
            stop_ingress.cancelled().await;
            lifecycle::settled(|| open.stats.ingress_streams.get() <= 0).await;
        });
    life.spawn(Phase::Accept, "grpc ingress", async move {
        grpc_server.await.map_err(Error::from)
    });
    // Loggregator v1: dropsonde datagrams, until the accept phase ends.
    if let Some(udp) = &config.udp {
        let socket = udp.try_clone()?;
        socket.set_nonblocking(true)?;
        let socket = tokio::net::UdpSocket::from_std(socket)?;
        let (sink, tagger) = (Arc::clone(&state), crate::v1::Tagger::new(&config.tags));
        let stop = life.token(Phase::Accept);
        life.spawn(Phase::Accept, "udp ingress", async move {
            crate::v1::serve_udp(socket, sink, tagger, stop).await;
            Ok(())
        });
    }
    // OpenTelemetry: OTLP over gRPC and HTTP, until the accept phase ends.
    let otlp = otlp::Otlp::new(Arc::clone(&state));
    if let Some(socket) = &config.otlp_grpc {
        let socket = socket.try_clone()?;
        socket.set_nonblocking(true)?;
        let listener = TcpListener::from_std(socket)?;
        let (logs, metrics) = otlp::grpc_services(&otlp, config.max_message_bytes);
        let server = inbound::server(config.server_tls.as_ref())?
            .add_service(logs)
            .add_service(metrics);
        let stop = life.token(Phase::Accept);
        life.spawn(Phase::Accept, "otlp grpc", async move {
            server
                .serve_with_incoming_shutdown(
                    tokio_stream::wrappers::TcpListenerStream::new(listener),
                    stop.cancelled_owned(),
                )
                .await
                .map_err(Error::from)
        });
    }
    if let Some(socket) = &config.otlp_http {
        let socket = socket.try_clone()?;
        socket.set_nonblocking(true)?;
        let listener = TcpListener::from_std(socket)?;
        let router = otlp::http_router(otlp.clone(), config.max_message_bytes);
        let tls = https::server_tls(config.server_tls.as_ref()).map_err(std::io::Error::from)?;
        let stop = life.token(Phase::Accept);
        life.spawn(Phase::Accept, "otlp http", async move {
            admin::serve(listener, router, tls, stop)
                .await
                .map_err(Error::from)
        });
    }
    // Kubernetes pods' logs, as the kubelet writes them on this node.
    if let Some(root) = config.cri_logs.clone() {
        let (sink, stop) = (Arc::clone(&state), life.token(Phase::Accept));
        life.spawn(Phase::Accept, "pod logs", async move {
            cri::serve(root, sink, stop).await;
            Ok(())
        });
    }
    // Syslog drains: the apps' bindings and aggregate drains, until the flush ends. A
    // notice about a drain enters like an emitter's log (Weak: the drains live in the
    // state).
    {
        let weak = Arc::downgrade(&state);
        let notify: crate::drain::writer::Notify = Arc::new(move |env| {
            if let Some(state) = weak.upgrade() {
                state.accept(vec![RawEnvelope::from_envelope(&env)]);
            }
        });
        let stop = life.token(Phase::Flush);
        let drain_config = config.drains.clone();
        life.spawn(Phase::Flush, "syslog drains", async move {
            crate::drain::bindings::run(drains, drain_config, notify, stop).await;
            Ok(())
        });
    }
    // Flush: what was accepted goes to the dopplers within what is left of the grace
    // period; the rest is counted as dropped{reason="shutdown"}.
    let deadline = life.deadline();
    let grace = config.grace;
    life.on_stop(Phase::Flush, "forward to dopplers", async move {
        forward.close(deadline.remaining(grace)).await;
        Ok(())
    });
    let observe: Arc<dyn Observe> = Arc::new(Observed {
        state: Arc::clone(&state),
        budget,
    });
    selfmetrics::register(
        &mut life,
        Arc::clone(&observe),
        config.self_metrics.as_ref(),
    )?;
    // Serve: /metrics and /healthz answer until the end.
    let router =
        Guard::new(config.access.clone(), access::reads_and_writes).wrap(admin::router(observe));
    admin::spawn(
        &mut life,
        http,
        router,
        https::server_tls(config.server_tls.as_ref()).map_err(std::io::Error::from)?,
    );

    life.run(shutdown).await?;
    let stats = state.forward.stats();
    tracing::info!(
        accepted = state.stats.ingress.get(),
        sent = stats.sent.load(Relaxed),
        dropped = stats.dropped(),
        "agent stopped"
    );
    Ok(())
}

#[derive(Debug)]
struct Observed {
    state: Arc<State>,
    budget: Arc<crate::pending::Budget>,
}

impl Observe for Observed {
    fn metrics(&self) -> String {
        let s = &self.state;
        let f = s.forward.stats();
        let mut t = crate::telemetry::text();
        t.sample(names::UP, &[("component", "agent")], 1.0);
        s.stats.render(&mut t);
        t.sample(names::AGENT_PENDING_BYTES, &[], self.budget.held() as f64);
        t.sample(names::AGENT_EGRESS, &[], f.sent.load(Relaxed) as f64);
        t.sample(
            names::AGENT_EGRESS_BATCHES,
            &[],
            f.batches.load(Relaxed) as f64,
        );
        for (reason, n) in [
            ("overflow", &f.dropped_overflow),
            ("oversize", &f.dropped_oversize),
            ("shutdown", &f.dropped_shutdown),
        ] {
            t.sample(
                names::AGENT_DROPPED,
                &[("reason", reason)],
                n.load(Relaxed) as f64,
            );
        }
        t.sample(names::AGENT_BUFFERED, &[], s.forward.queued() as f64);
        t.sample(
            names::AGENT_DOPPLER_STREAMS,
            &[],
            f.connected.load(Relaxed) as f64,
        );
        t.sample(
            names::AGENT_RECONNECTS,
            &[],
            f.reconnects.load(Relaxed) as f64,
        );
        t.sample(
            names::AGENT_DOPPLER_ERRORS,
            &[],
            f.errors.load(Relaxed) as f64,
        );
        t.sample(
            names::AGENT_UNCONFIRMED,
            &[],
            f.unconfirmed.load(Relaxed) as f64,
        );
        let drains = &s.drains;
        t.sample(names::AGENT_DRAINS, &[], drains.count() as f64);
        for f in drains.figures() {
            let labels = [("drain_url", f.url.as_str()), ("drain_scope", f.scope)];
            t.sample(names::AGENT_DRAIN_SENT, &labels, f.sent as f64);
            t.sample(names::AGENT_DRAIN_DROPPED, &labels, f.dropped as f64);
            t.sample(names::AGENT_DRAIN_ERRORS, &labels, f.errors as f64);
        }
        t.sample(
            names::AGENT_DRAIN_INVALID,
            &[],
            drains.invalid.load(Relaxed) as f64,
        );
        t.sample(
            names::AGENT_DRAIN_REFRESH_ERRORS,
            &[],
            drains.refresh_errors.load(Relaxed) as f64,
        );
        let keys = s.totals.lock().unwrap_or_else(|p| p.into_inner()).len();
        t.sample(names::AGENT_COUNTER_KEYS, &[], keys as f64);
        t.finish()
    }

    fn health(&self) -> (bool, serde_json::Value) {
        let f = self.state.forward.stats();
        let streams = f.connected.load(Relaxed);
        (
            true,
            serde_json::json!({
                "component": "agent",
                "status": if streams > 0 { "ok" } else { "degraded: no doppler stream" },
                "doppler_streams": streams,
                "buffered": self.state.forward.queued(),
            }),
        )
    }
}
