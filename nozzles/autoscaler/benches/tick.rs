//! Evaluation cost of the autoscaler's core, at the scale: 10,000 apps × 3 rules,
//! 5 instances each, container metrics every second. Run with
//! `cargo bench -p hydrant-autoscaler --bench tick`.
//!
//! - `tick/10k_apps_3_rules`: one `Fleet::tick` (aggregate every metric of every app over
//!   its stat window, evaluate every rule, alerts, schedules) with 120 s of history.
//! - `observe/50k_envelopes`: one second of metrics (10,000 apps × 5 instances) into the
//!   fleet.

use std::hint::black_box;
use std::path::Path;

use criterion::{Criterion, criterion_group, criterion_main};
use hydrant_autoscaler::fleet::{Fleet, Settings};
use hydrant_autoscaler::policy;
use hydrant_proto::{envelope, v2};

const APPS: usize = 10_000;
const INSTANCES: usize = 5;

fn policy(app: usize) -> policy::Policy {
    let yaml = format!(
        "app: app-{app}
instance_min_count: 1
instance_max_count: 10
scaling_rules:
  - {{metric_type: cpu, operator: '>', threshold: 70, breach_duration: 60s, cool_down: 60s, adjustment: '+1'}}
  - {{metric_type: cpu, operator: '<', threshold: 20, breach_duration: 60s, cool_down: 60s, adjustment: '-1'}}
  - {{metric_type: memoryutil, operator: '>', threshold: 80, breach_duration: 60s, cool_down: 60s, adjustment: '+1'}}
"
    );
    policy::parse(&yaml, Path::new("bench.yml"))
        .policy
        .expect("valid policy")
}

/// The cell's container-metrics envelope of one instance at second `t`.
fn envelope(app: usize, instance: usize, t: i64) -> v2::Envelope {
    // Loads that stay between the thresholds, so no app scales and every tick does the
    // full evaluation.
    let cpu = 30.0 + ((app * 7 + instance * 13 + t as usize) % 30) as f64;
    let mut e = envelope::gauge(
        format!("guid-{app}"),
        [
            ("cpu", cpu, "percentage"),
            ("memory", 100.0 * 1024.0 * 1024.0, "bytes"),
            ("memory_quota", 256.0 * 1024.0 * 1024.0, "bytes"),
            ("disk", 10.0 * 1024.0 * 1024.0, "bytes"),
            ("disk_quota", 1024.0 * 1024.0 * 1024.0, "bytes"),
        ],
    );
    e.instance_id = instance.to_string();
    e.timestamp = t * 1_000_000_000;
    e
}

fn second(fleet: &mut Fleet, envelopes: &mut [v2::Envelope], t: i64) {
    for e in envelopes {
        e.timestamp = t * 1_000_000_000;
        fleet.observe(e, t);
    }
}

fn bench(c: &mut Criterion) {
    let mut fleet = Fleet::new(Settings::default());
    fleet.set_policies((0..APPS).map(policy));
    for app in 0..APPS {
        fleet.set_instances(
            &format!("guid-{app}"),
            &format!("app-{app}"),
            INSTANCES as u32,
        );
    }
    let mut envelopes: Vec<v2::Envelope> = (0..APPS)
        .flat_map(|a| (0..INSTANCES).map(move |i| envelope(a, i, 0)))
        .collect();
    // 130 s of history: metrics every second, a tick every 10 s.
    for t in 0..130 {
        second(&mut fleet, &mut envelopes, t);
        if t % 10 == 0 {
            black_box(fleet.tick(t));
        }
    }
    let mut t = 130;
    c.bench_function("tick/10k_apps_3_rules", |b| {
        b.iter(|| {
            t += 1;
            let effects = fleet.tick(t);
            assert!(effects.is_empty(), "loads stay between thresholds");
            effects
        })
    });
    let mut t = 10_000;
    c.bench_function("observe/50k_envelopes", |b| {
        b.iter(|| {
            t += 1;
            second(&mut fleet, &mut envelopes, t);
        })
    });
}

criterion_group! {
    name = benches;
    config = Criterion::default().sample_size(20);
    targets = bench
}
criterion_main!(benches);
