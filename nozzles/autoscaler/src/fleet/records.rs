//! Building history records from the fleet's state: the decision's fields and a summary
//! of the acting rule's window.

use super::Managed;
use crate::engine::{self, Time};
use crate::history::{self, Record, WindowSummary};

pub(super) fn base_record(
    key: &str,
    m: &Managed,
    decision: &engine::Decision,
    current: u32,
    now: Time,
) -> Record {
    let mut constraints = Vec::new();
    if !decision.message.is_empty() {
        constraints.push(decision.message.clone());
    }
    Record {
        app_id: m.target(),
        timestamp: now * 1_000_000_000,
        scaling_type: history::ScalingType::Dynamic,
        status: history::Status::Succeeded,
        old_instances: i64::from(current),
        new_instances: i64::from(current),
        reason: decision.reason.clone(),
        message: decision.message.clone(),
        error: String::new(),
        app: key.to_owned(),
        rule: decision.rule,
        window: decision.rule.map(|i| summary(m, i)),
        constraints,
        response: String::new(),
    }
}

/// Start of the latest unbroken run of aggregates for which rule `i`'s condition holds.
pub(super) fn breaching_since(m: &Managed, i: usize) -> Option<Time> {
    let rule = &m.policy.rules[i];
    let samples: Vec<_> = m.state.samples(&rule.metric).collect();
    samples
        .iter()
        .rev()
        .take_while(|s| {
            s.value
                .is_some_and(|v| rule.operator.holds(v, rule.threshold))
        })
        .last()
        .map(|s| s.at)
}

/// The window of rule `i` as the engine last saw it.
pub(super) fn summary(m: &Managed, i: usize) -> WindowSummary {
    let rule = &m.policy.rules[i];
    let b = rule.breach_duration.as_secs();
    let last = m
        .state
        .samples(&rule.metric)
        .next_back()
        .map_or(0, |s| s.at);
    let values: Vec<f64> = m
        .state
        .samples(&rule.metric)
        .filter(|s| s.at >= last - b as Time)
        .filter_map(|s| s.value)
        .collect();
    let n = values.len();
    let (min, mean, max) = if n == 0 {
        (None, None, None)
    } else {
        (
            Some(values.iter().copied().fold(f64::INFINITY, f64::min)),
            Some(values.iter().sum::<f64>() / n as f64),
            Some(values.iter().copied().fold(f64::NEG_INFINITY, f64::max)),
        )
    };
    WindowSummary {
        metric: rule.metric.name().to_owned(),
        breach_duration_secs: b,
        samples: m
            .state
            .samples(&rule.metric)
            .filter(|s| s.at >= last - b as Time)
            .count(),
        min,
        mean,
        max,
        breaching_since: breaching_since(m, i),
    }
}
