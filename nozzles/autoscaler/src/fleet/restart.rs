//! What a fleet keeps across a restart (the service stores it under `--data-dir`): each
//! app's cooldowns and firing alerts, and the history.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

use super::alerting::change;
use super::{AlertChange, Effect, Fleet, explain};
use crate::alert::{State, Transition};
use crate::engine::Time;
use crate::history::Record;

/// A firing alert kept across a restart, with what identifies its rule (an alert comes
/// back only to the same rule at the same place) and what its resolution needs if the rule
/// is gone by then.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct KeptAlert {
    /// The rule's index in the policy.
    pub rule: usize,
    /// The rule's text, e.g. `cpu > 70 for 60 seconds`.
    pub summary: String,
    /// Metric type name.
    pub metric: String,
    /// The rule's adjustment.
    pub adjustment: String,
    /// The app's platform id when known.
    pub target: String,
    /// Its state (firing, since when).
    #[serde(flatten)]
    pub state: State,
}

impl Fleet {
    /// Every app's firing alerts, to keep across a restart. (A pending alert is not kept:
    /// after a pause its condition must hold again for the whole `for`.)
    pub fn firing_alerts(&self) -> BTreeMap<String, Vec<KeptAlert>> {
        let mut out = BTreeMap::new();
        for (key, m) in &self.apps {
            let kept: Vec<KeptAlert> = (0..m.policy.rules.len())
                .filter(|&i| matches!(m.alerts[i].state, State::Firing { .. }))
                .map(|i| {
                    let rule = &m.policy.rules[i];
                    KeptAlert {
                        rule: i,
                        summary: explain::rule_text(rule),
                        metric: rule.metric.name().to_owned(),
                        adjustment: explain::adjustment_text(rule),
                        target: m.target(),
                        state: m.alerts[i].state,
                    }
                })
                .collect();
            if !kept.is_empty() {
                out.insert(key.clone(), kept);
            }
        }
        out
    }

    /// Puts back firing alerts kept across a restart, at `now`. An alert whose rule is
    /// still there (same place, same text) keeps firing from when it started, announced
    /// again on the next tick (receivers drop an alert that is not re-sent), and is not
    /// resolved for want of data during the first stat window (the app's data is still
    /// arriving); one whose rule or policy went away meanwhile resolves on the next tick.
    pub fn restore_alerts(&mut self, kept: &BTreeMap<String, Vec<KeptAlert>>, now: Time) {
        let stat_window = self.settings.stat_window;
        for (key, alerts) in kept {
            for k in alerts {
                let State::Firing { since, .. } = k.state else {
                    continue;
                };
                let m = self.apps.get_mut(key);
                let same = m.as_ref().is_some_and(|m| {
                    m.policy
                        .rules
                        .get(k.rule)
                        .is_some_and(|r| explain::rule_text(r) == k.summary)
                });
                if let (true, Some(m)) = (same, m) {
                    m.alerts[k.rule].state = k.state;
                    m.alerts_held_until = now + stat_window;
                    let c = change(key, m, k.rule, Transition::Firing, since, now);
                    self.queued.push(Effect::Alert(c));
                    continue;
                }
                self.queued.push(Effect::Alert(AlertChange {
                    app: key.clone(),
                    target: k.target.clone(),
                    rule: k.rule,
                    metric: k.metric.clone(),
                    summary: k.summary.clone(),
                    adjustment: k.adjustment.clone(),
                    transition: Transition::Resolved,
                    value: None,
                    since,
                    at: now,
                }));
            }
        }
    }

    /// Each app's cooldowns: (scale-out blocked until, scale-in blocked until).
    pub fn cooldowns(&self) -> BTreeMap<String, (Option<Time>, Option<Time>)> {
        self.apps
            .iter()
            .map(|(k, m)| (k.clone(), (m.state.out_until, m.state.in_until)))
            .collect()
    }

    /// Puts back cooldowns and history kept across a restart (apps without a policy now
    /// keep their history only).
    pub fn restore(
        &mut self,
        cooldowns: &BTreeMap<String, (Option<Time>, Option<Time>)>,
        records: Vec<Record>,
    ) {
        for (key, (out_until, in_until)) in cooldowns {
            if let Some(m) = self.apps.get_mut(key) {
                (m.state.out_until, m.state.in_until) = (*out_until, *in_until);
            }
        }
        for r in records {
            self.history.push(r);
        }
    }
}
