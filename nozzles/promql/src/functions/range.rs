//! Functions over range vectors (a matrix selector or a subquery): extrapolated `rate`,
//! `increase` and `delta`, `irate`, `deriv` and `predict_linear` by least squares,
//! `holt_winters`, the `*_over_time` family, `changes`, `resets` and `absent_over_time`.

use std::sync::Arc;

use promql_parser::parser::{Call, Expr};

use super::{arg, quantile, scalar};
use crate::eval::{Evaluator, Sample, Val, Window};
use crate::{Error, Series, offset_ms};

/// Functions whose last (or only) argument is a range vector, and that argument's index.
pub(crate) fn matrix_arg(name: &str) -> Option<usize> {
    Some(match name {
        "quantile_over_time" => 1,
        "rate"
        | "irate"
        | "increase"
        | "delta"
        | "idelta"
        | "deriv"
        | "changes"
        | "resets"
        | "predict_linear"
        | "holt_winters"
        | "double_exponential_smoothing"
        | "avg_over_time"
        | "min_over_time"
        | "max_over_time"
        | "sum_over_time"
        | "count_over_time"
        | "last_over_time"
        | "stddev_over_time"
        | "stdvar_over_time"
        | "present_over_time"
        | "absent_over_time" => 0,
        _ => return None,
    })
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

/// Neumaier's compensated sum step, as Prometheus' `kahanSumInc`.
fn kahan(inc: f64, sum: f64, c: f64) -> (f64, f64) {
    let t = sum + inc;
    let c = if sum.abs() >= inc.abs() {
        c + ((sum - t) + inc)
    } else {
        c + ((inc - t) + sum)
    };
    (t, c)
}

/// Least-squares slope (per second) and the intercept at `intercept_time` (ms), as
/// Prometheus' `linearRegression`.
pub(crate) fn linear_regression(points: &[(i64, f64)], intercept_time: i64) -> (f64, f64) {
    let first = points[0].1;
    if points.iter().all(|(_, v)| *v == first) {
        return if first.is_infinite() {
            (f64::NAN, f64::NAN)
        } else {
            (0.0, first)
        };
    }
    let n = points.len() as f64;
    let (mut sx, mut cx, mut sy, mut cy) = (0.0, 0.0, 0.0, 0.0);
    let (mut sxy, mut cxy, mut sx2, mut cx2) = (0.0, 0.0, 0.0, 0.0);
    for (t, v) in points {
        let x = (t - intercept_time) as f64 / 1000.0;
        (sx, cx) = kahan(x, sx, cx);
        (sy, cy) = kahan(*v, sy, cy);
        (sxy, cxy) = kahan(x * v, sxy, cxy);
        (sx2, cx2) = kahan(x * x, sx2, cx2);
    }
    let (sx, sy, sxy, sx2) = (sx + cx, sy + cy, sxy + cxy, sx2 + cx2);
    let cov = sxy - sx * sy / n;
    let var = sx2 - sx * sx / n;
    let slope = cov / var;
    (slope, sy / n - slope * sx / n)
}

/// Prometheus' `holt_winters` (double exponential smoothing) over the values.
fn holt_winters(points: &[(i64, f64)], sf: f64, tf: f64) -> Option<f64> {
    if points.len() < 2 {
        return None;
    }
    let (mut s0, mut s1) = (0.0, points[0].1);
    let mut b = points[1].1 - points[0].1;
    for (i, (_, v)) in points.iter().enumerate().skip(1) {
        if i > 1 {
            b = tf * (s1 - s0) + (1.0 - tf) * b;
        }
        let next = sf * v + (1.0 - sf) * (s1 + b);
        (s0, s1) = (s1, next);
    }
    Some(s1)
}

/// Population variance of the window's values (two passes, no copy).
fn window_variance(points: &[(i64, f64)]) -> f64 {
    let n = points.len() as f64;
    let mean = points.iter().map(|(_, v)| v).sum::<f64>() / n;
    points.iter().map(|(_, v)| (v - mean).powi(2)).sum::<f64>() / n
}

/// The `*_over_time` family, `changes` and `resets` over one window, read in place (only
/// `quantile_over_time` copies the values, to sort them).
fn over_time(name: &str, points: &[(i64, f64)], params: &[f64]) -> Option<f64> {
    let values = || points.iter().map(|(_, v)| *v);
    let n = points.len() as f64;
    Some(match name {
        "avg_over_time" => values().sum::<f64>() / n,
        "min_over_time" => values().fold(f64::NAN, |a, b| if a.is_nan() || b < a { b } else { a }),
        "max_over_time" => values().fold(f64::NAN, |a, b| if a.is_nan() || b > a { b } else { a }),
        "sum_over_time" => values().sum(),
        "count_over_time" => n,
        "last_over_time" => points.last()?.1,
        "present_over_time" => 1.0,
        "quantile_over_time" => quantile(params[0], &mut values().collect::<Vec<_>>()),
        "stddev_over_time" => window_variance(points).sqrt(),
        "stdvar_over_time" => window_variance(points),
        // Prometheus: a change is a value unequal to the one before (NaN equals NaN).
        "changes" => points
            .windows(2)
            .filter(|w| !(w[0].1 == w[1].1 || (w[0].1.is_nan() && w[1].1.is_nan())))
            .count() as f64,
        "resets" => points.windows(2).filter(|w| w[1].1 < w[0].1).count() as f64,
        _ => return None,
    })
}

/// The last two samples' difference: `irate` per second with counter resets, `idelta`
/// plain.
fn instant_value(points: &[(i64, f64)], rate: bool) -> Option<f64> {
    let n = points.len();
    if n < 2 {
        return None;
    }
    let (prev, last) = (points[n - 2], points[n - 1]);
    let diff = if rate && last.1 < prev.1 {
        last.1
    } else {
        last.1 - prev.1
    };
    let dt = last.0 - prev.0;
    if dt == 0 {
        return None;
    }
    Some(if rate {
        diff / (dt as f64 / 1000.0)
    } else {
        diff
    })
}

/// The range vector `e` at `t` and the window `(start, end]` it covers (ms): a matrix
/// selector's fetched samples, or a subquery's steps (owned, in `owned`).
fn windows<'s>(
    ev: &Evaluator<'s>,
    e: &Expr,
    t: i64,
    name: &str,
    owned: &'s mut Vec<Series>,
) -> Result<(Vec<Window<'s>>, i64, i64), Error> {
    match e {
        Expr::MatrixSelector(ms) => {
            let end = ev.pinned(&ms.vs.at, t) - offset_ms(&ms.vs.offset);
            let start = end - crate::duration_ms(&ms.range);
            Ok((ev.window_slices(ms, t), start, end))
        }
        Expr::Subquery(sq) => {
            let end = ev.pinned(&sq.at, t) - offset_ms(&sq.offset);
            let start = end - crate::duration_ms(&sq.range);
            *owned = ev.subquery(sq, t)?;
            let w = owned
                .iter()
                .filter(|s| !s.points.is_empty())
                .map(|s| (&s.labels, s.points.as_slice()))
                .collect();
            Ok((w, start, end))
        }
        Expr::Paren(p) => windows(ev, &p.expr, t, name, owned),
        _ => Err(Error::BadData(format!(
            "expected type range vector in call to function \"{name}\""
        ))),
    }
}

/// Range function `name` over one window `points` of `(start, end]` at `t`, with its
/// scalar parameters; `None` when it has no value there.
pub(crate) fn window_value(
    name: &str,
    points: &[(i64, f64)],
    start: i64,
    end: i64,
    t: i64,
    params: &[f64],
) -> Option<f64> {
    let secs = (end - start) as f64 / 1000.0;
    match name {
        "rate" => extrapolated(points, start, end, secs, true, true),
        "increase" => extrapolated(points, start, end, secs, true, false),
        "delta" => extrapolated(points, start, end, secs, false, false),
        "irate" => instant_value(points, true),
        "idelta" => instant_value(points, false),
        "deriv" => (points.len() >= 2).then(|| linear_regression(points, points[0].0).0),
        "predict_linear" => (points.len() >= 2).then(|| {
            let (slope, intercept) = linear_regression(points, t);
            slope * params[0] + intercept
        }),
        "holt_winters" | "double_exponential_smoothing" => {
            holt_winters(points, params[0], params[1])
        }
        other => over_time(other, points, params),
    }
}

/// Evaluates the range-vector function `c` at `t`.
pub(crate) fn call(ev: &Evaluator<'_>, c: &Call, t: i64, matrix: usize) -> Result<Val, Error> {
    let name = c.func.name;
    let params: Vec<f64> = match name {
        "quantile_over_time" => vec![scalar(ev, arg(c, 0)?, t, name)?],
        "predict_linear" => vec![scalar(ev, arg(c, 1)?, t, name)?],
        "holt_winters" | "double_exponential_smoothing" => {
            let sf = scalar(ev, arg(c, 1)?, t, name)?;
            let tf = scalar(ev, arg(c, 2)?, t, name)?;
            if !(sf > 0.0 && sf < 1.0) {
                return Err(Error::Execution(format!(
                    "invalid smoothing factor. Expected: 0 < sf < 1, got: {sf:.6}"
                )));
            }
            if !(tf > 0.0 && tf < 1.0) {
                return Err(Error::Execution(format!(
                    "invalid trend factor. Expected: 0 < tf < 1, got: {tf:.6}"
                )));
            }
            vec![sf, tf]
        }
        _ => Vec::new(),
    };
    let arg_expr = arg(c, matrix)?;
    let mut owned = Vec::new();
    let (windows, start, end) = windows(ev, arg_expr, t, name, &mut owned)?;
    if name == "absent_over_time" {
        return Ok(Val::Vector(if windows.is_empty() {
            vec![Sample {
                labels: Arc::new(super::absent_labels(arg_expr)),
                value: 1.0,
            }]
        } else {
            Vec::new()
        }));
    }
    let mut out = Vec::with_capacity(windows.len());
    for (labels, points) in windows {
        let value = window_value(name, points, start, end, t, &params);
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn holt_winters_matches_prometheus_arithmetic() {
        // Worked by hand from Prometheus' funcHoltWinters for sf = tf = 0.5.
        let pts = [(0, 1.0), (1, 3.0), (2, 4.0)];
        // i=1: b=2 (initial), s1 = .5*3 + .5*(1+2) = 3
        // i=2: b = .5*(3-1) + .5*2 = 2, s1 = .5*4 + .5*(3+2) = 4.5
        assert_eq!(holt_winters(&pts, 0.5, 0.5), Some(4.5));
        assert_eq!(holt_winters(&pts[..1], 0.5, 0.5), None);
    }

    #[test]
    fn linear_regression_predicts_from_the_evaluation_time() {
        let pts = [(0, 0.0), (10_000, 10.0), (20_000, 20.0)];
        let (slope, intercept) = linear_regression(&pts, 20_000);
        assert!((slope - 1.0).abs() < 1e-12 && (intercept - 20.0).abs() < 1e-12);
        let (slope, intercept) = linear_regression(&[(0, 5.0), (1000, 5.0)], 0);
        assert_eq!((slope, intercept), (0.0, 5.0));
        assert!(
            linear_regression(&[(0, f64::INFINITY), (1000, f64::INFINITY)], 0)
                .0
                .is_nan()
        );
    }
}
