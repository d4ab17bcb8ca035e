//! Policy loading: Cloud Foundry documents import losslessly, extensions parse, and every
//! problem is reported at once with its position and field path.

use std::path::Path;
use std::time::Duration;

use super::*;

const CF_FULL: &str = r#"{
  "configuration": { "custom_metrics": { "metric_submission_strategy": { "allow_from": "same_app" } } },
  "instance_min_count": 2,
  "instance_max_count": 10,
  "scaling_rules": [
    { "metric_type": "cpuutil",     "operator": ">=", "threshold": 70,  "breach_duration_secs": 300, "cool_down_secs": 300, "adjustment": "+50%" },
    { "metric_type": "responsetime","operator": ">",  "threshold": 800, "breach_duration_secs": 120, "cool_down_secs": 180, "adjustment": "+2" },
    { "metric_type": "queue_depth", "operator": ">",  "threshold": 500, "breach_duration_secs": 60,  "cool_down_secs": 120, "adjustment": "+1" },
    { "metric_type": "cpuutil",     "operator": "<",  "threshold": 25,  "breach_duration_secs": 600, "cool_down_secs": 600, "adjustment": "-1" }
  ],
  "schedules": {
    "timezone": "Europe/Berlin",
    "recurring_schedule": [
      { "start_time": "08:00", "end_time": "18:00", "days_of_week": [1,2,3,4,5],
        "instance_min_count": 4, "instance_max_count": 20, "initial_min_instance_count": 6 }
    ],
    "specific_date": [
      { "start_date_time": "2099-11-27T00:00", "end_date_time": "2099-11-27T23:59",
        "instance_min_count": 10, "instance_max_count": 40, "initial_min_instance_count": 15 }
    ]
  }
}"#;

fn ok(text: &str, file: &str) -> Policy {
    let loaded = parse(text, Path::new(file));
    assert!(
        loaded
            .problems
            .iter()
            .all(|p| p.severity == Severity::Warning),
        "{:#?}",
        loaded.problems
    );
    loaded.policy.expect("a policy")
}

fn problems(text: &str) -> Vec<String> {
    parse(text, Path::new("p.yml"))
        .problems
        .iter()
        .map(ToString::to_string)
        .collect()
}

#[test]
fn cloud_foundry_json_imports_losslessly() {
    let p = ok(CF_FULL, "policies/web.json");
    assert_eq!(p.app, "web", "the file name names the app");
    assert_eq!((p.min, p.max), (2, 10));
    assert_eq!(p.rules.len(), 4);
    let r = &p.rules[0];
    assert_eq!(
        (r.metric.clone(), r.operator, r.threshold),
        (MetricType::CpuUtil, Operator::Ge, 70.0)
    );
    assert_eq!(
        (r.breach_duration, r.cool_down),
        (Duration::from_secs(300), Duration::from_secs(300))
    );
    assert_eq!(r.adjustment, Adjustment::Percent(50));
    assert_eq!(p.rules[2].metric, MetricType::Custom("queue_depth".into()));
    assert_eq!(p.rules[3].adjustment, Adjustment::Step(-1));
    assert_eq!(
        (r.breach, r.on_missing),
        (Breach::All, OnMissing::Block),
        "CF semantics by default"
    );
    let s = p.schedules.as_ref().unwrap();
    assert_eq!(s.timezone, chrono_tz::Europe::Berlin);
    assert_eq!(s.recurring[0].days_of_week, [1, 2, 3, 4, 5]);
    assert_eq!(
        (s.recurring[0].start_minute, s.recurring[0].end_minute),
        (480, 1080)
    );
    assert_eq!(s.recurring[0].initial_min, Some(6));
    assert_eq!(s.specific[0].max, 40);
    // 60 s is CF's minimum: no warning at exactly 60.
    assert!(parse(CF_FULL, Path::new("w.json")).problems.is_empty());
}

#[test]
fn friendlier_forms_and_extensions() {
    let p = ok(
        "app: demo\ninstance_min_count: 1\ninstance_max_count: 3\nconflict_resolution: first_match\n\
         cool_downs: {scale_out: 30s, scale_in: 5m}\n\
         scaling_rules:\n  - metric_type: cpu\n    operator: '>'\n    threshold: 70.5\n    breach_duration: 5s\n    cool_down: 1m30s\n    adjustment: '+1'\n    breach: {m_of_n: [3, 5]}\n    on_missing: {value: 0}\n\
         target: {metric: cpu, value: 60, tolerance: 0.05}\n",
        "x.yml",
    );
    assert_eq!(p.app, "demo");
    assert_eq!(p.conflict, Conflict::FirstMatch);
    assert_eq!(
        p.cool_downs,
        CoolDowns {
            scale_out: Some(Duration::from_secs(30)),
            scale_in: Some(Duration::from_secs(300))
        }
    );
    let r = &p.rules[0];
    assert_eq!(
        (r.threshold, r.breach_duration, r.cool_down),
        (70.5, Duration::from_secs(5), Duration::from_secs(90))
    );
    assert_eq!(
        (r.breach, r.on_missing),
        (Breach::MOfN { m: 3, n: 5 }, OnMissing::Value(0.0))
    );
    let t = p.target.unwrap();
    assert_eq!(
        (
            &t.metrics[0].metric,
            t.metrics[0].value,
            t.tolerance,
            t.scale_in_stabilization
        ),
        (&MetricType::Cpu, 60.0, 0.05, Duration::from_secs(300))
    );
    assert_eq!(
        (t.scale_up, t.scale_down),
        (Target::SCALE_UP, Target::SCALE_DOWN)
    );
    // A 5 s breach window is accepted, with CF's minimum as a warning at its position.
    let warnings = problems(
        "instance_min_count: 1\ninstance_max_count: 3\nscaling_rules:\n  - {metric_type: cpu, operator: '>', threshold: 70, breach_duration: 5s, adjustment: '+1'}\n",
    );
    assert_eq!(
        warnings,
        [
            "p.yml:4:71: warning: scaling_rules[0].breach_duration: below Cloud Foundry's minimum of 60 s (accepted by Hydrant)"
        ]
    );
}

#[test]
fn every_problem_is_reported_with_position_and_path() {
    let text = "\
instance_min_count: 5
instance_max_count: 2
colour: red
scaling_rules:
  - metric_type: cpuutil
    operator: '=>'
    threshold: 170
    adjustment: '1'
  - metric_type: 'bad name'
    threshold: x
    adjustment: '+0'
    breach: sometimes
";
    let got = problems(text);
    let want = [
        "p.yml:1:21: error: instance_min_count: instance_min_count 5 is higher than instance_max_count 2",
        "p.yml:3:1: error: colour: unknown field (expected one of: app, instance_min_count, instance_max_count, scaling_rules, schedules, target, conflict_resolution, cool_downs, configuration, schema-version, credential-type)",
        "p.yml:6:15: error: scaling_rules[0].operator: must be one of <, <=, >, >= (got \"=>\")",
        "p.yml:7:16: error: scaling_rules[0].threshold: must be between 1 and 100 for cpuutil",
        "p.yml:8:17: error: scaling_rules[0].adjustment: must be a signed step or percentage such as +1, -2 or +50% (got \"1\")",
        "p.yml:9:5: error: scaling_rules[1].operator: required field is missing",
        "p.yml:9:18: error: scaling_rules[1].metric_type: must be 1 to 100 letters, digits or underscores",
        "p.yml:10:16: error: scaling_rules[1].threshold: must be a number, got \"x\"",
        "p.yml:11:17: error: scaling_rules[1].adjustment: must be a signed step or percentage such as +1, -2 or +50% (got \"+0\")",
        "p.yml:12:13: error: scaling_rules[1].breach: must be all, mean or {m_of_n: [M, N]} (got \"sometimes\")",
    ];
    assert_eq!(got, want, "{got:#?}");
    assert!(parse(text, Path::new("p.yml")).policy.is_none());
}

#[test]
fn syntax_errors_and_duplicates_have_positions() {
    let got = problems("instance_min_count: 1\ninstance_max_count: [1\n");
    assert_eq!(got.len(), 1);
    assert!(
        got[0].starts_with("p.yml:3:1: error: not valid YAML or JSON"),
        "{got:?}"
    );
    let got = problems(
        "instance_min_count: 1\ninstance_min_count: 2\ninstance_max_count: 3\nscaling_rules: []\n",
    );
    assert_eq!(
        got,
        ["p.yml:2:1: error: duplicate key \"instance_min_count\""]
    );
    let got = problems("instance_min_count: 1\ninstance_max_count: 2\n");
    assert_eq!(
        got,
        ["p.yml:1:1: error: a policy needs scaling_rules, schedules or target"]
    );
}

fn doc(lines: &[&str]) -> String {
    lines.join("\n") + "\n"
}

#[test]
fn contradictory_rules_load_with_a_warning_as_cf_accepts_them() {
    let text = doc(&[
        "instance_min_count: 1",
        "instance_max_count: 5",
        "scaling_rules:",
        "  - {metric_type: cpu, operator: '>', threshold: 50, adjustment: '+1'}",
        "  - {metric_type: cpu, operator: '<', threshold: 60, adjustment: '-1'}",
        "  - {metric_type: memoryutil, operator: '>=', threshold: 80, adjustment: '+1'}",
        "  - {metric_type: memoryutil, operator: '<', threshold: 80, adjustment: '-1'}",
    ]);
    let got = problems(&text);
    assert_eq!(got.len(), 1, "{got:#?}");
    assert!(
        got[0].starts_with("p.yml:4:6: warning: scaling_rules[0]: contradicts scaling_rules[1]: with cpu > 50 and cpu < 60"),
        "{}",
        got[0]
    );
    let touching = doc(&[
        "instance_min_count: 1",
        "instance_max_count: 5",
        "scaling_rules:",
        "  - {metric_type: cpu, operator: '>=', threshold: 50, adjustment: '+1'}",
        "  - {metric_type: cpu, operator: '<=', threshold: 50, adjustment: '-1'}",
    ]);
    assert_eq!(problems(&touching).len(), 1, "both hold at exactly 50");
    assert!(
        parse(&text, Path::new("p.yml")).policy.is_some(),
        "the policy loads"
    );
}

#[test]
fn schedules_are_checked_like_cloud_foundry() {
    let text = doc(&[
        "instance_min_count: 1",
        "instance_max_count: 5",
        "schedules:",
        "  timezone: Mars/Olympus",
        "  recurring_schedule:",
        "    - {start_time: '10:00', end_time: '12:00', days_of_week: [1], instance_min_count: 1, instance_max_count: 2}",
        "    - {start_time: '12:00', end_time: '14:00', days_of_week: [1, 8], instance_min_count: 3, instance_max_count: 2}",
        "    - {start_time: '18:00', end_time: '08:00', days_of_month: [1], instance_min_count: 1, instance_max_count: 2}",
        "  specific_date:",
        "    - {start_date_time: '2099-01-01T00:00', end_date_time: '2099-01-02T00:00', instance_min_count: 1, instance_max_count: 2}",
        "    - {start_date_time: '2099-01-02T00:00', end_date_time: '2099-01-03T00:00', instance_min_count: 1, instance_max_count: 2, initial_min_instance_count: 3}",
    ]);
    let got = problems(&text);
    let has = |s: &str| got.iter().any(|p| p.contains(s));
    assert!(
        has("p.yml:4:13: error: schedules.timezone: unknown time zone \"Mars/Olympus\""),
        "{got:#?}"
    );
    assert!(
        has("schedules.recurring_schedule[1].days_of_week: days must be between 1 and 7 (got 8)"),
        "{got:#?}"
    );
    assert!(
        has(
            "schedules.recurring_schedule[1].instance_min_count: instance_min_count 3 is higher than instance_max_count 2"
        ),
        "{got:#?}"
    );
    assert!(
        has("schedules.recurring_schedule[2]: start_time is same or after end_time"),
        "{got:#?}"
    );
    assert!(
        has("schedules.recurring_schedule[1]: overlaps recurring_schedule[0]"),
        "touching recurring windows overlap: {got:#?}"
    );
    assert!(
        !has("specific_date[1]: overlaps"),
        "touching specific dates do not: {got:#?}"
    );
    assert!(
        has("schedules.specific_date[1].initial_min_instance_count: 3 must be between"),
        "{got:#?}"
    );
}

#[test]
fn case_8_adjustments_round_like_cloud_foundry() {
    for (current, adj, want) in [
        (1, "+10%", 2),
        (3, "-10%", 2),
        (4, "-50%", 2),
        (5, "-50%", 3),
        (3, "+50%", 5),
        (2, "+2", 4),
        (2, "-3", -1),
    ] {
        let a = parse::parse_adjustment(adj).unwrap();
        assert_eq!(a.apply(current), want, "{current} {adj}");
    }
    for bad in ["1", "+0", "+01", "+", "+5%%", "~1"] {
        assert!(parse::parse_adjustment(bad).is_none(), "{bad}");
    }
    assert_eq!(
        parse::parse_duration("1h30m"),
        Some(Duration::from_secs(5400))
    );
    assert_eq!(
        parse::parse_duration("250ms"),
        Some(Duration::from_millis(250))
    );
    assert_eq!(parse::parse_duration("5 min"), None);
}

#[test]
fn target_tracking_with_several_metrics_and_keda_fields() {
    let p = ok(
        "app: worker\ninstance_min_count: 0\ninstance_max_count: 10\n\
         target:\n  metrics:\n    - {metric: queue_depth, value: 100, total: true}\n    - {metric: cpu, value: 50}\n  \
         activation: 5\n  scale_to_zero_after: 5m\n  fallback: {failures: 3, instances: 6}\n  missing_as_zero: false\n  \
         scale_up: {instances: 2, period: 30s}\n  scale_down: {percent: 50}\n  initialization: 1m\n",
        "w.yml",
    );
    let t = p.target.unwrap();
    assert_eq!(t.metrics.len(), 2);
    assert!(t.metrics[0].total && !t.metrics[1].total);
    assert_eq!(t.activation, Some(5.0));
    assert_eq!(
        t.fallback,
        Some(Fallback {
            failures: 3,
            instances: 6
        })
    );
    assert_eq!(
        t.scale_up,
        RateLimit {
            instances: Some(2),
            percent: None,
            period: Duration::from_secs(30)
        }
    );
    assert_eq!(t.scale_down.percent, Some(50));
    assert_eq!(t.initialization, Duration::from_secs(60));
    assert_eq!(p.min, 0, "0 is allowed with activation");

    let errors = problems(
        "instance_min_count: 0\ninstance_max_count: 3\ntarget:\n  metric: cpu\n  value: 50\n  metrics: [{metric: cpu, value: 1}]\n  scale_up: {period: 0s}\n  fallback: {failures: 2}\n  total: maybe\n",
    );
    assert_eq!(
        errors,
        [
            "p.yml:1:21: error: instance_min_count: must be greater than or equal to 1 (0 needs target.activation)",
            "p.yml:6:12: error: target.metrics: use either metric/value or metrics, not both",
            "p.yml:7:14: error: target.scale_up: needs instances, percent or both",
            "p.yml:7:22: error: target.scale_up.period: must be longer than 0s",
            "p.yml:8:14: error: target.fallback.instances: required field is missing",
            "p.yml:9:10: error: target.total: with metrics, set total on each entry",
        ],
    );
}
