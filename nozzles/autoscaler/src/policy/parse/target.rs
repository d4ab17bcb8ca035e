//! `target:` — target tracking. One metric (`metric`, `value`) or several (`metrics: [...]`),
//! plus HPA's and KEDA's behaviour fields.

use std::time::Duration;

use marked_yaml::{Node, types::MarkedMappingNode};

use super::{Ctx, join, required};
use crate::policy::{Fallback, MetricType, RateLimit, Target, TargetMetric};

const TARGET: &[&str] = &[
    "metric",
    "value",
    "total",
    "metrics",
    "tolerance",
    "scale_in_stabilization",
    "scale_up",
    "scale_down",
    "initialization",
    "activation",
    "scale_to_zero_after",
    "fallback",
    "missing_as_zero",
];

fn boolean(cx: &mut Ctx<'_>, node: &Node, path: &str) -> Option<bool> {
    match cx.scalar(node, path)? {
        "true" => Some(true),
        "false" => Some(false),
        other => {
            cx.error(node, path, format!("must be true or false, got {other:?}"));
            None
        }
    }
}

fn metric(
    cx: &mut Ctx<'_>,
    map: &MarkedMappingNode,
    node: &Node,
    path: &str,
) -> Option<TargetMetric> {
    let metric = required(cx, map, node, path, "metric")
        .and_then(|n| cx.scalar(n, &join(path, "metric")))
        .map(MetricType::parse);
    let value = required(cx, map, node, path, "value").and_then(|n| {
        let field = join(path, "value");
        let v = cx.number(n, &field)?;
        if v <= 0.0 {
            cx.error(n, &field, "must be greater than 0");
        }
        Some(v)
    });
    let total = map
        .get_node("total")
        .and_then(|n| boolean(cx, n, &join(path, "total")))
        .unwrap_or(false);
    Some(TargetMetric {
        metric: metric?,
        value: value?,
        total,
    })
}

fn rate(cx: &mut Ctx<'_>, node: &Node, path: &str, default: RateLimit) -> RateLimit {
    let Some(map) = node.as_mapping() else {
        cx.error(
            node,
            path,
            "must be a mapping with instances, percent and period",
        );
        return default;
    };
    cx.known_keys(map, path, &["instances", "percent", "period"]);
    let mut limit = RateLimit {
        instances: None,
        percent: None,
        period: default.period,
    };
    if let Some(n) = map.get_node("instances") {
        limit.instances = cx.count(n, &join(path, "instances"));
    }
    if let Some(n) = map.get_node("percent") {
        limit.percent = cx.count(n, &join(path, "percent"));
    }
    if let Some(n) = map.get_node("period") {
        let field = join(path, "period");
        match cx.duration(n, &field) {
            Some(d) if d.is_zero() => cx.error(n, &field, "must be longer than 0s"),
            Some(d) => limit.period = d,
            None => {}
        }
    }
    if limit.instances.is_none() && limit.percent.is_none() {
        cx.error(node, path, "needs instances, percent or both");
    }
    limit
}

fn duration_or(
    cx: &mut Ctx<'_>,
    map: &MarkedMappingNode,
    key: &str,
    default: Duration,
) -> Duration {
    map.get_node(key)
        .and_then(|n| cx.duration(n, &join("target", key)))
        .unwrap_or(default)
}

pub(super) fn parse_target(cx: &mut Ctx<'_>, node: &Node) -> Option<Target> {
    let path = "target";
    let Some(map) = node.as_mapping() else {
        cx.error(
            node,
            path,
            "must be a mapping with metric and value (or metrics)",
        );
        return None;
    };
    cx.known_keys(map, path, TARGET);
    let mut metrics = Vec::new();
    match (
        map.get_node("metrics"),
        map.get_node("metric").or(map.get_node("value")),
    ) {
        (Some(list), single) => {
            if single.is_some() {
                cx.error(
                    list,
                    "target.metrics",
                    "use either metric/value or metrics, not both",
                );
            }
            if let Some(t) = map.get_node("total") {
                cx.error(t, "target.total", "with metrics, set total on each entry");
            }
            match list.as_sequence() {
                Some(seq) if !seq.is_empty() => {
                    for (i, m) in seq.iter().enumerate() {
                        let p = format!("target.metrics[{i}]");
                        match m.as_mapping() {
                            Some(mm) => {
                                cx.known_keys(mm, &p, &["metric", "value", "total"]);
                                metrics.extend(metric(cx, mm, m, &p));
                            }
                            None => cx.error(m, &p, "must be a mapping with metric and value"),
                        }
                    }
                }
                _ => cx.error(list, "target.metrics", "must be a non-empty list"),
            }
        }
        (None, _) => metrics.extend(metric(cx, map, node, path)),
    }
    let tolerance = match map.get_node("tolerance") {
        None => 0.1,
        Some(n) => {
            let t = cx.number(n, "target.tolerance").unwrap_or(0.1);
            if !(0.0..1.0).contains(&t) {
                cx.error(
                    n,
                    "target.tolerance",
                    "must be at least 0 and below 1 (a fraction of the target)",
                );
            }
            t
        }
    };
    let scale_up = map.get_node("scale_up").map_or(Target::SCALE_UP, |n| {
        rate(cx, n, "target.scale_up", Target::SCALE_UP)
    });
    let scale_down = map.get_node("scale_down").map_or(Target::SCALE_DOWN, |n| {
        rate(cx, n, "target.scale_down", Target::SCALE_DOWN)
    });
    let activation = map
        .get_node("activation")
        .and_then(|n| cx.number(n, "target.activation"));
    let fallback = map.get_node("fallback").and_then(|n| {
        let Some(fm) = n.as_mapping() else {
            cx.error(
                n,
                "target.fallback",
                "must be a mapping with failures and instances",
            );
            return None;
        };
        cx.known_keys(fm, "target.fallback", &["failures", "instances"]);
        let failures = required(cx, fm, n, "target.fallback", "failures")
            .and_then(|f| cx.count(f, "target.fallback.failures"));
        let instances = required(cx, fm, n, "target.fallback", "instances")
            .and_then(|f| cx.count(f, "target.fallback.instances"));
        Some(Fallback {
            failures: failures?,
            instances: instances?,
        })
    });
    let missing_as_zero = map
        .get_node("missing_as_zero")
        .and_then(|n| boolean(cx, n, "target.missing_as_zero"))
        .unwrap_or(false);
    if metrics.is_empty() {
        return None;
    }
    Some(Target {
        metrics,
        tolerance,
        scale_in_stabilization: duration_or(
            cx,
            map,
            "scale_in_stabilization",
            Duration::from_secs(300),
        ),
        scale_up,
        scale_down,
        initialization: duration_or(cx, map, "initialization", Duration::ZERO),
        activation,
        scale_to_zero_after: duration_or(cx, map, "scale_to_zero_after", Duration::from_secs(300)),
        fallback,
        missing_as_zero,
    })
}
