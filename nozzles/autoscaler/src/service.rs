//! The `hydrant autoscaler` process around the pure [`Fleet`]: Firehose ingest, the tick
//! loop, actuator calls, instance-count refresh, policy reload, alert delivery and events
//! back into the Firehose.
//!
//! Tasks: one subscription per doppler (shard [`SHARD_ID`], gauges and timers, routed by
//! source id so each app lands on one instance) → `Fleet::observe` under one mutex per
//! batch; a tick loop → `Fleet::tick` → effects; each scale runs in its own task (the fleet
//! keeps at most one per app in flight) and reports back with `Fleet::completed`.

use std::collections::HashMap;
use std::path::PathBuf;
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{Duration, Instant};

use hydrant_proto::ingress::{IngressClient, Sender};
use hydrant_proto::raw::RawBatch;
use hydrant_proto::subscriber::{SOURCE_AFFINITY, request, select};
use hydrant_proto::transport::{self, Tls};
use hydrant_proto::v2;
use hydrant_runtime::config::{Invalid, require};
use hydrant_runtime::instrument::{Counter, Family, Seconds};
use hydrant_runtime::lifecycle::{Lifecycle, Phase};
use hydrant_runtime::nozzle;
use hydrant_runtime::selfmetrics;
use tokio::net::TcpListener;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

use crate::actuator::Actuator;
use crate::engine::Time;
use crate::fleet::{Fleet, Settings};
use crate::history::Record;
use crate::notify::{Notifier, Receivers};
use crate::telemetry::names;

mod durable;
mod emit;
mod loops;
mod policies;

#[cfg(test)]
pub(crate) use policies::idle;
pub use policies::{PolicyFiles, Reloaded};

/// Shard id of the autoscaler's Firehose subscriptions.
pub const SHARD_ID: &str = "autoscaler";

/// Default evaluation tick.
pub const DEFAULT_TICK: Duration = Duration::from_secs(10);

/// Default refresh of instance counts from the platform.
pub const DEFAULT_REFRESH: Duration = Duration::from_secs(15);

/// How often policy files are checked for changes (SIGHUP reloads at once).
pub const DEFAULT_RELOAD_POLL: Duration = Duration::from_secs(2);

/// `source_type` of the log lines the autoscaler emits for an app.
pub const SOURCE_TYPE: &str = "AUTOSCALER";

/// Autoscaler settings.
#[derive(Debug, Clone)]
pub struct Config {
    /// Dopplers to read the Firehose from.
    pub dopplers: Vec<String>,
    /// mTLS towards the dopplers (and the event target).
    pub tls: Option<Tls>,
    /// How dopplers given as DNS names are resolved.
    pub discovery: hydrant_proto::discovery::Discovery,
    /// Policy files or directories.
    pub policies: Vec<PathBuf>,
    /// Where history and cooldowns are kept across restarts (none: in memory only).
    pub data_dir: Option<PathBuf>,
    /// What carries out scales.
    pub actuator: Arc<dyn Actuator>,
    /// Alert receivers.
    pub receivers: Receivers,
    /// Where decisions and alerts are sent as envelopes (empty: nowhere).
    pub emit_to: Vec<String>,
    /// Evaluation tick.
    pub tick: Duration,
    /// Instance-count refresh.
    pub refresh: Duration,
    /// Policy change polling.
    pub reload_poll: Duration,
    /// Fleet settings.
    pub settings: Settings,
    /// Evaluate and record, but never call the actuator.
    pub shadow: bool,
    /// Suffix of the source-affine `deterministic_name` (orders members; optional).
    pub member: Option<String>,
    /// Where to send the component's own metrics as envelopes (none: only `/metrics`).
    pub self_metrics: Option<hydrant_runtime::selfmetrics::SelfMetrics>,
    /// Time allowed for an orderly stop (scale calls and alerts in flight, emitted records).
    pub grace: Duration,
    /// Who may use the HTTP API (`hydrant_runtime::access`).
    pub access: hydrant_runtime::access::Access,
    /// The query API the API's replays read (`--replay-from`; none: replay is refused).
    pub replay_from: Option<ReplayFrom>,
}

/// The storage query API the autoscaler's API replays policies against.
#[derive(Debug, Clone)]
pub struct ReplayFrom {
    /// Base URL of a Prometheus-compatible query API (the storage nozzle).
    pub url: String,
    /// Its client (`hydrant_runtime::https::client`, so https with `--tls-ca` works).
    pub http: reqwest::Client,
}

impl Config {
    /// Every setting the autoscaler would refuse, by flag.
    pub fn validate(&self) -> Vec<Invalid> {
        validate(self.tick, self.refresh, &self.settings)
    }
}

/// Every timing and fleet setting the autoscaler would refuse, by flag: what
/// [`Config::validate`] checks, for a caller that cannot build a whole `Config` (its
/// actuator was refused) and still reports every problem at once.
pub fn validate(tick: Duration, refresh: Duration, settings: &Settings) -> Vec<Invalid> {
    let mut out = Vec::new();
    let second = Duration::from_secs(1);
    require(&mut out, tick >= second, "tick", "must be at least 1s");
    require(
        &mut out,
        refresh >= second,
        "refresh",
        "must be at least 1s",
    );
    require(
        &mut out,
        settings.stat_window >= 1,
        "stat-window",
        "must be at least 1s",
    );
    require(
        &mut out,
        settings.breaker_failures >= 1,
        "breaker-failures",
        "must be at least 1",
    );
    out
}

/// Errors running the autoscaler.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// A doppler address or TLS setting is unusable.
    #[error("autoscaler: {0}")]
    Transport(#[from] transport::Error),
    /// A doppler refused the subscription.
    #[error("autoscaler: {0}")]
    Refused(#[from] nozzle::Refused),
    /// The HTTP server failed.
    #[error("autoscaler HTTP server: {0}")]
    Http(#[from] std::io::Error),
}

hydrant_runtime::labels! {
    /// How an actuator scale call ended: the `result` label of `scale_calls_total`.
    pub enum ScaleResult {
        /// The platform carried it out.
        Ok => [("result", "ok")],
        /// The platform refused or did not answer.
        Error => [("result", "error")],
        /// Recorded but not carried out (shadow mode).
        Shadow => [("result", "shadow")],
    }
}

hydrant_runtime::labels! {
    /// How a policy reload ended: the `result` label of `policy_reloads_total`.
    pub enum ReloadResult {
        /// The new policies are in force.
        Ok => [("result", "ok")],
        /// Refused; the previous policies stay.
        Failed => [("result", "failed")],
    }
}

hydrant_runtime::labels! {
    /// A history record's status and scaling type: the labels of `decisions_total`.
    pub enum Decision {
        /// A rule or target scaled.
        SucceededDynamic => [("status", "succeeded"), ("type", "dynamic")],
        /// A schedule scaled.
        SucceededSchedule => [("status", "succeeded"), ("type", "schedule")],
        /// A rule's scale failed.
        FailedDynamic => [("status", "failed"), ("type", "dynamic")],
        /// A schedule's scale failed.
        FailedSchedule => [("status", "failed"), ("type", "schedule")],
        /// A rule's scale was decided against.
        IgnoredDynamic => [("status", "ignored"), ("type", "dynamic")],
        /// A schedule's scale was decided against.
        IgnoredSchedule => [("status", "ignored"), ("type", "schedule")],
    }
}

impl Decision {
    /// The series `record` counts in.
    pub fn of(record: &Record) -> Decision {
        use crate::history::{ScalingType::*, Status::*};
        match (record.status, record.scaling_type) {
            (Succeeded, Dynamic) => Decision::SucceededDynamic,
            (Succeeded, Schedule) => Decision::SucceededSchedule,
            (Failed, Dynamic) => Decision::FailedDynamic,
            (Failed, Schedule) => Decision::FailedSchedule,
            (Ignored, Dynamic) => Decision::IgnoredDynamic,
            (Ignored, Schedule) => Decision::IgnoredSchedule,
        }
    }
}

hydrant_runtime::instruments! {
    /// Counters of the shell (the notifier counts its deliveries).
    pub struct Stats {
        /// Envelopes received.
        pub received: Counter = names::RECEIVED,
        /// Ticks.
        pub ticks: Counter = names::TICKS,
        /// How long the latest tick took.
        pub tick: Seconds = names::TICK_SECONDS,
        /// History records, by status and scaling type.
        pub decisions: Family<Decision> = names::DECISIONS,
        /// Actuator scale calls, by result.
        pub scale_calls: Family<ScaleResult> = names::SCALE_CALLS,
        /// Failed count refreshes.
        pub list_errors: Counter = names::LIST_ERRORS,
        /// Policy reloads, by result.
        pub reloads: Family<ReloadResult> = names::RELOADS,
        /// Firehose reconnects.
        pub reconnects: Counter = names::RECONNECTS,
    }
}

/// The running autoscaler, shared by its tasks and the API.
pub struct Autoscaler {
    fleet: Mutex<Fleet>,
    actuator: Arc<dyn Actuator>,
    notifier: Notifier,
    /// Where decisions and alerts are sent back into the Firehose.
    emitter: Option<Sender>,
    /// Scale calls in flight; stopping waits for them.
    scale_calls: TaskTracker,
    /// Per-app scales carried out, out and in (see `emit::DIRECTIONS`), sent as counters
    /// every tick, by app guid.
    app_totals: Mutex<HashMap<String, [u64; 2]>>,
    shadow: bool,
    started: Instant,
    /// Who may use the API.
    pub access: hydrant_runtime::access::Access,
    /// Errors of refused policy files (`/healthz` says degraded while there are any).
    policy_problems: Mutex<Vec<String>>,
    /// History and cooldowns on disk (`--data-dir`).
    durable: Option<Mutex<durable::Store>>,
    /// The policy files and what was loaded from them (see `policies`).
    policies: Mutex<policies::Watch>,
    /// Where the API's replays read stored metrics.
    replay_from: Option<ReplayFrom>,
    /// The evaluation tick (a replay's default step).
    tick: Duration,
    /// Counters.
    pub stats: Stats,
}

impl std::fmt::Debug for Autoscaler {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Autoscaler")
            .field("actuator", &self.actuator)
            .field("shadow", &self.shadow)
            .finish_non_exhaustive()
    }
}

/// UNIX seconds now.
pub fn unix_now() -> Time {
    chrono::Utc::now().timestamp()
}

impl Autoscaler {
    /// The fleet. Sync mutex: held for one batch or one tick, never across an await.
    pub fn fleet(&self) -> MutexGuard<'_, Fleet> {
        self.fleet.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// The notifier's counters.
    pub fn notify_stats(&self) -> &crate::notify::Stats {
        &self.notifier.stats
    }

    /// Errors of the policy files refused at the last load (none: every file is in force).
    pub fn policy_problems(&self) -> Vec<String> {
        self.policy_problems
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .clone()
    }

    /// Time since start.
    pub fn uptime(&self) -> Duration {
        self.started.elapsed()
    }

    /// Where the API's replays read stored metrics (`--replay-from`).
    pub fn replay_from(&self) -> Option<&ReplayFrom> {
        self.replay_from.as_ref()
    }

    /// The evaluation tick.
    pub fn tick(&self) -> Duration {
        self.tick
    }

    fn count(&self, record: &Record) {
        self.stats.decisions.inc(Decision::of(record));
    }

    /// Keeps a record (and, after a scale, the cooldowns) on disk when there is a data dir.
    fn keep(&self, record: &Record, scaled: bool) {
        let Some(store) = &self.durable else { return };
        let mut store = store.lock().unwrap_or_else(|p| p.into_inner());
        if let Err(e) = store.append(record) {
            tracing::error!(error = %e, "autoscaler: a history record could not be stored");
        }
        if scaled {
            let (cooldowns, alerts) = {
                let fleet = self.fleet();
                (fleet.cooldowns(), fleet.firing_alerts())
            };
            if let Err(e) = store.save_state(&cooldowns, &alerts) {
                tracing::error!(error = %e, "autoscaler: cooldowns could not be stored");
            }
        }
    }

    /// Keeps the firing alerts (and cooldowns) on disk after an alert fired or resolved.
    fn keep_alerts(&self) {
        let Some(store) = &self.durable else { return };
        let (cooldowns, alerts) = {
            let fleet = self.fleet();
            (fleet.cooldowns(), fleet.firing_alerts())
        };
        let store = store.lock().unwrap_or_else(|p| p.into_inner());
        if let Err(e) = store.save_state(&cooldowns, &alerts) {
            tracing::error!(error = %e, "autoscaler: firing alerts could not be stored");
        }
    }
}

/// Longest wait for emitted records to leave at a stop: a doppler that is gone (`hydrant
/// up` stops the dopplers before the nozzles) is not worth the whole grace period; what
/// stays queued is counted as dropped.
pub const EMIT_CLOSE_GRACE: Duration = Duration::from_secs(2);

/// Runs the autoscaler until `shutdown`.
pub async fn run(
    config: Config,
    http: TcpListener,
    shutdown: CancellationToken,
) -> Result<(), Error> {
    // A refused policy file does not stop the others (see `policies`).
    let (watch, loaded) = policies::Watch::load(config.policies.clone());
    for p in &loaded.warnings {
        tracing::warn!("{p}");
    }
    if !loaded.errors.is_empty() {
        tracing::error!(
            "policy files refused; every other one is in force:\n{}",
            loaded.listing()
        );
    }
    let mut life: Lifecycle<Error> = Lifecycle::new("autoscaler", config.grace);
    // Accept: subscriptions end, and with them ticks, count refreshes and reloads.
    let accept = life.token(Phase::Accept);
    let flush = life.token(Phase::Flush);
    let mut fleet = Fleet::new(config.settings);
    let problems: Vec<String> = loaded.errors.iter().map(ToString::to_string).collect();
    let changes = fleet.set_policies(loaded.policies);
    let durable = match &config.data_dir {
        Some(dir) => {
            let (store, restored) = durable::Store::open(dir, unix_now())?;
            if restored.damaged > 0 {
                tracing::warn!(
                    damaged = restored.damaged,
                    "autoscaler: damaged history lines skipped"
                );
            }
            tracing::info!(
                records = restored.records.len(),
                apps = restored.cooldowns.len(),
                firing = restored.alerts.values().map(Vec::len).sum::<usize>(),
                "autoscaler: history, cooldowns and firing alerts restored"
            );
            fleet.restore(&restored.cooldowns, restored.records);
            fleet.restore_alerts(&restored.alerts, unix_now());
            Some(Mutex::new(store))
        }
        None => None,
    };
    tracing::info!(apps = changes.added, "autoscaler: policies loaded");
    let emitter = if config.emit_to.is_empty() {
        None
    } else {
        let mut c = hydrant_proto::ingress::Config::new(config.emit_to.clone());
        c.tls = config.tls.clone();
        Some(IngressClient::start(c)?)
    };
    let (notifier, delivery) = Notifier::new(config.receivers.clone(), flush);
    let sender = emitter.as_ref().map(IngressClient::sender);
    let scaler = Arc::new(assemble(
        &config, fleet, watch, problems, notifier, sender, durable,
    ));
    scaler.emit_policy_problems();
    let name = match &config.member {
        Some(m) => format!("{SOURCE_AFFINITY}:{m}"),
        None => SOURCE_AFFINITY.to_owned(),
    };
    let mut req = request(SHARD_ID, vec![select::gauge("", &[]), select::timer("")]);
    req.deterministic_name = name;
    let source = nozzle::Source {
        dopplers: config.dopplers.clone(),
        tls: config.tls.clone(),
        discovery: config.discovery,
    };
    nozzle::subscribe(&mut life, &source, &req, &scaler)?;
    life.spawn(
        Phase::Accept,
        "refresh counts",
        loops::refresh(Arc::clone(&scaler), config.refresh, accept.clone()),
    );
    life.spawn(
        Phase::Accept,
        "ticks",
        loops::ticks(Arc::clone(&scaler), config.tick, accept.clone()),
    );
    life.spawn(
        Phase::Accept,
        "reload policies",
        policies::reload(Arc::clone(&scaler), config.reload_poll, accept),
    );
    // Flush: scale calls in flight complete (their records are emitted), alerts queued by
    // then reach the receivers, and what was emitted reaches the Firehose.
    life.spawn(Phase::Flush, "alert delivery", async move {
        delivery.await;
        Ok(())
    });
    let s = Arc::clone(&scaler);
    let deadline = life.deadline();
    let grace = life.grace();
    life.on_stop(
        Phase::Flush,
        "scale calls, then emitted records",
        async move {
            s.scale_calls.close();
            s.scale_calls.wait().await;
            if let Some(e) = emitter {
                e.close(deadline.remaining(grace).min(EMIT_CLOSE_GRACE))
                    .await;
            }
            Ok(())
        },
    );
    let observe: Arc<dyn hydrant_runtime::admin::Observe> = Arc::clone(&scaler) as _;
    selfmetrics::register(&mut life, observe, config.self_metrics.as_ref())?;
    // Serve: the API answers until the end.
    let http_tls =
        hydrant_runtime::https::server_tls(config.tls.as_ref()).map_err(std::io::Error::from)?;
    hydrant_runtime::admin::spawn(
        &mut life,
        http,
        crate::api::router(Arc::clone(&scaler)),
        http_tls,
    );
    life.run(shutdown).await?;
    Ok(())
}

/// The shared state of a running autoscaler.
fn assemble(
    config: &Config,
    fleet: Fleet,
    watch: policies::Watch,
    problems: Vec<String>,
    notifier: Notifier,
    emitter: Option<Sender>,
    durable: Option<Mutex<durable::Store>>,
) -> Autoscaler {
    Autoscaler {
        fleet: Mutex::new(fleet),
        actuator: Arc::clone(&config.actuator),
        notifier,
        emitter,
        scale_calls: TaskTracker::new(),
        app_totals: Mutex::default(),
        shadow: config.shadow,
        started: Instant::now(),
        access: config.access.clone(),
        policy_problems: Mutex::new(problems),
        durable,
        policies: Mutex::new(watch),
        replay_from: config.replay_from.clone(),
        tick: config.tick,
        stats: Stats::default(),
    }
}

/// The autoscaler's side of the Firehose: gauges and timers become app-level samples.
impl nozzle::Handler for Autoscaler {
    async fn batch(&self, batch: RawBatch) {
        let envelopes: Vec<v2::Envelope> = batch.batch.iter().map(|e| e.decode()).collect();
        self.stats.received.add(envelopes.len() as u64);
        let now = unix_now();
        let mut fleet = self.fleet();
        for e in &envelopes {
            fleet.observe(e, now);
        }
    }

    fn reconnected(&self, n: u64) {
        self.stats.reconnects.add(n);
    }
}
