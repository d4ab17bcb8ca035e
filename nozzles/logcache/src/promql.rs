//! Log Cache's PromQL endpoints over the cached envelopes: `GET|POST /api/v1/query` and
//! `/api/v1/query_range`, what CF's app-autoscaler and the log-cache CLI read metrics with.
//!
//! As Log Cache (`internal/promql`): every selector names its sources with a `source_id`
//! matcher (`=`, or `=~` with `|`-separated ids); only counters (their total), gauges (one
//! series per metric) and timers (stop − start, in ns) are samples, named by Log Cache's
//! sanitizer; labels are the envelope's tags plus `source_id` and `instance_id`; samples
//! fall on whole seconds; results carry no `__name__`. The sources a query names must all
//! be readable by the caller's token, or the answer is 404 as from Log Cache's auth proxy.
//!
//! In a cluster ([`crate::cluster`]) a source another node owns is read from that node
//! ([`crate::cluster::SAMPLES_PATH`]) before evaluation, so every node answers for the
//! whole cluster; a node that does not answer is an error naming it, never a missing series.
//!
//! Where Hydrant differs, deliberately: label matchers other than `source_id` keep their
//! PromQL meaning (Log Cache compares every one for equality), and errors are Prometheus'
//! (`bad_data` 400, `execution` 422) rather than the gateway's 500 `internal`.

use std::collections::{BTreeMap, HashMap};
use std::sync::Arc;

use hydrant_promql::{self as promql, Data, Error, Evaluator, LOOKBACK_MS, Labels, Series, Value};
use hydrant_proto::envelope::now_nanos;
use hydrant_proto::raw::Kind;
use hydrant_proto::v2::Envelope;
use hydrant_proto::v2::envelope::Message;
use promql_parser::label::{MatchOp, Matcher};

use crate::LogCache;
use crate::store::{Kinds, Query};

/// Most samples one query may read from the cache.
pub const MAX_SAMPLES: usize = 5_000_000;

/// Log Cache's metric name sanitizer (`^[^A-z_]|[\W_]+?` → `_`): every character outside
/// `[0-9A-Za-z_]` becomes `_`, and so does a first character outside ASCII `A`..`z`.
pub fn sanitize(name: &str) -> String {
    name.chars()
        .enumerate()
        .map(|(i, c)| {
            let word = c.is_ascii_alphanumeric() || c == '_';
            let first_ok = ('A'..='z').contains(&c);
            if !word || (i == 0 && !first_ok) {
                '_'
            } else {
                c
            }
        })
        .collect()
}

/// The source ids a group of matchers names (Log Cache's rule: `=` one, `=~` split on
/// `|`); `None` when it names none.
fn source_ids(group: &[Matcher]) -> Option<Vec<String>> {
    let m = group
        .iter()
        .find(|m| m.name == "source_id" && matches!(m.op, MatchOp::Equal | MatchOp::Re(_)))?;
    Some(match &m.op {
        MatchOp::Re(_) => m.value.split('|').map(str::to_owned).collect(),
        _ => vec![m.value.clone()],
    })
}

fn metric_of(group: &[Matcher]) -> String {
    group
        .iter()
        .find(|m| m.name == "__name__")
        .map_or_else(String::new, |m| m.value.clone())
}

/// Every source a query's selectors name, or the Log Cache error for a selector that names
/// none.
pub fn sources(expr: &promql_parser::parser::Expr) -> Result<Vec<String>, Error> {
    let mut out = Vec::new();
    for need in promql::plan(expr, 0, 0, 0) {
        for group in &need.matchers {
            let ids = source_ids(group).ok_or_else(|| {
                Error::BadData(format!(
                    "metric '{}' does not have a 'source_id' label",
                    metric_of(group)
                ))
            })?;
            out.extend(ids);
        }
    }
    out.sort();
    out.dedup();
    Ok(out)
}

/// Envelopes of sources other nodes own, read from them for one query.
pub type Remote = HashMap<String, Vec<Envelope>>;

/// The metric envelopes (counters, gauges, timers) of a source this node keeps, that a
/// query over `[from, to]` (ms) reads.
pub fn metric_envelopes(cache: &LogCache, source: &str, from: i64, to: i64) -> Vec<Envelope> {
    let query = Query {
        // Log Cache reads a second more, since samples fall on whole seconds.
        start: from.saturating_sub(1_000).saturating_mul(1_000_000),
        end: to.saturating_add(1).saturating_mul(1_000_000),
        kinds: Kinds::none()
            .with(Kind::Counter)
            .with(Kind::Gauge)
            .with(Kind::Timer),
        limit: usize::MAX,
        descending: false,
        name_filter: None,
    };
    let found = cache.store().read(source, &query);
    found.into_iter().map(|f| f.into_envelope()).collect()
}

/// The samples in `[from, to]` (ms) of a source's metric envelopes, by series, as Log
/// Cache's querier makes them.
fn series_of(envelopes: &[Envelope], from: i64, to: i64) -> BTreeMap<Labels, Vec<(i64, f64)>> {
    let mut out: BTreeMap<Labels, Vec<(i64, f64)>> = BTreeMap::new();
    for e in envelopes {
        let ts = e.timestamp / 1_000_000_000 * 1_000;
        if ts < from || ts > to {
            continue;
        }
        let mut base: Labels = e.tags.clone().into_iter().collect();
        base.insert("source_id".into(), e.source_id.clone());
        if !e.instance_id.is_empty() {
            base.insert("instance_id".into(), e.instance_id.clone());
        }
        let mut add = |name: &str, value: f64| {
            let mut labels = base.clone();
            labels.insert("__name__".into(), sanitize(name));
            out.entry(labels).or_default().push((ts, value));
        };
        match &e.message {
            Some(Message::Counter(c)) => add(&c.name, c.total as f64),
            Some(Message::Gauge(g)) => {
                for (name, v) in &g.metrics {
                    add(name, v.value);
                }
            }
            Some(Message::Timer(t)) => add(&t.name, t.stop.saturating_sub(t.start) as f64),
            _ => {}
        }
    }
    out
}

fn matches(labels: &Labels, group: &[Matcher]) -> bool {
    group
        .iter()
        .all(|m| m.is_match(labels.get(&m.name).map_or("", String::as_str)))
}

/// Every selector's series, from the sources it names: in `remote` when another node
/// owns them, otherwise from this node's store.
fn fetch(
    cache: &LogCache,
    remote: &Remote,
    expr: &promql_parser::parser::Expr,
    start: i64,
    end: i64,
) -> Result<Data, Error> {
    let mut data = Data::default();
    let mut total = 0usize;
    for need in promql::plan(expr, start, end, LOOKBACK_MS) {
        let mut selected: BTreeMap<Labels, Vec<(i64, f64)>> = BTreeMap::new();
        for group in &need.matchers {
            for source in source_ids(group).unwrap_or_default() {
                let local;
                let envelopes = match remote.get(&source) {
                    Some(e) => e,
                    None => {
                        local = metric_envelopes(cache, &source, need.from, need.to);
                        &local
                    }
                };
                for (labels, points) in series_of(envelopes, need.from, need.to) {
                    if matches(&labels, group) {
                        selected.insert(labels, points);
                    }
                }
            }
        }
        total += selected.values().map(Vec::len).sum::<usize>();
        if total > MAX_SAMPLES {
            return Err(Error::Execution(format!(
                "the query would read more than {MAX_SAMPLES} samples from the cache"
            )));
        }
        data.selected.push(
            selected
                .into_iter()
                .map(|(labels, points)| Series {
                    labels: Arc::new(labels),
                    points,
                })
                .collect(),
        );
    }
    Ok(data)
}

/// Log Cache's results carry no metric name.
fn without_names(v: Value) -> Value {
    let strip = |l: Arc<Labels>| {
        if l.contains_key("__name__") {
            let mut l = (*l).clone();
            l.remove("__name__");
            Arc::new(l)
        } else {
            l
        }
    };
    match v {
        Value::Vector(t, samples) => {
            Value::Vector(t, samples.into_iter().map(|(l, x)| (strip(l), x)).collect())
        }
        Value::Matrix(series) => Value::Matrix(
            series
                .into_iter()
                .map(|s| Series {
                    labels: strip(s.labels),
                    points: s.points,
                })
                .collect(),
        ),
        other => other,
    }
}

/// A parsed query and the sources it reads (for the caller to authorize first).
#[derive(Debug)]
pub struct Parsed {
    expr: promql_parser::parser::Expr,
    /// The source ids it names.
    pub sources: Vec<String>,
}

/// Parses `query` within the engine's limits and finds its sources.
pub fn parse(query: &str) -> Result<Parsed, Error> {
    let expr = promql::parse(query)?;
    let sources = sources(&expr)?;
    Ok(Parsed { expr, sources })
}

impl Parsed {
    /// The time span (ms) whose envelopes a query over `[start, end]` reads, for
    /// [`metric_envelopes`] on the sources' owners.
    pub fn span(&self, start: i64, end: i64) -> (i64, i64) {
        let needs = promql::plan(&self.expr, start, end, LOOKBACK_MS);
        let from = needs.iter().map(|n| n.from).min().unwrap_or(start);
        let to = needs.iter().map(|n| n.to).max().unwrap_or(end);
        (from, to)
    }
}

/// Log Cache's default time of an instant query: now, on a whole second (ms).
pub fn default_time() -> i64 {
    now_nanos() / 1_000_000_000 * 1_000
}

/// An instant query at `t` (ms), with what other nodes hold in `remote`.
pub fn instant(cache: &LogCache, remote: &Remote, q: &Parsed, t: i64) -> Result<Value, Error> {
    let data = fetch(cache, remote, &q.expr, t, t)?;
    Evaluator::new(&q.expr, &data, LOOKBACK_MS)
        .instant(&q.expr, t)
        .map(without_names)
}

/// A range query over `[start, end]` every `step` (ms).
pub fn range(
    cache: &LogCache,
    remote: &Remote,
    q: &Parsed,
    start: i64,
    end: i64,
    step: i64,
) -> Result<Value, Error> {
    promql::check_range(start, end, step)?;
    let data = fetch(cache, remote, &q.expr, start, end)?;
    Evaluator::new(&q.expr, &data, LOOKBACK_MS)
        .range(&q.expr, start, end, step)
        .map(without_names)
}

/// Whether every source `q` reads is readable (`allows` is the caller's grant).
pub fn authorized(q: &Parsed, allows: impl Fn(&str) -> bool) -> bool {
    q.sources.iter().all(|s| allows(s))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_are_sanitized_as_log_cache_does() {
        assert_eq!(sanitize("cpu.entitlement"), "cpu_entitlement");
        assert_eq!(sanitize("1abc"), "_abc");
        assert_eq!(sanitize("http-requests/s"), "http_requests_s");
        assert_eq!(sanitize("_ok"), "_ok");
        assert_eq!(sanitize("é"), "_");
    }

    #[test]
    fn every_selector_names_its_sources() {
        let q = parse(r#"sum(cpu{source_id="a"}) + max(memory{source_id=~"b|c"})"#).unwrap();
        assert_eq!(q.sources, ["a", "b", "c"]);
        let e = parse(r#"cpu{instance_id="0"}"#).unwrap_err();
        assert_eq!(
            e.to_string(),
            "metric 'cpu' does not have a 'source_id' label"
        );
        assert!(
            parse(r#"cpu{source_id!="a"}"#).is_err(),
            "!= names no source"
        );
        assert!(authorized(&q, |s| s != "d"));
        assert!(!authorized(&q, |s| s != "c"));
    }
}
