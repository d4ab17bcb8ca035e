//! The Cloud Foundry scenarios from the reference (§7, cases 1–9 and 12), driven with a
//! simulated clock: aggregates every 40 s from t = 0, evaluations every 60 s from t = 60.

use super::*;

fn policy(yaml: &str) -> Policy {
    crate::policy::parse_valid(yaml, "app.yml")
}

fn cpu_rule(extra: &str) -> String {
    format!(
        "instance_min_count: 1\ninstance_max_count: 10\nscaling_rules:\n  - {{metric_type: cpu, operator: '>', threshold: 70, breach_duration_secs: 300, cool_down_secs: 300, adjustment: '+1'{extra}}}\n"
    )
}

/// What a series says at an aggregation time: no row (gap), an empty row, or a value.
#[derive(Clone, Copy)]
enum Point {
    Gap,
    Empty,
    Value(f64),
}

struct Sim {
    policy: Policy,
    state: AppState,
    current: u32,
    /// (time, from, to) of every scale.
    scales: Vec<(Time, u32, u32)>,
    decisions: Vec<(Time, Decision)>,
}

impl Sim {
    fn new(policy: Policy, current: u32) -> Sim {
        Sim {
            policy,
            state: AppState::default(),
            current,
            scales: Vec::new(),
            decisions: Vec::new(),
        }
    }

    /// Runs until `end`, feeding each metric's series at every 40 s aggregation.
    fn run(&mut self, end: Time, series: &[(MetricType, &dyn Fn(Time) -> Point)]) {
        for t in (0..=end).step_by(20) {
            if t % 40 == 0 {
                for (metric, f) in series {
                    match f(t) {
                        Point::Gap => {}
                        Point::Empty => self
                            .state
                            .record(metric.clone(), Sample { at: t, value: None }),
                        Point::Value(v) => self.state.record(
                            metric.clone(),
                            Sample {
                                at: t,
                                value: Some(v),
                            },
                        ),
                    }
                }
            }
            if t > 0 && t % 60 == 0 {
                let limits = (self.policy.min, self.policy.max);
                let d = evaluate(&self.policy, &mut self.state, t, self.current, limits);
                if let Outcome::Scale { from, to } = d.outcome {
                    self.scales.push((t, from, to));
                    self.current = to;
                    let rule = d.rule.map(|i| self.policy.rules[i].clone());
                    self.state.scaled(&self.policy, rule.as_ref(), t);
                }
                self.decisions.push((t, d));
            }
        }
    }

    fn at(&self, t: Time) -> &Decision {
        &self.decisions.iter().find(|(at, _)| *at == t).unwrap().1
    }
}

fn constant(v: f64) -> impl Fn(Time) -> Point {
    move |_| Point::Value(v)
}

#[test]
fn case_1_all_samples_must_breach_with_enough_history() {
    let mut sim = Sim::new(policy(&cpu_rule("")), 2);
    sim.run(360, &[(MetricType::Cpu, &constant(80.0))]);
    assert_eq!(
        sim.at(300).outcome,
        Outcome::Nothing,
        "the t = 0 sample is not older than the window start"
    );
    assert_eq!(sim.at(300).trace[0].verdict, Verdict::NotEnoughHistory);
    assert_eq!(sim.scales, [(360, 2, 3)]);
    assert_eq!(
        sim.at(360).reason,
        "+1 instance(s) because cpu > 70% for 300 seconds"
    );

    // Operator boundary: every sample exactly 70 with B = 120.
    let rule = |op: &str| {
        format!(
            "instance_min_count: 1\ninstance_max_count: 10\nscaling_rules:\n  - {{metric_type: cpu, operator: '{op}', threshold: 70, breach_duration_secs: 120, adjustment: '+1'}}\n"
        )
    };
    let mut gt = Sim::new(policy(&rule(">")), 2);
    gt.run(600, &[(MetricType::Cpu, &constant(70.0))]);
    assert!(gt.scales.is_empty(), "> never fires at the threshold");
    let mut ge = Sim::new(policy(&rule(">=")), 2);
    ge.run(180, &[(MetricType::Cpu, &constant(70.0))]);
    assert_eq!(
        ge.scales,
        [(180, 2, 3)],
        ">= fires at the first evaluation with history"
    );
}

#[test]
fn case_2_one_dip_holds_firing_until_it_leaves_the_window() {
    let mut sim = Sim::new(policy(&cpu_rule("")), 2);
    let series = |t: Time| Point::Value(if t == 200 { 65.0 } else { 80.0 });
    sim.run(540, &[(MetricType::Cpu, &series)]);
    assert_eq!(sim.scales, [(540, 2, 3)]);
    assert_eq!(sim.at(480).trace[0].verdict, Verdict::NotBreached);
    assert_eq!(sim.at(480).trace[0].range, Some((65.0, 625.0 / 8.0, 80.0)));
}

#[test]
fn cases_3_and_4_empty_aggregates_block_gaps_do_not() {
    let empty = |t: Time| {
        if t == 280 {
            Point::Empty
        } else {
            Point::Value(80.0)
        }
    };
    let gap = |t: Time| {
        if t == 280 {
            Point::Gap
        } else {
            Point::Value(80.0)
        }
    };

    let mut blocked = Sim::new(policy(&cpu_rule("")), 2);
    blocked.run(600, &[(MetricType::Cpu, &empty)]);
    assert_eq!(
        blocked.scales,
        [(600, 2, 3)],
        "no data in the window blocks until it leaves"
    );
    assert_eq!(blocked.at(540).trace[0].verdict, Verdict::NoData);

    let mut skipped = Sim::new(policy(&cpu_rule("")), 2);
    skipped.run(360, &[(MetricType::Cpu, &gap)]);
    assert_eq!(
        skipped.scales,
        [(360, 2, 3)],
        "a missing aggregate is skipped"
    );

    let mut ignoring = Sim::new(policy(&cpu_rule(", on_missing: ignore")), 2);
    ignoring.run(360, &[(MetricType::Cpu, &empty)]);
    assert_eq!(
        ignoring.scales,
        [(360, 2, 3)],
        "on_missing: ignore decides on the samples present"
    );
}

#[test]
fn case_5_cooldown_is_exclusive_and_explained() {
    let mut sim = Sim::new(policy(&cpu_rule("")), 2);
    sim.run(1200, &[(MetricType::Cpu, &constant(80.0))]);
    assert_eq!(sim.scales, [(360, 2, 3), (660, 3, 4), (960, 4, 5)]);
    assert_eq!(
        sim.at(420).trace[0].verdict,
        Verdict::CoolingDown(660),
        "skipped: cooldown until 660"
    );
}

#[test]
fn case_6_cooldown_blocks_the_other_direction_too() {
    let yaml = "instance_min_count: 1\ninstance_max_count: 10\nscaling_rules:\n  - {metric_type: cpu, operator: '>', threshold: 70, breach_duration_secs: 300, cool_down_secs: 600, adjustment: '+1'}\n  - {metric_type: cpu, operator: '<', threshold: 30, breach_duration_secs: 120, adjustment: '-1'}\n";
    for conflict in ["", "conflict_resolution: first_match\n"] {
        let mut sim = Sim::new(policy(&format!("{conflict}{yaml}")), 2);
        let series = |t: Time| Point::Value(if t <= 360 { 80.0 } else { 10.0 });
        sim.run(960, &[(MetricType::Cpu, &series)]);
        assert_eq!(sim.scales, [(360, 2, 3), (960, 3, 2)], "{conflict}");
    }
    // With per-direction cooldowns the scale-in may come as soon as its own cooldown allows.
    let per_direction = format!("cool_downs: {{scale_out: 600s, scale_in: 60s}}\n{yaml}");
    let mut sim = Sim::new(policy(&per_direction), 2);
    let series = |t: Time| Point::Value(if t <= 360 { 80.0 } else { 10.0 });
    sim.run(960, &[(MetricType::Cpu, &series)]);
    assert_eq!(
        sim.scales,
        [(360, 2, 3), (540, 3, 2), (600, 2, 1)],
        "scale-in waits only its own 60 s, then continues to the minimum"
    );
}

#[test]
fn case_7_clamping_and_deduplicated_ignored_outcomes() {
    let yaml = |adj: &str| {
        format!(
            "instance_min_count: 1\ninstance_max_count: 10\nscaling_rules:\n  - {{metric_type: cpu, operator: '>', threshold: 70, breach_duration_secs: 120, adjustment: '{adj}'}}\n"
        )
    };
    let mut a = Sim::new(policy(&yaml("+2")), 9);
    a.run(180, &[(MetricType::Cpu, &constant(80.0))]);
    assert_eq!(a.scales, [(180, 9, 10)]);
    assert_eq!(a.at(180).message, "limited by max instances 10");

    let mut b = Sim::new(policy(&yaml("+1")), 10);
    b.run(600, &[(MetricType::Cpu, &constant(80.0))]);
    assert!(b.scales.is_empty());
    let ignored: Vec<(Time, bool)> = b
        .decisions
        .iter()
        .filter(|(_, d)| d.outcome == Outcome::Ignored)
        .map(|(t, d)| (*t, d.duplicate))
        .collect();
    assert_eq!(
        ignored[0],
        (180, false),
        "the first ignored outcome is recorded"
    );
    assert!(
        ignored[1..].iter().all(|(_, dup)| *dup),
        "the rest are duplicates: {ignored:?}"
    );
    assert_eq!(b.at(240).message, "limited by max instances 10");
    assert_eq!(
        b.state.out_until, None,
        "ignored outcomes start no cooldown"
    );
}

#[test]
fn case_9_conflicting_rules_in_both_modes() {
    let rules = "instance_min_count: 1\ninstance_max_count: 10\nscaling_rules:\n  - {metric_type: memoryutil, operator: '<', threshold: 30, breach_duration_secs: 120, adjustment: '-1'}\n  - {metric_type: cpu, operator: '>', threshold: 70, breach_duration_secs: 120, adjustment: '+1'}\n";
    let series: [(MetricType, &dyn Fn(Time) -> Point); 2] = [
        (MetricType::MemoryUtil, &constant(10.0)),
        (MetricType::Cpu, &constant(90.0)),
    ];
    let mut cf = Sim::new(
        policy(&format!("conflict_resolution: first_match\n{rules}")),
        4,
    );
    cf.run(180, &series);
    assert_eq!(
        cf.scales,
        [(180, 4, 3)],
        "CF: the first rule in file order wins"
    );
    let mut ours = Sim::new(policy(rules), 4);
    ours.run(180, &series);
    assert_eq!(ours.scales, [(180, 4, 5)], "default: scale-out wins");
}

#[test]
fn case_12_zero_is_data_no_data_is_not() {
    let yaml = "instance_min_count: 1\ninstance_max_count: 10\nscaling_rules:\n  - {metric_type: throughput, operator: '<', threshold: 10, breach_duration_secs: 120, adjustment: '-1'}\n  - {metric_type: memoryused, operator: '<', threshold: 100, breach_duration_secs: 120, adjustment: '-1'}\n";
    let mut traffic_stopped = Sim::new(policy(yaml), 3);
    traffic_stopped.run(
        180,
        &[
            (MetricType::Throughput, &constant(0.0)),
            (MetricType::MemoryUsed, &|_| Point::Empty),
        ],
    );
    assert_eq!(
        traffic_stopped.scales,
        [(180, 3, 2)],
        "throughput 0 is a real zero"
    );
    let d = traffic_stopped.at(180);
    assert_eq!(
        (d.trace[0].verdict.clone(), d.trace[1].verdict.clone()),
        (Verdict::Breached, Verdict::NoData)
    );

    let mut gauges_stopped = Sim::new(policy(yaml), 3);
    gauges_stopped.run(600, &[(MetricType::MemoryUsed, &|_| Point::Empty)]);
    assert!(gauges_stopped.scales.is_empty(), "no data never scales");
    assert_eq!(gauges_stopped.at(600).trace[1].verdict, Verdict::NoData);
}

#[test]
fn m_of_n_and_mean_breach_modes() {
    let series = |t: Time| Point::Value(if t % 80 == 0 { 60.0 } else { 90.0 });
    let mut all = Sim::new(policy(&cpu_rule("")), 2);
    all.run(600, &[(MetricType::Cpu, &series)]);
    assert!(all.scales.is_empty(), "alternating dips never satisfy all");
    let mut mean = Sim::new(policy(&cpu_rule(", breach: mean")), 2);
    mean.run(360, &[(MetricType::Cpu, &series)]);
    assert_eq!(mean.scales, [(360, 2, 3)], "the mean (75) breaches");
    let mut m_of_n = Sim::new(policy(&cpu_rule(", breach: {m_of_n: [3, 5]}")), 2);
    m_of_n.run(360, &[(MetricType::Cpu, &series)]);
    assert_eq!(m_of_n.scales, [(360, 2, 3)], "3 of the last 5 breach");
}

fn target_policy(extra: &str) -> Policy {
    policy(&format!(
        "instance_min_count: 1\ninstance_max_count: 20\ntarget: {{metric: cpu, value: 50{extra}}}\n"
    ))
}

/// Records `value` at `t` and evaluates there.
fn step(p: &Policy, s: &mut AppState, t: Time, value: Option<f64>, current: u32) -> Decision {
    s.record(MetricType::Cpu, Sample { at: t, value });
    evaluate(p, s, t, current, (p.min, p.max))
}

#[test]
fn case_13_target_tracking_formula_and_tolerance() {
    let p = target_policy("");
    let mut s = AppState::default();
    let d = step(&p, &mut s, 0, Some(54.0), 4);
    assert_eq!(
        d.outcome,
        Outcome::Nothing,
        "ratio 1.08 is within the 10% tolerance"
    );
    assert_eq!(d.target.unwrap().recommended, 4);
    let d = step(&p, &mut s, 15, Some(56.0), 4);
    assert_eq!(
        d.outcome,
        Outcome::Scale { from: 4, to: 5 },
        "ceil(4 × 1.12) = 5"
    );
    assert!(
        d.reason
            .starts_with("target tracking: cpu 56 against target 50 (ratio 1.12)"),
        "{}",
        d.reason
    );
    let d = step(&p, &mut s, 30, Some(80.0), 5);
    assert_eq!(
        d.outcome,
        Outcome::Scale { from: 5, to: 8 },
        "ceil(5 × 1.6) = 8"
    );
}

#[test]
fn case_15_scale_in_waits_for_the_stabilization_window() {
    let p = target_policy("");
    let mut s = AppState::default();
    // Demand held at 10 instances before t = 0 …
    for t in (-300..0).step_by(15) {
        assert_eq!(
            step(&p, &mut s, t, Some(50.0), 10).outcome,
            Outcome::Nothing
        );
    }
    // … then drops to 3 (15% of target × 10 instances).
    let mut first_scale = None;
    for t in (0..=330).step_by(15) {
        if let Outcome::Scale { from, to } = step(&p, &mut s, t, Some(15.0), 10).outcome {
            first_scale = Some((t, from, to));
            break;
        }
    }
    assert_eq!(
        first_scale,
        Some((300, 10, 3)),
        "10 → 3 once the older recommendations age out"
    );
}

#[test]
fn missing_target_metric_never_scales_in() {
    let p = target_policy("");
    let mut s = AppState::default();
    let d = step(&p, &mut s, 0, None, 6);
    assert_eq!(d.outcome, Outcome::Nothing);
    assert_eq!(
        d.target.unwrap().value,
        None,
        "the decision says there was no data"
    );
}

#[test]
fn rules_and_target_together_take_the_larger_scale_out() {
    let p = policy(
        "instance_min_count: 1\ninstance_max_count: 20\ntarget: {metric: cpu, value: 50}\nscaling_rules:\n  - {metric_type: cpu, operator: '>', threshold: 70, breach_duration_secs: 60, adjustment: '+1'}\n",
    );
    let mut s = AppState::default();
    for t in [0, 40] {
        s.record(
            MetricType::Cpu,
            Sample {
                at: t,
                value: Some(100.0),
            },
        );
    }
    s.record(
        MetricType::Cpu,
        Sample {
            at: 80,
            value: Some(100.0),
        },
    );
    let d = evaluate(&p, &mut s, 80, 4, (1, 20));
    assert_eq!(
        d.outcome,
        Outcome::Scale { from: 4, to: 8 },
        "target (8) beats the rule (+1 → 5)"
    );
    assert_eq!(d.rule, None);
    assert_eq!(
        d.trace[0].verdict,
        Verdict::Breached,
        "the rule's own verdict stays in the trace"
    );
}
