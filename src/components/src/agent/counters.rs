//! Counter totals, as Loggregator's agent keeps them: emitters send `delta`; the agent adds
//! it to a running `total` per (source id, name, tags). An envelope that already carries a
//! total (or no delta) is taken as given and resets the running total to it. Pure.

use std::collections::HashMap;
use std::hash::{DefaultHasher, Hash, Hasher};

use hydrant_proto::v2::{Envelope, envelope::Message};

/// Distinct counters tracked before the table is cleared. Clearing restarts totals from the
/// next delta, which consumers see as a counter reset (Prometheus `rate` handles resets);
/// without a bound, a source that puts a request id in a tag would grow the table forever.
pub const MAX_COUNTER_KEYS: usize = 100_000;

/// Running totals.
#[derive(Debug, Default)]
pub struct Totals {
    totals: HashMap<(String, String, u64), u64>,
    /// How many times the table was cleared for exceeding [`MAX_COUNTER_KEYS`].
    pub resets: u64,
}

fn tags_hash(env: &Envelope) -> u64 {
    let mut tags: Vec<(&String, &String)> = env.tags.iter().collect();
    tags.sort();
    let mut h = DefaultHasher::new();
    tags.hash(&mut h);
    h.finish()
}

impl Totals {
    /// Fills in `total` for a counter envelope; other envelopes are untouched.
    pub fn apply(&mut self, env: &mut Envelope) {
        let Some(Message::Counter(counter)) = &env.message else {
            return;
        };
        let key = (env.source_id.clone(), counter.name.clone(), tags_hash(env));
        if !self.totals.contains_key(&key) && self.totals.len() >= MAX_COUNTER_KEYS {
            self.totals.clear();
            self.resets += 1;
        }
        let slot = self.totals.entry(key).or_insert(0);
        let Some(Message::Counter(counter)) = &mut env.message else {
            return;
        };
        if counter.total == 0 && counter.delta != 0 {
            *slot = slot.wrapping_add(counter.delta);
            counter.total = *slot;
        } else {
            *slot = counter.total;
        }
    }

    /// Counters tracked.
    pub fn len(&self) -> usize {
        self.totals.len()
    }

    /// Whether none are tracked.
    pub fn is_empty(&self) -> bool {
        self.totals.is_empty()
    }
}

#[cfg(test)]
mod tests {
    use hydrant_proto::envelope::counter;

    use super::*;

    fn total(e: &Envelope) -> u64 {
        match &e.message {
            Some(Message::Counter(c)) => c.total,
            _ => panic!("not a counter"),
        }
    }

    #[test]
    fn deltas_accumulate_per_source_name_and_tags() {
        let mut t = Totals::default();
        let mut a = counter("s", "req", 2);
        t.apply(&mut a);
        let mut b = counter("s", "req", 3);
        t.apply(&mut b);
        assert_eq!((total(&a), total(&b)), (2, 5));
        let mut other_tags = counter("s", "req", 1);
        other_tags.tags.insert("k".into(), "v".into());
        t.apply(&mut other_tags);
        assert_eq!(total(&other_tags), 1);
        let mut other_source = counter("s2", "req", 7);
        t.apply(&mut other_source);
        assert_eq!(total(&other_source), 7);
    }

    #[test]
    fn a_given_total_is_kept_and_becomes_the_base() {
        let mut t = Totals::default();
        let mut e = counter("s", "req", 1);
        if let Some(Message::Counter(c)) = &mut e.message {
            c.total = 100;
        }
        t.apply(&mut e);
        assert_eq!(total(&e), 100);
        let mut next = counter("s", "req", 1);
        t.apply(&mut next);
        assert_eq!(total(&next), 101);
    }
}
