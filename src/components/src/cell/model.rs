//! The cell's desired and actual state, and the pure converger that turns the difference
//! into actions (as Diego's converger does): start missing instances, restart crashed ones
//! after an exponential backoff, stop the highest indexes first when scaled down, and
//! restart instances whose quotas changed one at a time (rolling).
//! No I/O and no clock of its own: callers pass `now`.

use std::collections::BTreeMap;
use std::time::Duration;

use tokio::time::Instant;

/// What a user asked for.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AppSpec {
    /// Unique name.
    pub name: String,
    /// Shell command run for each instance.
    pub command: String,
    /// Desired instance count.
    pub instances: u32,
    /// Memory quota per instance.
    pub memory_mb: u64,
    /// Disk quota per instance.
    pub disk_mb: u64,
    /// Extra environment.
    pub env: BTreeMap<String, String>,
}

/// An instance's lifecycle state, as Cloud Controller reports it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum State {
    /// Process spawned, not yet up for [`Backoff::healthy_after`]… or the startup window.
    Starting,
    /// Up.
    Running,
    /// Exited unexpectedly; restarts when its backoff expires.
    Crashed,
    /// Stopped on purpose (or not started yet).
    Down,
}

impl State {
    /// The Cloud Controller name.
    pub fn as_str(self) -> &'static str {
        match self {
            State::Starting => "STARTING",
            State::Running => "RUNNING",
            State::Crashed => "CRASHED",
            State::Down => "DOWN",
        }
    }
}

impl From<State> for super::contract::InstanceState {
    fn from(s: State) -> Self {
        use super::contract::InstanceState as Wire;
        match s {
            State::Starting => Wire::Starting,
            State::Running => Wire::Running,
            State::Crashed => Wire::Crashed,
            State::Down => Wire::Down,
        }
    }
}

/// One instance slot.
#[derive(Debug, Clone)]
pub struct Instance {
    /// Index within the app.
    pub index: u32,
    /// Changes on every (re)start.
    pub instance_guid: String,
    /// Lifecycle state.
    pub state: State,
    /// Process id of the group leader while alive.
    pub pid: Option<u32>,
    /// When the current process was started.
    pub started_at: Option<Instant>,
    /// Crashes since the instance was last healthy for long enough.
    pub crash_count: u32,
    /// When a crashed instance may restart.
    pub restart_at: Option<Instant>,
    /// A stop was requested and is in progress.
    pub stopping: bool,
    /// The slot's last crash, kept across its restarts.
    pub last_crash: Option<Crash>,
    /// The quotas its process was started with.
    pub quota: Quota,
}

/// Memory and disk quotas, MB.
pub type Quota = (u64, u64);

/// Why and when an instance last crashed.
#[derive(Debug, Clone, PartialEq)]
pub struct Crash {
    /// As Cloud Foundry describes it, e.g. `APP/PROC/WEB: Exited with status 1`.
    pub reason: String,
    /// Exit status (128 + signal for a signal).
    pub exit_status: Option<i32>,
    /// When.
    pub at: std::time::SystemTime,
}

impl Instance {
    /// Whether a process is (or may still be) alive for this slot.
    pub fn alive(&self) -> bool {
        matches!(self.state, State::Starting | State::Running)
    }
}

/// Crash-restart policy.
#[derive(Debug, Clone, Copy)]
pub struct Backoff {
    /// Delay before the first restart.
    pub base: Duration,
    /// Upper bound of the delay.
    pub max: Duration,
    /// An instance up this long has its crash count reset (and is RUNNING after
    /// `startup`).
    pub healthy_after: Duration,
    /// Time from spawn to RUNNING.
    pub startup: Duration,
}

impl Default for Backoff {
    fn default() -> Self {
        Backoff {
            base: Duration::from_secs(1),
            max: Duration::from_secs(60),
            healthy_after: Duration::from_secs(60),
            startup: Duration::from_secs(1),
        }
    }
}

impl Backoff {
    /// The delay after the `crashes`-th consecutive crash: base, 2×base, 4×base … max.
    pub fn delay(&self, crashes: u32) -> Duration {
        let factor = 1u32
            .checked_shl(crashes.saturating_sub(1))
            .unwrap_or(u32::MAX);
        self.base.saturating_mul(factor).min(self.max)
    }
}

/// One action the converger wants done.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Action {
    /// Start (or restart) the instance at this index.
    Start(u32),
    /// Stop the instance at this index gracefully.
    Stop(u32),
    /// Forget a dead slot above the desired count.
    Forget(u32),
}

/// What to do for an app with `desired` instances and `quota`, given its slots at `now`.
/// Stops come highest index first. Once every wanted instance runs and nothing else is to
/// be done, one instance started with other quotas is stopped (it then starts with the new
/// ones): a quota change rolls through the instances one at a time.
pub fn plan(
    desired: u32,
    quota: Quota,
    slots: &BTreeMap<u32, Instance>,
    now: Instant,
) -> Vec<Action> {
    let mut actions = Vec::new();
    for index in 0..desired {
        match slots.get(&index) {
            None => actions.push(Action::Start(index)),
            Some(i) if i.stopping || i.alive() => {}
            Some(i) if i.state == State::Crashed => {
                if i.restart_at.is_none_or(|t| t <= now) {
                    actions.push(Action::Start(index));
                }
            }
            Some(_) => actions.push(Action::Start(index)),
        }
    }
    for (index, i) in slots.range(desired..).rev() {
        if i.alive() {
            if !i.stopping {
                actions.push(Action::Stop(*index));
            }
        } else {
            actions.push(Action::Forget(*index));
        }
    }
    let all_running = (0..desired).all(|index| {
        slots
            .get(&index)
            .is_some_and(|i| i.state == State::Running && !i.stopping)
    });
    if actions.is_empty()
        && all_running
        && let Some((index, _)) = slots.range(..desired).find(|(_, i)| i.quota != quota)
    {
        actions.push(Action::Stop(*index));
    }
    actions
}

/// The earliest pending crash restart, so the converger can sleep until then.
pub fn next_restart(desired: u32, slots: &BTreeMap<u32, Instance>) -> Option<Instant> {
    slots
        .range(..desired)
        .filter(|(_, i)| i.state == State::Crashed)
        .filter_map(|(_, i)| i.restart_at)
        .min()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn slot(index: u32, state: State) -> Instance {
        Instance {
            index,
            instance_guid: format!("g{index}"),
            state,
            pid: None,
            started_at: None,
            crash_count: 0,
            restart_at: None,
            stopping: false,
            last_crash: None,
            quota: Q,
        }
    }

    const Q: Quota = (64, 128);

    /// A quota change restarts one running instance at a time, lowest index first, and
    /// only while every other one runs.
    #[test]
    fn new_quotas_roll_through_the_instances_one_at_a_time() {
        let now = Instant::now();
        let new = (256, 128);
        let mut s = slots(&[State::Running, State::Running, State::Running]);
        assert_eq!(plan(3, new, &s, now), [Action::Stop(0)]);
        s.get_mut(&0).unwrap().stopping = true;
        assert_eq!(plan(3, new, &s, now), [], "one at a time");
        let i0 = s.get_mut(&0).unwrap();
        (i0.state, i0.stopping) = (State::Down, false);
        assert_eq!(plan(3, new, &s, now), [Action::Start(0)]);
        let i0 = s.get_mut(&0).unwrap();
        (i0.state, i0.quota) = (State::Starting, new);
        assert_eq!(plan(3, new, &s, now), [], "the restarted one is not up yet");
        s.get_mut(&0).unwrap().state = State::Running;
        assert_eq!(plan(3, new, &s, now), [Action::Stop(1)]);
        for i in s.values_mut() {
            i.quota = new;
        }
        assert_eq!(plan(3, new, &s, now), []);
    }

    fn slots(states: &[State]) -> BTreeMap<u32, Instance> {
        states
            .iter()
            .enumerate()
            .map(|(i, s)| (i as u32, slot(i as u32, *s)))
            .collect()
    }

    #[test]
    fn starts_missing_and_stops_extra_highest_first() {
        let now = Instant::now();
        assert_eq!(
            plan(2, Q, &BTreeMap::new(), now),
            [Action::Start(0), Action::Start(1)]
        );
        let three = slots(&[State::Running, State::Running, State::Starting]);
        assert_eq!(plan(1, Q, &three, now), [Action::Stop(2), Action::Stop(1)]);
        assert_eq!(plan(3, Q, &three, now), []);
    }

    #[test]
    fn stopping_instances_are_left_alone_and_dead_extras_forgotten() {
        let now = Instant::now();
        let mut s = slots(&[State::Running, State::Running, State::Down]);
        s.get_mut(&1).unwrap().stopping = true;
        assert_eq!(plan(1, Q, &s, now), [Action::Forget(2)]);
    }

    #[test]
    fn crashed_instances_restart_after_backoff() {
        let now = Instant::now();
        let mut s = slots(&[State::Crashed]);
        s.get_mut(&0).unwrap().restart_at = Some(now + Duration::from_secs(2));
        assert_eq!(plan(1, Q, &s, now), []);
        assert_eq!(next_restart(1, &s), Some(now + Duration::from_secs(2)));
        assert_eq!(
            plan(1, Q, &s, now + Duration::from_secs(2)),
            [Action::Start(0)]
        );
    }

    #[test]
    fn backoff_doubles_up_to_the_cap() {
        let b = Backoff {
            base: Duration::from_secs(1),
            max: Duration::from_secs(10),
            ..Backoff::default()
        };
        let delays: Vec<u64> = (1..=6).map(|c| b.delay(c).as_secs()).collect();
        assert_eq!(delays, [1, 2, 4, 8, 10, 10]);
        assert_eq!(b.delay(200), Duration::from_secs(10));
    }
}
