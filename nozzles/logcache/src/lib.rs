//! The log cache nozzle: keeps the recent envelopes of every source from the Firehose and
//! serves them through a Log Cache-compatible HTTP API, plus live tailing over server-sent
//! events.
//!
//! - [`store`]: the pure cache (ordering, eviction, reads).
//! - [`api`]: the HTTP API (read, meta, info, `/v2/read`, `/metrics`).
//! - [`telemetry`]: metric names.
//! - [`cluster`]: several nodes sharing the sources (ownership, forwarding, proxied
//!   reads).
//! - [`warm`]: at start, the newest lines of every source read back from the storage
//!   nozzle, so a restart does not empty `--recent`.
//!
//! Data flow: one reconnecting subscription per doppler (shard id `log-cache`, every type)
//! → [`store::Store`] behind one mutex, taken once per batch. Reads copy what they need out
//! under the lock and decode and render outside it.

use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Instant;

use futures::StreamExt;
use hydrant_proto::raw::RawBatch;
use hydrant_proto::subscriber::{Subscriber, request, select};
use hydrant_proto::transport::{self, Tls};
use hydrant_proto::v2::EgressBatchRequest;
use hydrant_runtime::access::Access;
use hydrant_runtime::admin::Observe;
use hydrant_runtime::config::{Invalid, require};
use hydrant_runtime::instrument::{Counter, Family, Render};
use hydrant_runtime::lifecycle::{Lifecycle, Phase};
use hydrant_runtime::metrics::Text;
use hydrant_runtime::nozzle;
use hydrant_runtime::selfmetrics;
use tokio::net::TcpListener;
use tokio_util::sync::CancellationToken;

pub mod api;
pub mod cluster;
pub mod directory;
pub mod promql;
pub mod store;
pub mod telemetry;
pub mod warm;

use hydrant_runtime::sse::{self, BatchStream, Source};
use store::{Limits, Store};
use telemetry::{METRICS, names};

/// Shard id of the log cache's Firehose subscriptions.
pub const SHARD_ID: &str = "log-cache";

/// Default envelopes kept per source (Log Cache's `max_per_source`).
pub const DEFAULT_MAX_PER_SOURCE: usize = 100_000;

/// Default memory budget.
pub const DEFAULT_MEMORY_LIMIT: usize = 512 * 1024 * 1024;

/// Largest read response; beyond it a read answers 429 so clients lower their limit
/// (`hydrant logs --recent` halves it, as the cf CLI does).
pub const DEFAULT_MAX_RESPONSE_BYTES: usize = 16 * 1024 * 1024;

/// Log cache settings.
#[derive(Debug, Clone)]
pub struct Config {
    /// Dopplers to read the Firehose from.
    pub dopplers: Vec<String>,
    /// mTLS towards the dopplers.
    pub tls: Option<Tls>,
    /// Store bounds.
    pub limits: Limits,
    /// Who may read (`hydrant_runtime::access`): a token's sources narrow what it reads.
    pub access: Access,
    /// Read response cap.
    pub max_response_bytes: usize,
    /// `/v2/read` timing.
    pub timing: sse::Timing,
    /// Where to send the component's own metrics as envelopes (none: only `/metrics`).
    pub self_metrics: Option<selfmetrics::SelfMetrics>,
    /// Time allowed for an orderly stop.
    pub grace: std::time::Duration,
    /// The scheduler that names apps' guids for tokens scoped to apps by name (none: such
    /// scopes read nothing).
    pub scheduler: Option<directory::Scheduler>,
    /// The storage nozzle to warm from at start (none: start empty).
    pub warm: Option<warm::Warm>,
    /// This node's place in a cluster (none: a single node holding every source).
    pub cluster: Option<cluster::Cluster>,
    /// How dopplers given as DNS names are resolved.
    pub discovery: hydrant_proto::discovery::Discovery,
}

impl Config {
    /// Defaults reading from `dopplers`.
    pub fn new(dopplers: Vec<String>) -> Config {
        Config {
            dopplers,
            tls: None,
            limits: Limits {
                max_per_source: DEFAULT_MAX_PER_SOURCE,
                memory_bytes: DEFAULT_MEMORY_LIMIT,
            },
            access: Access::open(),
            max_response_bytes: DEFAULT_MAX_RESPONSE_BYTES,
            timing: sse::Timing::default(),
            self_metrics: None,
            grace: hydrant_runtime::shutdown::DEFAULT_GRACE,
            scheduler: None,
            warm: None,
            cluster: None,
            discovery: hydrant_proto::discovery::Discovery::default(),
        }
    }

    /// Every setting the log cache would refuse, by flag.
    pub fn validate(&self) -> Vec<Invalid> {
        let mut out = Vec::new();
        require(
            &mut out,
            self.limits.max_per_source > 0,
            "max-per-source",
            "must be at least 1",
        );
        if let Some(c) = &self.cluster {
            require(
                &mut out,
                c.index < c.nodes.len(),
                "node-index",
                "must be less than the number of --node-addrs",
            );
        }
        out
    }
}

/// Errors running the log cache.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// A doppler address or TLS setting is unusable.
    #[error("log cache: {0}")]
    Transport(#[from] transport::Error),
    /// A doppler refused the subscription.
    #[error("log cache: {0}")]
    Refused(#[from] nozzle::Refused),
    /// The HTTP server failed.
    #[error("log cache HTTP server: {0}")]
    Http(#[from] std::io::Error),
}

hydrant_runtime::labels! {
    /// How a read ended: the `status` label of `reads_total`.
    pub enum ReadStatus {
        /// Answered.
        Ok => [("status", "ok")],
        /// No such source (or not the caller's).
        NotFound => [("status", "not_found")],
        /// A parameter was refused.
        BadRequest => [("status", "bad_request")],
        /// The answer would have been too large (429, as Log Cache).
        TooLarge => [("status", "too_large")],
    }
}

hydrant_runtime::instruments! {
    /// What the cache counts as it serves (the store counts its own).
    pub struct Stats {
        /// Reads, by how they ended.
        pub reads: Family<ReadStatus> = names::READS,
        /// Envelopes returned by reads.
        pub read_envelopes: Counter = names::READ_ENVELOPES,
        /// Firehose reconnects.
        pub reconnects: Counter = names::RECONNECTS,
    }
}

/// The running cache, shared by ingest and the API.
pub struct LogCache {
    store: Mutex<Store>,
    access: Access,
    /// Where `/v2/read` subscriptions are opened: every doppler, merged.
    source: Box<dyn Source>,
    timing: sse::Timing,
    max_response_bytes: usize,
    memory_limit: usize,
    started: Instant,
    /// App names to guids, for app-scoped tokens.
    directory: directory::Directory,
    /// How warming from storage went (none: not asked to).
    warmed: Mutex<Option<warm::Report>>,
    /// This node's place in a cluster.
    pub cluster: Option<cluster::Cluster>,
    /// The queues towards the other nodes.
    peers: Option<cluster::Peers>,
    /// Counters.
    pub stats: Stats,
}

impl std::fmt::Debug for LogCache {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("LogCache")
            .field("access", &self.access)
            .finish_non_exhaustive()
    }
}

impl LogCache {
    /// The store. Sync mutex: held for one batch insert or one read's copy, never across an
    /// await.
    pub fn store(&self) -> MutexGuard<'_, Store> {
        self.store.lock().unwrap_or_else(|p| p.into_inner())
    }
}

/// Subscribes to a list of dopplers, merging their streams (for `/v2/read`).
#[derive(Debug, Clone)]
pub struct Dopplers {
    addrs: Vec<String>,
    tls: Option<Tls>,
    cancel: CancellationToken,
}

impl Source for Dopplers {
    fn subscribe(
        &self,
        request: EgressBatchRequest,
    ) -> std::pin::Pin<Box<dyn Future<Output = Result<BatchStream, tonic::Status>> + Send + '_>>
    {
        Box::pin(async move {
            let mut streams = Vec::new();
            for addr in &self.addrs {
                let cancel = self.cancel.child_token();
                let mut sub =
                    Subscriber::new(addr, self.tls.as_ref(), request.clone(), cancel.clone())
                        .map_err(|e| tonic::Status::invalid_argument(e.to_string()))?;
                // Subscribed before the client hears back, so its catch-up read and the
                // live stream leave no gap between them.
                sub.connect_now().await?;
                // Cancel the subscriber when the client's stream is dropped.
                let guard = cancel.drop_guard();
                let stream = futures::stream::unfold((sub, guard), |(mut sub, guard)| async move {
                    match sub.next().await {
                        Ok(Some(batch)) => Some((batch, (sub, guard))),
                        _ => None,
                    }
                });
                streams.push(stream.boxed());
            }
            Ok(futures::stream::select_all(streams).boxed())
        })
    }
}

/// The log cache's side of the Firehose: every batch goes into the store.
impl nozzle::Handler for LogCache {
    async fn batch(&self, batch: RawBatch) {
        match &self.peers {
            Some(peers) => {
                let local = peers.route(&batch.batch);
                self.store().insert_all(&local);
            }
            None => self.store().insert_all(&batch.batch),
        }
    }

    fn reconnected(&self, n: u64) {
        self.stats.reconnects.add(n);
    }
}

/// Runs the log cache: ingest from every doppler, the API on `http`, until `shutdown`.
pub async fn run(
    config: Config,
    http: TcpListener,
    shutdown: CancellationToken,
) -> Result<(), Error> {
    let mut life: Lifecycle<Error> = Lifecycle::new("logcache", config.grace);
    // Accept: the Firehose subscriptions (ingest and `/v2/read` streams) end.
    let accept = life.token(Phase::Accept);
    let peers = config.cluster.clone().map(|c| {
        let (peers, tasks) = cluster::Peers::new(c, accept.clone());
        for t in tasks {
            tokio::spawn(t);
        }
        peers
    });
    let cache = Arc::new(LogCache {
        store: Mutex::new(Store::new(config.limits)),
        access: config.access.clone(),
        source: Box::new(Dopplers {
            addrs: config.dopplers.clone(),
            tls: config.tls.clone(),
            cancel: accept.clone(),
        }),
        timing: config.timing,
        max_response_bytes: config.max_response_bytes,
        memory_limit: config.limits.memory_bytes,
        started: Instant::now(),
        directory: directory::Directory::new(config.scheduler.clone()),
        warmed: Mutex::new(None),
        cluster: config.cluster.clone(),
        peers,
        stats: Stats::default(),
    });
    let source = nozzle::Source {
        dopplers: config.dopplers.clone(),
        tls: config.tls.clone(),
        discovery: config.discovery,
    };
    // In a cluster, the dopplers hand each node the sources it owns (source-id affinity,
    // members ordered by node index).
    let mut req = request(SHARD_ID, select::all(""));
    if let Some(c) = &config.cluster {
        req.deterministic_name = c.member_name();
    }
    nozzle::subscribe(&mut life, &source, &req, &cache)?;
    if let Some(w) = config.warm.clone() {
        spawn_warm(&cache, w, config.limits.max_per_source, accept.clone());
    }
    let observe: Arc<dyn Observe> = Arc::clone(&cache) as _;
    selfmetrics::register(&mut life, observe, config.self_metrics.as_ref())?;
    // Serve: reads are answered until the end.
    let http_tls =
        hydrant_runtime::https::server_tls(config.tls.as_ref()).map_err(std::io::Error::from)?;
    hydrant_runtime::admin::spawn(&mut life, http, api::router(Arc::clone(&cache)), http_tls);
    life.run(shutdown).await?;
    Ok(())
}

/// Warms the store from storage in the background, from the moment the Firehose
/// subscription started (see [`warm`]).
fn spawn_warm(cache: &Arc<LogCache>, w: warm::Warm, per_source: usize, cancel: CancellationToken) {
    let before = hydrant_proto::envelope::now_nanos();
    *cache.warmed.lock().unwrap_or_else(|p| p.into_inner()) = Some(warm::Report {
        status: "pending".into(),
        ..warm::Report::default()
    });
    let cache = Arc::clone(cache);
    tokio::spawn(async move {
        let report = warm::run(&w, before, per_source, &cancel, |envelopes| {
            cache.store().insert_all(&envelopes);
        })
        .await;
        match &report.error {
            None => tracing::info!(
                envelopes = report.envelopes,
                sources = report.sources,
                oldest = report.oldest.as_deref().unwrap_or("-"),
                from = %w.url,
                "log cache: warmed from storage"
            ),
            Some(e) => {
                tracing::warn!(error = %e, "log cache: could not warm from storage; starting empty")
            }
        }
        *cache.warmed.lock().unwrap_or_else(|p| p.into_inner()) = Some(report);
    });
}

impl Observe for LogCache {
    fn metrics(&self) -> String {
        let mut t = Text::new(METRICS);
        let store = self.store();
        let s = store.stats;
        t.sample(names::INGRESS, &[], s.ingested as f64);
        t.sample(
            names::EVICTED,
            &[("reason", "per_source")],
            s.evicted_per_source as f64,
        );
        t.sample(
            names::EVICTED,
            &[("reason", "memory")],
            s.evicted_memory as f64,
        );
        t.sample(names::ENVELOPES, &[], store.len() as f64);
        t.sample(names::SOURCES, &[], store.source_count() as f64);
        let mut top = store.meta(|_, _| true);
        top.sort_by_key(|(_, m)| std::cmp::Reverse(m.count));
        for (id, m) in top.iter().take(100) {
            t.sample(
                names::SOURCE_ENVELOPES,
                &[("source_id", id)],
                m.count as f64,
            );
        }
        t.sample(names::MEMORY, &[], store.bytes() as f64);
        drop(store);
        t.sample(names::MEMORY_LIMIT, &[], self.memory_limit as f64);
        if let Some(p) = &self.peers {
            use std::sync::atomic::Ordering::Relaxed;
            t.sample(
                names::FORWARDED,
                &[],
                p.stats.forwarded.load(Relaxed) as f64,
            );
            t.sample(
                names::FORWARD_DROPPED,
                &[],
                p.stats.dropped.load(Relaxed) as f64,
            );
        }
        self.stats.render(&mut t);
        t.finish()
    }

    fn health(&self) -> (bool, serde_json::Value) {
        let (sources, envelopes) = {
            let store = self.store();
            (store.source_count(), store.len())
        };
        let warmed = self
            .warmed
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .clone();
        let mut body = serde_json::json!({ "component": "logcache", "status": "ok", "sources": sources, "envelopes": envelopes });
        if let Some(w) = warmed {
            body["warm"] = serde_json::to_value(w).unwrap_or_default();
        }
        (true, body)
    }
}
