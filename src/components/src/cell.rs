//! The cell: a single-host scheduler that runs app instances as real processes, streams
//! their output and container metrics to the local agent, and converges actual state onto
//! desired state (the role of a Diego cell plus the slice of Cloud Controller that scales).
//!
//! - [`model`]: desired/actual state and the pure converge plan with crash backoff.
//! - [`process`]: launching an instance and supervising it (output pumps, stop, exit).
//! - [`monitor`]: container metrics every interval, and quota enforcement.
//! - [`api`]: the Cloud Controller v3 subset over HTTP; [`contract`]: its bodies, shared
//!   with the client (`apps::Client`).
//! - [`logs`]: line splitting, the log rate limit, envelope builders.
//! - [`usage`]: `/proc`, disk usage and cgroup v2 plumbing.
//!
//! Shutdown order: the API stops taking requests, every instance is stopped gracefully
//! (SIGTERM, then SIGKILL after the grace period), then queued envelopes are flushed to the
//! agent.

use std::collections::BTreeMap;
use std::path::PathBuf;

use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{Duration, SystemTime};

use crate::telemetry::names;
use futures::FutureExt as _;
use hydrant_proto::ingress::{self as client, IngressClient, Sender};
use hydrant_proto::raw::RawEnvelope;
use hydrant_proto::transport::{self, Tls};
use hydrant_proto::v2::Envelope;
use hydrant_runtime::config::{Invalid, require};
use hydrant_runtime::instrument::Counter;
use hydrant_runtime::lifecycle::{Lifecycle, Phase};
use hydrant_runtime::selfmetrics;
use tokio::net::TcpListener;
use tokio::sync::Notify;
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

pub mod api;
pub mod contract;
pub mod desired;
pub mod logs;
pub mod model;
pub mod monitor;
pub mod process;
pub mod services;
pub mod usage;

use logs::AppTags;
use model::{Action, AppSpec, Backoff, Instance, State};

/// Default interval between container metric envelopes (Cloud Foundry's 15 s).
pub const DEFAULT_METRICS_INTERVAL: Duration = Duration::from_secs(15);

/// Time for the last envelopes to reach the agent once every instance has stopped: the
/// cell's whole stop is bounded by the instances' stop grace plus this.
pub const FLUSH_GRACE: Duration = Duration::from_secs(5);

/// Most instances one app may ask for: a bound on what one request can make the cell spawn.
pub const MAX_INSTANCES: u32 = 250;

/// Cell settings.
#[derive(Debug, Clone)]
pub struct Config {
    /// Agent to send envelopes to.
    pub agent: String,
    /// mTLS towards the agent.
    pub agent_tls: Option<Tls>,
    /// Instance working directories live under here.
    pub data_dir: PathBuf,
    /// Container metrics interval.
    pub metrics_interval: Duration,
    /// Per-instance log rate limit in bytes/s (`None`: unlimited).
    pub log_rate_limit: Option<u64>,
    /// SIGTERM → SIGKILL grace for stopping instances.
    pub stop_grace: Duration,
    /// Crash restart policy.
    pub backoff: Backoff,
    /// Who may use the API (`hydrant_runtime::access`).
    pub access: hydrant_runtime::access::Access,
    /// Memory the cell offers to apps, for `cpu_entitlement` (default: the host's).
    pub memory_capacity_bytes: u64,
    /// Cores the cell offers to apps.
    pub cores: u64,
    /// Name of this cell in lifecycle messages.
    pub cell_id: String,
    /// Where to send the component's own metrics as envelopes (none: only `/metrics`).
    pub self_metrics: Option<hydrant_runtime::selfmetrics::SelfMetrics>,
}

impl Config {
    /// Defaults for a cell sending to `agent` and keeping instances under `data_dir`.
    pub fn new(agent: impl Into<String>, data_dir: impl Into<PathBuf>) -> Config {
        Config {
            agent: agent.into(),
            agent_tls: None,
            data_dir: data_dir.into(),
            metrics_interval: DEFAULT_METRICS_INTERVAL,
            log_rate_limit: None,
            stop_grace: Duration::from_secs(10),
            backoff: Backoff::default(),
            access: hydrant_runtime::access::Access::open(),
            memory_capacity_bytes: host_memory_bytes().unwrap_or(8 << 30),
            cores: std::thread::available_parallelism().map_or(1, |n| n.get() as u64),
            cell_id: format!("cell-{}", std::process::id()),
            self_metrics: None,
        }
    }

    /// Every setting the cell would refuse, by flag.
    pub fn validate(&self) -> Vec<Invalid> {
        let mut out = Vec::new();
        require(
            &mut out,
            !self.metrics_interval.is_zero(),
            "metrics-interval",
            "must be greater than zero",
        );
        require(
            &mut out,
            self.log_rate_limit != Some(0),
            "log-rate-limit",
            "must be at least 1 byte per second",
        );
        out
    }
}

/// The host's total memory from `/proc/meminfo`.
pub fn host_memory_bytes() -> Option<u64> {
    let info = std::fs::read_to_string("/proc/meminfo").ok()?;
    let line = info.lines().find(|l| l.starts_with("MemTotal:"))?;
    let kib: u64 = line.split_whitespace().nth(1)?.parse().ok()?;
    Some(kib * 1024)
}

/// Errors running a cell.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// The agent address or TLS settings are unusable.
    #[error("cell: {0}")]
    Transport(#[from] transport::Error),
    /// The data directory cannot be used, or the API server failed.
    #[error("cell: {0}")]
    Io(#[from] std::io::Error),
    /// The stored desired state cannot be read.
    #[error("cell: {0}")]
    Desired(#[from] desired::Error),
}

hydrant_runtime::instruments! {
    /// Counters of the cell.
    pub struct Stats {
        /// Instance processes started.
        pub starts: Counter = names::CELL_STARTS,
        /// Instance crashes.
        pub crashes: Counter = names::CELL_CRASHES,
        /// Instances killed for exceeding their memory quota.
        pub oom_kills: Counter = names::CELL_OOM_KILLS,
        /// Log lines read from instances.
        pub log_lines: Counter = names::CELL_LOG_LINES,
        /// Log lines dropped by the rate limit.
        pub log_lines_rate_limited: Counter = names::CELL_LOG_LINES_RATE_LIMITED,
    }
}

/// One app.
#[derive(Debug)]
pub struct App {
    /// Guid (the source id of its envelopes).
    pub guid: String,
    /// What the user asked for.
    pub spec: AppSpec,
    /// Creation time.
    pub created_at: SystemTime,
    /// Last change.
    pub updated_at: SystemTime,
    /// Instance slots by index.
    pub slots: BTreeMap<u32, Slot>,
    /// Deleted: converges to zero instances, then disappears.
    pub deleted: bool,
}

/// An instance slot: its state, plus the live process when there is one.
#[derive(Debug)]
pub struct Slot {
    /// Lifecycle state.
    pub instance: Instance,
    /// The running process.
    pub process: Option<process::Handle>,
    /// Last measured usage.
    pub usage: monitor::Usage,
}

/// The cell's shared state.
#[derive(Debug)]
pub struct Cell {
    config: Config,
    apps: Mutex<BTreeMap<String, App>>,
    services: Mutex<services::Services>,
    wake: Notify,
    emit: Sender,
    host: usage::Host,
    cgroups: Option<usage::Cgroups>,
    tasks: TaskTracker,
    /// Counters.
    pub stats: Stats,
}

impl Cell {
    /// The app table. Sync mutex: held for bookkeeping only, never across an await.
    pub(crate) fn apps(&self) -> MutexGuard<'_, BTreeMap<String, App>> {
        self.apps.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Service instances and bindings. Sync mutex, never held across an await; taken after
    /// the app table when both are held.
    pub(crate) fn services(&self) -> MutexGuard<'_, services::Services> {
        self.services.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Sends an envelope to the agent (never blocks).
    pub(crate) fn send(&self, env: &Envelope) {
        self.emit.send(RawEnvelope::from_envelope(env));
    }

    /// Writes the desired state `apps` would have (every app not deleted) before a change
    /// to it is acknowledged; the caller holds the app table, so writes are in order.
    pub(crate) fn persist(&self, apps: &[desired::Stored]) -> Result<(), desired::Error> {
        desired::save(&self.config.data_dir, apps)
    }

    /// The desired state of the app table as it stands.
    pub(crate) fn desired(apps: &BTreeMap<String, App>) -> Vec<desired::Stored> {
        apps.values()
            .filter(|a| !a.deleted)
            .map(|a| desired::Stored::of(&a.guid, &a.spec, a.created_at, a.updated_at))
            .collect()
    }

    /// Asks the converger to look at the state now.
    pub(crate) fn converge_soon(&self) {
        self.wake.notify_one();
    }

    /// Settings.
    pub fn config(&self) -> &Config {
        &self.config
    }

    /// Tags for messages about instance `index` of the app `guid` named `name`.
    pub(crate) fn tags(guid: &str, name: &str, index: u32, instance_guid: &str) -> AppTags {
        AppTags {
            app_id: guid.to_owned(),
            app_name: name.to_owned(),
            index,
            instance_guid: instance_guid.to_owned(),
        }
    }

    /// One pass of the converger; returns when it next needs to run.
    fn converge(self: &Arc<Self>, now: Instant) -> Option<Instant> {
        let mut apps = self.apps();
        let mut next: Option<Instant> = None;
        let mut soonest = |t: Instant| next = Some(next.map_or(t, |n: Instant| n.min(t)));
        // A deleted app whose instances have all stopped goes, with its directory.
        let gone: Vec<String> = apps
            .values()
            .filter(|a| a.deleted && a.slots.is_empty())
            .map(|a| a.guid.clone())
            .collect();
        for guid in &gone {
            apps.remove(guid);
            let _ = std::fs::remove_dir_all(self.config.data_dir.join(guid));
        }
        for app in apps.values_mut() {
            let desired = if app.deleted { 0 } else { app.spec.instances };
            for slot in app.slots.values_mut() {
                let i = &mut slot.instance;
                if let (State::Starting, Some(started)) = (i.state, i.started_at) {
                    let ready = started + self.config.backoff.startup;
                    if ready <= now {
                        i.state = State::Running;
                        let tags = Cell::tags(&app.guid, &app.spec.name, i.index, &i.instance_guid);
                        self.send(&tags.cell_log("Container became healthy", false));
                    } else {
                        soonest(ready);
                    }
                }
            }
            let slots: BTreeMap<u32, Instance> = app
                .slots
                .iter()
                .map(|(k, s)| (*k, s.instance.clone()))
                .collect();
            let quota = (app.spec.memory_mb, app.spec.disk_mb);
            for action in model::plan(desired, quota, &slots, now) {
                match action {
                    Action::Start(index) => process::start(self, app, index, now),
                    Action::Stop(index) => process::stop(self, app, index),
                    Action::Forget(index) => {
                        // A stopped instance beyond the count: its directory goes too.
                        app.slots.remove(&index);
                        let dir = self.config.data_dir.join(&app.guid).join(index.to_string());
                        let _ = std::fs::remove_dir_all(dir);
                    }
                }
            }
            let slots: BTreeMap<u32, Instance> = app
                .slots
                .iter()
                .map(|(k, s)| (*k, s.instance.clone()))
                .collect();
            if let Some(t) = model::next_restart(desired, &slots) {
                soonest(t);
            }
        }
        next
    }

    async fn converge_loop(self: Arc<Self>, shutdown: CancellationToken) {
        loop {
            let next = self.converge(Instant::now());
            // Also re-check periodically: a cheap safety net for missed wake-ups.
            let deadline = next.unwrap_or_else(|| Instant::now() + Duration::from_secs(1));
            tokio::select! {
                () = self.wake.notified() => {}
                () = tokio::time::sleep_until(deadline) => {}
                () = shutdown.cancelled() => return,
            }
        }
    }

    /// Stops every instance (graceful, bounded by the stop grace) and waits for them.
    async fn stop_all(self: &Arc<Self>) {
        {
            let mut apps = self.apps();
            for app in apps.values_mut() {
                let indexes: Vec<u32> = app.slots.keys().rev().copied().collect();
                for index in indexes {
                    process::stop(self, app, index);
                }
            }
        }
        self.tasks.close();
        self.tasks.wait().await;
    }
}

/// Removes the directories of apps the desired state does not have (deleted while the
/// cell was down, or before it kept its state): every entry named like an app guid.
fn remove_strays(data_dir: &std::path::Path, stored: &[desired::Stored]) {
    let Ok(entries) = std::fs::read_dir(data_dir) else {
        return;
    };
    for e in entries.flatten() {
        let name = e.file_name().to_string_lossy().into_owned();
        let is_guid = uuid::Uuid::parse_str(&name).is_ok();
        if is_guid && e.path().is_dir() && !stored.iter().any(|s| s.guid == name) {
            tracing::info!(dir = %e.path().display(), "cell: removing the directory of an app it no longer has");
            let _ = std::fs::remove_dir_all(e.path());
        }
    }
}

/// Runs a cell: the API on `api`, instances under the data dir, envelopes to the agent.
pub async fn run(
    config: Config,
    api: TcpListener,
    shutdown: CancellationToken,
) -> Result<(), Error> {
    std::fs::create_dir_all(&config.data_dir)?;
    process::reap_leftovers(&config.data_dir);
    // Every app the cell had comes back, with its guid; the converger starts its instances.
    let stored = desired::load(&config.data_dir)?;
    if !stored.is_empty() {
        tracing::info!(
            apps = stored.len(),
            "cell: apps restored from {}",
            desired::FILE
        );
    }
    remove_strays(&config.data_dir, &stored);
    let services = services::Services::load(&config.data_dir)?;
    let restored: BTreeMap<String, App> = stored
        .iter()
        .map(|s| {
            let (created_at, updated_at) = s.times();
            let app = App {
                guid: s.guid.clone(),
                spec: s.spec(),
                created_at,
                updated_at,
                slots: BTreeMap::new(),
                deleted: false,
            };
            (s.guid.clone(), app)
        })
        .collect();
    let mut emit_config = client::Config::new(vec![config.agent.clone()]);
    emit_config.tls = config.agent_tls.clone();
    let emitter = IngressClient::start(emit_config)?;
    let cgroups = match usage::Cgroups::detect(std::path::Path::new("/sys/fs/cgroup")) {
        Ok(c) => {
            tracing::info!("cell: confining instances with cgroup v2 (memory.max, cpu.weight)");
            Some(c)
        }
        Err(why) => {
            tracing::warn!(
                reason = %why,
                "cell: cgroup v2 limits unavailable; enforcing memory quotas by accounting \
                 (instances over quota are killed) and disk quotas with RLIMIT_FSIZE"
            );
            None
        }
    };
    let cell = Arc::new(Cell {
        config,
        apps: Mutex::new(restored),
        services: Mutex::new(services),
        wake: Notify::new(),
        emit: emitter.sender(),
        host: usage::Host::detect(),
        cgroups,
        tasks: TaskTracker::new(),
        stats: Stats::default(),
    });

    let mut life = Lifecycle::new("cell", cell.config.stop_grace + FLUSH_GRACE);
    // Accept: the API stops taking requests; the converger and the monitor stop.
    let accept = life.token(Phase::Accept);
    life.spawn(
        Phase::Accept,
        "converger",
        Arc::clone(&cell).converge_loop(accept.clone()).map(Ok),
    );
    life.spawn(
        Phase::Accept,
        "monitor",
        monitor::run(Arc::clone(&cell), accept.clone()).map(Ok),
    );
    life.spawn(
        Phase::Accept,
        "api",
        api::run(Arc::clone(&cell), api, accept).map(|r| r.map_err(Error::from)),
    );
    // Flush: every instance stops gracefully (SIGTERM, SIGKILL after the stop grace), then
    // what they and the cell said reaches the agent.
    let c = Arc::clone(&cell);
    let deadline = life.deadline();
    life.on_stop(Phase::Flush, "instances, then the agent", async move {
        c.stop_all().await;
        if let Some(cg) = &c.cgroups {
            cg.remove();
        }
        emitter.close(deadline.remaining(FLUSH_GRACE)).await;
        Ok(())
    });
    let observe: Arc<dyn hydrant_runtime::admin::Observe> = Arc::clone(&cell) as _;
    selfmetrics::register(&mut life, observe, cell.config.self_metrics.as_ref())?;
    life.run(shutdown).await?;
    Ok(())
}
