//! Bounded fuzzing of the query path (proptest, part of `cargo test`): token soups of
//! PromQL's own vocabulary, deep and long shapes, and arbitrary text. Whatever the query,
//! parsing, planning and evaluating over matching data return a value or an error, never
//! a panic or a stack overflow.

use std::sync::Arc;

use hydrant_runtime::fuzz;
use proptest::prelude::*;

use super::*;

/// PromQL's vocabulary, so random sequences often parse and reach the evaluator.
const TOKENS: &[&str] = &[
    "up",
    "cpu",
    "http_total",
    "{",
    "}",
    "job=\"a\"",
    "job=~\"a|b\"",
    "job!=\"\"",
    ",",
    "(",
    ")",
    "[5m]",
    "[1s]",
    "[0s]",
    "+",
    "-",
    "*",
    "/",
    "%",
    "^",
    "==",
    "!=",
    ">",
    "<=",
    "bool",
    "and",
    "or",
    "unless",
    "atan2",
    "sum",
    "avg",
    "min",
    "max",
    "count",
    "stddev",
    "topk",
    "bottomk",
    "quantile",
    "count_values",
    "group",
    "by",
    "without",
    "(job)",
    "on",
    "ignoring",
    "group_left",
    "group_right",
    "rate",
    "irate",
    "increase",
    "delta",
    "deriv",
    "avg_over_time",
    "max_over_time",
    "histogram_quantile",
    "abs",
    "clamp",
    "clamp_min",
    "round",
    "scalar",
    "vector",
    "time",
    "label_replace",
    "\"dst\"",
    "\"$1\"",
    "\"(.*)\"",
    "offset",
    "5m",
    "-5m",
    "1e308",
    "-1e308",
    "Inf",
    "-Inf",
    "NaN",
    "0",
    "1",
    "0.5",
    "-1",
    "1e-300",
    "@",
    "start()",
    ":",
    "le",
    "0.99",
    "\"\"",
    "#",
    "100000000y",
    "[100000000y]",
    "[99999999999999999999d]",
    "offset 18446744073709551616ms",
    "[30m:1m]",
    "[5m:]",
    "end()",
    "absent",
    "absent_over_time",
    "sort_desc",
    "timestamp",
    "predict_linear",
    "holt_winters",
    "label_join",
    "`a\\.b`",
];

fn soup() -> impl Strategy<Value = String> {
    prop::collection::vec((prop::sample::select(TOKENS), any::<bool>()), 0..40).prop_map(|tokens| {
        let mut q = String::new();
        for (t, space) in tokens {
            q.push_str(t);
            if space {
                q.push(' ');
            }
        }
        q
    })
}

/// Deep and long shapes around the limits.
fn shapes() -> impl Strategy<Value = String> {
    (
        0usize..200,
        0usize..400,
        prop::sample::select(&["abs(", "(", "sum(", "-"][..]),
    )
        .prop_map(|(depth, terms, open)| {
            let close = if open == "-" { "" } else { ")" };
            format!(
                "{}up{}{}",
                open.repeat(depth),
                close.repeat(depth),
                " + up".repeat(terms)
            )
        })
}

/// Data for every selector of `expr`: two series with a few samples each.
fn data_for(needs: &[Need]) -> Data {
    let mut data = Data::default();
    for _ in needs {
        let series = ["a", "b"]
            .iter()
            .map(|job| {
                let labels: Labels = [
                    ("__name__".to_owned(), "up".to_owned()),
                    ("job".to_owned(), (*job).to_owned()),
                    ("le".to_owned(), "0.5".to_owned()),
                ]
                .into_iter()
                .collect();
                Series {
                    labels: Arc::new(labels),
                    points: (0..20)
                        .map(|i| (i * 15_000, (i % 7) as f64 - 2.0))
                        .collect(),
                }
            })
            .collect();
        data.selected.push(series);
    }
    data
}

fn exercise(query: &str) {
    let Ok(expr) = parse(query) else {
        return;
    };
    let (start, end, step) = (0, 300_000, 15_000);
    let needs = plan(&expr, start, end, LOOKBACK_MS);
    let data = data_for(&needs);
    let ev = Evaluator::new(&expr, &data, LOOKBACK_MS);
    let _ = ev.instant(&expr, end);
    let _ = ev.range(&expr, start, end, step);
}

proptest! {
    #![proptest_config(fuzz::config())]

    #[test]
    fn token_soups_never_panic(q in soup()) {
        exercise(&q);
    }

    #[test]
    fn deep_and_long_queries_never_overflow(q in shapes()) {
        exercise(&q);
    }

    #[test]
    fn arbitrary_text_never_panics(q in "\\PC{0,200}") {
        exercise(&q);
    }

    /// `start`, `end`, `time` and `step` as Grafana and hostile clients send them:
    /// parsed, checked, and evaluated over whatever range they allow.
    #[test]
    fn time_parameters_never_panic(
        start in prop::sample::select(TIMES),
        end in prop::sample::select(TIMES),
        step in prop::sample::select(TIMES),
        any_text in "\\PC{0,40}",
    ) {
        use crate::params::{parse_duration, parse_time};
        let _ = (parse_time(&any_text), parse_duration(&any_text));
        let (Ok(start), Ok(end), Ok(step)) = (parse_time(start), parse_time(end), parse_duration(step)) else {
            return Ok(());
        };
        let Ok(expr) = parse("rate(up[5m] offset 1h) + vector(1)") else {
            unreachable!("a valid query");
        };
        let data = data_for(&plan(&expr, start, end, LOOKBACK_MS));
        let ev = Evaluator::new(&expr, &data, LOOKBACK_MS);
        let _ = ev.instant(&expr, start);
        if check_range(start, end, step).is_ok() {
            let _ = ev.range(&expr, start, end, step);
        }
    }
}

const TIMES: &[&str] = &[
    "0",
    "1",
    "-1",
    "15",
    "1e18",
    "-1e18",
    "1e300",
    "-1e300",
    "9223372036854775807",
    "-9223372036854775808",
    "1700000000",
    "1700000000.5",
    "2023-11-14T22:13:20Z",
    "9999-12-31T23:59:59Z",
    "0000-01-01T00:00:00Z",
    "5m",
    "1y",
    "100000000y",
    "0.001",
    "NaN",
    "Inf",
    "-Inf",
];

/// Durations past `std::time::Duration`'s range inside a query.
#[test]
fn huge_durations_in_queries_never_panic() {
    for q in [
        "up offset 100000000y",
        "rate(up[100000000y])",
        "up[99999999999999999999d]",
        "up offset 18446744073709551616ms",
        "max_over_time(up[5m] offset -100000000y)",
    ] {
        exercise(q);
    }
}
