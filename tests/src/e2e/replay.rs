//! `hydrant autoscaler replay` (the real binary) over metrics stored in a real
//! VictoriaMetrics: the decisions a policy would have taken, as a dry run.

use serde_json::Value;

use crate::guard::Scratch;
use crate::hydrant_bin;
use crate::servers::VictoriaMetrics;

const POLICY: &str = "app: replayed
instance_min_count: 1
instance_max_count: 4
scaling_rules:
  - {metric_type: cpu, operator: '>', threshold: 70, breach_duration: 60s, cool_down: 120s, adjustment: '+1'}
  - {metric_type: cpu, operator: '<', threshold: 20, breach_duration: 60s, cool_down: 120s, adjustment: '-1'}
";

#[tokio::test]
async fn replay_prints_what_a_policy_would_have_done() {
    let vm = VictoriaMetrics::start().await;
    // Two instances, a sample every 10 s over 20 minutes an hour ago: 30 % for 5 minutes,
    // 90 % for 10, then 5 %.
    let start = (chrono::Utc::now().timestamp() - 3600) / 60 * 60;
    let mut lines = String::new();
    for i in 0..=120 {
        let t = start + i * 10;
        let cpu = match i * 10 {
            s if s < 300 => 30.0,
            s if s < 900 => 90.0,
            _ => 5.0,
        };
        for instance in ["0", "1"] {
            lines.push_str(&format!(
                "cpu{{source_id=\"replayed\",instance_id=\"{instance}\",app_name=\"replayed\"}} {cpu} {}\n",
                t * 1000
            ));
        }
    }
    vm.import(&lines).await;
    let dir = Scratch::new("replay");
    std::fs::create_dir_all(&dir).unwrap();
    let policy = dir.join("replayed.yml");
    std::fs::write(&policy, POLICY).unwrap();
    let run = |extra: &[&str]| {
        let from = start.to_string();
        let to = (start + 1200).to_string();
        let mut args = vec![
            "autoscaler",
            "replay",
            "--policy",
            policy.to_str().unwrap(),
            "--storage",
            &vm.url,
            "--from",
            &from,
            "--to",
            &to,
            "--step",
            "10s",
            "--stat-window",
            "30s",
        ];
        args.extend_from_slice(extra);
        let out = std::process::Command::new(hydrant_bin())
            .args(&args)
            .output()
            .unwrap();
        assert!(
            out.status.success(),
            "replay failed: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        String::from_utf8_lossy(&out.stdout).into_owned()
    };
    let (alerts, records): (Vec<Value>, Vec<Value>) = run(&["--json"])
        .lines()
        .map(|l| serde_json::from_str::<Value>(l).unwrap())
        .partition(|v| v.get("alert").is_some());
    let got: Vec<(i64, i64, i64, i64)> = records
        .iter()
        .map(|r| {
            (
                (r["timestamp"].as_i64().unwrap() / 1_000_000_000) - start,
                r["status"].as_i64().unwrap(),
                r["old_instances"].as_i64().unwrap(),
                r["new_instances"].as_i64().unwrap(),
            )
        })
        .collect();
    // Aggregates (30 s window) exceed 70 from t = 320; every one in [t − 60, t] does
    // from 380: 2 → 3; in the cooldown nothing is evaluated (as CF); it ends at 500: 3 → 4;
    // at 620 the max stops it (ignored, once); the load drops at 900, aggregates are < 20
    // from 920, so 980: 4 → 3 and after the cooldown 1100: 3 → 2.
    assert_eq!(
        got,
        [
            (380, 0, 2, 3),
            (500, 0, 3, 4),
            (620, 2, 4, 4),
            (980, 0, 4, 3),
            (1100, 0, 3, 2),
        ],
        "{records:#?}"
    );
    assert_eq!(records[2]["message"], "limited by max instances 4");
    // The alerts it would have sent: the scale-out rule fires when its breach has lasted
    // (380), resolves with the first aggregate under 70 (900), and the scale-in rule fires
    // at 980.
    let states: Vec<(i64, &str, i64)> = alerts
        .iter()
        .map(|a| {
            let a = &a["alert"];
            (
                a["rule"].as_i64().unwrap(),
                a["state"].as_str().unwrap(),
                a["at"].as_i64().unwrap() - start,
            )
        })
        .collect();
    assert_eq!(
        states,
        [(0, "firing", 380), (0, "resolved", 900), (1, "firing", 980)],
        "{alerts:#?}"
    );
    assert_eq!(records[0]["response"], "replay: not carried out");

    let table = run(&[]);
    assert!(table.starts_with("Scaling Type"), "{table}");
    assert!(table.contains("2->3") && table.contains("3->2"), "{table}");
    assert!(
        table.contains("alert firing: rule 0: cpu > 70 for 60 seconds"),
        "{table}"
    );
    assert!(
        table.contains(
            "5 decision(s), 4 scale(s), 3 alert notification(s) (dry run: nothing was scaled or sent)"
        ),
        "{table}"
    );

    // An app with nothing stored is a clear error.
    std::fs::write(&policy, POLICY.replace("app: replayed", "app: ghost")).unwrap();
    let out = std::process::Command::new(hydrant_bin())
        .args([
            "autoscaler",
            "replay",
            "--policy",
            policy.to_str().unwrap(),
            "--storage",
            &vm.url,
            "--from",
            &start.to_string(),
            "--to",
            &(start + 600).to_string(),
        ])
        .output()
        .unwrap();
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("no stored metrics for app ghost"), "{err}");
}
