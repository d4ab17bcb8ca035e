//! Bounded fuzzing of policy loading (proptest, part of `cargo test`): valid policies in
//! YAML and JSON with random edits drawn from YAML's and the policy format's vocabulary,
//! and arbitrary text. Whatever the file, loading returns a policy or problems with
//! positions, never a panic or a stack overflow.

use std::path::Path;

use hydrant_runtime::fuzz;
use proptest::prelude::*;

use super::*;

const SEEDS: &[&str] = &[
    "app: web\ninstance_min_count: 1\ninstance_max_count: 5\ncool_downs: {scale_out: 60s, scale_in: 300s}\nscaling_rules:\n  - metric_type: cpu\n    operator: '>'\n    threshold: 70\n    breach_duration_secs: 300\n    adjustment: '+50%'\n  - {metric_type: memoryutil, operator: '<', threshold: 20, adjustment: '-1'}\ntarget:\n  metric_type: cpu\n  value: 60\nschedules:\n  timezone: Europe/Berlin\n  recurring_schedule:\n    - {start_time: '08:00', end_time: '18:00', days_of_week: [1, 2, 3], instance_min_count: 2, instance_max_count: 6}\n  specific_date:\n    - {start_date_time: '2099-11-27T00:00', end_date_time: '2099-11-27T23:59', instance_min_count: 3, instance_max_count: 9}\n",
    r#"{"instance_min_count": 2, "instance_max_count": 10, "scaling_rules": [{"metric_type": "cpuutil", "operator": ">=", "threshold": 70, "breach_duration_secs": 300, "cool_down_secs": 300, "adjustment": "+50%"}], "schedules": {"timezone": "UTC", "recurring_schedule": [{"start_time": "08:00", "end_time": "18:00", "days_of_month": [1, 31], "instance_min_count": 4, "instance_max_count": 20}]}}"#,
];

const VOCAB: &[&str] = &[
    "-1",
    "0",
    "2147483648",
    "99999999999999999999999",
    "1e400",
    "-0.0",
    ".nan",
    ".inf",
    "~",
    "null",
    "true",
    "'",
    "\"",
    "[",
    "]",
    "{",
    "}",
    ": ",
    ",",
    "\n",
    "\n  - ",
    "\n    ",
    "- ",
    "&a ",
    "*a",
    "<<: *a",
    "!!binary ",
    "!!str ",
    "? ",
    "|\n  x",
    ">-\n  y",
    "#",
    "\t",
    "%YAML 1.2\n",
    "---\n",
    "...\n",
    "\u{feff}",
    "\u{0}",
    "é",
    "metric_type",
    "threshold",
    "operator",
    "adjustment",
    "+100000%",
    "-101%",
    "breach_duration_secs",
    "cool_down_secs",
    "24:00",
    "25:61",
    "2099-02-30T00:00",
    "days_of_week",
    "[0, 8]",
    "timezone",
    "Mars/Olympus",
    "instance_min_count",
    "instance_max_count",
    "scaling_rules",
    "schedules",
    "target",
];

proptest! {
    #![proptest_config(fuzz::config())]

    #[test]
    fn edited_policies_load_or_report_problems(seed in prop::sample::select(SEEDS), e in fuzz::edits(VOCAB)) {
        let text = fuzz::apply(seed, &e);
        let loaded = parse(&text, Path::new("fuzz.yml"));
        prop_assert!(loaded.policy.is_some() || !loaded.problems.is_empty());
    }

    #[test]
    fn arbitrary_text_loads_or_reports_problems(text in "\\PC{0,300}") {
        let loaded = parse(&text, Path::new("fuzz.yml"));
        prop_assert!(loaded.policy.is_some() || !loaded.problems.is_empty());
    }
}
