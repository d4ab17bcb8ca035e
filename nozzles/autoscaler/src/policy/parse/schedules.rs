//! Schedules: Cloud Foundry's recurring and specific-date windows, their formats, limits and
//! overlap rules (recurring windows that touch count as overlapping, as in CF; specific
//! dates may touch).

use chrono::{NaiveDate, NaiveDateTime, NaiveTime};
use marked_yaml::Node;

use super::{Ctx, join, required};
use crate::policy::{Recurring, Specific};

fn time_of_day(cx: &mut Ctx<'_>, node: &Node, path: &str) -> Option<u32> {
    let s = cx.scalar(node, path)?;
    match NaiveTime::parse_from_str(s, "%H:%M") {
        Ok(t) if s.len() == 5 => {
            Some(chrono::Timelike::hour(&t) * 60 + chrono::Timelike::minute(&t))
        }
        _ => {
            cx.error(node, path, format!("must be HH:MM (got {s:?})"));
            None
        }
    }
}

fn date(cx: &mut Ctx<'_>, node: &Node, path: &str) -> Option<Option<NaiveDate>> {
    let s = cx.scalar(node, path)?;
    if s.is_empty() {
        return Some(None);
    }
    match NaiveDate::parse_from_str(s, "%Y-%m-%d") {
        Ok(d) => Some(Some(d)),
        Err(_) => {
            cx.error(node, path, format!("must be YYYY-MM-DD (got {s:?})"));
            None
        }
    }
}

fn date_time(cx: &mut Ctx<'_>, node: &Node, path: &str) -> Option<NaiveDateTime> {
    let s = cx.scalar(node, path)?;
    match NaiveDateTime::parse_from_str(s, "%Y-%m-%dT%H:%M") {
        Ok(d) => Some(d),
        Err(_) => {
            cx.error(node, path, format!("must be YYYY-MM-DDTHH:MM (got {s:?})"));
            None
        }
    }
}

fn days(cx: &mut Ctx<'_>, node: &Node, path: &str, max: u32) -> Vec<u32> {
    let Some(seq) = node.as_sequence() else {
        cx.error(node, path, "must be a list of days");
        return Vec::new();
    };
    let mut out = Vec::new();
    for d in seq.iter() {
        if let Some(n) = cx.count(d, path) {
            if (1..=max).contains(&n) {
                out.push(n);
            } else {
                cx.error(
                    d,
                    path,
                    format!("days must be between 1 and {max} (got {n})"),
                );
            }
        }
    }
    out
}

/// Min, max and the optional initial floor of a window.
fn limits(
    cx: &mut Ctx<'_>,
    map: &marked_yaml::types::MarkedMappingNode,
    node: &Node,
    path: &str,
) -> Option<(u32, u32, Option<u32>)> {
    let min_key = join(path, "instance_min_count");
    let max_key = join(path, "instance_max_count");
    let min =
        required(cx, map, node, path, "instance_min_count").and_then(|n| cx.count(n, &min_key));
    let max =
        required(cx, map, node, path, "instance_max_count").and_then(|n| cx.count(n, &max_key));
    let initial = map
        .get_node("initial_min_instance_count")
        .and_then(|n| cx.count(n, &join(path, "initial_min_instance_count")));
    let (min, max) = (min?, max?);
    if min > max {
        cx.error(
            node,
            &min_key,
            format!("instance_min_count {min} is higher than instance_max_count {max}"),
        );
    }
    let initial = initial.filter(|i| *i != 0);
    if let Some(i) = initial
        && (i < min || i > max)
    {
        cx.error(
            node,
            &join(path, "initial_min_instance_count"),
            format!("{i} must be between instance_min_count {min} and instance_max_count {max}"),
        );
    }
    Some((min, max, initial))
}

pub(super) fn recurring(cx: &mut Ctx<'_>, node: &Node, path: &str) -> Option<Recurring> {
    let Some(map) = node.as_mapping() else {
        cx.error(node, path, "must be a mapping");
        return None;
    };
    cx.known_keys(
        map,
        path,
        &[
            "start_time",
            "end_time",
            "days_of_week",
            "days_of_month",
            "start_date",
            "end_date",
            "instance_min_count",
            "instance_max_count",
            "initial_min_instance_count",
        ],
    );
    let start = required(cx, map, node, path, "start_time")
        .and_then(|n| time_of_day(cx, n, &join(path, "start_time")));
    let end = required(cx, map, node, path, "end_time")
        .and_then(|n| time_of_day(cx, n, &join(path, "end_time")));
    if let (Some(s), Some(e)) = (start, end)
        && s >= e
    {
        cx.error(
            node,
            path,
            "start_time is same or after end_time (windows cannot span midnight)",
        );
    }
    let (week, month) = (map.get_node("days_of_week"), map.get_node("days_of_month"));
    let (days_of_week, days_of_month) = match (week, month) {
        (Some(w), None) => (days(cx, w, &join(path, "days_of_week"), 7), Vec::new()),
        (None, Some(m)) => (Vec::new(), days(cx, m, &join(path, "days_of_month"), 31)),
        _ => {
            cx.error(
                node,
                path,
                "give exactly one of days_of_week and days_of_month",
            );
            (Vec::new(), Vec::new())
        }
    };
    let start_date = match map.get_node("start_date") {
        Some(n) => date(cx, n, &join(path, "start_date"))?,
        None => None,
    };
    let end_date = match map.get_node("end_date") {
        Some(n) => date(cx, n, &join(path, "end_date"))?,
        None => None,
    };
    if let (Some(s), Some(e)) = (start_date, end_date)
        && s > e
    {
        cx.error(node, path, "start_date is after end_date");
    }
    let (min, max, initial_min) = limits(cx, map, node, path)?;
    Some(Recurring {
        start_minute: start?,
        end_minute: end?,
        days_of_week,
        days_of_month,
        start_date,
        end_date,
        min,
        max,
        initial_min,
    })
}

pub(super) fn specific(cx: &mut Ctx<'_>, node: &Node, path: &str) -> Option<Specific> {
    let Some(map) = node.as_mapping() else {
        cx.error(node, path, "must be a mapping");
        return None;
    };
    cx.known_keys(
        map,
        path,
        &[
            "start_date_time",
            "end_date_time",
            "instance_min_count",
            "instance_max_count",
            "initial_min_instance_count",
        ],
    );
    let start = required(cx, map, node, path, "start_date_time")
        .and_then(|n| date_time(cx, n, &join(path, "start_date_time")));
    let end = required(cx, map, node, path, "end_date_time")
        .and_then(|n| date_time(cx, n, &join(path, "end_date_time")));
    if let (Some(s), Some(e)) = (start, end)
        && s >= e
    {
        cx.error(node, path, "start_date_time is same or after end_date_time");
    }
    let (min, max, initial_min) = limits(cx, map, node, path)?;
    Some(Specific {
        start: start?,
        end: end?,
        min,
        max,
        initial_min,
    })
}

fn dates_meet(a: &Recurring, b: &Recurring) -> bool {
    let lo = a.start_date.max(b.start_date);
    let hi = match (a.end_date, b.end_date) {
        (Some(x), Some(y)) => Some(x.min(y)),
        (x, None) | (None, x) => x,
    };
    match (lo, hi) {
        (Some(l), Some(h)) => l <= h,
        _ => true,
    }
}

pub(super) fn overlaps(
    cx: &mut Ctx<'_>,
    recurring: &[(usize, &Node, Recurring)],
    specific: &[(usize, &Node, Specific)],
) {
    for (x, (i, _, a)) in recurring.iter().enumerate() {
        for (j, node, b) in &recurring[x + 1..] {
            let same_days = a.days_of_week.iter().any(|d| b.days_of_week.contains(d))
                || a.days_of_month.iter().any(|d| b.days_of_month.contains(d));
            // Touching windows overlap, as in Cloud Foundry's check.
            let times = a.start_minute <= b.end_minute && b.start_minute <= a.end_minute;
            if same_days && times && dates_meet(a, b) {
                cx.error(
                    node,
                    &format!("schedules.recurring_schedule[{j}]"),
                    format!("overlaps recurring_schedule[{i}]"),
                );
            }
        }
    }
    for (x, (i, _, a)) in specific.iter().enumerate() {
        for (j, node, b) in &specific[x + 1..] {
            if a.start < b.end && b.start < a.end {
                cx.error(
                    node,
                    &format!("schedules.specific_date[{j}]"),
                    format!("overlaps specific_date[{i}]"),
                );
            }
        }
    }
}
