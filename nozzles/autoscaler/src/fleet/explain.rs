//! `explain`: the live state of every rule of an app — its current aggregate, how long it
//! has breached, its alert, cooldowns — and what the next evaluation would do, found by a
//! dry run of the engine on a copy of the app's state.

use super::{Fleet, breaching};
use crate::alert::State;
use crate::api::contract::{
    ActiveSchedule, Alert, AlertState, Breaker, Cooldown, Explanation, Limits, RuleState,
    TargetState, WindowState,
};
use crate::engine::{self, Outcome, Time, Verdict};
use crate::policy::Rule;

/// A rule as text, e.g. `cpu > 70 for 5 seconds`.
pub(crate) fn rule_text(rule: &Rule) -> String {
    format!(
        "{} {} {} for {} seconds",
        rule.metric.name(),
        rule.operator.as_str(),
        rule.threshold,
        rule.breach_duration.as_secs()
    )
}

/// A rule's adjustment, e.g. `+1` or `-50%`.
pub(crate) fn adjustment_text(rule: &Rule) -> String {
    engine::reason(rule)
        .split(' ')
        .next()
        .unwrap_or_default()
        .to_owned()
}

fn verdict_text(v: &Verdict, now: Time) -> String {
    match v {
        Verdict::Breached => "breached".into(),
        Verdict::NotBreached => "not breached".into(),
        Verdict::NotEnoughHistory => "not enough history yet".into(),
        Verdict::NoData => "no data in the window (blocks the rule)".into(),
        Verdict::CoolingDown(until) => {
            format!("breached, but cooling down for {} s more", until - now)
        }
    }
}

impl Fleet {
    /// The live state of `app` (policy app, name or guid) at `now`.
    pub fn explain(&self, app: &str, now: Time) -> Option<Explanation> {
        let key = self.resolve(app)?;
        let m = &self.apps[key];
        let mut dry = m.state.clone();
        let mut schedule = m.schedule.clone();
        let current = m.current.unwrap_or(0);
        let (limits, action) = crate::schedule::step(&m.policy, &mut schedule, now, current);
        let decision = engine::evaluate(&m.policy, &mut dry, now, current, limits);
        let rules: Vec<RuleState> = m
            .policy
            .rules
            .iter()
            .enumerate()
            .map(|(i, rule)| {
                let trace = &decision.trace[i];
                // How long the latest run of breaching aggregates has lasted.
                let first = super::records::breaching_since(m, i);
                let alert = match m.alerts[i].state {
                    State::Inactive => Alert {
                        state: AlertState::Inactive,
                        since: None,
                    },
                    State::Pending { since } => Alert {
                        state: AlertState::Pending,
                        since: Some(since),
                    },
                    State::Firing { since, .. } => Alert {
                        state: AlertState::Firing,
                        since: Some(since),
                    },
                };
                RuleState {
                    rule: i,
                    text: rule_text(rule),
                    adjustment: adjustment_text(rule),
                    metric: rule.metric.name().to_owned(),
                    operator: rule.operator.as_str().to_owned(),
                    threshold: rule.threshold,
                    value: m.latest.get(&rule.metric).copied().flatten(),
                    breaching_for_secs: first.map(|t| now - t),
                    breach_duration_secs: rule.breach_duration.as_secs(),
                    window: WindowState {
                        samples: trace.samples,
                        min: trace.range.map(|r| r.0),
                        mean: trace.range.map(|r| r.1),
                        max: trace.range.map(|r| r.2),
                    },
                    verdict: verdict_text(&trace.verdict, now),
                    breaching: breaching(&trace.verdict),
                    alert,
                }
            })
            .collect();
        let next = if m.pending.is_some() {
            "a scale is in flight; evaluation resumes when it completes".to_owned()
        } else if let Some(until) = m.breaker.open_until.filter(|t| *t > now) {
            format!(
                "circuit breaker open for {} s more: no scaling",
                until - now
            )
        } else if m.current.is_none_or(|c| c == 0) {
            "instance count unknown or app stopped: no evaluation".to_owned()
        } else if let Some(a) = action.filter(|a| a.to != current) {
            format!("{}: scale from {current} to {}", a.reason, a.to)
        } else {
            match decision.outcome {
                Outcome::Nothing => "nothing: no rule breached".to_owned(),
                Outcome::Ignored => format!("ignored: {} ({})", decision.reason, decision.message),
                Outcome::Scale { from, to } => {
                    format!("scale from {from} to {to}: {}", decision.reason)
                }
            }
        };
        let remaining = |t: Option<Time>| t.filter(|t| *t > now).map(|t| t - now);
        Some(Explanation {
            app: key.to_owned(),
            guid: m.guid.clone(),
            instances: m.current,
            limits: Limits {
                min: limits.0,
                max: limits.1,
            },
            schedule: m.schedule.active.map(|w| ActiveSchedule {
                id: w.id,
                start: w.start,
                end: w.end,
                min: w.min,
                max: w.max,
            }),
            cooldown: Cooldown {
                scale_out_remaining_secs: remaining(m.state.out_until),
                scale_in_remaining_secs: remaining(m.state.in_until),
            },
            breaker: Breaker {
                failures: m.breaker.failures,
                open_remaining_secs: remaining(m.breaker.open_until),
            },
            rules,
            target: decision.target.map(|t| TargetState {
                value: t.value,
                ratio: t.ratio,
                recommended: t.recommended,
                stabilized: t.stabilized,
            }),
            next,
            last_decision: self.history.last(key).cloned(),
        })
    }
}
