//! The `hydrant storage` process: Firehose ingest (shard `storage`), background sealing,
//! compaction and retention, and the HTTP API.

use std::sync::atomic::Ordering::Relaxed;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use hydrant_proto::raw::RawBatch;
use hydrant_proto::subscriber::{request, select};
use hydrant_proto::transport::{self, Tls};
use hydrant_runtime::config::{Invalid, require};
use hydrant_runtime::instrument::{Counter, Family};
use hydrant_runtime::lifecycle::{Lifecycle, Phase};
use hydrant_runtime::nozzle;
use hydrant_runtime::selfmetrics;
use tokio::net::TcpListener;
use tokio::sync::mpsc;
use tokio_util::sync::CancellationToken;

use crate::logs::store::{self as log_store, LogStore};
use crate::model;
use crate::queries::{self, Queries};
use crate::sink::{Forwarder, Sink};
use crate::store::maintain::Shared;
use crate::store::{self, Store};
use crate::telemetry::names;

/// Shard id of the storage nozzle's Firehose subscriptions.
pub const SHARD_ID: &str = "storage";

/// How often sealing, compaction and retention run.
pub const DEFAULT_MAINTENANCE: Duration = Duration::from_secs(10);

/// Settings.
#[derive(Debug, Clone)]
pub struct Config {
    /// Dopplers to read the Firehose from.
    pub dopplers: Vec<String>,
    /// mTLS towards them.
    pub tls: Option<Tls>,
    /// How dopplers given as DNS names are resolved.
    pub discovery: hydrant_proto::discovery::Discovery,
    /// The engine.
    pub store: store::Config,
    /// Rows of the log table.
    pub max_log_rows: usize,
    /// Maintenance interval.
    pub maintenance: Duration,
    /// Where stored samples are also sent.
    pub sinks: Vec<Arc<dyn Sink>>,
    /// Where to send the component's own metrics as envelopes (none: only `/metrics`).
    pub self_metrics: Option<hydrant_runtime::selfmetrics::SelfMetrics>,
    /// Time allowed for an orderly stop (sealing, draining the sinks).
    pub grace: Duration,
    /// Who may use the HTTP API (`hydrant_runtime::access`).
    pub access: hydrant_runtime::access::Access,
    /// Query threads, time limit and memory.
    pub queries: queries::Limits,
    /// An object store shared with other storage nodes (sharded by source id).
    pub object: Option<crate::object::Config>,
}

impl Config {
    /// Every setting the nozzle would refuse, by flag.
    pub fn validate(&self) -> Vec<Invalid> {
        let mut out = Vec::new();
        require(
            &mut out,
            self.store.retention >= Duration::from_secs(3600),
            "retention",
            "must be at least 1h (whole hours are dropped)",
        );
        require(
            &mut out,
            self.store.max_series_per_metric > 0,
            "max-series-per-metric",
            "must be at least 1",
        );
        require(
            &mut out,
            self.max_log_rows > 0,
            "max-log-rows",
            "must be at least 1",
        );
        require(
            &mut out,
            self.queries.timeout >= Duration::from_secs(1),
            "query-timeout",
            "must be at least 1s",
        );
        require(
            &mut out,
            self.queries.memory >= 16 * 1024 * 1024,
            "query-memory",
            "must be at least 16MiB",
        );
        require(
            &mut out,
            (1..=64).contains(&self.queries.threads),
            "query-threads",
            "must be between 1 and 64",
        );
        let p = &self.queries.promql;
        for (ok, field) in [
            (p.max_bytes >= 64, "promql-max-bytes"),
            (p.max_nesting >= 1, "promql-max-depth"),
            (p.max_operators >= 1, "promql-max-operators"),
            (p.max_selectors >= 1, "promql-max-selectors"),
        ] {
            require(&mut out, ok, field, "must be at least 1 (64 for bytes)");
        }
        if let Some(o) = &self.object {
            out.extend(o.validate());
        }
        out
    }
}

/// Errors running the nozzle.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// The data directory could not be opened.
    #[error("storage: {0}")]
    Store(#[from] store::Error),
    /// A doppler address or TLS setting is unusable.
    #[error("storage: {0}")]
    Transport(#[from] transport::Error),
    /// A doppler refused the subscription.
    #[error("storage: {0}")]
    Refused(#[from] nozzle::Refused),
    /// The HTTP server failed.
    #[error("storage HTTP server: {0}")]
    Http(#[from] std::io::Error),
    /// The object store could not be opened or read at start.
    #[error("storage: {0}")]
    Object(#[from] crate::object::Error),
}

/// Which query API answered.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Api {
    /// `/api/v1/query`.
    Query,
    /// `/api/v1/query_range`.
    QueryRange,
    /// `/api/v1/sql`.
    Sql,
}

/// How a query ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Outcome {
    /// Answered.
    Ok,
    /// The query or a parameter was refused (Prometheus's `bad_data`).
    BadData,
    /// It failed while running.
    Execution,
}

hydrant_runtime::labels! {
    /// A query's API and outcome: the labels of `queries_total`.
    pub enum QueryLabels {
        /// Instant query answered.
        QueryOk => [("api", "query"), ("result", "ok")],
        /// Instant query refused.
        QueryBadData => [("api", "query"), ("result", "bad_data")],
        /// Instant query failed.
        QueryExecution => [("api", "query"), ("result", "execution")],
        /// Range query answered.
        RangeOk => [("api", "query_range"), ("result", "ok")],
        /// Range query refused.
        RangeBadData => [("api", "query_range"), ("result", "bad_data")],
        /// Range query failed.
        RangeExecution => [("api", "query_range"), ("result", "execution")],
        /// SQL answered.
        SqlOk => [("api", "sql"), ("result", "ok")],
        /// SQL refused.
        SqlBadData => [("api", "sql"), ("result", "bad_data")],
        /// SQL failed.
        SqlExecution => [("api", "sql"), ("result", "execution")],
    }
}

impl QueryLabels {
    /// The series a query of `api` that ended in `outcome` counts in.
    pub fn of(api: Api, outcome: Outcome) -> QueryLabels {
        use QueryLabels::*;
        match (api, outcome) {
            (Api::Query, Outcome::Ok) => QueryOk,
            (Api::Query, Outcome::BadData) => QueryBadData,
            (Api::Query, Outcome::Execution) => QueryExecution,
            (Api::QueryRange, Outcome::Ok) => RangeOk,
            (Api::QueryRange, Outcome::BadData) => RangeBadData,
            (Api::QueryRange, Outcome::Execution) => RangeExecution,
            (Api::Sql, Outcome::Ok) => SqlOk,
            (Api::Sql, Outcome::BadData) => SqlBadData,
            (Api::Sql, Outcome::Execution) => SqlExecution,
        }
    }
}

hydrant_runtime::labels! {
    /// Where the nozzle failed: the `stage` label of `errors_total`. Failed deletes
    /// (`stage="delete"`) are counted by the store, in `Shared::delete_failures`.
    pub enum Stage {
        /// A failed WAL write: the batch is not counted as ingested.
        Ingest => [("stage", "ingest")],
        /// A failed maintenance pass (seal, compaction, retention).
        Maintenance => [("stage", "maintenance")],
        /// A failed publication to the object store (retried at the next sync).
        Publish => [("stage", "object_publish")],
        /// A failed read of the peers' manifests (retried at the next sync).
        Refresh => [("stage", "object_refresh")],
    }
}

hydrant_runtime::instruments! {
    /// Counters of the process (the store and each sink count their own).
    pub struct Stats {
        /// Envelopes received.
        pub received: Counter = names::RECEIVED,
        /// Queries, by API and outcome.
        pub queries: Family<QueryLabels> = names::QUERIES,
        /// Firehose reconnects.
        pub reconnects: Counter = names::RECONNECTS,
        /// Envelopes not stored because a write failed.
        pub unstored: Counter = names::UNSTORED,
        /// Errors, by stage (the store counts failed deletes).
        pub errors: Family<Stage> = names::ERRORS,
    }
}

/// The running nozzle.
#[derive(Debug)]
pub struct Storage {
    /// The store.
    pub shared: Arc<Shared>,
    /// The log table.
    pub logs: Mutex<LogStore>,
    /// How long log parts are kept (the samples' retention).
    retention: Duration,
    /// Counters.
    pub stats: Stats,
    /// Forwarding sinks.
    pub forwarders: Vec<Forwarder>,
    /// Who may use the HTTP API.
    pub access: hydrant_runtime::access::Access,
    /// Where queries run.
    pub queries: Queries,
    /// The object-store side, when configured.
    pub cluster: std::sync::OnceLock<crate::cluster::Cluster>,
    started: Instant,
}

/// A forwarder's delivery task.
pub type Delivery = std::pin::Pin<Box<dyn std::future::Future<Output = ()> + Send>>;

/// An opened storage and its forwarders' delivery tasks, named.
pub type Opened = (Arc<Storage>, Vec<(String, Delivery)>);

impl Storage {
    /// Opens the store and the sinks' forwarders; returns their delivery tasks, named, for
    /// the caller to run (they drain and end when `cancel` fires).
    pub fn open(config: &Config, cancel: &CancellationToken) -> Result<Opened, Error> {
        let store = Store::open(config.store.clone())?;
        let (forwarders, deliveries) = config
            .sinks
            .iter()
            .map(|s| {
                let (f, delivery) = Forwarder::new(Arc::clone(s), cancel.clone());
                let name = format!("sink {} {}", f.name, f.target);
                (f, (name, Box::pin(delivery) as Delivery))
            })
            .unzip();
        let storage = Arc::new(Storage {
            shared: Shared::new(store),
            logs: Mutex::new(LogStore::open(&config.store.dir, config.max_log_rows)),
            retention: config.store.retention,
            stats: Stats::default(),
            forwarders,
            access: config.access.clone(),
            queries: Queries::new(config.queries)?,
            cluster: std::sync::OnceLock::new(),
            started: Instant::now(),
        });
        Ok((storage, deliveries))
    }

    /// Uptime.
    pub fn uptime(&self) -> Duration {
        self.started.elapsed()
    }

    /// Maps and stores decoded envelopes together with samples of series already given
    /// ids (the writer's fast path, [`crate::writer`]), one WAL sync for both; returns the
    /// samples stored.
    pub fn ingest(
        &self,
        envelopes: &[hydrant_proto::v2::Envelope],
        resolved: &[(crate::catalog::SeriesId, i64, f64)],
    ) -> Result<usize, store::Error> {
        let mut points = Vec::with_capacity(envelopes.len());
        let mut rows = Vec::new();
        for e in envelopes {
            rows.extend(model::map(e, &mut points));
        }
        if !rows.is_empty() {
            let mut logs = self.logs.lock().unwrap_or_else(|p| p.into_inner());
            for r in rows {
                logs.push(r);
            }
        }
        if self.forwarders.is_empty() {
            return self.shared.lock().ingest_mixed(&points, resolved, None);
        }
        let mut forward = Vec::with_capacity(points.len() + resolved.len());
        let n = self
            .shared
            .lock()
            .ingest_mixed(&points, resolved, Some(&mut forward))?;
        self.forward(forward);
        Ok(n)
    }

    /// Hands stored samples to every sink; the last one takes the vector itself.
    fn forward(&self, samples: Vec<crate::sink::Sample>) {
        if let Some((last, rest)) = self.forwarders.split_last() {
            for f in rest {
                f.push(samples.iter().cloned());
            }
            last.push(samples);
        }
    }

    /// Writes buffered log rows to parts, merges finished hours, drops expired ones.
    pub async fn maintain_logs(&self, now: i64) {
        let pass = log_store::maintain(&self.logs, &self.shared.files, now, self.retention).await;
        if let Err(e) = pass {
            self.stats.errors.inc(Stage::Maintenance);
            tracing::warn!(error = %e, "storage: log maintenance failed");
        }
    }

    /// Counts a query that ended in `outcome`.
    pub fn count_query(&self, api: Api, outcome: Outcome) {
        self.stats.queries.inc(QueryLabels::of(api, outcome));
    }
}

fn now_ms() -> i64 {
    hydrant_proto::envelope::now_nanos() / 1_000_000
}

/// The storage nozzle's side of the Firehose: batches queue for the writer.
struct Ingest {
    tx: mpsc::Sender<RawBatch>,
    storage: Arc<Storage>,
}

impl nozzle::Handler for Ingest {
    async fn batch(&self, batch: RawBatch) {
        // Fails only once the writer is gone, i.e. never before the subscriptions end.
        let _ = self.tx.send(batch).await;
    }

    fn reconnected(&self, n: u64) {
        self.storage.stats.reconnects.add(n);
    }
}

async fn maintain(
    storage: Arc<Storage>,
    every: Duration,
    cancel: CancellationToken,
) -> Result<(), Error> {
    let mut tick = tokio::time::interval(every);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tokio::select! {
            _ = tick.tick() => {}
            () = cancel.cancelled() => return Ok(()),
        }
        let now = now_ms();
        let shared = &storage.shared;
        let sealed = shared.seal_due(now).await.map(drop);
        let compacted = shared.compact().await.map(drop);
        shared.expire(now).await;
        for r in [sealed, compacted] {
            if let Err(e) = r {
                storage.stats.errors.inc(Stage::Maintenance);
                tracing::warn!(error = %e, "storage maintenance failed");
            }
        }
        storage.maintain_logs(now).await;
    }
}

/// Runs the nozzle until `shutdown`.
pub async fn run(
    config: Config,
    http: TcpListener,
    shutdown: CancellationToken,
) -> Result<(), Error> {
    let mut life: Lifecycle<Error> = Lifecycle::new("storage", config.grace);
    // Accept: the Firehose subscriptions end (what was received is stored) and
    // maintenance stops.
    let accept = life.token(Phase::Accept);
    let flush = life.token(Phase::Flush);
    let remote = match &config.object {
        Some(o) => Some(crate::cluster::connect(o, &config.store.dir).await?),
        None => None,
    };
    let (storage, deliveries) = Storage::open(&config, &flush)?;
    if let (Some(remote), Some(o)) = (remote, &config.object) {
        crate::cluster::attach(&storage, remote).await?;
        let s = Arc::clone(&storage);
        let (every, cancel) = (o.sync, accept.clone());
        life.spawn(Phase::Accept, "object store sync", async move {
            crate::cluster::run(s, every, cancel).await;
            Ok(())
        });
    }
    // Every subscription queues its batches for one writer; the writer ends once the
    // subscriptions have (the queue closes), so the accept phase ends with everything
    // received stored.
    let (tx, rx) = mpsc::channel(crate::writer::INGEST_QUEUE_BATCHES);
    let ingest = Arc::new(Ingest {
        tx,
        storage: Arc::clone(&storage),
    });
    let source = nozzle::Source {
        dopplers: config.dopplers.clone(),
        tls: config.tls.clone(),
        discovery: config.discovery,
    };
    // Nodes sharing an object store split the Firehose by source id (one app's series
    // stay on one node), ordered by node name.
    let mut req = request(SHARD_ID, select::all(""));
    if let Some(o) = &config.object {
        req.deterministic_name =
            format!("{}:{}", hydrant_proto::subscriber::SOURCE_AFFINITY, o.node);
    }
    nozzle::subscribe(&mut life, &source, &req, &ingest)?;
    drop(ingest);
    let s = Arc::clone(&storage);
    life.spawn(Phase::Accept, "store what was received", async move {
        crate::writer::write(s, rx).await;
        Ok(())
    });
    life.spawn(
        Phase::Accept,
        "maintenance",
        maintain(Arc::clone(&storage), config.maintenance, accept),
    );
    // Flush: seal what is buffered, so a restart starts from Parquet alone (and nothing is
    // lost when the WAL is off); the sinks drain their queues.
    let s = Arc::clone(&storage);
    life.on_stop(Phase::Flush, "seal", async move {
        if let Err(e) = s.shared.seal_due(i64::MAX).await {
            s.stats.errors.inc(Stage::Maintenance);
            tracing::error!(error = %e, "storage: sealing at shutdown failed");
        }
        s.maintain_logs(now_ms()).await;
        // What was just sealed reaches the object store before the node stops.
        crate::cluster::exchange(&s).await;
        Ok(())
    });
    for (name, delivery) in deliveries {
        life.spawn(Phase::Flush, name, async move {
            delivery.await;
            Ok(())
        });
    }
    let observe: Arc<dyn hydrant_runtime::admin::Observe> = Arc::clone(&storage) as _;
    selfmetrics::register(&mut life, observe, config.self_metrics.as_ref())?;
    // Serve: queries are answered until the end.
    let http_tls =
        hydrant_runtime::https::server_tls(config.tls.as_ref()).map_err(std::io::Error::from)?;
    hydrant_runtime::admin::spawn(
        &mut life,
        http,
        crate::api::router(Arc::clone(&storage)),
        http_tls,
    );
    let stopped = life.run(shutdown).await?;
    for f in &storage.forwarders {
        tracing::info!(
            sink = f.name,
            target = %f.target,
            sent = f.stats.sent.load(Relaxed),
            failed = f.stats.failed.load(Relaxed),
            overflow = f.overflowed(),
            dropped_at_stop = f.stats.dropped_shutdown.load(Relaxed),
            "storage sink stopped"
        );
    }
    let ingested = storage.shared.lock().stats.ingested;
    tracing::info!(ingested, overran = stopped.overran.len(), "storage stopped");
    Ok(())
}
