//! Alerts as policies and aggregates change: each rule's alert fed with its condition, and
//! the resolution of a firing alert whose rule or policy went away.

use super::{AlertChange, Effect, Managed, explain};
use crate::alert::Transition;
use crate::engine::Time;

/// Queues the resolution of `old`'s alert for rule `i`, if it is firing.
pub(super) fn resolve(key: &str, old: &Managed, i: usize, now: Time, queued: &mut Vec<Effect>) {
    let crate::alert::State::Firing { since, .. } = old.alerts[i].state else {
        return;
    };
    let rule = &old.policy.rules[i];
    queued.push(Effect::Alert(AlertChange {
        app: key.to_owned(),
        target: old.guid.clone().unwrap_or_else(|| old.policy.app.clone()),
        rule: i,
        metric: rule.metric.name().to_owned(),
        summary: explain::rule_text(rule),
        adjustment: explain::adjustment_text(rule),
        transition: Transition::Resolved,
        value: old.latest.get(&rule.metric).copied().flatten(),
        since,
        at: now,
    }));
}

/// Feeds each rule's alert: the condition is the latest aggregate breaching the rule.
pub(super) fn alerts(key: &str, m: &mut Managed, now: Time, effects: &mut Vec<Effect>) {
    for (i, rule) in m.policy.rules.iter().enumerate() {
        let value = m.latest.get(&rule.metric).copied().flatten();
        let condition = value.is_some_and(|v| rule.operator.holds(v, rule.threshold));
        let alert = &mut m.alerts[i];
        let before = alert.state;
        let Some(transition) = alert.evaluate(condition, now) else {
            continue;
        };
        // A resolved alert started when it fired (the state it leaves), not now.
        let state = if transition == Transition::Resolved {
            before
        } else {
            alert.state
        };
        let since = match state {
            crate::alert::State::Pending { since } | crate::alert::State::Firing { since, .. } => {
                since
            }
            crate::alert::State::Inactive => now,
        };
        if transition == Transition::Reset {
            continue;
        }
        effects.push(Effect::Alert(AlertChange {
            app: key.to_owned(),
            target: m.guid.clone().unwrap_or_else(|| m.policy.app.clone()),
            rule: i,
            metric: rule.metric.name().to_owned(),
            summary: explain::rule_text(rule),
            adjustment: explain::adjustment_text(rule),
            transition,
            value,
            since,
            at: now,
        }));
    }
}
