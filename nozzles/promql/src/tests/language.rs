//! The parts of the language Prometheus 2.x has beyond selectors, operators and the
//! common functions: subqueries, `@`, `absent*`, `sort*`, `timestamp`, `predict_linear`,
//! `holt_winters`, `count_values`, `label_join`, and the refusal of a vector with two
//! equal label sets.

use super::{Fixture, run, vector};
use crate::*;

/// A gauge rising 1 per 10 s from 0 at t = 0, for 10 minutes.
fn ramp() -> Vec<(i64, f64)> {
    (0..=60).map(|i| (i * 10_000, i as f64)).collect()
}

fn matrix(v: Value) -> Vec<Series> {
    let Value::Matrix(m) = v else { panic!("{v:?}") };
    m
}

#[test]
fn subqueries_evaluate_at_aligned_steps() {
    let r = ramp();
    let s: [Fixture<'_>; 1] = [("g", &[("a", "1")], r.as_slice())];
    // g[1m:20s] at 300 s: steps 260, 280, 300 (left-open at 240).
    let m = matrix(run("g[1m:20s]", &s, None, 300_000).unwrap());
    assert_eq!(
        m[0].points,
        [(260_000, 26.0), (280_000, 28.0), (300_000, 30.0)]
    );
    // Steps are absolute multiples of the step, not relative to the query time.
    let m = matrix(run("g[1m:20s]", &s, None, 305_000).unwrap());
    assert_eq!(m[0].points[0].0, 260_000);
    // An outer range function over the subquery, by default step (1 m).
    assert_eq!(
        vector(run("max_over_time(g[5m:])", &s, None, 300_000).unwrap()),
        [("a=1".into(), 30.0)]
    );
    // rate over a subquery of a rate: the ramp's rate is 0.1/s, constant.
    let v = vector(run("max_over_time(rate(g[1m])[5m:30s])", &s, None, 400_000).unwrap());
    assert!((v[0].1 - 0.1).abs() < 1e-9, "{v:?}");
    // Offsets apply to the subquery's window.
    let m = matrix(run("g[30s:10s] offset 1m", &s, None, 300_000).unwrap());
    assert_eq!(m[0].points.last(), Some(&(240_000, 24.0)));
    // A range query reuses inner steps: the same answer as instant queries step by step.
    let range = matrix(
        run(
            "sum_over_time(g[1m:10s])",
            &s,
            Some((120_000, 300_000, 15_000)),
            0,
        )
        .unwrap(),
    );
    for (t, v) in &range[0].points {
        let at = vector(run("sum_over_time(g[1m:10s])", &s, None, *t).unwrap());
        assert_eq!(at[0].1, *v, "at {t}");
    }
    assert!(parse("g[5m:0s]").is_err());
}

#[test]
fn at_modifier_pins_evaluation_time() {
    let r = ramp();
    let s: [Fixture<'_>; 1] = [("g", &[], r.as_slice())];
    assert_eq!(
        vector(run("g @ 100", &s, None, 500_000).unwrap())[0].1,
        10.0
    );
    assert_eq!(
        vector(run("g @ 100 offset 30s", &s, None, 500_000).unwrap())[0].1,
        7.0
    );
    let m = matrix(run("g @ start()", &s, Some((60_000, 120_000, 30_000)), 0).unwrap());
    assert_eq!(m[0].points, [(60_000, 6.0), (90_000, 6.0), (120_000, 6.0)]);
    let m = matrix(run("g @ end()", &s, Some((60_000, 120_000, 30_000)), 0).unwrap());
    assert!(m[0].points.iter().all(|p| p.1 == 12.0));
    let v = vector(run("sum_over_time(g[30s] @ 60)", &s, None, 500_000).unwrap());
    assert_eq!(v[0].1, 4.0 + 5.0 + 6.0);
    let v = vector(run("max_over_time(g[1m:10s] @ 200)", &s, None, 500_000).unwrap());
    assert_eq!(v[0].1, 20.0);
}

#[test]
fn absent_and_absent_over_time() {
    let r = ramp();
    let s: [Fixture<'_>; 1] = [("g", &[("job", "x")], r.as_slice())];
    assert!(vector(run("absent(g)", &s, None, 100_000).unwrap()).is_empty());
    assert_eq!(
        vector(
            run(
                r#"absent(nope{job="a", env=~"p.*", x="1", x="2"})"#,
                &s,
                None,
                100_000
            )
            .unwrap()
        ),
        [("job=a".into(), 1.0)],
        "labels only from single equality matchers"
    );
    assert_eq!(
        vector(run("absent(sum(nope))", &s, None, 100_000).unwrap()),
        [(String::new(), 1.0)]
    );
    // Ten minutes of data, then nothing: absent_over_time turns 1 once the window is empty.
    assert!(vector(run("absent_over_time(g[1m])", &s, None, 650_000).unwrap()).is_empty());
    assert_eq!(
        vector(run(r#"absent_over_time(g{job="x"}[1m])"#, &s, None, 700_000).unwrap()),
        [("job=x".into(), 1.0)]
    );
}

#[test]
fn sort_keeps_its_order_and_nan_last() {
    let a: &[(i64, f64)] = &[(0, 3.0)];
    let b: &[(i64, f64)] = &[(0, f64::NAN)];
    let c: &[(i64, f64)] = &[(0, 1.0)];
    let d: &[(i64, f64)] = &[(0, 2.0)];
    let s: [Fixture<'_>; 4] = [
        ("m", &[("i", "a")], a),
        ("m", &[("i", "b")], b),
        ("m", &[("i", "c")], c),
        ("m", &[("i", "d")], d),
    ];
    let order = |q: &str| -> Vec<String> {
        let Value::Vector(_, v) = run(q, &s, None, 0).unwrap() else {
            panic!()
        };
        v.iter().map(|(l, _)| l["i"].clone()).collect()
    };
    assert_eq!(order("sort(m)"), ["c", "d", "a", "b"]);
    assert_eq!(order("sort_desc(m)"), ["a", "d", "c", "b"]);
}

#[test]
fn timestamp_is_the_samples_own_time_for_a_selector() {
    let pts: &[(i64, f64)] = &[(10_000, 1.0), (25_500, 2.0)];
    let s: [Fixture<'_>; 1] = [("g", &[("k", "v")], pts)];
    assert_eq!(
        vector(run("timestamp(g)", &s, None, 60_000).unwrap()),
        [("k=v".into(), 25.5)]
    );
    assert_eq!(
        vector(run("timestamp((g))", &s, None, 60_000).unwrap())[0].1,
        25.5
    );
    // Computed vectors carry the evaluation time.
    assert_eq!(
        vector(run("timestamp(g * 2)", &s, None, 60_000).unwrap())[0].1,
        60.0
    );
    assert_eq!(
        vector(run("timestamp(g @ 20)", &s, None, 60_000).unwrap())[0].1,
        10.0
    );
}

#[test]
fn predict_linear_and_holt_winters() {
    let r = ramp();
    let s: [Fixture<'_>; 1] = [("g", &[], r.as_slice())];
    // At 300 s the ramp is 30 and rises 0.1/s: in an hour, 30 + 360.
    let v = vector(run("predict_linear(g[5m], 3600)", &s, None, 300_000).unwrap());
    assert!((v[0].1 - 390.0).abs() < 1e-6, "{v:?}");
    // Between samples, the intercept is at the evaluation time, not the last sample.
    let v = vector(run("predict_linear(g[5m], 0)", &s, None, 305_000).unwrap());
    assert!((v[0].1 - 30.5).abs() < 1e-6, "{v:?}");
    // On a straight line, double exponential smoothing follows the line exactly.
    let v = vector(run("holt_winters(g[5m], 0.5, 0.5)", &s, None, 300_000).unwrap());
    assert!((v[0].1 - 30.0).abs() < 1e-9, "{v:?}");
    let same = vector(
        run(
            "double_exponential_smoothing(g[5m], 0.5, 0.5)",
            &s,
            None,
            300_000,
        )
        .unwrap(),
    );
    assert_eq!(same, v);
    let e = run("holt_winters(g[5m], 1, 0.5)", &s, None, 300_000).unwrap_err();
    assert_eq!(e.kind(), "execution", "{e}");
}

#[test]
fn count_values_and_label_join() {
    let one: &[(i64, f64)] = &[(0, 1.0)];
    let two: &[(i64, f64)] = &[(0, 2.0)];
    let big: &[(i64, f64)] = &[(0, 1e21)];
    let s: [Fixture<'_>; 4] = [
        ("v", &[("i", "a"), ("g", "x")], one),
        ("v", &[("i", "b"), ("g", "x")], one),
        ("v", &[("i", "c"), ("g", "y")], two),
        ("w", &[("i", "d"), ("g", "y")], big),
    ];
    assert_eq!(
        vector(run(r#"count_values("val", v)"#, &s, None, 0).unwrap()),
        [("val=1".into(), 2.0), ("val=2".into(), 1.0)]
    );
    assert_eq!(
        vector(run(r#"count_values by (g) ("val", v)"#, &s, None, 0).unwrap()),
        [("g=x,val=1".into(), 2.0), ("g=y,val=2".into(), 1.0)]
    );
    // Go's 'f' format: never an exponent.
    assert_eq!(
        vector(run(r#"count_values("val", w)"#, &s, None, 0).unwrap())[0].0,
        "val=1000000000000000000000"
    );
    assert!(run(r#"count_values("1x", v)"#, &s, None, 0).is_err());
    assert_eq!(
        vector(run(r#"label_join(w, "ig", "-", "i", "g")"#, &s, None, 0).unwrap()),
        [("__name__=w,g=y,i=d,ig=d-y".into(), 1e21)]
    );
    assert_eq!(
        vector(run(r#"label_join(w, "g", "", "nope")"#, &s, None, 0).unwrap())[0].0,
        "__name__=w,i=d",
        "an empty join deletes the label"
    );
}

#[test]
fn two_equal_label_sets_are_refused_not_summed() {
    let c = super::counter();
    let s: [Fixture<'_>; 2] = [
        ("x_sum", &[("a", "1")], c.as_slice()),
        ("x_count", &[("a", "1")], c.as_slice()),
    ];
    for q in [
        r#"sum(rate({__name__=~"x_(sum|count)"}[5m]))"#,
        r#"rate({__name__=~"x_.*"}[5m])"#,
        r#"-{__name__=~"x_.*"}"#,
        r#"{__name__=~"x_.*"} * 2"#,
        r#"label_replace({__name__=~"x_.*"}, "__name__", "", "", "")"#,
    ] {
        let e = run(q, &s, None, 300_000).unwrap_err();
        assert_eq!(
            e,
            Error::Execution("vector cannot contain metrics with the same labelset".into()),
            "{q}"
        );
        let e = run(q, &s, Some((0, 300_000, 60_000)), 0).unwrap_err();
        assert_eq!(e.kind(), "execution", "{q} as a range query");
    }
    // Keeping the names keeps them apart.
    assert_eq!(
        vector(
            run(
                r#"sum(last_over_time({__name__=~"x_.*"}[5m]))"#,
                &s,
                None,
                300_000
            )
            .unwrap()
        ),
        [(String::new(), 600.0)]
    );
}

#[test]
fn label_replace_dot_does_not_match_a_newline() {
    let one: &[(i64, f64)] = &[(0, 1.0)];
    let s: [Fixture<'_>; 1] = [("v", &[("msg", "a\nb")], one)];
    let v = vector(run(r#"label_replace(v, "x", "$1", "msg", "(.*)")"#, &s, None, 0).unwrap());
    assert_eq!(v[0].0, "__name__=v,msg=a\nb", "no match, so no x label");
    let v = vector(
        run(
            r#"label_replace(v, "x", "$1", "msg", "a\\n(.*)")"#,
            &s,
            None,
            0,
        )
        .unwrap(),
    );
    assert_eq!(v[0].0, "__name__=v,msg=a\nb,x=b");
    let e = run(r#"label_replace(v, "x", "$1", "msg", "(")"#, &s, None, 0).unwrap_err();
    assert_eq!(e.kind(), "execution");
}
