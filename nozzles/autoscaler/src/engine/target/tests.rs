//! Target-tracking scenarios from the reference (§7): 14 (HPA scale-up rate limit),
//! 16 (missing and not-ready instances), 17 (a failing metric among several) and 18 (KEDA
//! activation, scale to zero, fallback), each asserting the decision and its explanation.

use super::*;
use crate::engine::{Outcome, Sample, evaluate};
use crate::policy::{MetricType, Policy};

fn policy(yaml: &str) -> Policy {
    crate::policy::parse_valid(yaml, "app.yml")
}

fn record(s: &mut AppState, metric: &MetricType, t: Time, value: Option<f64>) {
    s.record(metric.clone(), Sample { at: t, value });
}

fn custom(name: &str) -> MetricType {
    MetricType::Custom(name.into())
}

/// Evaluates and, on a scale, applies it (as the fleet does after the actuator answers).
fn decide(p: &Policy, s: &mut AppState, t: Time, current: &mut u32) -> Option<(u32, u32, String)> {
    let d = evaluate(p, s, t, *current, (p.min, p.max));
    match d.outcome {
        Outcome::Scale { from, to } => {
            s.scaled(p, None, t);
            s.changed(t, from, to);
            *current = to;
            Some((from, to, d.message))
        }
        _ => None,
    }
}

#[test]
fn case_14_scale_up_rate_limit() {
    // Demand for 20 instances (a total of 1000 at 50 each); HPA's default limits.
    let p = policy(
        "instance_min_count: 1\ninstance_max_count: 20\ntarget: {metric: demand, value: 50, total: true}\n",
    );
    let mut s = AppState::default();
    let mut current = 2;
    let mut log = Vec::new();
    for t in (0..=45).step_by(15) {
        record(&mut s, &custom("demand"), t, Some(1000.0));
        if let Some(step) = decide(&p, &mut s, t, &mut current) {
            log.push((t, step.0, step.1, step.2));
        }
    }
    assert_eq!(
        log,
        [
            (
                0,
                2,
                6,
                "scale-out limited to 6 (100% or 4 instance(s) per 15 s)".into()
            ),
            (
                15,
                6,
                12,
                "scale-out limited to 12 (100% or 4 instance(s) per 15 s)".into()
            ),
            (30, 12, 20, String::new()),
        ],
        "max(2×2, 2+4) = 6; max(12, 10) = 12; the limit of 24 is clamped to 20 by the max"
    );
}

#[test]
fn case_14_a_scale_inside_the_period_shrinks_the_next_step() {
    let p = policy(
        "instance_min_count: 1\ninstance_max_count: 50\ntarget: {metric: demand, value: 50, total: true}\n",
    );
    let mut s = AppState::default();
    let mut current = 2;
    record(&mut s, &custom("demand"), 0, Some(2000.0));
    assert_eq!(decide(&p, &mut s, 0, &mut current).map(|d| d.1), Some(6));
    // 10 s later (jitter) the period still holds the +4: the limit is from 2 again.
    record(&mut s, &custom("demand"), 10, Some(2000.0));
    assert_eq!(
        decide(&p, &mut s, 10, &mut current),
        None,
        "limit max(4, 6) = 6: no room"
    );
    record(&mut s, &custom("demand"), 15, Some(2000.0));
    assert_eq!(decide(&p, &mut s, 15, &mut current).map(|d| d.1), Some(12));
}

fn view(ready: &[f64], unready: u32) -> InstanceView {
    InstanceView {
        ready: ready.to_vec(),
        unready,
    }
}

#[test]
fn case_16_missing_and_not_ready_instances() {
    let mut notes = Vec::new();
    // (a) 3 at 90 %, 1 missing, target 50: missing counts as 0 → 67.5 % → ceil(4 × 1.35) = 6.
    let (n, ratio) = per_instance(&view(&[90.0; 3], 0), 4, 50.0, 0.1, &mut notes).unwrap();
    assert_eq!(n, 6);
    assert!((ratio - 1.35).abs() < 1e-9);
    assert_eq!(notes, ["1 instance(s) without data counted as 0"]);
    // (b) 3 at 20 %, 1 missing: missing counts as the target → 27.5 % → ceil(4 × 0.55) = 3.
    notes.clear();
    let (n, _) = per_instance(&view(&[20.0; 3], 0), 4, 50.0, 0.1, &mut notes).unwrap();
    assert_eq!(n, 3);
    assert_eq!(notes, ["1 instance(s) without data counted as the target"]);
    // (c) 2 ready at 100 %, 2 initializing: those count as 0 → 50 % → within tolerance.
    notes.clear();
    let (n, _) = per_instance(&view(&[100.0; 2], 2), 4, 50.0, 0.1, &mut notes).unwrap();
    assert_eq!(n, 4, "no scale");
    assert_eq!(notes, ["2 initializing instance(s) counted as 0"]);
    // Nobody reporting: no recommendation at all.
    assert_eq!(per_instance(&view(&[], 2), 4, 50.0, 0.1, &mut notes), None);

    // Through the engine, the per-instance view the fleet supplies decides.
    let p =
        policy("instance_min_count: 1\ninstance_max_count: 20\ntarget: {metric: cpu, value: 50}\n");
    let mut s = AppState::default();
    record(&mut s, &MetricType::Cpu, 0, Some(90.0));
    s.instances.insert(MetricType::Cpu, view(&[90.0; 3], 0));
    let d = evaluate(&p, &mut s, 0, 4, (1, 20));
    assert_eq!(d.outcome, Outcome::Scale { from: 4, to: 6 });
    assert_eq!(d.message, "1 instance(s) without data counted as 0");
}

#[test]
fn case_17_a_failing_metric_blocks_scale_in_not_scale_out() {
    let p = policy(
        "instance_min_count: 1\ninstance_max_count: 20\ntarget:\n  metrics:\n    - {metric: a, value: 10}\n    - {metric: b, value: 10}\n",
    );
    let mut s = AppState::default();
    // A wants 3 (5 × 6/10); B has no data.
    record(&mut s, &custom("a"), 0, Some(6.0));
    record(&mut s, &custom("b"), 0, None);
    let d = evaluate(&p, &mut s, 0, 5, (1, 20));
    assert_eq!(d.outcome, Outcome::Nothing, "no scale-in on partial data");
    let t = d.target.unwrap();
    assert_eq!(t.recommended, 3);
    assert_eq!(t.notes, ["1 metric(s) without data: no scale-in"]);
    assert_eq!(t.metrics[1].value, None);
    // A wants 8 (5 × 16/10): scale out to 8 even though B still fails.
    record(&mut s, &custom("a"), 15, Some(16.0));
    let d = evaluate(&p, &mut s, 15, 5, (1, 20));
    assert_eq!(d.outcome, Outcome::Scale { from: 5, to: 8 });
    assert!(
        d.reason
            .starts_with("target tracking: a 16 against target 10"),
        "{}",
        d.reason
    );
}

const KEDA: &str = "instance_min_count: 0\ninstance_max_count: 20\ntarget:\n  metric: queue\n  value: 100\n  total: true\n  activation: 5\n  scale_to_zero_after: 300s\n  fallback: {failures: 3, instances: 6}\n";

#[test]
fn case_18a_activation_and_scale_to_zero() {
    let p = policy(KEDA);
    let mut s = AppState::default();
    let mut current = 0;
    let at = |s: &mut AppState, t: Time, v: f64, current: &mut u32| {
        record(s, &custom("queue"), t, Some(v));
        decide(&p, s, t, current);
        *current
    };
    assert_eq!(
        at(&mut s, 0, 3.0, &mut current),
        0,
        "3 ≤ activation 5: stays at 0"
    );
    assert_eq!(at(&mut s, 30, 6.0, &mut current), 1, "6 activates: 0 → 1");
    assert_eq!(
        at(&mut s, 60, 450.0, &mut current),
        5,
        "ceil(450 / 100) = 5"
    );
    // The queue empties from t = 90; the last active poll was at 60.
    let mut zero_at = None;
    for t in (90..=600).step_by(30) {
        if at(&mut s, t, 0.0, &mut current) == 0 {
            zero_at = Some(t);
            break;
        }
        assert!(
            current >= 1,
            "never below 1 while not yet inactive for 300 s"
        );
    }
    assert_eq!(
        zero_at,
        Some(360),
        "the first poll ≥ 300 s after the last active one (60)"
    );
}

#[test]
fn case_18b_fallback_after_more_failures_than_the_threshold() {
    let p = policy(KEDA);
    let mut s = AppState::default();
    let mut current = 2;
    for (t, expect) in [(0, 2), (30, 2), (60, 2), (90, 6)] {
        record(&mut s, &custom("queue"), t, None);
        let d = evaluate(&p, &mut s, t, current, (p.min, p.max));
        if let Outcome::Scale { to, .. } = d.outcome {
            current = to;
            assert!(
                d.message
                    .contains("fallback to 6 instance(s) after 4 evaluations without data"),
                "{}",
                d.message
            );
        }
        assert_eq!(
            current, expect,
            "at {t}: no fallback after 3 failures, 6 after the 4th"
        );
    }
    // With missing_as_zero an empty result is a 0, not a failure.
    let p = policy(&KEDA.replace("  fallback:", "  missing_as_zero: true\n  fallback:"));
    let mut s = AppState::default();
    for t in (0..=150).step_by(30) {
        record(&mut s, &custom("queue"), t, None);
        let d = evaluate(&p, &mut s, t, 2, (p.min, p.max));
        assert!(!d.message.contains("fallback"), "{}", d.message);
    }
}
