//! The evaluator on hand-built series, with results worked out from Prometheus' rules.

use super::*;

mod language;

/// Test series: name, labels, samples.
pub(super) type Fixture<'a> = (&'a str, &'a [(&'a str, &'a str)], &'a [(i64, f64)]);

/// Parses, plans, fetches from `series` (by matching every planned selector), evaluates.
pub(super) fn run(
    query: &str,
    series: &[Fixture<'_>],
    range: Option<(i64, i64, i64)>,
    at: i64,
) -> Result<Value, Error> {
    let expr = parse(query)?;
    let (start, end) = range.map_or((at, at), |(s, e, _)| (s, e));
    let needs = plan(&expr, start, end, LOOKBACK_MS);
    let mut data = Data::default();
    for need in &needs {
        let mut picked = Vec::new();
        for (name, labels, points) in series {
            let mut l: Labels = labels
                .iter()
                .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
                .collect();
            l.insert("__name__".into(), (*name).to_owned());
            let matches = need.matchers.iter().any(|g| {
                g.iter()
                    .all(|m| m.is_match(l.get(&m.name).map_or("", String::as_str)))
            });
            if matches {
                let pts = points
                    .iter()
                    .copied()
                    .filter(|(t, _)| *t >= need.from && *t <= need.to)
                    .collect();
                picked.push(Series {
                    labels: Arc::new(l),
                    points: pts,
                });
            }
        }
        data.selected.push(picked);
    }
    let ev = Evaluator::new(&expr, &data, LOOKBACK_MS);
    match range {
        Some((s, e, step)) => {
            check_range(s, e, step)?;
            ev.range(&expr, s, e, step)
        }
        None => ev.instant(&expr, at),
    }
}

pub(super) fn vector(v: Value) -> Vec<(String, f64)> {
    let Value::Vector(_, v) = v else {
        panic!("{v:?}")
    };
    let mut out: Vec<(String, f64)> = v
        .into_iter()
        .map(|(l, x)| {
            let s: Vec<String> = l.iter().map(|(k, v)| format!("{k}={v}")).collect();
            (s.join(","), x)
        })
        .collect();
    out.sort_by(|a, b| a.0.cmp(&b.0));
    out
}

/// A counter growing 10 per 10 s from 0 at t = 0 (one sample each 10 s for 10 minutes).
fn counter() -> Vec<(i64, f64)> {
    (0..=60).map(|i| (i * 10_000, (i * 10) as f64)).collect()
}

#[test]
fn selectors_lookback_and_offset() {
    let pts: &[(i64, f64)] = &[(0, 1.0), (60_000, 2.0)];
    let s = [("up", &[("job", "a")][..], pts)];
    assert_eq!(
        vector(run("up", &s, None, 60_000).unwrap()),
        [("__name__=up,job=a".into(), 2.0)]
    );
    assert_eq!(vector(run("up", &s, None, 59_999).unwrap())[0].1, 1.0);
    assert_eq!(
        vector(run("up", &s, None, 359_999).unwrap()).len(),
        1,
        "within 5 m"
    );
    assert!(
        vector(run("up", &s, None, 360_000).unwrap()).is_empty(),
        "(t - 5m, t] is left-open"
    );
    assert_eq!(
        vector(run("up offset 1m", &s, None, 60_000).unwrap())[0].1,
        1.0
    );
    assert!(vector(run(r#"up{job!="a"}"#, &s, None, 60_000).unwrap()).is_empty());
}

#[test]
fn rate_increase_irate_delta_deriv() {
    let c = counter();
    let s = [("req_total", &[("app", "web")][..], c.as_slice())];
    // A perfectly regular counter: rate is its slope, increase the slope × range.
    assert_eq!(
        vector(run("rate(req_total[1m])", &s, None, 300_000).unwrap()),
        [("app=web".into(), 1.0)]
    );
    assert_eq!(
        vector(run("increase(req_total[1m])", &s, None, 300_000).unwrap())[0].1,
        60.0
    );
    assert_eq!(
        vector(run("irate(req_total[1m])", &s, None, 300_000).unwrap())[0].1,
        1.0
    );
    assert_eq!(
        vector(run("delta(req_total[1m])", &s, None, 300_000).unwrap())[0].1,
        60.0
    );
    assert!(
        (vector(run("deriv(req_total[1m])", &s, None, 300_000).unwrap())[0].1 - 1.0).abs() < 1e-9
    );
    // A window not aligned to samples extrapolates (Prometheus' rules): samples at
    // 250..300 s (6 of them) in [245 s, 300 s]; 5 s to the start (< 1.1 × 10 s): 55 over 55 s.
    assert!(
        (vector(run("increase(req_total[55s])", &s, None, 300_000).unwrap())[0].1 - 55.0).abs()
            < 1e-9
    );
    // A counter reset adds the value before the reset.
    let reset: &[(i64, f64)] = &[(0, 10.0), (10_000, 20.0), (20_000, 5.0), (30_000, 15.0)];
    let s = [("c_total", &[][..], reset)];
    // (0, 30 s] holds 20, 5, 15: 15 − 20, plus 20 for the reset = 15 over 20 s, extrapolated
    // 10 s to the window start (under 1.1 × the 10 s spacing): 15 × 30 / 20.
    assert_eq!(
        vector(run("increase(c_total[30s])", &s, None, 30_000).unwrap())[0].1,
        22.5
    );
    assert!(
        vector(run("rate(c_total[5s])", &s, None, 30_000).unwrap()).is_empty(),
        "one sample: no rate"
    );
}

#[test]
fn over_time_and_math() {
    let pts: &[(i64, f64)] = &[(0, 1.0), (10_000, 4.0), (20_000, 2.0), (30_000, 3.0)];
    let s = [("g", &[("i", "0")][..], pts)];
    let one = |q: &str| vector(run(q, &s, None, 30_000).unwrap())[0].1;
    assert_eq!(one("avg_over_time(g[40s])"), 2.5);
    assert_eq!(one("min_over_time(g[40s])"), 1.0);
    assert_eq!(one("max_over_time(g[40s])"), 4.0);
    assert_eq!(one("sum_over_time(g[40s])"), 10.0);
    assert_eq!(one("count_over_time(g[40s])"), 4.0);
    assert_eq!(one("last_over_time(g[40s])"), 3.0);
    assert_eq!(one("quantile_over_time(0.5, g[40s])"), 2.5);
    assert_eq!(one("stdvar_over_time(g[40s])"), 1.25);
    assert_eq!(one("present_over_time(g[40s])"), 1.0);
    assert_eq!(
        vector(run("last_over_time(g[40s])", &s, None, 30_000).unwrap())[0].0,
        "__name__=g,i=0",
        "keeps the name"
    );
    assert_eq!(
        vector(run("avg_over_time(g[40s])", &s, None, 30_000).unwrap())[0].0,
        "i=0"
    );
    assert_eq!(one("abs(-g)"), 3.0);
    assert_eq!(one("ceil(g / 2)"), 2.0);
    assert_eq!(one("floor(g / 2)"), 1.0);
    assert_eq!(one("round(g / 2)"), 2.0);
    assert_eq!(one("round(g, 2)"), 4.0);
    assert_eq!(one("clamp(g, 0, 2)"), 2.0);
    assert_eq!(one("clamp_min(g, 5)"), 5.0);
    assert_eq!(one("clamp_max(g, 1)"), 1.0);
    assert!(vector(run("clamp(g, 2, 1)", &s, None, 30_000).unwrap()).is_empty());
    assert_eq!(
        run("time()", &s, None, 30_000).unwrap(),
        Value::Scalar(30_000, 30.0)
    );
    assert_eq!(
        run("scalar(g)", &s, None, 30_000).unwrap(),
        Value::Scalar(30_000, 3.0)
    );
    assert_eq!(
        vector(run("vector(7)", &s, None, 0).unwrap()),
        [(String::new(), 7.0)]
    );
    assert_eq!(
        run("1 + 1", &s, None, 4_000).unwrap(),
        Value::Scalar(4_000, 2.0)
    );
    assert_eq!(
        vector(
            run(
                r#"label_replace(g, "inst", "i-$1", "i", "(.*)")"#,
                &s,
                None,
                30_000
            )
            .unwrap()
        )[0]
        .0,
        "__name__=g,i=0,inst=i-0"
    );
}

#[test]
fn aggregations_by_and_without() {
    let a: &[(i64, f64)] = &[(0, 1.0)];
    let b: &[(i64, f64)] = &[(0, 2.0)];
    let c: &[(i64, f64)] = &[(0, 6.0)];
    let s = [
        ("cpu", &[("app", "web"), ("i", "0")][..], a),
        ("cpu", &[("app", "web"), ("i", "1")][..], b),
        ("cpu", &[("app", "api"), ("i", "0")][..], c),
    ];
    let q = |q: &str| vector(run(q, &s, None, 0).unwrap());
    assert_eq!(q("sum(cpu)"), [(String::new(), 9.0)]);
    assert_eq!(
        q("sum by (app) (cpu)"),
        [("app=api".into(), 6.0), ("app=web".into(), 3.0)]
    );
    assert_eq!(
        q("avg without (i) (cpu)"),
        [("app=api".into(), 6.0), ("app=web".into(), 1.5)]
    );
    assert_eq!(
        q("max by (i) (cpu)"),
        [("i=0".into(), 6.0), ("i=1".into(), 2.0)]
    );
    assert_eq!(q("min(cpu)")[0].1, 1.0);
    assert_eq!(q("count by (app) (cpu)")[1].1, 2.0);
    assert_eq!(
        q("topk(1, cpu)"),
        [("__name__=cpu,app=api,i=0".into(), 6.0)]
    );
    assert_eq!(q("bottomk by (app) (1, cpu)").len(), 2);
    assert_eq!(q("quantile(0.5, cpu)")[0].1, 2.0);
    assert_eq!(
        q("stddev(cpu)")[0].1,
        (((1.0f64 - 3.0).powi(2) + 1.0 + 9.0) / 3.0).sqrt()
    );
}

#[test]
fn binary_operators_and_matching() {
    let s = [
        ("used", &[("app", "web"), ("i", "0")][..], &[(0, 50.0)][..]),
        ("used", &[("app", "web"), ("i", "1")][..], &[(0, 80.0)][..]),
        ("quota", &[("app", "web")][..], &[(0, 100.0)][..]),
        (
            "owner",
            &[("app", "web"), ("team", "blue")][..],
            &[(0, 1.0)][..],
        ),
    ];
    let q = |q: &str| vector(run(q, &s, None, 0).unwrap());
    assert_eq!(
        q("used * 2")[0],
        ("app=web,i=0".into(), 100.0),
        "arithmetic drops the name"
    );
    assert_eq!(
        q("used > 60"),
        [("__name__=used,app=web,i=1".into(), 80.0)],
        "comparison filters"
    );
    assert_eq!(q("used > bool 60").len(), 2);
    assert_eq!(q("100 - used")[1].1, 20.0);
    assert_eq!(
        q("used / on (app) group_left quota"),
        [("app=web,i=0".into(), 0.5), ("app=web,i=1".into(), 0.8)]
    );
    assert_eq!(
        q("used * on (app) group_left (team) owner"),
        [
            ("app=web,i=0,team=blue".into(), 50.0),
            ("app=web,i=1,team=blue".into(), 80.0)
        ]
    );
    assert_eq!(
        q("sum by (app) (used) / ignoring () quota"),
        [("app=web".into(), 1.3)]
    );
    assert_eq!(
        q("quota / on (app) sum by (app) (used)")[0],
        ("app=web".into(), 100.0 / 130.0)
    );
    let e = run("used / on (app) quota", &s, None, 0).unwrap_err();
    assert!(
        matches!(e, Error::Execution(ref m) if m.contains("many-to-one matching must be explicit")),
        "{e}"
    );
    assert_eq!(q(r#"used and on (i) used{i="1"}"#).len(), 1);
    assert_eq!(q(r#"used unless on (i) used{i="1"}"#).len(), 1);
    assert_eq!(q(r#"used{i="0"} or quota"#).len(), 2);
}

#[test]
fn histogram_quantile_interpolates_within_buckets() {
    let s = [
        ("lat_bucket", &[("le", "0.1")][..], &[(0, 10.0)][..]),
        ("lat_bucket", &[("le", "0.5")][..], &[(0, 30.0)][..]),
        ("lat_bucket", &[("le", "+Inf")][..], &[(0, 40.0)][..]),
    ];
    let q = |q: &str| vector(run(q, &s, None, 0).unwrap())[0].1;
    // rank 20 falls in (0.1, 0.5] holding 20 (10..30): 0.1 + 0.4 × 10/20.
    assert!((q("histogram_quantile(0.5, lat_bucket)") - 0.3).abs() < 1e-12);
    assert_eq!(
        q("histogram_quantile(0.9, lat_bucket)"),
        0.5,
        "the +Inf bucket answers its lower bound"
    );
    assert_eq!(q("histogram_quantile(1.5, lat_bucket)"), f64::INFINITY);
}

#[test]
fn range_queries_and_errors() {
    let c = counter();
    let s = [("req_total", &[("app", "web")][..], c.as_slice())];
    let Value::Matrix(m) = run(
        "rate(req_total[1m])",
        &s,
        Some((60_000, 120_000, 30_000)),
        0,
    )
    .unwrap() else {
        panic!()
    };
    assert_eq!(m.len(), 1);
    assert_eq!(m[0].points, [(60_000, 1.0), (90_000, 1.0), (120_000, 1.0)]);
    let Value::Matrix(m) = run("2 * 3", &s, Some((0, 20_000, 10_000)), 0).unwrap() else {
        panic!()
    };
    assert_eq!(m[0].points.len(), 3, "a scalar becomes one series");
    assert!(matches!(
        run("req_total[1m]", &s, Some((0, 1, 1)), 0),
        Err(Error::BadData(_))
    ));
    assert!(
        matches!(run("up", &s, Some((10, 0, 1)), 0), Err(Error::BadData(m)) if m.contains("end timestamp"))
    );
    assert!(
        matches!(run("up", &s, Some((0, 1_000_000_000, 1)), 0), Err(Error::BadData(m)) if m.contains("11,000"))
    );
    assert!(matches!(
        run("up", &s, Some((0, 10, 0)), 0),
        Err(Error::BadData(_))
    ));
    for bad in ["sum(", "rate(up)", "nosuchfn(up)"] {
        assert!(matches!(parse(bad), Err(Error::BadData(_))), "{bad}");
    }
    // Numbers as durations past what a duration holds (the parser panicked on them).
    for bad in [
        "up offset 1e308",
        "rate(up[1e400])",
        "up[5m:1e300]",
        "and[5m]offset 1e308-1e308",
    ] {
        let e = parse(bad).unwrap_err();
        assert_eq!(e.kind(), "bad_data", "{bad}: {e}");
    }
    let e = parse("mad_over_time(up[5m])").unwrap_err();
    assert_eq!(
        e,
        Error::BadData(
            "function \"mad_over_time\" is not supported by Hydrant's PromQL engine".into()
        )
    );
    assert_eq!(format_value(f64::NAN), "NaN");
    assert_eq!(format_value(f64::NEG_INFINITY), "-Inf");
    assert_eq!(format_value(0.25), "0.25");
    assert_eq!(format_value(2.0), "2");
}

#[test]
fn nan_stays_nan_as_in_prometheus() {
    let nan: &[(i64, f64)] = &[(0, f64::NAN)];
    let one: &[(i64, f64)] = &[(0, 1.0)];
    let two: &[(i64, f64)] = &[(0, 2.0)];
    let three: &[(i64, f64)] = &[(0, 3.0)];
    let s = [("x", &[("i", "n")][..], nan)];
    for q in ["clamp(x, 0, 1)", "clamp_min(x, 0)", "clamp_max(x, 1)"] {
        let v = vector(run(q, &s, None, 0).unwrap());
        assert!(v[0].1.is_nan(), "{q}: Go's math.Min/Max keep NaN");
    }
    // Go sorts NaN first: quantile(0.5, {NaN, 1, 2, 3}) is 1.5, not 2.5.
    let s = [
        ("x", &[("i", "n")][..], nan),
        ("x", &[("i", "1")][..], one),
        ("x", &[("i", "2")][..], two),
        ("x", &[("i", "3")][..], three),
    ];
    assert_eq!(
        vector(run("quantile(0.5, x)", &s, None, 0).unwrap())[0].1,
        1.5
    );
}

#[test]
fn math_and_calendar_functions_drop_the_name() {
    let pts: &[(i64, f64)] = &[(0, 100.0)];
    let s = [("x", &[("i", "a")][..], pts)];
    let one = |q: &str| vector(run(q, &s, None, 0).unwrap());
    assert_eq!(one("sqrt(x)"), [("i=a".into(), 10.0)]);
    assert_eq!(one("log10(x)"), [("i=a".into(), 2.0)]);
    assert_eq!(one("sgn(x - 100)"), [("i=a".into(), 0.0)]);
    assert_eq!(one("deg(x * 0 + pi())")[0].1, 180.0);
    // 1,709,214,310 s is 2024-02-29T13:45:10Z.
    let t: &[(i64, f64)] = &[(0, 1_709_214_310.0)];
    let s = [("ts", &[][..], t)];
    let at = |q: &str| vector(run(q, &s, None, 0).unwrap())[0].1;
    assert_eq!(
        [
            at("year(ts)"),
            at("month(ts)"),
            at("day_of_month(ts)"),
            at("hour(ts)")
        ],
        [2024.0, 2.0, 29.0, 13.0]
    );
    assert_eq!(at("days_in_month(ts)"), 29.0);
    // Without an argument: the evaluation time (here 1970-01-01T00:01:00Z).
    assert_eq!(vector(run("minute()", &s, None, 60_000).unwrap())[0].1, 1.0);
}

#[test]
fn changes_and_resets_count_within_the_window() {
    let pts: &[(i64, f64)] = &[
        (0, 1.0),
        (10_000, 1.0),
        (20_000, 5.0),
        (30_000, 2.0),
        (40_000, f64::NAN),
        (50_000, f64::NAN),
        (60_000, 3.0),
    ];
    let s = [("x", &[("i", "a")][..], pts)];
    let at = |q: &str| vector(run(q, &s, None, 60_000).unwrap());
    // 1→5, 5→2, 2→NaN, NaN→3 (NaN→NaN is no change); the window (0, 60 s] leaves out t=0.
    assert_eq!(at("changes(x[1m])"), [("i=a".into(), 4.0)]);
    assert_eq!(at("changes(x[2m])")[0].1, 4.0);
    // Only 5→2 goes down (comparisons with NaN are false).
    assert_eq!(at("resets(x[2m])"), [("i=a".into(), 1.0)]);
}
