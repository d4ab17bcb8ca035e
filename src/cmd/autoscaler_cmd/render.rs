//! How `hydrant autoscaler` renders what it reads for a terminal: the history table, the
//! live explanation and a replay's report.

use hydrant_autoscaler::api::contract::{AlertState, Explanation, Overview};
use hydrant_autoscaler::history::{Record, Status};
use hydrant_autoscaler::replay;

fn time(ns: i64) -> String {
    chrono::DateTime::from_timestamp(ns / 1_000_000_000, 0)
        .unwrap_or_default()
        .to_rfc3339_opts(chrono::SecondsFormat::Secs, true)
}

/// Renders history records as the cf CLI's autoscaling-history table.
/// What `replay` prints: the decisions and the alerts, as a table and a summary or as JSON
/// lines (records as the history API has them, alerts as `{"alert": …}`).
pub(super) fn replay_report(
    outcome: &replay::Outcome,
    from: i64,
    to: i64,
    json: bool,
) -> anyhow::Result<String> {
    use std::fmt::Write as _;
    let mut out = String::new();
    let records = &outcome.records;
    if json {
        for rec in records {
            writeln!(out, "{}", serde_json::to_string(rec)?)?;
        }
        for a in &outcome.alerts {
            let state = alert_state(a.transition);
            let line = serde_json::json!({"alert": {
                "app": a.app, "rule": a.rule, "summary": a.summary, "state": state,
                "since": a.since, "at": a.at, "value": a.value,
            }});
            writeln!(out, "{line}")?;
        }
        return Ok(out);
    }
    if records.is_empty() {
        writeln!(
            out,
            "No decisions between {} and {}.",
            time(from * 1_000_000_000),
            time(to * 1_000_000_000)
        )?;
    } else {
        out.push_str(&history_table(records));
    }
    for a in &outcome.alerts {
        writeln!(
            out,
            "{}  alert {}: rule {}: {}",
            time(a.at * 1_000_000_000),
            alert_state(a.transition),
            a.rule,
            a.summary
        )?;
    }
    let scales = records
        .iter()
        .filter(|r| r.status == Status::Succeeded)
        .count();
    writeln!(
        out,
        "{} decision(s), {scales} scale(s), {} alert notification(s) (dry run: nothing was scaled or sent)",
        records.len(),
        outcome.alerts.len()
    )?;
    Ok(out)
}

fn alert_state(t: hydrant_autoscaler::alert::Transition) -> &'static str {
    use hydrant_autoscaler::alert::Transition;
    match t {
        Transition::Firing => "firing",
        Transition::Resolved => "resolved",
        Transition::Pending => "pending",
        Transition::Reset => "reset",
    }
}

pub(super) fn history_table(records: &[Record]) -> String {
    let mut rows = vec![[
        "Scaling Type".to_owned(),
        "Status".into(),
        "Instance Changes".into(),
        "Time".into(),
        "Action".into(),
        "Error".into(),
    ]];
    for r in records {
        let mut action = r.reason.clone();
        if !r.message.is_empty() {
            action.push_str(&format!(" ({})", r.message));
        }
        rows.push([
            r.scaling_type.label().into(),
            r.status.label().into(),
            format!("{}->{}", r.old_instances, r.new_instances),
            time(r.timestamp),
            action,
            r.error.clone(),
        ]);
    }
    hydrant::apps::columns(&rows)
}

/// `-` for nothing.
fn opt<T: std::fmt::Display>(v: Option<T>) -> String {
    v.map_or_else(|| "-".to_owned(), |v| v.to_string())
}

pub(super) fn explain_text(x: &Explanation) -> String {
    let mut out = format!(
        "app {} (guid {}): {} instance(s), limits [{}, {}]\n",
        x.app,
        x.guid.as_deref().unwrap_or("unknown"),
        opt(x.instances),
        x.limits.min,
        x.limits.max,
    );
    out.push_str(&format!(
        "cooldown: scale-out {} s, scale-in {} s; breaker: {} failure(s), open {} s\n",
        opt(x.cooldown.scale_out_remaining_secs),
        opt(x.cooldown.scale_in_remaining_secs),
        x.breaker.failures,
        opt(x.breaker.open_remaining_secs),
    ));
    for r in &x.rules {
        let alert = match r.alert.state {
            AlertState::Inactive => "inactive",
            AlertState::Pending => "pending",
            AlertState::Firing => "firing",
        };
        out.push_str(&format!(
            "rule {}: {} ({}): value {}, breaching for {} s, {}; alert {alert}\n",
            r.rule,
            r.text,
            r.adjustment,
            opt(r.value),
            opt(r.breaching_for_secs),
            r.verdict,
        ));
    }
    if let Some(t) = &x.target {
        out.push_str(&format!(
            "target tracking: value {}, ratio {}, recommends {} (stabilized {})\n",
            opt(t.value),
            opt(t.ratio),
            t.recommended,
            t.stabilized,
        ));
    }
    out.push_str(&format!("next: {}\n", x.next));
    if let Some(last) = &x.last_decision {
        out.push_str("last decision:\n");
        out.push_str(&history_table(std::slice::from_ref(last)));
    }
    out
}

/// `hydrant autoscaler status`: one row per app, as `kubectl get hpa` lays it out.
pub(super) fn status_table(o: &Overview, now: i64) -> String {
    let mut rows = vec![[
        "APP".to_owned(),
        "TARGETS".into(),
        "MIN".into(),
        "MAX".into(),
        "INSTANCES".into(),
        "LAST DECISION".into(),
    ]];
    let num = |v: f64| {
        if v.fract() == 0.0 {
            format!("{v:.0}")
        } else {
            format!("{v:.1}")
        }
    };
    for x in &o.resources {
        let mut targets: Vec<String> = x
            .rules
            .iter()
            .map(|r| {
                let value = r.value.map_or_else(|| "<unknown>".to_owned(), num);
                format!("{} {value}/{}{}", r.metric, r.operator, num(r.threshold))
            })
            .collect();
        if let Some(t) = &x.target {
            let value = t.value.map_or_else(|| "<unknown>".to_owned(), num);
            targets.push(format!("target {value} (wants {})", t.stabilized));
        }
        let last = x.last_decision.as_ref().map_or_else(
            || "-".to_owned(),
            |r| {
                let ago = (now - r.timestamp / 1_000_000_000).max(0);
                let what = match r.status {
                    Status::Succeeded => format!("{}->{}", r.old_instances, r.new_instances),
                    Status::Failed => format!("{}->{} failed", r.old_instances, r.new_instances),
                    Status::Ignored if r.message.is_empty() => "ignored".to_owned(),
                    Status::Ignored => format!("ignored ({})", r.message),
                };
                format!("{what} {} ago", age(ago))
            },
        );
        rows.push([
            x.app.clone(),
            if targets.is_empty() {
                "-".into()
            } else {
                targets.join(", ")
            },
            x.limits.min.to_string(),
            x.limits.max.to_string(),
            x.instances
                .map_or_else(|| "?".to_owned(), |n| n.to_string()),
            last,
        ]);
    }
    hydrant::apps::columns(&rows)
}

/// Seconds as kubectl prints ages: `42s`, `5m`, `3h`, `2d`.
fn age(secs: i64) -> String {
    match secs {
        s if s < 120 => format!("{s}s"),
        s if s < 7_200 => format!("{}m", s / 60),
        s if s < 172_800 => format!("{}h", s / 3_600),
        s => format!("{}d", s / 86_400),
    }
}
