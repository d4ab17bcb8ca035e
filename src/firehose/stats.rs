//! Loss, duplicate and latency accounting for `hydrant firehose --stats`. Pure: the caller
//! supplies receipt times.

use std::collections::HashMap;

/// Sequence numbers seen for one source.
#[derive(Debug, Default)]
struct Seen {
    min: u64,
    max: u64,
    distinct: u64,
    bits: Vec<u64>,
}

impl Seen {
    /// Records `seq`; returns false for a duplicate.
    fn insert(&mut self, seq: u64) -> bool {
        let (word, bit) = ((seq / 64) as usize, seq % 64);
        if word >= self.bits.len() {
            self.bits.resize(word + 1, 0);
        }
        if self.bits[word] & (1 << bit) != 0 {
            return false;
        }
        self.bits[word] |= 1 << bit;
        if self.distinct == 0 {
            (self.min, self.max) = (seq, seq);
        } else {
            self.min = self.min.min(seq);
            self.max = self.max.max(seq);
        }
        self.distinct += 1;
        true
    }

    fn lost(&self) -> u64 {
        if self.distinct == 0 {
            0
        } else {
            self.max - self.min + 1 - self.distinct
        }
    }
}

/// Sequence numbers above this are not tracked (a bitmap per source would be too large);
/// they are counted in `untracked`.
pub const MAX_TRACKED_SEQ: u64 = 1 << 32;

/// Running accounting.
#[derive(Debug, Default)]
pub struct Stats {
    received: u64,
    duplicates: u64,
    untracked: u64,
    sources: HashMap<String, Seen>,
    latencies_us: Vec<u32>,
    first_ns: Option<i64>,
    last_ns: i64,
}

/// The summary printed at the end.
#[derive(Debug, Clone, PartialEq, serde::Serialize)]
pub struct Summary {
    /// Envelopes received.
    pub received: u64,
    /// Received divided by the time from the first to the last envelope received.
    pub rate: f64,
    /// Sequence gaps per source (from the lowest to the highest number seen), summed.
    pub lost: u64,
    /// Envelopes whose (source, seq) was already seen.
    pub duplicates: u64,
    /// Envelopes without a usable `seq` tag.
    pub untracked: u64,
    /// Latency percentiles from envelope timestamp to receipt.
    pub p50_ms: f64,
    /// 99th percentile.
    pub p99_ms: f64,
    /// Maximum.
    pub max_ms: f64,
}

impl Stats {
    /// Records one envelope received at `now_ns`.
    pub fn record(&mut self, source_id: &str, seq: Option<u64>, timestamp_ns: i64, now_ns: i64) {
        self.received += 1;
        self.first_ns.get_or_insert(now_ns);
        self.last_ns = now_ns;
        let latency_us = ((now_ns - timestamp_ns).max(0) / 1000).min(u32::MAX as i64) as u32;
        self.latencies_us.push(latency_us);
        match seq {
            Some(seq) if seq < MAX_TRACKED_SEQ => {
                let seen = match self.sources.get_mut(source_id) {
                    Some(s) => s,
                    None => self.sources.entry(source_id.to_owned()).or_default(),
                };
                if !seen.insert(seq) {
                    self.duplicates += 1;
                }
            }
            _ => self.untracked += 1,
        }
    }

    /// Envelopes recorded so far.
    pub fn received(&self) -> u64 {
        self.received
    }

    /// The summary.
    pub fn finish(mut self) -> Summary {
        self.latencies_us.sort_unstable();
        let pct = |p: f64| -> f64 {
            if self.latencies_us.is_empty() {
                return 0.0;
            }
            let i = ((self.latencies_us.len() as f64 * p).ceil() as usize)
                .clamp(1, self.latencies_us.len());
            self.latencies_us[i - 1] as f64 / 1000.0
        };
        let span_s = self
            .first_ns
            .map_or(0.0, |f| (self.last_ns - f) as f64 / 1e9);
        Summary {
            received: self.received,
            rate: if span_s > 0.0 {
                self.received as f64 / span_s
            } else {
                0.0
            },
            lost: self.sources.values().map(Seen::lost).sum(),
            duplicates: self.duplicates,
            untracked: self.untracked,
            p50_ms: pct(0.50),
            p99_ms: pct(0.99),
            max_ms: pct(1.0),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn counts_gaps_duplicates_and_percentiles() {
        let mut s = Stats::default();
        let ms = 1_000_000;
        for (i, seq) in [0u64, 1, 2, 5, 5, 6].into_iter().enumerate() {
            s.record("a", Some(seq), 0, (i as i64 + 1) * ms);
        }
        s.record("b", Some(10), 0, 7 * ms);
        s.record("b", None, 0, 8 * ms);
        let sum = s.finish();
        assert_eq!(sum.received, 8);
        assert_eq!(sum.lost, 2, "3 and 4 missing from a; b has one number only");
        assert_eq!(sum.duplicates, 1);
        assert_eq!(sum.untracked, 1);
        assert_eq!(sum.p50_ms, 4.0);
        assert_eq!(sum.max_ms, 8.0);
        assert!((sum.rate - 8.0 / 0.007).abs() < 1e-6);
    }
}
