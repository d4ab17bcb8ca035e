//! Replay: the decisions a policy would have taken over stored metrics, as a dry run. Reads
//! any Prometheus-compatible query API (Hydrant's storage nozzle, Prometheus,
//! VictoriaMetrics) where Loggregator gauges are stored under their names with `source_id`
//! and `instance_id` labels, and `http` timers as `http_seconds` samples.
//!
//! Every stored sample is read raw (a range vector, never a range query's looked-back
//! values, which would hide a gap), turned back into the envelope it came from, and fed at
//! its own time through the same [`Fleet`] as live traffic, ticking at `step`; scales are
//! recorded as if they succeeded. The recorded metrics stay what they were: replay answers
//! "what would this policy have done with that load", not "what would the load have
//! become".

use std::collections::{BTreeMap, BTreeSet};

use hydrant_proto::envelope;
use serde_json::Value;

use crate::alert::Transition;
use crate::engine::Time;
use crate::fleet::{AlertChange, Effect, Fleet, Settings};
use crate::history::Record;
use crate::policy::{MetricType, Policy};

/// Raw samples are read in windows of at most this many seconds (bounds each answer).
pub const READ_WINDOW: Time = 3_600;

/// Errors replaying.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// The query API could not be reached or answered badly.
    #[error("{url}: {message}")]
    Query {
        /// The request.
        url: String,
        /// What went wrong.
        message: String,
    },
    /// No stored series for the app.
    #[error("no stored metrics for app {0} (looked for source_id and app_name labels)")]
    NoData(String),
}

/// What to replay.
#[derive(Debug, Clone)]
pub struct Replay {
    /// The policy.
    pub policy: Policy,
    /// Query API base URL.
    pub storage: String,
    /// Bearer token for the query API.
    pub token: Option<String>,
    /// The client for the query API (see `hydrant_runtime::https::client`).
    pub http: reqwest::Client,
    /// First tick (UNIX seconds).
    pub from: Time,
    /// Last tick.
    pub to: Time,
    /// Tick interval, seconds.
    pub step: Time,
    /// Instance count at `from` (default: the instances stored at `from`).
    pub instances: Option<u32>,
    /// Fleet settings (stat window).
    pub settings: Settings,
}

/// Stored samples per instance: instance id and (time in ms, value) points.
type Points = Vec<(String, Vec<(i64, f64)>)>;

/// GETs `path?params` from the query API; the `data` of a successful answer.
async fn api(
    http: &reqwest::Client,
    r: &Replay,
    path: &str,
    params: &[(&str, String)],
) -> Result<Value, Error> {
    let url = format!("{}{path}", r.storage.trim_end_matches('/'));
    let fail = |message: String| Error::Query {
        url: url.clone(),
        message,
    };
    let query: String = form_urlencoded::Serializer::new(String::new())
        .extend_pairs(params.iter().map(|(k, v)| (*k, v.as_str())))
        .finish();
    let mut req = http.get(format!("{url}?{query}"));
    if let Some(t) = &r.token {
        req = req.bearer_auth(t);
    }
    let resp = req.send().await.map_err(|e| fail(e.to_string()))?;
    let status = resp.status();
    let text = resp.text().await.map_err(|e| fail(e.to_string()))?;
    let body: Value =
        serde_json::from_str(&text).map_err(|_| fail(format!("{status}: {}", text.trim())))?;
    if !status.is_success() || body["status"] != "success" {
        return Err(fail(format!(
            "{status}: {}",
            body["error"].as_str().unwrap_or("query failed")
        )));
    }
    Ok(body["data"].clone())
}

/// Where ticking starts: a live autoscaler has been evaluating long before `from`, so its
/// history at `from` holds aggregates older than any rule's window; replay ticks through
/// that stretch first and keeps only the decisions from `from` on.
fn warm_up(r: &Replay) -> Time {
    let longest = r
        .policy
        .rules
        .iter()
        .map(|rule| rule.breach_duration.as_secs() as Time)
        .max()
        .unwrap_or(0);
    r.from - longest - r.settings.stat_window - 1
}

/// Every raw sample of `selector` in `[from, to]`, per instance, with its time in ms:
/// instant queries of `selector[window]` (a range vector is the stored samples as they are).
async fn raw(http: &reqwest::Client, r: &Replay, selector: &str) -> Result<Points, Error> {
    let mut out: BTreeMap<String, Vec<(i64, f64)>> = BTreeMap::new();
    // Reads start where the warm-up does (see `warm_up`), one stat window earlier still.
    let mut start = warm_up(r) - r.settings.stat_window;
    while start <= r.to {
        let end = (start + READ_WINDOW).min(r.to);
        let span = end - start + 1;
        let data = api(
            http,
            r,
            "/api/v1/query",
            &[
                ("query", format!("{selector}[{span}s]")),
                ("time", end.to_string()),
            ],
        )
        .await?;
        for series in data["result"].as_array().into_iter().flatten() {
            let instance = series["metric"]["instance_id"]
                .as_str()
                .unwrap_or_default()
                .to_owned();
            let points = out.entry(instance).or_default();
            for p in series["values"].as_array().into_iter().flatten() {
                let (Some(t), Some(v)) =
                    (p[0].as_f64(), p[1].as_str().and_then(|v| v.parse().ok()))
                else {
                    continue;
                };
                points.push(((t * 1000.0).round() as i64, v));
            }
        }
        start = end + 1;
    }
    Ok(out.into_iter().collect())
}

/// The stored gauge names a metric type is computed from.
fn gauges(metric: &MetricType) -> Vec<&str> {
    match metric {
        MetricType::Cpu => vec!["cpu"],
        MetricType::CpuUtil => vec!["cpu_entitlement"],
        MetricType::MemoryUsed => vec!["memory"],
        MetricType::MemoryUtil => vec!["memory", "memory_quota"],
        MetricType::Disk => vec!["disk"],
        MetricType::DiskUtil => vec!["disk", "disk_quota"],
        MetricType::Throughput | MetricType::ResponseTime => Vec::new(),
        MetricType::Custom(name) => vec![name.as_str()],
    }
}

fn escape(s: &str) -> String {
    s.replace('\\', "\\\\").replace('"', "\\\"")
}

/// What a replay would have done.
#[derive(Debug, Clone, Default)]
pub struct Outcome {
    /// The records it would have written, oldest first.
    pub records: Vec<Record>,
    /// The alerts it would have notified (firing and resolved), oldest first.
    pub alerts: Vec<AlertChange>,
}

/// Replays `r`: the records it would have written and the alerts it would have sent.
pub async fn run(r: &Replay) -> Result<Outcome, Error> {
    let http = &r.http;
    let mut wanted: BTreeSet<MetricType> =
        r.policy.rules.iter().map(|x| x.metric.clone()).collect();
    wanted.extend(
        r.policy
            .target
            .iter()
            .flat_map(|t| t.metrics.iter().map(|m| m.metric.clone())),
    );
    let names: BTreeSet<&str> = wanted.iter().flat_map(gauges).collect();
    let timers = wanted
        .iter()
        .any(|m| matches!(m, MetricType::Throughput | MetricType::ResponseTime));
    let app = escape(&r.policy.app);
    // Find how the app is labelled: by source id (guid) or by app name.
    let mut label = None;
    for key in ["source_id", "app_name"] {
        let probe = format!("count by (instance_id) ({{{key}=\"{app}\"}})");
        let data = api(
            http,
            r,
            "/api/v1/query_range",
            &[
                ("query", probe),
                ("start", r.from.to_string()),
                ("end", r.to.to_string()),
                ("step", format!("{}s", r.step.max(1))),
            ],
        )
        .await?;
        if data["result"].as_array().is_some_and(|a| !a.is_empty()) {
            label = Some(key);
            break;
        }
    }
    let Some(label) = label else {
        return Err(Error::NoData(r.policy.app.clone()));
    };
    let selector = format!("{label}=\"{app}\"");
    // What arrived, in time order: (ms, instance) → gauge values, and http durations.
    let mut gauge_at: BTreeMap<(i64, String), Vec<(String, f64)>> = BTreeMap::new();
    for name in &names {
        for (instance, points) in raw(http, r, &format!("{name}{{{selector}}}")).await? {
            for (t, v) in points {
                gauge_at
                    .entry((t, instance.clone()))
                    .or_default()
                    .push(((*name).to_owned(), v));
            }
        }
    }
    let mut http_at: BTreeMap<(i64, String), Vec<f64>> = BTreeMap::new();
    if timers {
        let sel = format!("http_seconds{{{selector},peer_type=\"Client\"}}");
        for (instance, points) in raw(http, r, &sel).await? {
            for (t, seconds) in points {
                http_at
                    .entry((t, instance.clone()))
                    .or_default()
                    .push(seconds);
            }
        }
    }
    // Without --instances: the instances that sent anything in the stat window before `from`.
    let start_instances = r.instances.unwrap_or_else(|| {
        let since = (r.from - r.settings.stat_window) * 1000;
        let seen: BTreeSet<&String> = gauge_at
            .range((since, String::new())..((r.from + 1) * 1000, String::new()))
            .map(|((_, i), _)| i)
            .collect();
        seen.len().max(1) as u32
    });
    let mut fleet = Fleet::new(r.settings);
    fleet.set_policies([r.policy.clone()]);
    fleet.set_instances(&r.policy.app, &r.policy.app, start_instances);
    let mut out = Outcome::default();
    let mut gauges = gauge_at.into_iter().peekable();
    let mut timers = http_at.into_iter().peekable();
    let mut t = warm_up(r);
    while t <= r.to {
        // Everything stored up to this tick arrives first, each at its own time.
        let due = (t + 1) * 1000;
        while let Some(((ms, instance), metrics)) = gauges.next_if(|((ms, _), _)| *ms < due) {
            let mut e = envelope::gauge(
                r.policy.app.clone(),
                metrics.iter().map(|(n, v)| (n.as_str(), *v, "")),
            );
            e.instance_id = instance;
            e.timestamp = ms * 1_000_000;
            fleet.observe(&e, ms.div_euclid(1000));
        }
        while let Some(((ms, instance), durations)) = timers.next_if(|((ms, _), _)| *ms < due) {
            for seconds in durations {
                let mut e =
                    envelope::timer(r.policy.app.clone(), "http", 0, (seconds * 1e9) as i64);
                e.instance_id = instance.clone();
                e.timestamp = ms * 1_000_000;
                e.tags.insert("peer_type".into(), "Client".into());
                fleet.observe(&e, ms.div_euclid(1000));
            }
        }
        let keep = t >= r.from;
        for effect in fleet.tick(t) {
            match effect {
                Effect::Scale(req) => {
                    let done = fleet.completed(&req.app, Ok("replay: not carried out".into()), t);
                    out.records.extend(done.filter(|_| keep));
                }
                Effect::Recorded(rec) if keep => out.records.push(rec),
                Effect::Alert(a)
                    if keep
                        && matches!(a.transition, Transition::Firing | Transition::Resolved) =>
                {
                    out.alerts.push(a);
                }
                Effect::Recorded(_) | Effect::Alert(_) => {}
            }
        }
        // Warm-up ticks every second up to `from`, then every `step`.
        t += if t < r.from { 1 } else { r.step.max(1) };
    }
    Ok(out)
}

/// A time `parse_time` does not understand.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum TimeError {
    /// `now-3w`: a relative time with an unknown unit.
    #[error("invalid time unit in {0:?} (use s, m, h or d)")]
    Unit(String),
    /// Neither RFC 3339, UNIX seconds, `now` nor `now-1h`.
    #[error("invalid time {0:?} (RFC 3339, UNIX seconds, now or now-1h)")]
    Syntax(String),
}

/// Parses a time for `--from`/`--to`: RFC 3339, UNIX seconds, `now`, or `now-1h` / `-1h`.
pub fn parse_time(s: &str, now: Time) -> Result<Time, TimeError> {
    let s = s.trim();
    if s == "now" {
        return Ok(now);
    }
    if let Some(ago) = s.strip_prefix("now-").or_else(|| s.strip_prefix('-')) {
        let (num, unit) = ago.split_at(
            ago.find(|c: char| c.is_ascii_alphabetic())
                .unwrap_or(ago.len()),
        );
        let n: i64 = num.parse().map_err(|_| TimeError::Syntax(s.to_owned()))?;
        let secs = match unit {
            "s" | "" => n,
            "m" => n * 60,
            "h" => n * 3600,
            "d" => n * 86_400,
            _ => return Err(TimeError::Unit(s.to_owned())),
        };
        return Ok(now - secs);
    }
    if let Ok(n) = s.parse::<i64>() {
        return Ok(n);
    }
    chrono::DateTime::parse_from_rfc3339(s)
        .map(|d| d.timestamp())
        .map_err(|_| TimeError::Syntax(s.to_owned()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn times() {
        assert_eq!(parse_time("now", 1000), Ok(1000));
        assert_eq!(parse_time("now-1h", 10_000), Ok(6400));
        assert_eq!(parse_time("-90s", 1000), Ok(910));
        assert_eq!(parse_time("1700000000", 0), Ok(1_700_000_000));
        assert_eq!(parse_time("2023-11-14T22:13:20Z", 0), Ok(1_700_000_000));
        assert_eq!(
            parse_time("yesterday", 0),
            Err(TimeError::Syntax("yesterday".into()))
        );
        assert_eq!(
            parse_time("now-3w", 0),
            Err(TimeError::Unit("now-3w".into()))
        );
    }
}
