//! Functions, with Prometheus' arithmetic: extrapolated `rate`/`increase`/`delta`,
//! `irate`, `deriv` by least squares, `*_over_time`, the math functions, `label_replace`
//! and `histogram_quantile`.

use std::collections::BTreeMap;
use std::sync::Arc;

use promql_parser::parser::{Call, Expr};

use super::eval::{Evaluator, Sample, Val};
use super::{Error, Labels, offset_ms};

mod simple;

/// Every function the evaluator implements.
pub(crate) const SUPPORTED: &[&str] = &[
    "rate",
    "irate",
    "increase",
    "delta",
    "deriv",
    "avg_over_time",
    "min_over_time",
    "max_over_time",
    "sum_over_time",
    "count_over_time",
    "last_over_time",
    "quantile_over_time",
    "stddev_over_time",
    "stdvar_over_time",
    "present_over_time",
    "changes",
    "resets",
    "abs",
    "ceil",
    "floor",
    "round",
    "clamp",
    "clamp_min",
    "clamp_max",
    "time",
    "vector",
    "scalar",
    "label_replace",
    "histogram_quantile",
];

/// Whether the evaluator implements function `name`.
pub(crate) fn supported(name: &str) -> bool {
    SUPPORTED.contains(&name) || simple::NAMES.contains(&name)
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

/// Prometheus' `extrapolatedRate`.
fn extrapolated(
    points: &[(i64, f64)],
    range_start: i64,
    range_end: i64,
    range_secs: f64,
    counter: bool,
    rate: bool,
) -> Option<f64> {
    if points.len() < 2 {
        return None;
    }
    let (first, last) = (points[0], points[points.len() - 1]);
    let mut result = last.1 - first.1;
    if counter {
        for w in points.windows(2) {
            if w[1].1 < w[0].1 {
                result += w[0].1;
            }
        }
    }
    let mut to_start = (first.0 - range_start) as f64 / 1000.0;
    let to_end = (range_end - last.0) as f64 / 1000.0;
    let sampled = (last.0 - first.0) as f64 / 1000.0;
    let average = sampled / (points.len() - 1) as f64;
    if counter && result > 0.0 && first.1 >= 0.0 {
        let to_zero = sampled * (first.1 / result);
        if to_zero < to_start {
            to_start = to_zero;
        }
    }
    let threshold = average * 1.1;
    let mut interval = sampled;
    interval += if to_start < threshold {
        to_start
    } else {
        average / 2.0
    };
    interval += if to_end < threshold {
        to_end
    } else {
        average / 2.0
    };
    result *= interval / sampled;
    if rate {
        result /= range_secs;
    }
    Some(result)
}

/// Least-squares slope per second, as Prometheus' `linearRegression`.
fn slope(points: &[(i64, f64)]) -> Option<f64> {
    if points.len() < 2 {
        return None;
    }
    let t0 = points[0].0;
    let first = points[0].1;
    if points.iter().all(|(_, v)| *v == first) {
        return Some(if first.is_infinite() { f64::NAN } else { 0.0 });
    }
    let n = points.len() as f64;
    let (mut sx, mut sy, mut sxy, mut sx2) = (0.0, 0.0, 0.0, 0.0);
    for (t, v) in points {
        let x = (t - t0) as f64 / 1000.0;
        sx += x;
        sy += v;
        sxy += x * v;
        sx2 += x * x;
    }
    let cov = sxy - sx * sy / n;
    let var = sx2 - sx * sx / n;
    Some(cov / var)
}

fn over_time(name: &str, points: &[(i64, f64)], param: f64) -> Option<f64> {
    let mut values: Vec<f64> = points.iter().map(|(_, v)| *v).collect();
    let n = values.len() as f64;
    Some(match name {
        "avg_over_time" => values.iter().sum::<f64>() / n,
        "min_over_time" => values
            .iter()
            .copied()
            .fold(f64::NAN, |a, b| if a.is_nan() || b < a { b } else { a }),
        "max_over_time" => values
            .iter()
            .copied()
            .fold(f64::NAN, |a, b| if a.is_nan() || b > a { b } else { a }),
        "sum_over_time" => values.iter().sum(),
        "count_over_time" => n,
        "last_over_time" => *values.last()?,
        "present_over_time" => 1.0,
        "quantile_over_time" => quantile(param, &mut values),
        "stddev_over_time" => variance(&values).sqrt(),
        "stdvar_over_time" => variance(&values),
        // Prometheus: a change is a value unequal to the one before (NaN equals NaN).
        "changes" => values
            .windows(2)
            .filter(|w| !(w[0] == w[1] || (w[0].is_nan() && w[1].is_nan())))
            .count() as f64,
        "resets" => values.windows(2).filter(|w| w[1] < w[0]).count() as f64,
        _ => return None,
    })
}

fn range_fn(ev: &Evaluator<'_>, c: &Call, t: i64, matrix_arg: usize) -> Result<Val, Error> {
    let name = c.func.name;
    let Expr::MatrixSelector(ms) = arg(c, matrix_arg)? else {
        return Err(Error::BadData(format!(
            "expected a range vector selector in {name}(); subqueries are not supported"
        )));
    };
    let param = if name == "quantile_over_time" {
        scalar(ev, arg(c, 0)?, t, "quantile_over_time")?
    } else {
        0.0
    };
    let end = t - offset_ms(&ms.vs.offset);
    let range = super::duration_ms(&ms.range);
    let start = end - range;
    let mut out = Vec::new();
    for (labels, points) in ev.window_slices(ms, t) {
        let value = match name {
            "rate" => extrapolated(points, start, end, range as f64 / 1000.0, true, true),
            "increase" => extrapolated(points, start, end, range as f64 / 1000.0, true, false),
            "delta" => extrapolated(points, start, end, range as f64 / 1000.0, false, false),
            "irate" => {
                let n = points.len();
                if n < 2 {
                    None
                } else {
                    let (prev, last) = (points[n - 2], points[n - 1]);
                    let diff = if last.1 < prev.1 {
                        last.1
                    } else {
                        last.1 - prev.1
                    };
                    let dt = (last.0 - prev.0) as f64 / 1000.0;
                    (dt > 0.0).then(|| diff / dt)
                }
            }
            "deriv" => slope(points),
            other => over_time(other, points, param),
        };
        if let Some(value) = value {
            let labels = if name == "last_over_time" {
                Arc::clone(labels)
            } else {
                ev.unnamed(labels)
            };
            out.push(Sample { labels, value });
        }
    }
    Ok(Val::Vector(out))
}

/// Evaluates a function call at `t`.
pub(crate) fn call(ev: &Evaluator<'_>, c: &Call, t: i64) -> Result<Val, Error> {
    let name = c.func.name;
    match name {
        "rate" | "irate" | "increase" | "delta" | "deriv" | "changes" | "resets" => {
            range_fn(ev, c, t, 0)
        }
        "quantile_over_time" => range_fn(ev, c, t, 1),
        n if n.ends_with("_over_time") => range_fn(ev, c, t, 0),
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
        "label_replace" => label_replace(ev, c, t),
        "histogram_quantile" => {
            let q = scalar(ev, arg(c, 0)?, t, "histogram_quantile")?;
            Ok(Val::Vector(histogram_quantile(
                q,
                vector(ev, arg(c, 1)?, t)?,
            )))
        }
        other => simple::call(ev, c, t)
            .unwrap_or_else(|| Err(super::unsupported(&format!("function \"{other}\"")))),
    }
}

fn label_replace(ev: &Evaluator<'_>, c: &Call, t: i64) -> Result<Val, Error> {
    let v = vector(ev, arg(c, 0)?, t)?;
    let dst = string(ev, arg(c, 1)?, t)?;
    let replacement = string(ev, arg(c, 2)?, t)?;
    let src = string(ev, arg(c, 3)?, t)?;
    let pattern = string(ev, arg(c, 4)?, t)?;
    let re = regex::Regex::new(&format!("^(?s:{pattern})$")).map_err(|e| {
        Error::BadData(format!(
            "invalid regular expression in label_replace(): {pattern}: {e}"
        ))
    })?;
    let valid = dst
        .chars()
        .enumerate()
        .all(|(i, ch)| ch == '_' || ch.is_ascii_alphabetic() || (i > 0 && ch.is_ascii_digit()));
    if dst.is_empty() || !valid {
        return Err(Error::BadData(format!(
            "invalid destination label name in label_replace(): {dst}"
        )));
    }
    let out = v
        .into_iter()
        .map(|s| {
            let value = s.labels.get(&src).map_or("", String::as_str);
            let Some(caps) = re.captures(value) else {
                return s;
            };
            let mut res = String::new();
            caps.expand(&replacement, &mut res);
            let mut labels = (*s.labels).clone();
            if res.is_empty() {
                labels.remove(&dst);
            } else {
                labels.insert(dst.clone(), res);
            }
            Sample {
                labels: Arc::new(labels),
                value: s.value,
            }
        })
        .collect();
    Ok(Val::Vector(out))
}

/// Prometheus' `bucketQuantile` over each group of `le` buckets.
fn histogram_quantile(q: f64, v: Vec<Sample>) -> Vec<Sample> {
    let mut groups: BTreeMap<Labels, Vec<(f64, f64)>> = BTreeMap::new();
    for s in v {
        let Some(le) = s.labels.get("le") else {
            continue;
        };
        let upper = match le.as_str() {
            "+Inf" | "Inf" | "+inf" | "inf" => f64::INFINITY,
            other => match other.parse::<f64>() {
                Ok(x) => x,
                Err(_) => continue,
            },
        };
        let mut labels = (*s.labels).clone();
        labels.remove("le");
        labels.remove("__name__");
        groups.entry(labels).or_default().push((upper, s.value));
    }
    groups
        .into_iter()
        .map(|(labels, mut buckets)| Sample {
            labels: Arc::new(labels),
            value: bucket_quantile(q, &mut buckets),
        })
        .collect()
}

fn bucket_quantile(q: f64, buckets: &mut [(f64, f64)]) -> f64 {
    if q.is_nan() {
        return f64::NAN;
    }
    if q < 0.0 {
        return f64::NEG_INFINITY;
    }
    if q > 1.0 {
        return f64::INFINITY;
    }
    buckets.sort_by(|a, b| a.0.total_cmp(&b.0));
    if buckets.last().is_none_or(|b| b.0 != f64::INFINITY) {
        return f64::NAN;
    }
    // Merge equal bounds, and make counts monotonic.
    let mut merged: Vec<(f64, f64)> = Vec::with_capacity(buckets.len());
    for (le, count) in buckets.iter().copied() {
        match merged.last_mut() {
            Some(last) if last.0 == le => last.1 += count,
            _ => merged.push((le, count)),
        }
    }
    for i in 1..merged.len() {
        if merged[i].1 < merged[i - 1].1 {
            merged[i].1 = merged[i - 1].1;
        }
    }
    if merged.len() < 2 {
        return f64::NAN;
    }
    let observations = merged[merged.len() - 1].1;
    if observations == 0.0 {
        return f64::NAN;
    }
    let mut rank = q * observations;
    let b = merged
        .iter()
        .position(|(_, c)| *c >= rank)
        .unwrap_or(merged.len() - 1);
    if b == merged.len() - 1 {
        return merged[merged.len() - 2].0;
    }
    if b == 0 && merged[0].0 <= 0.0 {
        return merged[0].0;
    }
    let (start, prev) = if b == 0 {
        (0.0, 0.0)
    } else {
        (merged[b - 1].0, merged[b - 1].1)
    };
    let end = merged[b].0;
    let count = merged[b].1 - prev;
    rank -= prev;
    start + (end - start) * (rank / count)
}
