//! Prometheus' per-sample functions: the math functions (`sqrt`, `exp`, `ln`, `log2`,
//! `log10`, `sgn`, `deg`, `rad`, the trigonometric and hyperbolic ones), `pi()`, and the
//! calendar functions (`hour`, `minute`, `month`, `year`, `day_of_month`, `day_of_week`,
//! `day_of_year`, `days_in_month`) in UTC over a vector of Unix seconds, `vector(time())`
//! by default. Each drops the metric name, as Prometheus does; NaN stays NaN.

use chrono::{Datelike, Timelike};
use promql_parser::parser::Call;

use super::{arg, map, vector};
use crate::Error;
use crate::eval::{Evaluator, Sample, Val};

/// The names this module evaluates.
pub(crate) const NAMES: &[&str] = &[
    "sqrt",
    "exp",
    "ln",
    "log2",
    "log10",
    "sgn",
    "deg",
    "rad",
    "sin",
    "cos",
    "tan",
    "asin",
    "acos",
    "atan",
    "sinh",
    "cosh",
    "tanh",
    "asinh",
    "acosh",
    "atanh",
    "pi",
    "hour",
    "minute",
    "month",
    "year",
    "day_of_month",
    "day_of_week",
    "day_of_year",
    "days_in_month",
];

fn math(name: &str) -> Option<fn(f64) -> f64> {
    Some(match name {
        "sqrt" => f64::sqrt,
        "exp" => f64::exp,
        "ln" => f64::ln,
        "log2" => f64::log2,
        "log10" => f64::log10,
        "sgn" => sgn,
        "deg" => f64::to_degrees,
        "rad" => f64::to_radians,
        "sin" => f64::sin,
        "cos" => f64::cos,
        "tan" => f64::tan,
        "asin" => f64::asin,
        "acos" => f64::acos,
        "atan" => f64::atan,
        "sinh" => f64::sinh,
        "cosh" => f64::cosh,
        "tanh" => f64::tanh,
        "asinh" => f64::asinh,
        "acosh" => f64::acosh,
        "atanh" => f64::atanh,
        _ => return None,
    })
}

/// Prometheus' `sgn`: -1, 0 or 1 (Rust's `signum` makes 0 into 1), NaN for NaN.
fn sgn(x: f64) -> f64 {
    if x > 0.0 {
        1.0
    } else if x < 0.0 {
        -1.0
    } else {
        x
    }
}

/// A calendar field of Unix seconds `v` in UTC; NaN for NaN and what no date has.
fn calendar(name: &str, v: f64) -> f64 {
    if !v.is_finite() {
        return f64::NAN;
    }
    let Some(t) = chrono::DateTime::from_timestamp(v.floor() as i64, 0) else {
        return f64::NAN;
    };
    f64::from(match name {
        "hour" => t.hour(),
        "minute" => t.minute(),
        "month" => t.month(),
        "year" => return f64::from(t.year()),
        "day_of_month" => t.day(),
        "day_of_week" => t.weekday().num_days_from_sunday(),
        "day_of_year" => t.ordinal(),
        _ => {
            // days_in_month: the day before the first of the next month.
            let (y, m) = if t.month() == 12 {
                (t.year() + 1, 1)
            } else {
                (t.year(), t.month() + 1)
            };
            return chrono::NaiveDate::from_ymd_opt(y, m, 1)
                .and_then(|d| d.pred_opt())
                .map_or(f64::NAN, |d| f64::from(d.day()));
        }
    })
}

/// Evaluates `c` when it is one of [`NAMES`].
pub(crate) fn call(ev: &Evaluator<'_>, c: &Call, t: i64) -> Option<Result<Val, Error>> {
    let name = c.func.name;
    if name == "pi" {
        return Some(Ok(Val::Scalar(std::f64::consts::PI)));
    }
    if let Some(f) = math(name) {
        return Some(
            arg(c, 0)
                .and_then(|e| vector(ev, e, t))
                .map(|v| map(ev, v, f)),
        );
    }
    if !NAMES.contains(&name) {
        return None;
    }
    let input = match c.args.args.first() {
        Some(e) => vector(ev, e, t),
        None => Ok(vec![Sample {
            labels: std::sync::Arc::new(crate::Labels::new()),
            value: t as f64 / 1000.0,
        }]),
    };
    Some(input.map(|v| map(ev, v, |x| calendar(name, x))))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sgn_and_calendar_fields_are_prometheus() {
        assert_eq!((sgn(-3.0), sgn(0.0), sgn(2.0)), (-1.0, 0.0, 1.0));
        assert!(sgn(f64::NAN).is_nan());
        // 2024-02-29T13:45:10Z, a Thursday.
        let t = 1_709_214_310.0;
        let f = |n| calendar(n, t);
        assert_eq!(
            [
                f("year"),
                f("month"),
                f("day_of_month"),
                f("hour"),
                f("minute")
            ],
            [2024.0, 2.0, 29.0, 13.0, 45.0]
        );
        assert_eq!(
            (f("day_of_week"), f("day_of_year"), f("days_in_month")),
            (4.0, 60.0, 29.0)
        );
        assert_eq!(calendar("days_in_month", 1_701_388_800.0), 31.0, "December");
        assert!(calendar("hour", f64::NAN).is_nan());
    }
}
