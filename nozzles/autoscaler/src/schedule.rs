//! Schedules at run time, as Cloud Foundry's scheduler applies them. Pure: callers pass
//! `now` (UNIX seconds).
//!
//! - While a schedule is active its min/max *replace* the policy's.
//! - When it starts, the count is raised to `max(initial_min_instance_count, min)` (and
//!   clamped to its max); when it ends, the count is clamped back into the policy's limits.
//! - Overlaps: the schedule that started first wins. One that would start while another is
//!   active is skipped entirely; it does not begin when the first one ends.
//! - Schedule scaling starts no cooldown.

use chrono::{Datelike, NaiveDate, NaiveDateTime, TimeZone};
use chrono_tz::Tz;

use crate::engine::Time;
use crate::policy::{Policy, Schedules};

/// One concrete occurrence of a schedule.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Window {
    /// Which schedule: recurring ones by index, specific dates after them.
    pub id: usize,
    /// Start (UNIX seconds, inclusive).
    pub start: Time,
    /// End (UNIX seconds, exclusive).
    pub end: Time,
    /// Limits while active.
    pub min: u32,
    /// Limits while active.
    pub max: u32,
    /// Floor when it starts.
    pub initial_min: Option<u32>,
}

fn local(tz: &Tz, t: NaiveDateTime) -> Option<Time> {
    // A local time that does not exist (spring forward) starts at the next valid instant;
    // an ambiguous one (fall back) at the earlier.
    tz.from_local_datetime(&t)
        .earliest()
        .or_else(|| {
            tz.from_local_datetime(&(t + chrono::Duration::hours(1)))
                .earliest()
        })
        .map(|d| d.timestamp())
}

/// The occurrences that contain `now`.
pub fn windows_at(s: &Schedules, now: Time) -> Vec<Window> {
    let Some(utc) = chrono::DateTime::from_timestamp(now, 0) else {
        return Vec::new();
    };
    let today: NaiveDate = utc.with_timezone(&s.timezone).date_naive();
    let mut out = Vec::new();
    for (id, r) in s.recurring.iter().enumerate() {
        let day_ok = if r.days_of_week.is_empty() {
            r.days_of_month.contains(&today.day())
        } else {
            r.days_of_week
                .contains(&today.weekday().number_from_monday())
        };
        let date_ok =
            r.start_date.is_none_or(|d| today >= d) && r.end_date.is_none_or(|d| today <= d);
        if !day_ok || !date_ok {
            continue;
        }
        let at = |minute: u32| {
            today
                .and_hms_opt(minute / 60, minute % 60, 0)
                .and_then(|t| local(&s.timezone, t))
        };
        if let (Some(start), Some(end)) = (at(r.start_minute), at(r.end_minute))
            && start <= now
            && now < end
        {
            out.push(Window {
                id,
                start,
                end,
                min: r.min,
                max: r.max,
                initial_min: r.initial_min,
            });
        }
    }
    for (i, d) in s.specific.iter().enumerate() {
        if let (Some(start), Some(end)) = (local(&s.timezone, d.start), local(&s.timezone, d.end))
            && start <= now
            && now < end
        {
            let id = s.recurring.len() + i;
            out.push(Window {
                id,
                start,
                end,
                min: d.min,
                max: d.max,
                initial_min: d.initial_min,
            });
        }
    }
    out.sort_by_key(|w| (w.start, w.id));
    out
}

/// Which schedule is active, and which occurrences were skipped.
#[derive(Debug, Clone, Default)]
pub struct ScheduleState {
    /// The active occurrence.
    pub active: Option<Window>,
    /// Occurrences that lost to an earlier one (by id and start), never to begin.
    skipped: Vec<(usize, Time)>,
}

/// A schedule-driven change of the instance count.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ScheduleAction {
    /// New count.
    pub to: u32,
    /// Cloud Foundry's history reason.
    pub reason: String,
}

/// What schedules mean at `now`: the limits in force, and a count change when a schedule
/// starts or ends.
pub fn step(
    policy: &Policy,
    state: &mut ScheduleState,
    now: Time,
    current: u32,
) -> ((u32, u32), Option<ScheduleAction>) {
    let defaults = (policy.min, policy.max);
    let Some(schedules) = &policy.schedules else {
        return (defaults, None);
    };
    let mut action = None;
    if let Some(active) = state.active
        && now >= active.end
    {
        state.active = None;
        let to = current.clamp(policy.min, policy.max);
        action = Some(ScheduleAction {
            to,
            reason: "schedule ends".into(),
        });
    }
    let candidates = windows_at(schedules, now);
    match state.active {
        Some(active) => {
            // Anything else that has started meanwhile loses to the active one for good.
            for w in candidates
                .iter()
                .filter(|w| (w.id, w.start) != (active.id, active.start))
            {
                if !state.skipped.contains(&(w.id, w.start)) {
                    state.skipped.push((w.id, w.start));
                }
            }
        }
        None => {
            if let Some(w) = candidates
                .iter()
                .find(|w| !state.skipped.contains(&(w.id, w.start)))
            {
                state.active = Some(*w);
                let floor = w.initial_min.unwrap_or(0).max(w.min);
                let to = current.max(floor).min(w.max);
                let reason = format!(
                    "schedule starts with instance min {}, instance max {} and instance min initial {}",
                    w.min,
                    w.max,
                    w.initial_min.unwrap_or(0)
                );
                action = Some(ScheduleAction { to, reason });
                for other in candidates
                    .iter()
                    .filter(|o| (o.id, o.start) != (w.id, w.start))
                {
                    state.skipped.push((other.id, other.start));
                }
            }
        }
    }
    // Forget skips of occurrences long over (bounded memory).
    state.skipped.retain(|(_, start)| now - start < 7 * 86_400);
    let limits = state.active.map_or(defaults, |w| (w.min, w.max));
    (limits, action.filter(|a| a.to != current))
}

#[cfg(test)]
mod tests {

    use super::*;
    use crate::engine::{AppState, Outcome, Sample, evaluate};
    use crate::policy::MetricType;

    fn policy(yaml: &str) -> Policy {
        crate::policy::parse_valid(yaml, "app.yml")
    }

    /// 2026-11-23 (a Monday) at `h:m` in Berlin (UTC+1 in November), as UNIX seconds.
    fn monday(h: i64, m: i64) -> Time {
        chrono::NaiveDate::from_ymd_opt(2026, 11, 23)
            .unwrap()
            .and_hms_opt(0, 0, 0)
            .unwrap()
            .and_utc()
            .timestamp()
            + (h - 1) * 3600
            + m * 60
    }

    #[test]
    fn case_10_a_schedule_raises_the_floor_and_its_end_clamps_back() {
        let p = policy(
            "instance_min_count: 1\ninstance_max_count: 4\n\
             scaling_rules:\n  - {metric_type: cpu, operator: '>', threshold: 70, breach_duration_secs: 60, cool_down_secs: 60, adjustment: '+1'}\n\
             schedules:\n  timezone: Europe/Berlin\n  recurring_schedule:\n    - {start_time: '10:00', end_time: '18:00', days_of_week: [1], instance_min_count: 5, instance_max_count: 10, initial_min_instance_count: 6}\n",
        );
        let (mut sched, mut app, mut current) =
            (ScheduleState::default(), AppState::default(), 2u32);
        let mut log = Vec::new();
        for t in (monday(9, 0)..=monday(18, 30)).step_by(60) {
            let (limits, action) = step(&p, &mut sched, t, current);
            if let Some(a) = action {
                log.push((t, current, a.to, a.reason.clone()));
                current = a.to;
            }
            if t >= monday(12, 0) {
                app.record(
                    MetricType::Cpu,
                    Sample {
                        at: t,
                        value: Some(90.0),
                    },
                );
            }
            let d = evaluate(&p, &mut app, t, current, limits);
            if let Outcome::Scale { from, to } = d.outcome {
                log.push((t, from, to, d.reason.clone()));
                current = to;
                app.scaled(&p, d.rule.map(|i| &p.rules[i]), t);
            }
        }
        assert_eq!(
            log[0],
            (
                monday(10, 0),
                2,
                6,
                "schedule starts with instance min 5, instance max 10 and instance min initial 6"
                    .into()
            )
        );
        let rule_scales: Vec<u32> = log
            .iter()
            .filter(|l| l.3.starts_with("+1"))
            .map(|l| l.2)
            .collect();
        assert_eq!(
            rule_scales,
            [7, 8, 9, 10],
            "the rule works up to the schedule's max"
        );
        assert_eq!(
            log.last().unwrap(),
            &(monday(18, 0), 10, 4, "schedule ends".into())
        );
        assert_eq!(current, 4);
    }

    #[test]
    fn case_11_the_first_started_schedule_wins_and_the_other_never_begins() {
        let p = policy(
            "instance_min_count: 1\ninstance_max_count: 20\n\
             schedules:\n  timezone: Europe/Berlin\n\
             \x20 recurring_schedule:\n    - {start_time: '10:00', end_time: '14:00', days_of_week: [1], instance_min_count: 5, instance_max_count: 20}\n\
             \x20 specific_date:\n    - {start_date_time: '2026-11-23T09:00', end_date_time: '2026-11-23T12:00', instance_min_count: 8, instance_max_count: 20}\n",
        );
        let (mut sched, mut current) = (ScheduleState::default(), 1u32);
        let mut limits_at = Vec::new();
        for t in (monday(8, 0)..=monday(15, 0)).step_by(60) {
            let (limits, action) = step(&p, &mut sched, t, current);
            if let Some(a) = action {
                current = a.to;
            }
            limits_at.push((t, limits));
        }
        let at = |t: Time| limits_at.iter().find(|(x, _)| *x == t).unwrap().1;
        assert_eq!(at(monday(9, 0)), (8, 20), "the specific date starts first");
        assert_eq!(
            at(monday(10, 30)),
            (8, 20),
            "the recurring start at 10:00 is skipped"
        );
        assert_eq!(
            at(monday(12, 0)),
            (1, 20),
            "at 12:00 the defaults apply; the recurring one does not resume"
        );
        assert_eq!(at(monday(13, 0)), (1, 20));
    }
}
