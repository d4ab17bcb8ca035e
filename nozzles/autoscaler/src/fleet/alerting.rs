//! Alerts as policies and aggregates change: each rule's alert fed with its condition, and
//! the resolution of a firing alert whose rule or policy went away.

use super::{AlertChange, Effect, Managed, explain};
use crate::alert::Transition;
use crate::engine::Time;

/// The change of rule `i`'s alert of app `key`, with the rule's text and latest value.
pub(super) fn change(
    key: &str,
    m: &Managed,
    i: usize,
    transition: Transition,
    since: Time,
    now: Time,
) -> AlertChange {
    let rule = &m.policy.rules[i];
    AlertChange {
        app: key.to_owned(),
        target: m.target(),
        rule: i,
        metric: rule.metric.name().to_owned(),
        summary: explain::rule_text(rule),
        adjustment: explain::adjustment_text(rule),
        transition,
        value: m.latest.get(&rule.metric).copied().flatten(),
        since,
        at: now,
    }
}

/// Queues the resolution of `old`'s alert for rule `i`, if it is firing.
pub(super) fn resolve(key: &str, old: &Managed, i: usize, now: Time, queued: &mut Vec<Effect>) {
    if let crate::alert::State::Firing { since, .. } = old.alerts[i].state {
        let c = change(key, old, i, Transition::Resolved, since, now);
        queued.push(Effect::Alert(c));
    }
}

/// Feeds each rule's alert: the condition is the latest aggregate breaching the rule.
pub(super) fn alerts(key: &str, m: &mut Managed, now: Time, effects: &mut Vec<Effect>) {
    for i in 0..m.policy.rules.len() {
        let rule = &m.policy.rules[i];
        let value = m.latest.get(&rule.metric).copied().flatten();
        // Just after a restart the app's data is still arriving: no data then is no
        // reason to resolve an alert that was firing.
        if value.is_none() && now < m.alerts_held_until {
            continue;
        }
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
        if transition != Transition::Reset {
            effects.push(Effect::Alert(change(key, m, i, transition, since, now)));
        }
    }
}
