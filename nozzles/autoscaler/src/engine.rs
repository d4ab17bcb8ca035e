//! The rule engine: given a policy, an app's recent aggregate samples, its instance count and
//! the time, decide whether to scale, and explain why. Pure: no I/O, no clock of its own
//! (callers pass `now`), so tests, replay and shadow mode drive it with recorded series.
//!
//! Cloud Foundry semantics by default (see ARCHITECTURE.md):
//! - A rule breaches when *every* aggregate in the last `breach_duration` satisfies it, and
//!   an aggregate older than the window start exists (enough history). An empty aggregate
//!   (no data) blocks; a missing one (a gap) is skipped.
//! - After a successful scale the app is in cooldown, in both directions, until
//!   `now + cool_down` (exclusive: at that instant it may scale again). Per-direction
//!   cooldowns (`cool_downs`) replace this when set. An app in its cooldown is not
//!   evaluated (nothing is recorded), as in CF.
//! - The new count is clamped to the limits; a clamp to the current count is "ignored" and
//!   starts no cooldown. Repeated identical ignored outcomes are marked duplicates.
//! - Breached rules conflict: scale-out wins by default; `first_match` keeps CF's file order.

use std::collections::{BTreeMap, VecDeque};
use std::time::Duration;

use crate::policy::{Adjustment, Breach, Conflict, MetricType, OnMissing, Policy, Rule};

mod target;
#[cfg(test)]
mod tests;

pub use target::{InstanceView, MetricTrace, TARGET_WINDOW_SECS, TargetTrace, per_instance};

/// Seconds on the caller's clock (UNIX seconds in production, test seconds in tests).
pub type Time = i64;

/// One app-level aggregate of a metric.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Sample {
    /// When it was aggregated.
    pub at: Time,
    /// The mean over instances, or `None` when there was no data in its stat window.
    pub value: Option<f64>,
}

/// Samples kept per metric: enough for the longest window twice over (CF queries 2 × B).
pub const MAX_SAMPLES_PER_METRIC: usize = 2048;

/// Per-app state the engine keeps between evaluations.
#[derive(Debug, Clone, Default)]
pub struct AppState {
    samples: BTreeMap<MetricType, VecDeque<Sample>>,
    /// Scale-outs are blocked while `now < out_until`.
    pub out_until: Option<Time>,
    /// Scale-ins are blocked while `now < in_until`.
    pub in_until: Option<Time>,
    last_ignored: Option<(usize, String)>,
    /// Target-tracking recommendations, for the scale-in stabilization window.
    recommendations: VecDeque<(Time, u32)>,
    /// Count changes carried out (time, from, to), for target tracking's rate limits.
    changes: VecDeque<(Time, u32, u32)>,
    /// Consecutive target evaluations where every metric had no data.
    target_failures: u32,
    /// Last evaluation a target metric was above its activation value.
    last_active: Option<Time>,
    /// Per-instance values of target metrics, set by the caller before evaluating.
    pub instances: BTreeMap<MetricType, InstanceView>,
}

impl AppState {
    /// Records an aggregate (kept in time order; the oldest go beyond the bound).
    pub fn record(&mut self, metric: MetricType, sample: Sample) {
        let q = self.samples.entry(metric).or_default();
        let at = q.partition_point(|s| s.at <= sample.at);
        q.insert(at, sample);
        while q.len() > MAX_SAMPLES_PER_METRIC {
            q.pop_front();
        }
    }

    /// Records a count change that was carried out (any cause), for rate limits.
    pub fn changed(&mut self, now: Time, from: u32, to: u32) {
        self.changes.push_back((now, from, to));
        // Rate-limit periods are short; an hour of history is plenty.
        while self
            .changes
            .front()
            .is_some_and(|(t, _, _)| *t < now - 3600)
        {
            self.changes.pop_front();
        }
    }

    /// Forgets the samples of `metric` older than `before` (callers keep 2 × the longest
    /// window a rule needs, as CF queries).
    pub fn forget_before(&mut self, metric: &MetricType, before: Time) {
        if let Some(q) = self.samples.get_mut(metric) {
            while q.front().is_some_and(|s| s.at < before) {
                q.pop_front();
            }
        }
    }

    /// The recorded samples of `metric`, oldest first.
    pub fn samples(&self, metric: &MetricType) -> impl DoubleEndedIterator<Item = &Sample> {
        self.samples.get(metric).into_iter().flatten()
    }

    /// After a scale that the actuator carried out: start the cooldowns (the acting rule's
    /// `cool_down`, or the per-direction `cool_downs`; target tracking uses only the latter).
    pub fn scaled(&mut self, policy: &Policy, rule: Option<&Rule>, now: Time) {
        let fallback = rule.map_or(Duration::ZERO, |r| r.cool_down);
        let until = |d: Option<Duration>| now + d.unwrap_or(fallback).as_secs() as i64;
        self.out_until = Some(until(policy.cool_downs.scale_out));
        self.in_until = Some(until(policy.cool_downs.scale_in));
        self.last_ignored = None;
    }

    fn window(&self, metric: &MetricType, from: Time, to: Time) -> Vec<Sample> {
        self.samples
            .get(metric)
            .map(|q| {
                q.iter()
                    .filter(|s| s.at >= from && s.at <= to)
                    .copied()
                    .collect()
            })
            .unwrap_or_default()
    }
}

/// How one rule fared in one evaluation.
#[derive(Debug, Clone, PartialEq)]
pub enum Verdict {
    /// Every sample breached.
    Breached,
    /// At least one sample did not.
    NotBreached,
    /// No sample older than the window start yet.
    NotEnoughHistory,
    /// An empty aggregate in the window (no data) blocks the rule.
    NoData,
    /// The rule breached but its direction is cooling down until this time.
    CoolingDown(Time),
}

/// The trace of one rule, for explanations.
#[derive(Debug, Clone, PartialEq)]
pub struct RuleTrace {
    /// Index in the policy.
    pub rule: usize,
    /// Samples in the window.
    pub samples: usize,
    /// Lowest, mean and highest value in the window (when any).
    pub range: Option<(f64, f64, f64)>,
    /// The verdict.
    pub verdict: Verdict,
}

/// What the engine decided.
#[derive(Debug, Clone, PartialEq)]
pub enum Outcome {
    /// Nothing breached.
    Nothing,
    /// Set the instance count (the actuator call).
    Scale {
        /// Current count.
        from: u32,
        /// New count.
        to: u32,
    },
    /// A rule breached but the count cannot change (already at a limit).
    Ignored,
}

/// A decision and its explanation.
#[derive(Debug, Clone, PartialEq)]
pub struct Decision {
    /// What to do.
    pub outcome: Outcome,
    /// The rule that acted, if any.
    pub rule: Option<usize>,
    /// Cloud Foundry-style reason, e.g. `+1 instance(s) because cpu > 70% for 300 seconds`.
    pub reason: String,
    /// Constraints applied, e.g. `limited by max instances 10`.
    pub message: String,
    /// Whether this repeats the previous ignored outcome (history writers skip it).
    pub duplicate: bool,
    /// Every rule's trace.
    pub trace: Vec<RuleTrace>,
    /// Target tracking's trace, when the policy has a target.
    pub target: Option<TargetTrace>,
}

fn unit(metric: &MetricType) -> &'static str {
    match metric {
        MetricType::Cpu | MetricType::CpuUtil | MetricType::MemoryUtil | MetricType::DiskUtil => {
            "%"
        }
        MetricType::MemoryUsed | MetricType::Disk => "MB",
        MetricType::ResponseTime => "ms",
        MetricType::Throughput => "rps",
        MetricType::Custom(_) => "",
    }
}

fn adjustment_text(a: Adjustment) -> String {
    match a {
        Adjustment::Step(n) => format!("{n:+}"),
        Adjustment::Percent(p) => format!("{p:+}%"),
    }
}

/// CF's reason text for a rule.
pub fn reason(rule: &Rule) -> String {
    format!(
        "{} instance(s) because {} {} {}{} for {} seconds",
        adjustment_text(rule.adjustment),
        rule.metric.name(),
        rule.operator.as_str(),
        rule.threshold,
        unit(&rule.metric),
        rule.breach_duration.as_secs()
    )
}

/// Evaluates one rule's window at `now`.
fn judge(rule: &Rule, state: &AppState, now: Time) -> RuleTrace {
    let b = rule.breach_duration.as_secs() as i64;
    let queried = state.window(&rule.metric, now - 2 * b, now);
    let start = now - b;
    let mut trace = RuleTrace {
        rule: 0,
        samples: 0,
        range: None,
        verdict: Verdict::NotEnoughHistory,
    };
    if !queried.iter().any(|s| s.at < start) {
        return trace;
    }
    let window: Vec<Sample> = queried.into_iter().filter(|s| s.at >= start).collect();
    trace.samples = window.len();
    let mut values = Vec::with_capacity(window.len());
    for s in &window {
        match (s.value, rule.on_missing) {
            (Some(v), _) => values.push(v),
            (None, OnMissing::Block) => {
                trace.verdict = Verdict::NoData;
                return trace;
            }
            (None, OnMissing::Ignore) => {}
            (None, OnMissing::Value(v)) => values.push(v),
        }
    }
    if values.is_empty() {
        trace.verdict = Verdict::NotBreached;
        return trace;
    }
    let lo = values.iter().copied().fold(f64::INFINITY, f64::min);
    let hi = values.iter().copied().fold(f64::NEG_INFINITY, f64::max);
    let mean = values.iter().sum::<f64>() / values.len() as f64;
    trace.range = Some((lo, mean, hi));
    let holds = |v: &f64| rule.operator.holds(*v, rule.threshold);
    let breached = match rule.breach {
        Breach::All => values.iter().all(holds),
        Breach::Mean => rule.operator.holds(mean, rule.threshold),
        Breach::MOfN { m, n } => {
            let last = &values[values.len().saturating_sub(n as usize)..];
            last.iter().filter(|v| holds(v)).count() >= m as usize
        }
    };
    trace.verdict = if breached {
        Verdict::Breached
    } else {
        Verdict::NotBreached
    };
    trace
}

/// Decides for one app at `now` with `current` instances, within `limits` (the active
/// schedule's, or the policy's). Threshold rules and target tracking each recommend; when
/// both would scale, the larger count wins (as HPA takes the maximum across metrics).
pub fn evaluate(
    policy: &Policy,
    state: &mut AppState,
    now: Time,
    current: u32,
    limits: (u32, u32),
) -> Decision {
    let mut decision = evaluate_rules(policy, state, now, current, limits);
    let Some(target) = &policy.target else {
        return decision;
    };
    let (trace, wanted) = target::track(target, state, now, current, policy.min);
    decision.target = Some(trace.clone());
    let to = wanted.clamp(limits.0, limits.1);
    let out = to > current;
    let blocked = if out { state.out_until } else { state.in_until }.is_some_and(|t| t > now);
    if to == current || blocked {
        return decision;
    }
    let better = match decision.outcome {
        Outcome::Scale { to: rules_to, .. } => to > rules_to,
        _ => true,
    };
    if better {
        decision.outcome = Outcome::Scale { from: current, to };
        decision.rule = None;
        decision.duplicate = false;
        let decided = trace
            .metrics
            .iter()
            .find(|m| m.recommended.is_some() && m.value == trace.value)
            .map_or("target", |m| m.metric.as_str());
        let goal = target
            .metrics
            .iter()
            .find(|m| m.metric.name() == decided)
            .map_or(0.0, |m| m.value);
        decision.reason = format!(
            "target tracking: {decided} {} against target {goal} (ratio {:.2}) recommends {} instance(s)",
            trace
                .value
                .map_or_else(|| "no data".to_owned(), |v| v.to_string()),
            trace.ratio.unwrap_or(1.0),
            trace.stabilized
        );
        let mut constraints = trace.notes.clone();
        if to != wanted {
            constraints.push(format!("limited to [{}, {}]", limits.0, limits.1));
        }
        decision.message = constraints.join("; ");
        state.last_ignored = None;
    }
    decision
}

fn evaluate_rules(
    policy: &Policy,
    state: &mut AppState,
    now: Time,
    current: u32,
    limits: (u32, u32),
) -> Decision {
    let mut trace: Vec<RuleTrace> = policy
        .rules
        .iter()
        .enumerate()
        .map(|(i, r)| RuleTrace {
            rule: i,
            ..judge(r, state, now)
        })
        .collect();
    let blocked_until = |out: bool| {
        let until = if out { state.out_until } else { state.in_until };
        until.filter(|t| *t > now)
    };
    for t in &mut trace {
        if t.verdict == Verdict::Breached
            && let Some(until) = blocked_until(policy.rules[t.rule].adjustment.is_out())
        {
            t.verdict = Verdict::CoolingDown(until);
        }
    }
    let breached: Vec<usize> = trace
        .iter()
        .filter(|t| t.verdict == Verdict::Breached)
        .map(|t| t.rule)
        .collect();
    let chosen = match policy.conflict {
        Conflict::FirstMatch => {
            // Cloud Foundry drops the whole app from evaluation while it cools down.
            let cooling = trace
                .iter()
                .any(|t| matches!(t.verdict, Verdict::CoolingDown(_)));
            if cooling {
                None
            } else {
                breached.first().copied()
            }
        }
        Conflict::ScaleOutWins => breached
            .iter()
            .copied()
            .find(|i| policy.rules[*i].adjustment.is_out())
            .or_else(|| breached.first().copied()),
    };
    let Some(i) = chosen else {
        // A breach held back by a cooldown is no decision: CF does not evaluate an app in
        // its cooldown, so nothing is recorded (`explain` shows the cooldown).
        return Decision {
            outcome: Outcome::Nothing,
            rule: None,
            reason: String::new(),
            message: String::new(),
            duplicate: false,
            trace,
            target: None,
        };
    };
    let rule = &policy.rules[i];
    let (min, max) = limits;
    let wanted = rule.adjustment.apply(current);
    let (to, message) = if wanted > i64::from(max) {
        (max, format!("limited by max instances {max}"))
    } else if wanted < i64::from(min) {
        (min, format!("limited by min instances {min}"))
    } else {
        (wanted as u32, String::new())
    };
    let reason = reason(rule);
    if to == current {
        let key = (i, message.clone());
        let duplicate = state.last_ignored.as_ref() == Some(&key);
        state.last_ignored = Some(key);
        return Decision {
            outcome: Outcome::Ignored,
            rule: Some(i),
            reason,
            message,
            duplicate,
            trace,
            target: None,
        };
    }
    state.last_ignored = None;
    Decision {
        outcome: Outcome::Scale { from: current, to },
        rule: Some(i),
        reason,
        message,
        duplicate: false,
        trace,
        target: None,
    }
}
