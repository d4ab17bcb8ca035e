//! Alert state, with Prometheus `for:` and `keep_firing_for` semantics. Pure: the caller
//! feeds each evaluation's condition and time.
//!
//! - A true condition makes an inactive alert pending; it fires once it has been pending
//!   for `for_`. A false evaluation while pending resets it.
//! - A firing alert whose condition turns false keeps firing until `keep_firing_for` has
//!   passed since the first false evaluation, then resolves. A true evaluation meanwhile
//!   cancels the countdown.

use std::time::Duration;

use crate::engine::Time;

/// Where an alert stands.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "snake_case", tag = "state")]
pub enum State {
    /// Not active.
    #[default]
    Inactive,
    /// Condition true since `since`, not yet for long enough.
    Pending {
        /// First true evaluation.
        since: Time,
    },
    /// Firing since `since`.
    Firing {
        /// When it started firing.
        since: Time,
        /// First false evaluation while firing, if the condition has turned false.
        keep_firing_since: Option<Time>,
    },
}

/// A change worth notifying or recording.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Transition {
    /// Inactive → pending.
    Pending,
    /// Pending → inactive (the condition did not hold for long enough).
    Reset,
    /// Pending → firing.
    Firing,
    /// Firing → inactive.
    Resolved,
}

/// One alert's state machine.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Alert {
    /// How long the condition must hold.
    pub for_: Duration,
    /// How long it keeps firing after the condition stops.
    pub keep_firing_for: Duration,
    /// Current state.
    pub state: State,
}

impl Alert {
    /// An inactive alert.
    pub fn new(for_: Duration, keep_firing_for: Duration) -> Alert {
        Alert {
            for_,
            keep_firing_for,
            state: State::Inactive,
        }
    }

    /// Feeds one evaluation.
    pub fn evaluate(&mut self, condition: bool, now: Time) -> Option<Transition> {
        let secs = |d: Duration| d.as_secs() as i64;
        match (self.state, condition) {
            (State::Inactive, true) => {
                self.state = State::Pending { since: now };
                if self.for_.is_zero() {
                    self.state = State::Firing {
                        since: now,
                        keep_firing_since: None,
                    };
                    return Some(Transition::Firing);
                }
                Some(Transition::Pending)
            }
            (State::Inactive, false) => None,
            (State::Pending { since }, true) => {
                if now - since >= secs(self.for_) {
                    self.state = State::Firing {
                        since: now,
                        keep_firing_since: None,
                    };
                    Some(Transition::Firing)
                } else {
                    None
                }
            }
            (State::Pending { .. }, false) => {
                self.state = State::Inactive;
                Some(Transition::Reset)
            }
            (State::Firing { since, .. }, true) => {
                self.state = State::Firing {
                    since,
                    keep_firing_since: None,
                };
                None
            }
            (
                State::Firing {
                    since,
                    keep_firing_since,
                },
                false,
            ) => {
                let first_false = keep_firing_since.unwrap_or(now);
                if now - first_false < secs(self.keep_firing_for) {
                    self.state = State::Firing {
                        since,
                        keep_firing_since: Some(first_false),
                    };
                    None
                } else {
                    self.state = State::Inactive;
                    Some(Transition::Resolved)
                }
            }
        }
    }

    /// Whether it is firing.
    pub fn firing(&self) -> bool {
        matches!(self.state, State::Firing { .. })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn case_19_for_and_keep_firing_for() {
        let mut a = Alert::new(Duration::from_secs(300), Duration::from_secs(300));
        let condition = |t: Time| t != 180 && t < 600;
        let mut log = Vec::new();
        for t in (0..=960).step_by(60) {
            if let Some(tr) = a.evaluate(condition(t), t) {
                log.push((t, tr));
            }
        }
        assert_eq!(
            log,
            [
                (0, Transition::Pending),
                (180, Transition::Reset),
                (240, Transition::Pending),
                (540, Transition::Firing),
                (900, Transition::Resolved),
            ],
            "firing at 540, held through 600…840 by keep_firing_for, resolved at 900"
        );
    }

    #[test]
    fn a_true_evaluation_cancels_the_keep_firing_countdown() {
        let mut a = Alert::new(Duration::ZERO, Duration::from_secs(120));
        assert_eq!(
            a.evaluate(true, 0),
            Some(Transition::Firing),
            "for: 0 fires at once"
        );
        assert_eq!(a.evaluate(false, 60), None);
        assert_eq!(a.evaluate(true, 120), None);
        assert_eq!(
            a.evaluate(false, 180),
            None,
            "the countdown restarts at 180"
        );
        assert_eq!(a.evaluate(false, 240), None);
        assert_eq!(a.evaluate(false, 300), Some(Transition::Resolved));
        assert!(!a.firing());
    }
}
