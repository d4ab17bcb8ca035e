//! Functions, with Prometheus' arithmetic: the dispatch, the instant-vector functions
//! (`abs`…`clamp*`, `vector`, `scalar`, `absent`, `sort`, `timestamp`), and the shared
//! helpers. Range-vector functions are in [`range`], label rewriting in [`labels`],
//! `histogram_quantile` in [`histogram`], math and calendar functions in [`simple`].

use std::sync::Arc;

use promql_parser::label::MatchOp;
use promql_parser::parser::{Call, Expr};

use super::eval::{Evaluator, Sample, Val};
use super::{Error, Labels};

mod histogram;
mod labels;
pub(crate) mod range;
mod simple;

/// The functions implemented here (the range-vector ones are [`range::matrix_arg`]'s, the
/// math and calendar ones [`simple::NAMES`]).
const INSTANT: &[&str] = &[
    "abs",
    "absent",
    "ceil",
    "floor",
    "round",
    "clamp",
    "clamp_min",
    "clamp_max",
    "time",
    "timestamp",
    "vector",
    "scalar",
    "sort",
    "sort_desc",
    "label_replace",
    "label_join",
    "histogram_quantile",
];

/// Whether the evaluator implements function `name`.
pub(crate) fn supported(name: &str) -> bool {
    INSTANT.contains(&name) || range::matrix_arg(name).is_some() || simple::NAMES.contains(&name)
}

fn arg(c: &Call, i: usize) -> Result<&Expr, Error> {
    c.args
        .args
        .get(i)
        .map(|b| &**b)
        .ok_or_else(|| Error::BadData(format!("missing argument {i} to {}", c.func.name)))
}

fn scalar(ev: &Evaluator<'_>, e: &Expr, t: i64, what: &str) -> Result<f64, Error> {
    match ev.eval(e, t)? {
        Val::Scalar(v) => Ok(v),
        other => Err(Error::BadData(format!(
            "expected scalar for {what}, got {}",
            other.kind()
        ))),
    }
}

fn string(ev: &Evaluator<'_>, e: &Expr, t: i64) -> Result<String, Error> {
    match ev.eval(e, t)? {
        Val::Str(s) => Ok(s),
        other => Err(Error::BadData(format!(
            "expected string, got {}",
            other.kind()
        ))),
    }
}

fn vector(ev: &Evaluator<'_>, e: &Expr, t: i64) -> Result<Vec<Sample>, Error> {
    match ev.eval(e, t)? {
        Val::Vector(v) => Ok(v),
        other => Err(Error::BadData(format!(
            "expected instant vector, got {}",
            other.kind()
        ))),
    }
}

/// Applies `f` to each value, dropping the metric name.
fn map(ev: &Evaluator<'_>, v: Vec<Sample>, f: impl Fn(f64) -> f64) -> Val {
    Val::Vector(
        v.into_iter()
            .map(|s| Sample {
                labels: ev.unnamed(&s.labels),
                value: f(s.value),
            })
            .collect(),
    )
}

/// Prometheus' `quantile` over unsorted values.
pub(crate) fn quantile(q: f64, values: &mut [f64]) -> f64 {
    if values.is_empty() || q.is_nan() {
        return f64::NAN;
    }
    if q < 0.0 {
        return f64::NEG_INFINITY;
    }
    if q > 1.0 {
        return f64::INFINITY;
    }
    // Go's sort.Float64s: NaN before every number.
    values.sort_by(|a, b| match (a.is_nan(), b.is_nan()) {
        (true, true) => std::cmp::Ordering::Equal,
        (true, false) => std::cmp::Ordering::Less,
        (false, true) => std::cmp::Ordering::Greater,
        (false, false) => a.total_cmp(b),
    });
    let n = values.len() as f64;
    let rank = q * (n - 1.0);
    let lower = rank.floor().max(0.0) as usize;
    let upper = (lower + 1).min(values.len() - 1);
    let weight = rank - rank.floor();
    values[lower] * (1.0 - weight) + values[upper] * weight
}

/// Go's `math.Min`: NaN when either is NaN (Rust's `f64::min` returns the other).
fn go_min(a: f64, b: f64) -> f64 {
    if a.is_nan() || b.is_nan() {
        f64::NAN
    } else {
        a.min(b)
    }
}

/// Go's `math.Max`: NaN when either is NaN.
fn go_max(a: f64, b: f64) -> f64 {
    if a.is_nan() || b.is_nan() {
        f64::NAN
    } else {
        a.max(b)
    }
}

/// Population variance.
pub(crate) fn variance(values: &[f64]) -> f64 {
    let n = values.len() as f64;
    let mean = values.iter().sum::<f64>() / n;
    values.iter().map(|v| (v - mean).powi(2)).sum::<f64>() / n
}

/// Evaluates a function call at `t`.
pub(crate) fn call(ev: &Evaluator<'_>, c: &Call, t: i64) -> Result<Val, Error> {
    let name = c.func.name;
    if let Some(matrix) = range::matrix_arg(name) {
        return range::call(ev, c, t, matrix);
    }
    match name {
        "abs" => Ok(map(ev, vector(ev, arg(c, 0)?, t)?, f64::abs)),
        "ceil" => Ok(map(ev, vector(ev, arg(c, 0)?, t)?, f64::ceil)),
        "floor" => Ok(map(ev, vector(ev, arg(c, 0)?, t)?, f64::floor)),
        "round" => {
            let v = vector(ev, arg(c, 0)?, t)?;
            let to = match c.args.args.get(1) {
                Some(e) => scalar(ev, e, t, "round")?,
                None => 1.0,
            };
            let inverse = 1.0 / to;
            Ok(map(ev, v, |x| (x * inverse + 0.5).floor() / inverse))
        }
        "clamp" => {
            let v = vector(ev, arg(c, 0)?, t)?;
            let lo = scalar(ev, arg(c, 1)?, t, "clamp")?;
            let hi = scalar(ev, arg(c, 2)?, t, "clamp")?;
            if hi < lo {
                return Ok(Val::Vector(Vec::new()));
            }
            Ok(map(ev, v, |x| go_max(lo, go_min(hi, x))))
        }
        "clamp_min" => {
            let v = vector(ev, arg(c, 0)?, t)?;
            let lo = scalar(ev, arg(c, 1)?, t, "clamp_min")?;
            Ok(map(ev, v, |x| go_max(lo, x)))
        }
        "clamp_max" => {
            let v = vector(ev, arg(c, 0)?, t)?;
            let hi = scalar(ev, arg(c, 1)?, t, "clamp_max")?;
            Ok(map(ev, v, |x| go_min(hi, x)))
        }
        "time" => Ok(Val::Scalar(t as f64 / 1000.0)),
        "vector" => Ok(Val::Vector(vec![Sample {
            labels: Arc::new(Labels::new()),
            value: scalar(ev, arg(c, 0)?, t, "vector")?,
        }])),
        "scalar" => {
            let v = vector(ev, arg(c, 0)?, t)?;
            Ok(Val::Scalar(if v.len() == 1 {
                v[0].value
            } else {
                f64::NAN
            }))
        }
        "label_replace" => labels::replace(ev, c, t),
        "label_join" => labels::join(ev, c, t),
        "histogram_quantile" => {
            let q = scalar(ev, arg(c, 0)?, t, "histogram_quantile")?;
            Ok(Val::Vector(histogram::quantile(
                q,
                vector(ev, arg(c, 1)?, t)?,
            )))
        }
        "absent" => {
            let e = arg(c, 0)?;
            Ok(Val::Vector(if vector(ev, e, t)?.is_empty() {
                vec![Sample {
                    labels: Arc::new(absent_labels(e)),
                    value: 1.0,
                }]
            } else {
                Vec::new()
            }))
        }
        "sort" | "sort_desc" => {
            let mut v = vector(ev, arg(c, 0)?, t)?;
            // NaN last either way, as Prometheus.
            let desc = name == "sort_desc";
            v.sort_by(|a, b| match (a.value.is_nan(), b.value.is_nan()) {
                (true, true) => std::cmp::Ordering::Equal,
                (true, false) => std::cmp::Ordering::Greater,
                (false, true) => std::cmp::Ordering::Less,
                (false, false) if desc => b.value.total_cmp(&a.value),
                (false, false) => a.value.total_cmp(&b.value),
            });
            Ok(Val::Vector(v))
        }
        "timestamp" => timestamp(ev, arg(c, 0)?, t),
        other => simple::call(ev, c, t)
            .unwrap_or_else(|| Err(super::unsupported(&format!("function \"{other}\"")))),
    }
}

/// `timestamp(v)`: each sample's own time for a selector (Prometheus special-cases it),
/// the evaluation time for anything computed; in seconds, without `__name__`.
fn timestamp(ev: &Evaluator<'_>, e: &Expr, t: i64) -> Result<Val, Error> {
    let mut inner = e;
    while let Expr::Paren(p) = inner {
        inner = &p.expr;
    }
    let timed = match inner {
        Expr::VectorSelector(vs) => ev.select_timed(vs, t),
        other => vector(ev, other, t)?.into_iter().map(|s| (s, t)).collect(),
    };
    Ok(Val::Vector(
        timed
            .into_iter()
            .map(|(s, ts)| Sample {
                labels: ev.unnamed(&s.labels),
                value: ts as f64 / 1000.0,
            })
            .collect(),
    ))
}

/// The labels `absent` and `absent_over_time` give their 1: those a selector argument
/// matches with exactly one `=` matcher (Prometheus' `createLabelsForAbsentFunction`).
pub(crate) fn absent_labels(e: &Expr) -> Labels {
    let vs = match e {
        Expr::VectorSelector(vs) => vs,
        Expr::MatrixSelector(ms) => &ms.vs,
        _ => return Labels::new(),
    };
    let mut out = Labels::new();
    let mut ambiguous = Vec::new();
    for m in &vs.matchers.matchers {
        if m.name == "__name__" {
            continue;
        }
        if matches!(m.op, MatchOp::Equal) && !out.contains_key(&m.name) {
            if !m.value.is_empty() {
                out.insert(m.name.clone(), m.value.clone());
            }
        } else {
            ambiguous.push(&m.name);
        }
    }
    for name in ambiguous {
        out.remove(name);
    }
    out
}
