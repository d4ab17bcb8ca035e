//! Scaling rules: CF's fields and bounds, the friendlier duration forms, breach and
//! missing-data modes, and detection of contradictory rules.

use std::time::Duration;

use marked_yaml::{Node, types::MarkedMappingNode};

use super::{Ctx, join, required};
use crate::policy::{Adjustment, Breach, MetricType, OnMissing, Operator, Rule};

const RULE: &[&str] = &[
    "metric_type",
    "operator",
    "threshold",
    "adjustment",
    "breach_duration_secs",
    "breach_duration",
    "cool_down_secs",
    "cool_down",
    "stats_window_secs",
    "breach",
    "on_missing",
];

/// Cloud Foundry's defaults.
const DEFAULT_BREACH: Duration = Duration::from_secs(120);

const DEFAULT_COOL_DOWN: Duration = Duration::from_secs(300);

fn duration_field(
    cx: &mut Ctx<'_>,
    map: &MarkedMappingNode,
    path: &str,
    (secs_key, key): (&str, &str),
    default: Duration,
) -> Duration {
    let secs = map.get_node(secs_key);
    let human = map.get_node(key);
    let (node, value, field) = match (secs, human) {
        (Some(s), Some(_)) => {
            cx.error(
                s,
                &join(path, secs_key),
                format!("give {secs_key} or {key}, not both"),
            );
            return default;
        }
        (Some(n), None) => {
            let field = join(path, secs_key);
            (
                n,
                cx.int(n, &field)
                    .map(|s| Duration::from_secs(s.max(0) as u64)),
                field,
            )
        }
        (None, Some(n)) => {
            let field = join(path, key);
            (n, cx.duration(n, &field), field)
        }
        (None, None) => return default,
    };
    let Some(d) = value else { return default };
    if d < Duration::from_secs(1) {
        cx.error(node, &field, "must be at least 1 second");
    } else if d < Duration::from_secs(60) {
        cx.warn(
            node,
            &field,
            "below Cloud Foundry's minimum of 60 s (accepted by Hydrant)",
        );
    } else if d > Duration::from_secs(3600) {
        cx.warn(
            node,
            &field,
            "above Cloud Foundry's maximum of 3600 s (accepted by Hydrant)",
        );
    }
    d
}

pub(super) fn parse_rule(cx: &mut Ctx<'_>, node: &Node, path: &str) -> Option<Rule> {
    let Some(map) = node.as_mapping() else {
        cx.error(node, path, "a rule must be a mapping");
        return None;
    };
    cx.known_keys(map, path, RULE);
    let metric = required(cx, map, node, path, "metric_type").and_then(|n| {
        let field = join(path, "metric_type");
        let s = cx.scalar(n, &field)?;
        if s.is_empty()
            || s.len() > 100
            || !s.chars().all(|c| c.is_ascii_alphanumeric() || c == '_')
        {
            cx.error(n, &field, "must be 1 to 100 letters, digits or underscores");
            return None;
        }
        Some(MetricType::parse(s))
    });
    let operator = required(cx, map, node, path, "operator").and_then(|n| {
        let field = join(path, "operator");
        match cx.scalar(n, &field)? {
            "<" => Some(Operator::Lt),
            "<=" => Some(Operator::Le),
            ">" => Some(Operator::Gt),
            ">=" => Some(Operator::Ge),
            other => {
                cx.error(
                    n,
                    &field,
                    format!("must be one of <, <=, >, >= (got {other:?})"),
                );
                None
            }
        }
    });
    let threshold = required(cx, map, node, path, "threshold").and_then(|n| {
        let field = join(path, "threshold");
        let t = cx.number(n, &field)?;
        if let Some(m) = &metric {
            let (lo, hi) = m.threshold_bounds();
            match hi {
                Some(hi) if t < lo || t > hi => {
                    cx.error(
                        n,
                        &field,
                        format!("must be between {lo} and {hi} for {}", m.name()),
                    );
                }
                None if t < lo => {
                    cx.error(n, &field, format!("must be at least {lo} for {}", m.name()))
                }
                _ => {}
            }
        }
        Some(t)
    });
    let adjustment = required(cx, map, node, path, "adjustment").and_then(|n| {
        let field = join(path, "adjustment");
        let s = cx.scalar(n, &field)?;
        let parsed = parse_adjustment(s);
        if parsed.is_none() {
            cx.error(
                n,
                &field,
                format!("must be a signed step or percentage such as +1, -2 or +50% (got {s:?})"),
            );
        }
        parsed
    });
    let breach_duration = duration_field(
        cx,
        map,
        path,
        ("breach_duration_secs", "breach_duration"),
        DEFAULT_BREACH,
    );
    let cool_down = duration_field(
        cx,
        map,
        path,
        ("cool_down_secs", "cool_down"),
        DEFAULT_COOL_DOWN,
    );
    if let Some(n) = map.get_node("stats_window_secs") {
        cx.warn(
            n,
            &join(path, "stats_window_secs"),
            "deprecated and ignored, as in Cloud Foundry",
        );
    }
    let breach = match map.get_node("breach") {
        None => Breach::All,
        Some(n) => parse_breach(cx, n, &join(path, "breach")).unwrap_or(Breach::All),
    };
    let on_missing = match map.get_node("on_missing") {
        None => OnMissing::Block,
        Some(n) => parse_on_missing(cx, n, &join(path, "on_missing")).unwrap_or(OnMissing::Block),
    };
    Some(Rule {
        metric: metric?,
        operator: operator?,
        threshold: threshold?,
        breach_duration,
        cool_down,
        adjustment: adjustment?,
        breach,
        on_missing,
    })
}

/// `+1`, `-2`, `+50%` (Cloud Foundry's `^[-+][1-9]+[0-9]*%?$`).
pub(crate) fn parse_adjustment(s: &str) -> Option<Adjustment> {
    let sign = match s.chars().next()? {
        '+' => 1,
        '-' => -1,
        _ => return None,
    };
    let body = &s[1..];
    let (digits, percent) = match body.strip_suffix('%') {
        Some(d) => (d, true),
        None => (body, false),
    };
    if digits.is_empty() || digits.starts_with('0') || !digits.chars().all(|c| c.is_ascii_digit()) {
        return None;
    }
    let n: i64 = digits.parse().ok()?;
    Some(if percent {
        Adjustment::Percent(sign * n)
    } else {
        Adjustment::Step(sign * n)
    })
}

fn parse_breach(cx: &mut Ctx<'_>, node: &Node, path: &str) -> Option<Breach> {
    if let Some(s) = node.as_scalar() {
        return match s.as_str() {
            "all" => Some(Breach::All),
            "mean" => Some(Breach::Mean),
            other => {
                cx.error(
                    node,
                    path,
                    format!("must be all, mean or {{m_of_n: [M, N]}} (got {other:?})"),
                );
                None
            }
        };
    }
    let map = node.as_mapping()?;
    cx.known_keys(map, path, &["m_of_n"]);
    let field = join(path, "m_of_n");
    let pair = map.get_node("m_of_n").and_then(|n| n.as_sequence());
    let (m, n) = match pair.map(|s| s.iter().collect::<Vec<_>>()).as_deref() {
        Some([m, n]) => (cx.count(m, &field)?, cx.count(n, &field)?),
        _ => {
            cx.error(node, &field, "must be a pair [M, N]");
            return None;
        }
    };
    if m == 0 || m > n {
        cx.error(node, &field, format!("needs 1 <= M <= N (got [{m}, {n}])"));
        return None;
    }
    Some(Breach::MOfN { m, n })
}

fn parse_on_missing(cx: &mut Ctx<'_>, node: &Node, path: &str) -> Option<OnMissing> {
    if let Some(s) = node.as_scalar() {
        return match s.as_str() {
            "block" => Some(OnMissing::Block),
            "ignore" => Some(OnMissing::Ignore),
            other => {
                cx.error(
                    node,
                    path,
                    format!("must be block, ignore or {{value: X}} (got {other:?})"),
                );
                None
            }
        };
    }
    let map = node.as_mapping()?;
    cx.known_keys(map, path, &["value"]);
    let v = map.get_node("value")?;
    cx.number(v, &join(path, "value")).map(OnMissing::Value)
}

/// A value interval for a rule's condition, with open/closed ends.
fn interval(op: Operator, t: f64) -> ((f64, bool), (f64, bool)) {
    match op {
        Operator::Gt => ((t, false), (f64::INFINITY, false)),
        Operator::Ge => ((t, true), (f64::INFINITY, false)),
        Operator::Lt => ((f64::NEG_INFINITY, false), (t, false)),
        Operator::Le => ((f64::NEG_INFINITY, false), (t, true)),
    }
}

/// A scale-out and a scale-in rule on one metric whose conditions can hold at once make the
/// app flap. CF accepts such a policy, so this is a warning (`policy check --strict` turns
/// it into an error).
pub(super) fn check_contradictions(cx: &mut Ctx<'_>, rules: &[Rule], nodes: &[(usize, &Node)]) {
    for (a, (ia, na)) in rules.iter().zip(nodes) {
        for (b, (ib, _)) in rules.iter().zip(nodes) {
            if a.metric != b.metric || !a.adjustment.is_out() || b.adjustment.is_out() {
                continue;
            }
            let ((alo, alo_in), (ahi, ahi_in)) = interval(a.operator, a.threshold);
            let ((blo, blo_in), (bhi, bhi_in)) = interval(b.operator, b.threshold);
            let (lo, lo_in) = if alo > blo {
                (alo, alo_in)
            } else if blo > alo {
                (blo, blo_in)
            } else {
                (alo, alo_in && blo_in)
            };
            let (hi, hi_in) = if ahi < bhi {
                (ahi, ahi_in)
            } else if bhi < ahi {
                (bhi, bhi_in)
            } else {
                (ahi, ahi_in && bhi_in)
            };
            let overlap = lo < hi || (lo == hi && lo_in && hi_in);
            if overlap {
                cx.warn(
                    na,
                    &format!("scaling_rules[{ia}]"),
                    format!(
                        "contradicts scaling_rules[{ib}]: with {} {} {} and {} {} {} both scale-out and scale-in hold for some values, so the app may flap",
                        a.metric.name(),
                        a.operator.as_str(),
                        a.threshold,
                        b.metric.name(),
                        b.operator.as_str(),
                        b.threshold
                    ),
                );
            }
        }
    }
}
