//! Target tracking: HPA's replica calculation (tolerance, missing and not-ready instances,
//! several metrics, scale-in stabilization, rate limits) and KEDA's additions (activation,
//! scale to zero, fallback). Pure, like the rest of the engine.

use super::{AppState, Time};
use crate::policy::{RateLimit, Target, TargetMetric};

#[cfg(test)]
mod tests;

/// The stat window target tracking reads its latest aggregate from (CF's 120 s).
pub const TARGET_WINDOW_SECS: i64 = 120;

/// Per-instance values of a metric, for HPA's per-instance calculation.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct InstanceView {
    /// Latest value of each ready instance that reported.
    pub ready: Vec<f64>,
    /// Instances that reported but are still initializing.
    pub unready: u32,
}

/// How one metric recommended.
#[derive(Debug, Clone, PartialEq)]
pub struct MetricTrace {
    /// Metric type name.
    pub metric: String,
    /// Its value (`None`: no data).
    pub value: Option<f64>,
    /// value ÷ target.
    pub ratio: Option<f64>,
    /// Its recommendation (`None`: no data).
    pub recommended: Option<u32>,
}

/// How target tracking saw the app.
#[derive(Debug, Clone, PartialEq)]
pub struct TargetTrace {
    /// The deciding metric's value (None: no data, so no recommendation).
    pub value: Option<f64>,
    /// value ÷ target of the deciding metric.
    pub ratio: Option<f64>,
    /// The largest recommendation over the metrics (or the current count).
    pub recommended: u32,
    /// After stabilization, rate limits, activation and fallback.
    pub stabilized: u32,
    /// Every metric.
    pub metrics: Vec<MetricTrace>,
    /// What shaped the result, in order (missing instances, limits, fallback, …).
    pub notes: Vec<String>,
}

fn within(ratio: f64, tolerance: f64) -> bool {
    (ratio - 1.0).abs() <= tolerance
}

/// HPA's calculation over per-instance values (`replica_calculator.go`): missing instances
/// count as 0 for a scale-out and as the target for a scale-in; not-ready ones count as 0 for
/// a scale-out and are ignored otherwise; a result that flips direction, or lands within
/// the tolerance, keeps the count.
pub fn per_instance(
    view: &InstanceView,
    current: u32,
    target: f64,
    tolerance: f64,
    notes: &mut Vec<String>,
) -> Option<(u32, f64)> {
    if view.ready.is_empty() {
        return None;
    }
    let mean = |v: &[f64]| v.iter().sum::<f64>() / v.len() as f64;
    let ratio = mean(&view.ready) / target;
    let reporting = view.ready.len() as u32 + view.unready;
    let missing = current.saturating_sub(reporting);
    let up_with_unready = view.unready > 0 && ratio > 1.0;
    if missing == 0 && !up_with_unready {
        if within(ratio, tolerance) {
            return Some((current, ratio));
        }
        return Some(((ratio * view.ready.len() as f64).ceil() as u32, ratio));
    }
    let mut values = view.ready.clone();
    let fill = if ratio < 1.0 { target } else { 0.0 };
    values.extend(std::iter::repeat_n(fill, missing as usize));
    if missing > 0 {
        notes.push(format!(
            "{missing} instance(s) without data counted as {}",
            if ratio < 1.0 { "the target" } else { "0" }
        ));
    }
    if up_with_unready {
        values.extend(std::iter::repeat_n(0.0, view.unready as usize));
        notes.push(format!(
            "{} initializing instance(s) counted as 0",
            view.unready
        ));
    }
    let new_ratio = mean(&values) / target;
    if within(new_ratio, tolerance)
        || (ratio < 1.0 && new_ratio > 1.0)
        || (ratio > 1.0 && new_ratio < 1.0)
    {
        return Some((current, new_ratio));
    }
    let wanted = (new_ratio * values.len() as f64).ceil() as u32;
    if (new_ratio < 1.0 && wanted > current) || (new_ratio > 1.0 && wanted < current) {
        return Some((current, new_ratio));
    }
    Some((wanted, new_ratio))
}

/// One metric's recommendation from the app-level aggregate (or the per-instance view).
fn recommend(
    m: &TargetMetric,
    value: f64,
    view: Option<&InstanceView>,
    current: u32,
    tolerance: f64,
    notes: &mut Vec<String>,
) -> (u32, f64) {
    if m.total {
        // A total: desired = ceil(value / target); the tolerance applies to the
        // per-instance share.
        let wanted = (value / m.value).ceil().max(0.0) as u32;
        let ratio = if current > 0 {
            value / (m.value * f64::from(current))
        } else {
            f64::INFINITY
        };
        if current > 0 && within(ratio, tolerance) {
            return (current, ratio);
        }
        return (wanted, ratio);
    }
    if let Some(r) = view.and_then(|v| per_instance(v, current, m.value, tolerance, notes)) {
        return r;
    }
    let ratio = value / m.value;
    if within(ratio, tolerance) {
        (current, ratio)
    } else {
        ((f64::from(current) * ratio).ceil().max(0.0) as u32, ratio)
    }
}

/// The count `period` ago: the current count minus the changes made since.
fn period_start(state: &AppState, now: Time, limit: &RateLimit, current: u32) -> i64 {
    let period = limit.period.as_secs() as Time;
    state
        .changes
        .iter()
        .filter(|(t, _, _)| t + period > now)
        .fold(i64::from(current), |n, (_, from, to)| {
            n - (i64::from(*to) - i64::from(*from))
        })
}

/// Applies HPA's rate limits; returns the limited count and a note when it limited.
fn rate_limit(
    target: &Target,
    state: &AppState,
    now: Time,
    current: u32,
    wanted: u32,
) -> (u32, Option<String>) {
    if wanted > current {
        let l = &target.scale_up;
        let start = period_start(state, now, l, current);
        let by_count = l.instances.map(|n| start + i64::from(n));
        let by_percent = l
            .percent
            .map(|p| (start as f64 * (1.0 + f64::from(p) / 100.0)).ceil() as i64);
        let limit = by_count
            .into_iter()
            .chain(by_percent)
            .max()
            .unwrap_or(i64::MAX);
        let limit = limit.max(i64::from(current));
        if i64::from(wanted) > limit {
            let note = format!(
                "scale-out limited to {limit} ({} per {} s)",
                describe(l),
                l.period.as_secs()
            );
            return (limit as u32, Some(note));
        }
    } else if wanted < current {
        let l = &target.scale_down;
        let start = period_start(state, now, l, current);
        let by_count = l.instances.map(|n| start - i64::from(n));
        let by_percent = l
            .percent
            .map(|p| (start as f64 * (1.0 - f64::from(p) / 100.0)) as i64);
        let limit = by_count
            .into_iter()
            .chain(by_percent)
            .min()
            .unwrap_or(0)
            .max(0);
        let limit = limit.min(i64::from(current));
        if i64::from(wanted) < limit {
            let note = format!(
                "scale-in limited to {limit} ({} per {} s)",
                describe(l),
                l.period.as_secs()
            );
            return (limit as u32, Some(note));
        }
    }
    (wanted, None)
}

fn describe(l: &RateLimit) -> String {
    match (l.percent, l.instances) {
        (Some(p), Some(n)) => format!("{p}% or {n} instance(s)"),
        (Some(p), None) => format!("{p}%"),
        (None, Some(n)) => format!("{n} instance(s)"),
        (None, None) => "no limit".into(),
    }
}

/// Target tracking at `now` with `current` instances; `min` is the policy's floor (0 allows
/// scaling to zero with `activation`). Returns the trace and the wanted count.
pub(super) fn track(
    target: &Target,
    state: &mut AppState,
    now: Time,
    current: u32,
    min: u32,
) -> (TargetTrace, u32) {
    let mut notes = Vec::new();
    let mut metrics = Vec::new();
    let mut best: Option<(u32, usize)> = None;
    let mut failed = 0;
    for (i, m) in target.metrics.iter().enumerate() {
        let latest = state
            .window(&m.metric, now - TARGET_WINDOW_SECS, now)
            .last()
            .and_then(|s| s.value);
        let value = latest.or(target.missing_as_zero.then_some(0.0));
        let Some(v) = value else {
            failed += 1;
            metrics.push(MetricTrace {
                metric: m.metric.name().to_owned(),
                value: None,
                ratio: None,
                recommended: None,
            });
            continue;
        };
        let view = state.instances.get(&m.metric);
        let (wanted, ratio) = recommend(m, v, view, current, target.tolerance, &mut notes);
        if best.is_none_or(|(w, _)| wanted > w) {
            best = Some((wanted, i));
        }
        metrics.push(MetricTrace {
            metric: m.metric.name().to_owned(),
            value: Some(v),
            ratio: Some(ratio),
            recommended: Some(wanted),
        });
    }
    let all_failed = failed == target.metrics.len();
    state.target_failures = if all_failed {
        state.target_failures + 1
    } else {
        0
    };
    let pick = best.map(|(_, i)| &metrics[i]);
    let mut trace = TargetTrace {
        value: pick.and_then(|m| m.value),
        ratio: pick.and_then(|m| m.ratio),
        recommended: best.map_or(current, |(w, _)| w),
        stabilized: current,
        metrics: Vec::new(),
        notes: Vec::new(),
    };
    if let Some(fb) = target.fallback
        && state.target_failures > fb.failures
    {
        notes.push(format!(
            "fallback to {} instance(s) after {} evaluations without data",
            fb.instances, state.target_failures
        ));
        trace.stabilized = fb.instances;
        trace.metrics = metrics;
        trace.notes = notes;
        return (trace, fb.instances);
    }
    let mut wanted = trace.recommended;
    if failed > 0 && wanted < current {
        // A failed metric could have wanted more: never scale in on partial data.
        notes.push(format!("{failed} metric(s) without data: no scale-in"));
        wanted = current;
    }
    if all_failed {
        wanted = current;
    }
    // Scale-in follows the highest recommendation of the stabilization window.
    let window = target.scale_in_stabilization.as_secs() as Time;
    state.recommendations.push_back((now, wanted));
    while state
        .recommendations
        .front()
        .is_some_and(|(t, _)| *t < now - window)
    {
        state.recommendations.pop_front();
    }
    if wanted < current {
        let highest = state
            .recommendations
            .iter()
            .map(|(_, r)| *r)
            .max()
            .unwrap_or(wanted);
        if highest > wanted {
            notes.push(format!(
                "held at {} by the scale-in stabilization window",
                highest.min(current)
            ));
        }
        wanted = highest.min(current);
    }
    let (limited, note) = rate_limit(target, state, now, current, wanted);
    notes.extend(note);
    wanted = limited;
    if let Some(activation) = target.activation {
        let active = metrics
            .iter()
            .any(|m| m.value.is_some_and(|v| v > activation));
        if active {
            state.last_active = Some(now);
        }
        let since = *state.last_active.get_or_insert(now);
        if current == 0 {
            wanted = if active { wanted.max(1) } else { 0 };
            if active {
                notes.push(format!("activated: above {activation}"));
            }
        } else if !active && min == 0 && now - since >= target.scale_to_zero_after.as_secs() as Time
        {
            notes.push(format!("inactive for {} s: scale to zero", now - since));
            wanted = 0;
        } else {
            wanted = wanted.max(1);
        }
    }
    trace.stabilized = wanted;
    trace.metrics = metrics;
    trace.notes = notes;
    (trace, wanted)
}
