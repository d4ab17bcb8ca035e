//! PromQL for Hydrant's query APIs (the storage nozzle's, and the log cache's as Log Cache
//! serves it): parsed by `promql-parser`, evaluated here. Pure: a query is planned into the
//! selectors and time windows it needs, the caller fetches them (from Parquet through
//! DataFusion, or from cached envelopes), and
//! evaluation runs over that data at each step, with Prometheus' semantics (a 5-minute
//! lookback, left-open windows as in Prometheus 3, extrapolated `rate`, label matching,
//! name dropping).
//!
//! Scope: Prometheus 2.x's language whole: selectors with every matcher kind, `offset`,
//! `@ <time>`/`@ start()`/`@ end()`, range vectors and subqueries; every function of
//! Prometheus 2.x's list and every aggregation (`count_values` included); arithmetic,
//! comparison and set operators with `on`/`ignoring`/`group_left`/`group_right`.
//! Prometheus 3 choices, documented where they differ from 2.x: windows are left-open
//! (`(t − range, t]`, also for the lookback and subquery steps), and a function's result
//! with two equal label sets is refused per step, not per whole range. Anything the
//! evaluator does not know (experimental functions, `fill()`) is an error naming it, never
//! a wrong answer.

use std::collections::BTreeMap;
use std::sync::Arc;

use promql_parser::label::{MatchOp, Matcher};
use promql_parser::parser::{self, AtModifier, Expr, Offset, VectorSelector};

mod eval;
mod functions;
#[cfg(test)]
mod fuzz;
pub mod limits;
mod ops;
pub mod params;
mod raw;
pub mod render;
#[cfg(test)]
mod tests;

pub use eval::Evaluator;

/// Labels of a series, `__name__` included when it has one.
pub type Labels = BTreeMap<String, String>;

/// Prometheus' default lookback delta.
pub const LOOKBACK_MS: i64 = 5 * 60 * 1000;

/// Most points per series a range query may return (Prometheus' 11,000).
pub const MAX_POINTS: i64 = 11_000;

/// Most samples a query may load.
pub const MAX_SAMPLES: usize = 50_000_000;

/// The step of a subquery written without one (`x[30m:]`): Prometheus' default global
/// evaluation interval.
pub const DEFAULT_SUBQUERY_STEP_MS: i64 = 60_000;

/// Most inner evaluations the subqueries of one query may run (each distinct inner step
/// runs once and is reused by every outer step that covers it).
pub const MAX_SUBQUERY_STEPS: usize = 200_000;

/// A query error, with Prometheus' error type.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum Error {
    /// The query or its parameters are invalid (HTTP 400 `bad_data`).
    #[error("{0}")]
    BadData(String),
    /// Evaluation failed (HTTP 422 `execution`).
    #[error("{0}")]
    Execution(String),
    /// The query ran past its time limit (HTTP 503 `timeout`).
    #[error("{0}")]
    Timeout(String),
    /// The query failed unexpectedly (HTTP 500 `internal`).
    #[error("{0}")]
    Internal(String),
}

impl Error {
    /// Prometheus' `errorType`.
    pub fn kind(&self) -> &'static str {
        match self {
            Error::BadData(_) => "bad_data",
            Error::Execution(_) => "execution",
            Error::Timeout(_) => "timeout",
            Error::Internal(_) => "internal",
        }
    }
}

fn unsupported(what: &str) -> Error {
    Error::BadData(format!(
        "{what} is not supported by Hydrant's PromQL engine"
    ))
}

/// A series with its samples (ms, value), sorted by time.
#[derive(Debug, Clone, PartialEq)]
pub struct Series {
    /// Its labels.
    pub labels: Arc<Labels>,
    /// Its samples.
    pub points: Vec<(i64, f64)>,
}

/// One selector of a query and the window of raw samples it needs.
#[derive(Debug, Clone)]
pub struct Need {
    /// Matchers (the metric name as a `__name__` matcher); a series must match all of
    /// one group.
    pub matchers: Vec<Vec<Matcher>>,
    /// First timestamp needed (ms, inclusive).
    pub from: i64,
    /// Last timestamp needed (ms, inclusive).
    pub to: i64,
}

/// The series each selector of a query matched, by selector (in planning order).
#[derive(Debug, Default)]
pub struct Data {
    /// Per selector, its series.
    pub selected: Vec<Vec<Series>>,
}

/// Parses a query, refusing one over the [`limits`] before the parser (or anything
/// recursive) sees it.
pub fn parse(query: &str) -> Result<Expr, Error> {
    parse_within(query, &limits::Limits::default())
}

/// As [`parse`], with `limits` instead of the defaults.
pub fn parse_within(query: &str, limits: &limits::Limits) -> Result<Expr, Error> {
    limits::check_text_within(query, limits)?;
    let query = raw::requote(query);
    register_functions();
    // promql-parser 0.11 panics on a number too large (or NaN) for a duration, as in
    // `up offset 1e308`: caught here and answered like any other parse error.
    let parsed = std::panic::catch_unwind(|| parser::parse(&query)).map_err(|_| {
        Error::BadData(
            "invalid parameter \"query\": parse error: a duration is out of range".into(),
        )
    })?;
    let expr = parsed
        .map_err(|e| Error::BadData(format!("invalid parameter \"query\": parse error: {e}")))?;
    check(&expr)?;
    let selectors = plan(&expr, 0, 0, 0).len();
    if selectors > limits.max_selectors {
        return Err(limits::refused(format!(
            "the query reads {selectors} selectors, more than {}",
            limits.max_selectors
        )));
    }
    Ok(expr)
}

/// Teaches the parser Prometheus 2.x's `holt_winters`, which `promql-parser` 0.11 knows
/// only under its Prometheus 3 name `double_exponential_smoothing`.
fn register_functions() {
    static ONCE: std::sync::Once = std::sync::Once::new();
    ONCE.call_once(|| {
        use promql_parser::parser::function::{Function, register_extra_functions};
        use promql_parser::parser::value::ValueType;
        let holt_winters = Function::new(
            "holt_winters",
            vec![ValueType::Matrix, ValueType::Scalar, ValueType::Scalar],
            0,
            ValueType::Vector,
            false,
        );
        // Only fails when the name is built in, in which case the parser knows it anyway.
        let _ = register_extra_functions(vec![holt_winters]);
    });
}

/// Refuses what the evaluator does not implement, before any data is read.
fn check(e: &Expr) -> Result<(), Error> {
    match e {
        Expr::Subquery(sq) => check(&sq.expr),
        Expr::Extension(_) => Err(unsupported("an extension expression")),
        Expr::VectorSelector(_) | Expr::MatrixSelector(_) => Ok(()),
        Expr::Aggregate(a) => {
            let name = a.op.to_string();
            if !ops::AGGREGATIONS.contains(&name.as_str()) {
                return Err(unsupported(&format!("aggregation \"{name}\"")));
            }
            check(&a.expr)?;
            a.param.as_deref().map_or(Ok(()), check)
        }
        Expr::Unary(u) => check(&u.expr),
        Expr::Binary(b) => {
            if let Some(m) = &b.modifier
                && (m.fill_values.lhs.is_some() || m.fill_values.rhs.is_some())
            {
                return Err(unsupported("fill()"));
            }
            check(&b.lhs)?;
            check(&b.rhs)
        }
        Expr::Paren(p) => check(&p.expr),
        Expr::Call(c) => {
            if !functions::supported(c.func.name) {
                return Err(unsupported(&format!("function \"{}\"", c.func.name)));
            }
            c.args.args.iter().try_for_each(|a| check(a))
        }
        Expr::NumberLiteral(_) | Expr::StringLiteral(_) => Ok(()),
    }
}

fn offset_ms(o: &Option<Offset>) -> i64 {
    match o {
        None => 0,
        Some(Offset::Pos(d)) => duration_ms(d),
        Some(Offset::Neg(d)) => -duration_ms(d),
    }
}

/// A duration in ms, saturating at [`MAX_DURATION_MS`] so time arithmetic cannot overflow.
pub fn duration_ms(d: &std::time::Duration) -> i64 {
    i64::try_from(d.as_millis()).map_or(MAX_DURATION_MS, |ms| ms.min(MAX_DURATION_MS))
}

/// Timestamps are clamped to ±this many ms (about 73 million years) and durations to
/// [`MAX_DURATION_MS`], so sums of a time, an offset, a range and the lookback stay far
/// from `i64`'s limits.
pub const MAX_TIME_MS: i64 = 1 << 61;

/// Longest duration (offset, range, step) in ms, about 36 million years.
pub const MAX_DURATION_MS: i64 = 1 << 60;

fn matchers(vs: &VectorSelector) -> Vec<Vec<Matcher>> {
    let mut base = vs.matchers.matchers.clone();
    if let Some(name) = &vs.name {
        base.push(Matcher::new(MatchOp::Equal, "__name__", name));
    }
    let mut groups = vec![base];
    for or in &vs.matchers.or_matchers {
        let mut g = or.clone();
        if let Some(name) = &vs.name {
            g.push(Matcher::new(MatchOp::Equal, "__name__", name));
        }
        groups.push(g);
    }
    groups.retain(|g| !g.is_empty());
    groups
}

/// The time an `@` modifier pins evaluation to (ms): its own, or the query's start or
/// end (`query`); `None` without one.
pub(crate) fn at_ms(at: &Option<AtModifier>, query: (i64, i64)) -> Option<i64> {
    Some(match at.as_ref()? {
        AtModifier::Start => query.0,
        AtModifier::End => query.1,
        AtModifier::At(t) => {
            let ms = match t.duration_since(std::time::UNIX_EPOCH) {
                Ok(d) => duration_ms(&d),
                Err(e) => -duration_ms(&e.duration()),
            };
            ms.clamp(-MAX_TIME_MS, MAX_TIME_MS)
        }
    })
}

/// The selectors of `expr` and the raw windows they need to evaluate it at every step of
/// `[start, end]` (ms), in the order the evaluator visits them. `@ start()` and `@ end()`
/// refer to the query's `[start, end]` (for an instant query, both are its time).
pub fn plan(expr: &Expr, start: i64, end: i64, lookback: i64) -> Vec<Need> {
    let mut out = Vec::new();
    walk(expr, (start, end), (start, end), lookback, &mut out);
    out
}

/// Plans `e` evaluated at every step of `span`, inside a query over `query`.
fn walk(e: &Expr, span: (i64, i64), query: (i64, i64), lookback: i64, out: &mut Vec<Need>) {
    // The evaluation span of something with an `@` is that one time.
    let pinned = |at: &Option<AtModifier>| at_ms(at, query).map_or(span, |t| (t, t));
    match e {
        Expr::VectorSelector(vs) => {
            let off = offset_ms(&vs.offset);
            let (start, end) = pinned(&vs.at);
            out.push(Need {
                matchers: matchers(vs),
                from: start - off - lookback + 1,
                to: end - off,
            });
        }
        Expr::MatrixSelector(ms) => {
            let off = offset_ms(&ms.vs.offset);
            let (start, end) = pinned(&ms.vs.at);
            out.push(Need {
                matchers: matchers(&ms.vs),
                from: start - off - duration_ms(&ms.range) + 1,
                to: end - off,
            });
        }
        Expr::Subquery(sq) => {
            let off = offset_ms(&sq.offset);
            let (start, end) = pinned(&sq.at);
            let inner = (start - off - duration_ms(&sq.range), end - off);
            walk(&sq.expr, inner, query, lookback, out);
        }
        Expr::Aggregate(a) => {
            if let Some(p) = &a.param {
                walk(p, span, query, lookback, out);
            }
            walk(&a.expr, span, query, lookback, out);
        }
        Expr::Unary(u) => walk(&u.expr, span, query, lookback, out),
        Expr::Binary(b) => {
            walk(&b.lhs, span, query, lookback, out);
            walk(&b.rhs, span, query, lookback, out);
        }
        Expr::Paren(p) => walk(&p.expr, span, query, lookback, out),
        Expr::Call(c) => c
            .args
            .args
            .iter()
            .for_each(|a| walk(a, span, query, lookback, out)),
        Expr::NumberLiteral(_) | Expr::StringLiteral(_) | Expr::Extension(_) => {}
    }
}

/// What a query returns.
#[derive(Debug, Clone, PartialEq)]
pub enum Value {
    /// A scalar at a time.
    Scalar(i64, f64),
    /// A string at a time.
    String(i64, String),
    /// An instant vector at a time.
    Vector(i64, Vec<(Arc<Labels>, f64)>),
    /// Series of points.
    Matrix(Vec<Series>),
}

/// Checks range-query parameters as Prometheus does.
pub fn check_range(start: i64, end: i64, step: i64) -> Result<(), Error> {
    if end < start {
        return Err(Error::BadData(
            "end timestamp must not be before start time".into(),
        ));
    }
    if step <= 0 {
        return Err(Error::BadData(
            "zero or negative query resolution step widths are not accepted. Try a positive integer".into(),
        ));
    }
    if (end - start) / step + 1 > MAX_POINTS {
        return Err(Error::BadData(
            "exceeded maximum resolution of 11,000 points per timeseries. Try decreasing the query resolution (?step=XX)".into(),
        ));
    }
    Ok(())
}

/// Whether `name` is a valid label name (`[a-zA-Z_][a-zA-Z0-9_]*`, Prometheus 2.x).
pub fn valid_label_name(name: &str) -> bool {
    !name.is_empty()
        && name
            .chars()
            .enumerate()
            .all(|(i, c)| c == '_' || c.is_ascii_alphabetic() || (i > 0 && c.is_ascii_digit()))
}

/// Formats a sample value as Prometheus does (`NaN`, `+Inf`, `-Inf`, shortest decimal).
pub fn format_value(v: f64) -> String {
    if v.is_nan() {
        "NaN".into()
    } else if v == f64::INFINITY {
        "+Inf".into()
    } else if v == f64::NEG_INFINITY {
        "-Inf".into()
    } else {
        format!("{v}")
    }
}
