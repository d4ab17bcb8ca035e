//! The fleet driven by envelopes and a simulated clock (one tick per second).

use hydrant_proto::envelope;

use super::*;

fn policy(yaml: &str) -> Policy {
    crate::policy::parse_valid(yaml, "web.yml")
}

const BURN: &str = "app: web
instance_min_count: 1
instance_max_count: 3
scaling_rules:
  - {metric_type: cpu, operator: '>', threshold: 70, breach_duration: 5s, cool_down: 10s, adjustment: '+1'}
  - {metric_type: cpu, operator: '<', threshold: 20, breach_duration: 5s, cool_down: 10s, adjustment: '-1'}
";

fn cpu(guid: &str, instance: &str, at: Time, value: f64) -> v2::Envelope {
    let mut e = envelope::gauge(guid, [("cpu", value, "percentage")]);
    e.instance_id = instance.into();
    e.timestamp = at * 1_000_000_000;
    e.tags.insert("app_name".into(), "web".into());
    e
}

fn settings() -> Settings {
    Settings {
        stat_window: 2,
        ..Settings::default()
    }
}

/// Runs ticks `from..=to`, feeding each instance's cpu first; returns the effects by time.
fn run(
    fleet: &mut Fleet,
    range: std::ops::RangeInclusive<Time>,
    value: impl Fn(Time) -> f64,
    instances: u32,
) -> Vec<(Time, Effect)> {
    let mut out = Vec::new();
    for t in range {
        for i in 0..instances {
            fleet.observe(&cpu("guid-web", &i.to_string(), t, value(t)), t);
        }
        for e in fleet.tick(t) {
            if let Effect::Scale(req) = &e {
                fleet.completed(&req.app, Ok("202 Accepted".into()), t);
            }
            out.push((t, e));
        }
    }
    out
}

fn scales(effects: &[(Time, Effect)]) -> Vec<(Time, u32, u32)> {
    effects
        .iter()
        .filter_map(|(t, e)| match e {
            Effect::Scale(r) => Some((*t, r.from, r.to)),
            _ => None,
        })
        .collect()
}

#[test]
fn scales_out_in_steps_with_cooldown_then_back_in() {
    let mut fleet = Fleet::new(settings());
    fleet.set_policies([policy(BURN)]);
    fleet.set_instances("guid-web", "web", 1);
    let effects = run(&mut fleet, 0..=40, |t| if t < 30 { 90.0 } else { 5.0 }, 1);
    // First breach: samples at 0..=6 all > 70, history older than 6 − 5 exists → t = 6.
    // Cooldown 10 s: next at 16, then 26 (capped at 3: ignored). Load stops at 30; the
    // aggregate (2 s window) turns at 31, breaches < 20 from 31 to 36 with history → 36 is
    // still in the cooldown of 26? 26 + 10 = 36: no longer blocked at 36 → scale in.
    assert_eq!(scales(&effects), [(6, 1, 2), (16, 2, 3), (36, 3, 2)]);
    let ignored: Vec<Time> = effects
        .iter()
        .filter_map(|(t, e)| matches!(e, Effect::Recorded(_)).then_some(*t))
        .collect();
    assert_eq!(
        ignored,
        [26],
        "no row in a cooldown (CF does not evaluate the app then); one at the max (26)"
    );
    let page = fleet.history().query("web", history::Query::default());
    assert_eq!(page.total_results, 4);
    let newest = &page.resources[0];
    assert_eq!((newest.old_instances, newest.new_instances), (3, 2));
    assert_eq!(
        newest.reason,
        "-1 instance(s) because cpu < 20% for 5 seconds"
    );
    assert_eq!(newest.app_id, "guid-web");
    let w = newest.window.as_ref().unwrap();
    assert_eq!((w.metric.as_str(), w.max), ("cpu", Some(5.0)));
    let capped = &page.resources[1];
    assert_eq!(capped.status, history::Status::Ignored);
    assert_eq!(capped.message, "limited by max instances 3");
}

#[test]
fn alerts_pend_fire_and_resolve_with_the_breach() {
    let mut fleet = Fleet::new(settings());
    fleet.set_policies([policy(BURN)]);
    fleet.set_instances("guid-web", "web", 1);
    let effects = run(&mut fleet, 0..=12, |t| if t < 8 { 90.0 } else { 50.0 }, 1);
    let alerts: Vec<(Time, usize, Transition)> = effects
        .iter()
        .filter_map(|(t, e)| match e {
            Effect::Alert(a) => Some((*t, a.rule, a.transition)),
            _ => None,
        })
        .collect();
    assert_eq!(
        alerts,
        [
            (0, 0, Transition::Pending),
            (5, 0, Transition::Firing),
            (8, 0, Transition::Resolved),
        ],
        "for: 5 s fires at 5; at 8 the 2 s aggregate is mean(90, 50) = 70, not > 70"
    );
    let resolved_since = effects.iter().find_map(|(_, e)| match e {
        Effect::Alert(a) if a.transition == Transition::Resolved => Some(a.since),
        _ => None,
    });
    assert_eq!(
        resolved_since,
        Some(5),
        "a resolution carries the firing start it was notified with, not the resolve time"
    );
}

#[test]
fn explain_shows_each_rule_and_the_next_step() {
    let mut fleet = Fleet::new(settings());
    fleet.set_policies([policy(BURN)]);
    fleet.set_instances("guid-web", "web", 1);
    run(&mut fleet, 0..=3, |_| 90.0, 2);
    let x = serde_json::to_value(fleet.explain("guid-web", 3).unwrap()).unwrap();
    assert_eq!(x["app"], "web");
    assert_eq!(x["instances"], 1);
    assert_eq!(x["rules"][0]["value"], 90.0);
    assert_eq!(x["rules"][0]["breaching_for_secs"], 3);
    assert_eq!(x["rules"][0]["alert"]["state"], "pending");
    assert_eq!(x["rules"][0]["verdict"], "not enough history yet");
    assert_eq!(x["rules"][1]["breaching"], false);
    assert_eq!(x["next"], "nothing: no rule breached");
    run(&mut fleet, 4..=5, |_| 90.0, 2);
    let x = serde_json::to_value(fleet.explain("web", 6).unwrap()).unwrap();
    assert!(
        x["next"].as_str().unwrap().starts_with("scale from 1 to 2"),
        "{x}"
    );
    assert!(fleet.explain("nobody", 6).is_none());
}

#[test]
fn failing_actuator_opens_the_breaker() {
    let mut fleet = Fleet::new(Settings {
        breaker_failures: 2,
        breaker_backoff: Duration::from_secs(20),
        ..settings()
    });
    fleet.set_policies([policy(BURN)]);
    fleet.set_instances("guid-web", "web", 1);
    let mut calls = Vec::new();
    for t in 0..=60 {
        fleet.observe(&cpu("guid-web", "0", t, 90.0), t);
        for e in fleet.tick(t) {
            if let Effect::Scale(r) = e {
                calls.push(t);
                let rec = fleet.completed(&r.app, Err("503".into()), t).unwrap();
                assert_eq!(rec.status, history::Status::Failed);
                assert_eq!(rec.error, "failed to set app instances: 503");
                assert_eq!(
                    (rec.old_instances, rec.new_instances),
                    (1, 2),
                    "the count it tried to reach"
                );
            }
        }
    }
    // Fails at 6 and 7 (no cooldown after a failure): open until 27. At 27 one trial call
    // (half-open), whose failure opens it again at once for twice as long: until 67.
    assert_eq!(calls, [6, 7, 27]);
    assert_eq!(fleet.apps()["web"].current, Some(1));
}

#[test]
fn unchanged_policies_keep_their_state_on_reload() {
    let mut fleet = Fleet::new(settings());
    let other = BURN.replace("app: web", "app: api");
    fleet.set_policies([policy(BURN), policy(&other)]);
    fleet.set_instances("guid-web", "web", 1);
    run(&mut fleet, 0..=6, |_| 90.0, 1);
    assert_eq!(fleet.apps()["web"].current, Some(2));
    let changed = other.replace("threshold: 70", "threshold: 60");
    let c = fleet.set_policies([policy(BURN), policy(&changed)]);
    assert_eq!((c.kept, c.changed, c.added, c.removed), (1, 1, 0, 0));
    // web is still cooling down from its scale at 6.
    let x = serde_json::to_value(fleet.explain("web", 7).unwrap()).unwrap();
    assert_eq!(x["cooldown"]["scale_out_remaining_secs"], 9);
    let c = fleet.set_policies([policy(&changed)]);
    assert_eq!(c.removed, 1);
    assert!(fleet.explain("guid-web", 7).is_none());
    assert!(!fleet.observe(&cpu("guid-web", "0", 7, 1.0), 7));
}

#[test]
fn without_a_platform_count_observed_instances_are_the_count() {
    let mut fleet = Fleet::new(settings());
    fleet.set_policies([policy(BURN)]);
    // No set_instances: the guid is learned from the app_name tag.
    let effects = run(&mut fleet, 0..=6, |_| 90.0, 2);
    assert_eq!(scales(&effects), [(6, 2, 3)]);
    assert_eq!(fleet.apps()["web"].guid.as_deref(), Some("guid-web"));
}

#[test]
fn schedules_scale_without_a_rule() {
    let yaml = "app: web
instance_min_count: 1
instance_max_count: 3
scaling_rules:
  - {metric_type: cpu, operator: '>', threshold: 70, breach_duration: 5s, cool_down: 10s, adjustment: '+1'}
schedules:
  timezone: UTC
  specific_date:
    - {start_date_time: '1970-01-01T00:01', end_date_time: '1970-01-01T00:02', instance_min_count: 4, instance_max_count: 6}
";
    let mut fleet = Fleet::new(settings());
    fleet.set_policies([policy(yaml)]);
    fleet.set_instances("guid-web", "web", 1);
    let effects = run(&mut fleet, 0..=130, |_| 10.0, 1);
    assert_eq!(scales(&effects), [(60, 1, 4), (120, 4, 3)]);
    let page = fleet.history().query("web", history::Query::default());
    assert!(
        page.resources
            .iter()
            .all(|r| r.scaling_type == history::ScalingType::Schedule)
    );
    assert_eq!(page.resources[0].reason, "schedule ends");
}

fn alert_effects(effects: &[(Time, Effect)]) -> Vec<(Time, usize, Transition)> {
    effects
        .iter()
        .filter_map(|(t, e)| match e {
            Effect::Alert(a) => Some((*t, a.rule, a.transition)),
            _ => None,
        })
        .collect()
}

/// Removing a policy resolves its firing alerts on the next tick (the notifier then stops
/// re-sending them) and keeps its history.
#[test]
fn a_removed_policy_resolves_its_alerts_and_keeps_its_history() {
    let mut fleet = Fleet::new(settings());
    fleet.set_policies([policy(BURN)]);
    fleet.set_instances("guid-web", "web", 1);
    let effects = run(&mut fleet, 0..=8, |_| 90.0, 1);
    assert!(alert_effects(&effects).contains(&(5, 0, Transition::Firing)));
    let before = fleet.history().last("web").cloned();
    assert!(before.is_some(), "a scale was recorded");
    fleet.set_policies([]);
    let effects = run(&mut fleet, 9..=12, |_| 90.0, 1);
    assert_eq!(alert_effects(&effects), [(9, 0, Transition::Resolved)]);
    assert_eq!(
        fleet.history().last("web").cloned(),
        before,
        "history outlives the policy"
    );
}

/// Editing a threshold: the old rule's firing alert resolves, the cooldown and the
/// aggregates carry over (no scale before the cooldown from the earlier one ends), and
/// an unchanged rule keeps its alert.
#[test]
fn an_edited_policy_keeps_cooldowns_and_resolves_the_changed_rules_alert() {
    let mut fleet = Fleet::new(settings());
    fleet.set_policies([policy(BURN)]);
    fleet.set_instances("guid-web", "web", 1);
    let effects = run(&mut fleet, 0..=8, |_| 90.0, 1);
    assert_eq!(scales(&effects), [(6, 1, 2)]);
    let edited = BURN.replace("threshold: 70", "threshold: 60");
    let c = fleet.set_policies([policy(&edited)]);
    assert_eq!(c.changed, 1);
    let effects = run(&mut fleet, 9..=20, |_| 90.0, 1);
    // The edited rule's alert starts afresh: the old one resolves at the first tick.
    let alerts = alert_effects(&effects);
    assert_eq!(alerts[0], (9, 0, Transition::Resolved), "{alerts:?}");
    // Cooldown from the scale at 6 (10 s) still holds: the next scale is at 16, not 9.
    assert_eq!(scales(&effects), [(16, 2, 3)]);
    let x = serde_json::to_value(fleet.explain("web", 20).unwrap()).unwrap();
    assert!(x.is_object());
}

/// A firing alert kept across a restart keeps firing from when it started (announced
/// again, then resolving as usual); one whose rule changed meanwhile resolves at once.
#[test]
fn firing_alerts_survive_a_restart() {
    let mut fleet = Fleet::new(settings());
    fleet.set_policies([policy(BURN)]);
    fleet.set_instances("guid-web", "web", 1);
    run(&mut fleet, 0..=8, |_| 90.0, 1);
    let kept = fleet.firing_alerts();
    assert_eq!(kept["web"].len(), 1, "{kept:?}");

    let mut restarted = Fleet::new(settings());
    restarted.set_policies([policy(BURN)]);
    restarted.set_instances("guid-web", "web", 2);
    restarted.restore_alerts(&kept, 30);
    let effects = run(&mut restarted, 30..=31, |_| 50.0, 1);
    let firing: Vec<(Time, Time, Transition)> = effects
        .iter()
        .filter_map(|(t, e)| match e {
            Effect::Alert(a) => Some((*t, a.since, a.transition)),
            _ => None,
        })
        .collect();
    assert_eq!(
        firing,
        [(30, 5, Transition::Firing), (30, 5, Transition::Resolved)],
        "announced again with its start, then resolved by the first evaluation"
    );

    // No data yet after the restart: held firing for one stat window, then resolved.
    let mut quiet = Fleet::new(settings());
    quiet.set_policies([policy(BURN)]);
    quiet.restore_alerts(&kept, 30);
    let mut ticks = Vec::new();
    for t in 30..=33 {
        ticks.extend(quiet.tick(t).into_iter().map(|e| (t, e)));
    }
    assert_eq!(
        alert_effects(&ticks),
        [(30, 0, Transition::Firing), (32, 0, Transition::Resolved)]
    );

    let mut edited = Fleet::new(settings());
    edited.set_policies([policy(&BURN.replace("threshold: 70", "threshold: 60"))]);
    edited.restore_alerts(&kept, 30);
    let effects = run(&mut edited, 30..=30, |_| 10.0, 1);
    assert_eq!(alert_effects(&effects)[0], (30, 0, Transition::Resolved));
}
