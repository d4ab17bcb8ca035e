//! The autoscaler's pure core: every managed app's policy, aggregated metrics, engine state,
//! schedules, alerts, circuit breaker and history. Envelopes go in with
//! [`Fleet::observe`]; each [`Fleet::tick`] aggregates, evaluates and returns the
//! [`Effect`]s the shell carries out (scale calls, alert notifications, records to emit); the
//! shell reports scale results back with [`Fleet::completed`]. No I/O and no clock: replay,
//! shadow mode, tests and benchmarks drive it with their own time.

use std::collections::{BTreeMap, HashMap};
use std::sync::Arc;
use std::time::Duration;

use hydrant_proto::v2;

use crate::aggregate::AppMetrics;
use crate::alert::{Alert, Transition};
use crate::engine::{self, AppState, Outcome, Sample, Time, Verdict};
use crate::history::{self, History, Record};
use crate::policy::{MetricType, Policy};
use crate::schedule::{self, ScheduleState};

mod alerting;
mod explain;
mod records;

mod restart;

use alerting::{alerts, resolve};
use records::{base_record, summary};
pub use restart::KeptAlert;

/// Fleet-wide settings.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Settings {
    /// Stat window of each aggregate (CF: 120 s).
    pub stat_window: Time,
    /// Alerts keep firing this long after their condition stops.
    pub keep_firing_for: Duration,
    /// Consecutive actuator failures that open an app's circuit breaker (CF: 3).
    pub breaker_failures: u32,
    /// First open period (CF: 5 min), doubled on each further trip.
    pub breaker_backoff: Duration,
    /// Longest open period (CF: 120 min).
    pub breaker_backoff_max: Duration,
}

impl Default for Settings {
    fn default() -> Settings {
        Settings {
            stat_window: 120,
            keep_firing_for: Duration::ZERO,
            breaker_failures: 3,
            breaker_backoff: Duration::from_secs(300),
            breaker_backoff_max: Duration::from_secs(7200),
        }
    }
}

/// A per-app circuit breaker over actuator calls.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Breaker {
    /// Consecutive failures.
    pub failures: u32,
    /// Open (no scaling) until then.
    pub open_until: Option<Time>,
    /// Trips so far (each doubles the open period).
    pub trips: u32,
}

/// What kind of scale.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    /// A rule (index) or target tracking (`None`) asked for it.
    Dynamic(Option<usize>),
    /// A schedule started or ended.
    Schedule,
}

/// A scale the shell must carry out, then report with [`Fleet::completed`].
#[derive(Debug, Clone, PartialEq)]
pub struct ScaleRequest {
    /// The policy's app.
    pub app: String,
    /// Its platform id (guid) when known, else the policy's app.
    pub target: String,
    /// Current count.
    pub from: u32,
    /// New count.
    pub to: u32,
    /// Why.
    pub kind: Kind,
    /// CF reason text.
    pub reason: String,
    /// Constraints applied.
    pub message: String,
}

/// An alert state change.
#[derive(Debug, Clone, PartialEq)]
pub struct AlertChange {
    /// The policy's app.
    pub app: String,
    /// Its platform id when known.
    pub target: String,
    /// The rule.
    pub rule: usize,
    /// Metric type name.
    pub metric: String,
    /// Rule text, e.g. `cpu > 70% for 5 seconds`.
    pub summary: String,
    /// The rule's adjustment, e.g. `+1`.
    pub adjustment: String,
    /// The change.
    pub transition: Transition,
    /// Latest aggregate.
    pub value: Option<f64>,
    /// When the alert became active (pending) or fired.
    pub since: Time,
    /// Now.
    pub at: Time,
}

/// What a tick asks of the shell.
#[derive(Debug, Clone, PartialEq)]
pub enum Effect {
    /// Call the actuator.
    Scale(ScaleRequest),
    /// Notify alert receivers.
    Alert(AlertChange),
    /// A record was written without an actuator call (ignored); emit it.
    Recorded(Record),
}

/// One managed app.
#[derive(Debug, Clone)]
pub struct Managed {
    /// The policy.
    pub policy: Arc<Policy>,
    /// Platform id, once resolved.
    pub guid: Option<String>,
    /// Instance count, from the actuator's listing (or observed instances).
    pub current: Option<u32>,
    /// Whether the platform can report counts (otherwise instances seen are used).
    counted: bool,
    state: AppState,
    schedule: ScheduleState,
    alerts: Vec<Alert>,
    metrics: AppMetrics,
    /// A scale in flight (the per-app lock): no evaluation until it completes.
    pending: Option<ScaleRequest>,
    /// The circuit breaker.
    pub breaker: Breaker,
    /// Latest aggregate per metric.
    latest: BTreeMap<MetricType, Option<f64>>,
    /// Alerts restored after a restart are not resolved for want of data before this.
    alerts_held_until: Time,
}

impl Managed {
    fn new(policy: Arc<Policy>, settings: &Settings) -> Managed {
        let mut wanted: Vec<MetricType> = policy.rules.iter().map(|r| r.metric.clone()).collect();
        let tracked: Vec<MetricType> = policy
            .target
            .iter()
            .flat_map(|t| {
                t.metrics
                    .iter()
                    .filter(|m| !m.total)
                    .map(|m| m.metric.clone())
            })
            .collect();
        wanted.extend(
            policy
                .target
                .iter()
                .flat_map(|t| t.metrics.iter().map(|m| m.metric.clone())),
        );
        let alerts = policy
            .rules
            .iter()
            .map(|r| Alert::new(r.breach_duration, settings.keep_firing_for))
            .collect();
        Managed {
            guid: None,
            current: None,
            counted: false,
            state: AppState::default(),
            schedule: ScheduleState::default(),
            alerts,
            metrics: AppMetrics::new(wanted).per_instance(tracked),
            pending: None,
            breaker: Breaker::default(),
            latest: BTreeMap::new(),
            alerts_held_until: 0,
            policy,
        }
    }

    fn target(&self) -> String {
        self.guid.clone().unwrap_or_else(|| self.policy.app.clone())
    }

    /// How long samples of `metric` are kept: twice the longest window using it.
    fn keep(&self, metric: &MetricType) -> Time {
        let longest = self
            .policy
            .rules
            .iter()
            .filter(|r| &r.metric == metric)
            .map(|r| r.breach_duration.as_secs() as Time)
            .max()
            .unwrap_or(0);
        (2 * longest).max(engine::TARGET_WINDOW_SECS) + 1
    }
}

/// Counts of what [`Fleet::set_policies`] changed.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Changes {
    /// New apps.
    pub added: usize,
    /// Apps whose policy changed (what did not change is kept).
    pub changed: usize,
    /// Apps no longer managed.
    pub removed: usize,
    /// Apps whose policy is unchanged (state kept).
    pub kept: usize,
}

/// Every managed app.
#[derive(Debug, Clone, Default)]
pub struct Fleet {
    settings: Settings,
    apps: BTreeMap<String, Managed>,
    /// source_id → policy app.
    sources: HashMap<String, String>,
    history: History,
    /// Effects of a policy change (alerts of removed or changed rules resolving), handed
    /// out by the next tick.
    queued: Vec<Effect>,
    /// The last tick's time.
    last_tick: Time,
    /// Envelopes that belonged to a managed app.
    pub observed: u64,
}

impl Fleet {
    /// An empty fleet.
    pub fn new(settings: Settings) -> Fleet {
        Fleet {
            settings,
            ..Fleet::default()
        }
    }

    /// The settings.
    pub fn settings(&self) -> &Settings {
        &self.settings
    }

    /// Replaces the policy set. An app whose policy changed keeps what did not change: its
    /// aggregates (so breach clocks run on), cooldowns, circuit breaker, pending scale and
    /// history, and the alert of every rule that is the same at the same place. The alert
    /// of a rule removed or changed, and every alert of a removed app, resolves on the next
    /// tick if it was firing. History outlives the policy (CF keeps it 240 h).
    pub fn set_policies(&mut self, policies: impl IntoIterator<Item = Policy>) -> Changes {
        let mut changes = Changes::default();
        let mut next = BTreeMap::new();
        let now = self.last_tick;
        for p in policies {
            let key = p.app.clone();
            let managed = match self.apps.remove(&key) {
                Some(m) if *m.policy == p => {
                    changes.kept += 1;
                    m
                }
                Some(old) => {
                    changes.changed += 1;
                    let mut m = Managed::new(Arc::new(p), &self.settings);
                    (m.guid, m.current, m.counted) = (old.guid.clone(), old.current, old.counted);
                    m.pending = old.pending.clone();
                    m.breaker = old.breaker;
                    m.state = old.state.clone();
                    if m.policy.schedules == old.policy.schedules {
                        m.schedule = old.schedule.clone();
                    }
                    if m.metrics.wanted() == old.metrics.wanted() {
                        m.metrics = old.metrics.clone();
                    }
                    for (i, rule) in old.policy.rules.iter().enumerate() {
                        if m.policy.rules.get(i) == Some(rule) {
                            m.alerts[i] = old.alerts[i];
                        } else {
                            resolve(&key, &old, i, now, &mut self.queued);
                        }
                    }
                    m
                }
                None => {
                    changes.added += 1;
                    Managed::new(Arc::new(p), &self.settings)
                }
            };
            next.insert(key, managed);
        }
        changes.removed = self.apps.len();
        for (key, old) in &self.apps {
            for i in 0..old.alerts.len() {
                resolve(key, old, i, now, &mut self.queued);
            }
        }
        self.apps = next;
        let apps = &self.apps;
        self.sources.retain(|_, app| apps.contains_key(app));
        for (key, m) in &self.apps {
            self.sources.insert(key.clone(), key.clone());
            if let Some(g) = &m.guid {
                self.sources.insert(g.clone(), key.clone());
            }
        }
        changes
    }

    /// Managed apps, by the policy's app.
    pub fn apps(&self) -> &BTreeMap<String, Managed> {
        &self.apps
    }

    /// Apps in a cooldown (either direction) at `now`.
    pub fn cooling_down(&self, now: Time) -> usize {
        self.apps
            .values()
            .filter(|m| {
                m.state.out_until.is_some_and(|t| now < t)
                    || m.state.in_until.is_some_and(|t| now < t)
            })
            .count()
    }

    /// What the platform reports for an app: its guid, name and desired count.
    pub fn set_instances(&mut self, guid: &str, name: &str, instances: u32) {
        let key = if self.apps.contains_key(guid) {
            guid
        } else if self.apps.contains_key(name) {
            name
        } else {
            return;
        };
        let key = key.to_owned();
        if let Some(m) = self.apps.get_mut(&key) {
            m.guid = Some(guid.to_owned());
            m.counted = true;
            if m.pending.is_none() {
                m.current = Some(instances);
            }
        }
        self.sources.insert(guid.to_owned(), key);
    }

    /// Takes one envelope from the Firehose; returns whether a managed app used it.
    pub fn observe(&mut self, env: &v2::Envelope, now: Time) -> bool {
        let key = match self.sources.get(&env.source_id) {
            Some(k) => k.clone(),
            None => {
                // Learn guid → app from the `app_name` tag the platform adds.
                let Some(name) = env
                    .tags
                    .get("app_name")
                    .filter(|n| self.apps.contains_key(*n))
                else {
                    return false;
                };
                self.sources.insert(env.source_id.clone(), name.clone());
                if let Some(m) = self.apps.get_mut(name)
                    && m.guid.is_none()
                {
                    m.guid = Some(env.source_id.clone());
                }
                name.clone()
            }
        };
        let window = self.settings.stat_window;
        let used = self
            .apps
            .get_mut(&key)
            .is_some_and(|m| m.metrics.observe(env, now, window));
        self.observed += u64::from(used);
        used
    }

    /// Aggregates and evaluates every app at `now`.
    pub fn tick(&mut self, now: Time) -> Vec<Effect> {
        self.last_tick = now;
        let mut effects = std::mem::take(&mut self.queued);
        for e in &mut effects {
            if let Effect::Alert(a) = e {
                a.at = now;
            }
        }
        let window = self.settings.stat_window;
        for (key, m) in &mut self.apps {
            let wanted: Vec<MetricType> = m.metrics.wanted().iter().cloned().collect();
            for metric in wanted {
                let value = m.metrics.aggregate(&metric, now, window);
                m.state.record(metric.clone(), Sample { at: now, value });
                let keep = m.keep(&metric);
                m.state.forget_before(&metric, now - keep);
                m.latest.insert(metric, value);
            }
            let seen = m.metrics.instances(now, window) as u32;
            if !m.counted {
                m.current = (seen > 0).then_some(seen);
            }
            if let Some(t) = &m.policy.target {
                let init = t.initialization.as_secs() as Time;
                for tm in t.metrics.iter().filter(|tm| !tm.total) {
                    if let Some(view) = m.metrics.instance_view(&tm.metric, now, window, init) {
                        m.state.instances.insert(tm.metric.clone(), view);
                    }
                }
            }
            alerts(key, m, now, &mut effects);
            if m.pending.is_some() || m.breaker.open_until.is_some_and(|t| t > now) {
                continue;
            }
            // Stopped apps are left alone, unless the policy can scale from zero.
            let from_zero = m.policy.min == 0
                && m.policy
                    .target
                    .as_ref()
                    .is_some_and(|t| t.activation.is_some());
            let Some(current) = m.current.filter(|c| *c > 0 || from_zero) else {
                continue;
            };
            let (limits, action) = schedule::step(&m.policy, &mut m.schedule, now, current);
            if let Some(a) = action {
                if a.to != current {
                    let req = ScaleRequest {
                        app: key.clone(),
                        target: m.target(),
                        from: current,
                        to: a.to,
                        kind: Kind::Schedule,
                        reason: a.reason,
                        message: String::new(),
                    };
                    m.pending = Some(req.clone());
                    effects.push(Effect::Scale(req));
                }
                continue;
            }
            let decision = engine::evaluate(&m.policy, &mut m.state, now, current, limits);
            match decision.outcome {
                Outcome::Nothing => {}
                Outcome::Ignored if decision.duplicate => {}
                Outcome::Ignored => {
                    let record = Record {
                        status: history::Status::Ignored,
                        new_instances: i64::from(current),
                        ..base_record(key, m, &decision, current, now)
                    };
                    self.history.push(record.clone());
                    effects.push(Effect::Recorded(record));
                }
                Outcome::Scale { from, to } => {
                    let req = ScaleRequest {
                        app: key.clone(),
                        target: m.target(),
                        from,
                        to,
                        kind: Kind::Dynamic(decision.rule),
                        reason: decision.reason.clone(),
                        message: decision.message.clone(),
                    };
                    m.pending = Some(req.clone());
                    effects.push(Effect::Scale(req));
                }
            }
        }
        effects
    }

    /// The actuator's answer to a [`ScaleRequest`]: `Ok(response)` or `Err(error)`.
    /// Returns the history record written.
    pub fn completed(
        &mut self,
        app: &str,
        result: Result<String, String>,
        now: Time,
    ) -> Option<Record> {
        let m = self.apps.get_mut(app)?;
        let req = m.pending.take()?;
        let (rule, scaling_type) = match req.kind {
            Kind::Dynamic(rule) => (rule, history::ScalingType::Dynamic),
            Kind::Schedule => (None, history::ScalingType::Schedule),
        };
        let mut constraints = Vec::new();
        if !req.message.is_empty() {
            constraints.push(req.message.clone());
        }
        if let Some(w) = &m.schedule.active {
            constraints.push(format!(
                "schedule {} active: instances [{}, {}]",
                w.id, w.min, w.max
            ));
        }
        let window = rule.map(|i| summary(m, i));
        let mut record = Record {
            app_id: m.target(),
            timestamp: now * 1_000_000_000,
            scaling_type,
            status: history::Status::Succeeded,
            old_instances: i64::from(req.from),
            new_instances: i64::from(req.to),
            reason: req.reason,
            message: req.message,
            error: String::new(),
            app: app.to_owned(),
            rule,
            window,
            constraints,
            response: String::new(),
        };
        match result {
            Ok(response) => {
                record.response = response;
                m.current = Some(req.to);
                m.breaker = Breaker::default();
                m.state.changed(now, req.from, req.to);
                if let Kind::Dynamic(rule) = req.kind {
                    let rule = rule.and_then(|i| m.policy.rules.get(i));
                    m.state.scaled(&m.policy, rule, now);
                }
            }
            Err(error) => {
                // As CF's history: the count it tried to reach, and why it could not.
                record.status = history::Status::Failed;
                record.error = format!("failed to set app instances: {error}");
                let b = &mut m.breaker;
                b.failures += 1;
                // After an open period the breaker is half-open: one trial call, and its
                // failure opens it again at once, for twice as long (CF's breaker).
                if b.failures >= self.settings.breaker_failures || b.trips > 0 {
                    let base = self.settings.breaker_backoff.as_secs() as Time;
                    let max = self.settings.breaker_backoff_max.as_secs() as Time;
                    let open = base.saturating_mul(1 << b.trips.min(20)).min(max);
                    b.open_until = Some(now + open);
                    b.trips += 1;
                    b.failures = 0;
                    record.constraints.push(format!(
                        "circuit breaker open for {open} s after {} consecutive failures",
                        self.settings.breaker_failures
                    ));
                }
            }
        }
        self.history.push(record.clone());
        Some(record)
    }

    /// The history.
    pub fn history(&self) -> &History {
        &self.history
    }

    /// The policy app a name, guid or source id refers to.
    pub fn resolve(&self, app: &str) -> Option<&str> {
        if let Some((k, _)) = self.apps.get_key_value(app) {
            return Some(k);
        }
        self.sources.get(app).map(String::as_str)
    }
}

/// Whether a verdict means the rule is breaching right now.
fn breaching(v: &Verdict) -> bool {
    matches!(v, Verdict::Breached | Verdict::CoolingDown(_))
}

#[cfg(test)]
mod tests;
