//! Per-app aggregation: container gauges and `http` timers from the Firehose become the
//! app-level samples the engine judges, computed as Cloud Foundry's aggregator does. Pure:
//! callers pass envelopes and times.
//!
//! - Per instance sample (rounded up, as CF does): `cpu` = ⌈cpu⌉, `cpuutil` =
//!   ⌈cpu_entitlement⌉, `memoryused` = ⌈memory / MiB⌉, `memoryutil` = ⌈memory / memory_quota
//!   × 100⌉ (no value without a quota), `disk`/`diskutil` alike, custom metrics (any other
//!   gauge name a policy uses) ⌈value⌉. A usage and its quota that arrive in separate
//!   envelopes of one instance with one timestamp are merged (CF's envelope compaction).
//! - App-level value at `now`: the mean of every instance sample in the stat window
//!   `(now − window, now]`, rounded up, or no value (an *empty* aggregate, which blocks
//!   rules) when there is none.
//! - `throughput` and `responsetime` (CF's PromQL over the router's `http` timers with
//!   `peer_type=Client`, over its 40 s collection interval, or the stat window when
//!   shorter): per instance ⌈requests ÷ seconds⌉ and ⌈mean of `stop − start` in ms⌉, then
//!   ⌈the mean over the instances that served⌉; 0 without traffic.
//! - Samples are bucketed per second of event time, so memory per series is bounded by the
//!   window length, not by the sample rate.

use std::collections::{BTreeSet, HashMap, VecDeque};

use hydrant_proto::v2::{self, envelope::Message};

use crate::engine::{InstanceView, Time};
use crate::policy::MetricType;

const MIB: f64 = 1024.0 * 1024.0;

/// CF's collection interval (the eventgenerator's aggregator), over which it computes
/// throughput and response time.
pub const HTTP_WINDOW: Time = 40;

/// Gauges whose usage and quota CF merges across envelopes.
const PAIRED: [&str; 4] = ["memory", "memory_quota", "disk", "disk_quota"];

/// Sum and count of the samples of one second.
#[derive(Debug, Clone, Copy)]
struct Bucket {
    at: Time,
    sum: f64,
    count: u32,
}

/// A series of per-second buckets, pruned to the window.
#[derive(Debug, Clone, Default)]
struct Series {
    buckets: VecDeque<Bucket>,
}

impl Series {
    fn add(&mut self, at: Time, value: f64) {
        let i = self.buckets.partition_point(|b| b.at < at);
        match self.buckets.get_mut(i) {
            Some(b) if b.at == at => {
                b.sum += value;
                b.count += 1;
            }
            _ => self.buckets.insert(
                i,
                Bucket {
                    at,
                    sum: value,
                    count: 1,
                },
            ),
        }
    }

    fn prune(&mut self, oldest: Time) {
        while self.buckets.front().is_some_and(|b| b.at < oldest) {
            self.buckets.pop_front();
        }
    }

    /// Sum and count over `(from, to]`.
    fn total(&self, from: Time, to: Time) -> (f64, u32) {
        self.buckets
            .iter()
            .filter(|b| b.at > from && b.at <= to)
            .fold((0.0, 0), |(s, c), b| (s + b.sum, c + b.count))
    }
}

/// What one app's policy needs aggregated.
#[derive(Debug, Clone, Default)]
pub struct AppMetrics {
    series: HashMap<MetricType, Series>,
    /// `http` timer durations (ms) per second, per instance.
    http: HashMap<String, Series>,
    /// Usage and quota values of an instance at one timestamp (ns), until both arrive.
    partial: HashMap<(String, i64), HashMap<&'static str, f64>>,
    /// Instances that sent anything, with the last second they did.
    instances: HashMap<String, Time>,
    /// When each instance started (from `container_age`, else when first seen).
    started: HashMap<String, Time>,
    /// Latest per-instance value of the metrics tracked per instance (target tracking).
    latest: HashMap<MetricType, HashMap<String, (Time, f64)>>,
    wanted: BTreeSet<MetricType>,
    per_instance: BTreeSet<MetricType>,
}

fn ceil_some(v: f64) -> Option<f64> {
    v.is_finite().then(|| v.ceil())
}

impl AppMetrics {
    /// Aggregates the given metric types.
    pub fn new(wanted: impl IntoIterator<Item = MetricType>) -> AppMetrics {
        AppMetrics {
            wanted: wanted.into_iter().collect(),
            ..AppMetrics::default()
        }
    }

    /// Also keeps the latest value of each instance for these metrics.
    pub fn per_instance(mut self, metrics: impl IntoIterator<Item = MetricType>) -> AppMetrics {
        self.per_instance = metrics.into_iter().collect();
        self
    }

    /// The metric types aggregated.
    pub fn wanted(&self) -> &BTreeSet<MetricType> {
        &self.wanted
    }

    /// Takes one envelope of the app. Returns whether it contributed anything. Envelopes
    /// older than `now − window` or other kinds are ignored.
    pub fn observe(&mut self, env: &v2::Envelope, now: Time, window: Time) -> bool {
        let at = (env.timestamp / 1_000_000_000).min(now);
        if at <= now - window {
            return false;
        }
        let used = match &env.message {
            Some(Message::Gauge(g)) => {
                if let Some(age) = g.metrics.get("container_age") {
                    let started = at - (age.value / 1e9) as Time;
                    self.started.insert(env.instance_id.clone(), started);
                }
                let merged = self.merge_pairs(g, env.timestamp, &env.instance_id, now, window);
                self.gauge(merged.as_ref().unwrap_or(g), at, &env.instance_id)
            }
            Some(Message::Timer(t)) if t.name == "http" => {
                let peer = env.tags.get("peer_type").map(String::as_str);
                if peer == Some("Client") && self.wants_http() {
                    let ms = (t.stop - t.start).max(0) as f64 / 1e6;
                    self.http
                        .entry(env.instance_id.clone())
                        .or_default()
                        .add(at, ms);
                    true
                } else {
                    false
                }
            }
            _ => false,
        };
        if used {
            self.instances.insert(env.instance_id.clone(), at);
            self.started.entry(env.instance_id.clone()).or_insert(at);
        }
        used
    }

    /// A usage or quota that came without its partner, completed from an earlier envelope
    /// of the same instance and timestamp (CF compacts envelopes by source, instance and
    /// timestamp); `None` when `g` needs nothing.
    fn merge_pairs(
        &mut self,
        g: &v2::Gauge,
        ts: i64,
        instance: &str,
        now: Time,
        window: Time,
    ) -> Option<v2::Gauge> {
        let ratios = self.wanted.contains(&MetricType::MemoryUtil)
            || self.wanted.contains(&MetricType::DiskUtil);
        let has = |n: &str| g.metrics.contains_key(n);
        let unpaired = (has("memory") != has("memory_quota")) || (has("disk") != has("disk_quota"));
        if !ratios || !unpaired {
            return None;
        }
        self.partial
            .retain(|(_, t), _| t / 1_000_000_000 > now - window);
        let seen = self.partial.entry((instance.to_owned(), ts)).or_default();
        for name in PAIRED {
            if let Some(v) = g.metrics.get(name) {
                seen.insert(name, v.value);
            }
        }
        let mut merged = g.clone();
        for (name, value) in seen.iter() {
            merged
                .metrics
                .entry((*name).to_owned())
                .or_insert(v2::GaugeValue {
                    unit: "bytes".into(),
                    value: *value,
                });
        }
        Some(merged)
    }

    fn wants_http(&self) -> bool {
        self.wanted.contains(&MetricType::Throughput)
            || self.wanted.contains(&MetricType::ResponseTime)
    }

    fn gauge(&mut self, g: &v2::Gauge, at: Time, instance: &str) -> bool {
        let get = |name: &str| g.metrics.get(name).map(|v| v.value);
        let mut used = false;
        for metric in &self.wanted {
            let value = match metric {
                MetricType::Cpu => get("cpu").and_then(ceil_some),
                MetricType::CpuUtil => get("cpu_entitlement").and_then(ceil_some),
                MetricType::MemoryUsed => get("memory").and_then(|m| ceil_some(m / MIB)),
                MetricType::MemoryUtil => ratio(get("memory"), get("memory_quota")),
                MetricType::Disk => get("disk").and_then(|d| ceil_some(d / MIB)),
                MetricType::DiskUtil => ratio(get("disk"), get("disk_quota")),
                MetricType::Custom(name) => get(name).and_then(ceil_some),
                MetricType::Throughput | MetricType::ResponseTime => None,
            };
            if let Some(v) = value {
                self.series.entry(metric.clone()).or_default().add(at, v);
                if self.per_instance.contains(metric) {
                    let latest = self.latest.entry(metric.clone()).or_default();
                    match latest.get_mut(instance) {
                        Some(l) if l.0 > at => {}
                        Some(l) => *l = (at, v),
                        None => {
                            latest.insert(instance.to_owned(), (at, v));
                        }
                    }
                }
                used = true;
            }
        }
        used
    }

    /// The app-level value of `metric` at `now` over the stat window, and drops what has
    /// left the window.
    pub fn aggregate(&mut self, metric: &MetricType, now: Time, window: Time) -> Option<f64> {
        let from = now - window;
        match metric {
            MetricType::Throughput | MetricType::ResponseTime => {
                // The last `span` completed seconds: the current one is still arriving,
                // and counting it would undercount requests (CF counts the whole interval
                // up to now, all of which has arrived).
                let span = window.min(HTTP_WINDOW);
                let mut per_instance = Vec::new();
                self.http.retain(|_, series| {
                    series.prune(now - window.max(HTTP_WINDOW));
                    let (sum, count) = series.total(now - 1 - span, now - 1);
                    if count > 0 {
                        per_instance.push(if *metric == MetricType::Throughput {
                            (f64::from(count) / span as f64).ceil()
                        } else {
                            (sum / f64::from(count)).ceil()
                        });
                    }
                    !series.buckets.is_empty()
                });
                if per_instance.is_empty() {
                    return Some(0.0);
                }
                Some((per_instance.iter().sum::<f64>() / per_instance.len() as f64).ceil())
            }
            _ => {
                let series = self.series.get_mut(metric)?;
                series.prune(from + 1);
                let (sum, count) = series.total(from, now);
                (count > 0).then(|| (sum / f64::from(count)).ceil())
            }
        }
    }

    /// The latest value of each instance that reported `metric` within the window, split
    /// into ready instances and those younger than `initialization` seconds.
    pub fn instance_view(
        &mut self,
        metric: &MetricType,
        now: Time,
        window: Time,
        initialization: Time,
    ) -> Option<InstanceView> {
        let latest = self.latest.get_mut(metric)?;
        latest.retain(|_, (t, _)| *t > now - window);
        let mut view = InstanceView::default();
        for (instance, (_, v)) in latest.iter() {
            let started = self.started.get(instance).copied().unwrap_or(now);
            if now - started < initialization {
                view.unready += 1;
            } else {
                view.ready.push(*v);
            }
        }
        Some(view)
    }

    /// Distinct instances seen within the window (a count for actuators that cannot read
    /// one).
    pub fn instances(&mut self, now: Time, window: Time) -> usize {
        self.instances.retain(|_, t| *t > now - window);
        let live = &self.instances;
        self.started.retain(|i, _| live.contains_key(i));
        self.instances.len()
    }
}

fn ratio(used: Option<f64>, quota: Option<f64>) -> Option<f64> {
    match (used, quota) {
        (Some(u), Some(q)) if q > 0.0 => ceil_some(u / q * 100.0),
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use hydrant_proto::envelope;

    fn gauge(instance: &str, at: Time, metrics: &[(&str, f64)]) -> v2::Envelope {
        let mut e = envelope::gauge("app", metrics.iter().map(|(n, v)| (*n, *v, "")));
        e.instance_id = instance.into();
        e.timestamp = at * 1_000_000_000;
        e
    }

    fn http(instance: &str, at: Time, ms: i64) -> v2::Envelope {
        let mut e = envelope::timer("app", "http", 0, ms * 1_000_000);
        e.instance_id = instance.into();
        e.timestamp = at * 1_000_000_000;
        e.tags.insert("peer_type".into(), "Client".into());
        e
    }

    #[test]
    fn mean_of_every_instance_sample_in_the_window_rounded_up() {
        let mut m = AppMetrics::new([MetricType::Cpu, MetricType::MemoryUtil]);
        let q = 100.0 * MIB;
        assert!(m.observe(
            &gauge(
                "0",
                10,
                &[("cpu", 80.2), ("memory", 50.0 * MIB), ("memory_quota", q)]
            ),
            10,
            120
        ));
        m.observe(&gauge("1", 11, &[("cpu", 60.0)]), 11, 120);
        m.observe(&gauge("1", 12, &[("cpu", 40.0)]), 12, 120);
        // ⌈80.2⌉ = 81, 60, 40 → mean 60.33 → 61.
        assert_eq!(m.aggregate(&MetricType::Cpu, 12, 120), Some(61.0));
        assert_eq!(m.aggregate(&MetricType::MemoryUtil, 12, 120), Some(50.0));
        assert_eq!(m.instances(12, 120), 2);
        // Two minutes later the samples have left the window: an empty aggregate.
        assert_eq!(m.aggregate(&MetricType::Cpu, 131, 120), Some(40.0));
        assert_eq!(m.aggregate(&MetricType::Cpu, 132, 120), None);
        assert_eq!(m.instances(132, 120), 0);
    }

    #[test]
    fn metrics_no_policy_uses_are_not_kept() {
        let mut m = AppMetrics::new([MetricType::Custom("queue_depth".into())]);
        assert!(!m.observe(&gauge("0", 5, &[("cpu", 99.0)]), 5, 60));
        assert!(m.observe(&gauge("0", 5, &[("queue_depth", 0.25)]), 5, 60));
        assert_eq!(
            m.aggregate(&MetricType::Custom("queue_depth".into()), 5, 60),
            Some(1.0),
            "custom metrics are rounded up, as CF does"
        );
        assert_eq!(m.aggregate(&MetricType::Cpu, 5, 60), None);
    }

    #[test]
    fn memory_util_needs_a_quota() {
        let mut m = AppMetrics::new([MetricType::MemoryUtil]);
        assert!(!m.observe(&gauge("0", 5, &[("memory", MIB)]), 5, 60));
        assert!(!m.observe(
            &gauge("0", 5, &[("memory", MIB), ("memory_quota", 0.0)]),
            5,
            60
        ));
        assert_eq!(m.aggregate(&MetricType::MemoryUtil, 5, 60), None);
    }

    #[test]
    fn throughput_is_per_instance_and_response_time_a_mean_of_instance_means() {
        let mut m = AppMetrics::new([MetricType::Throughput, MetricType::ResponseTime]);
        assert_eq!(m.aggregate(&MetricType::Throughput, 100, 10), Some(0.0));
        assert_eq!(m.aggregate(&MetricType::ResponseTime, 100, 10), Some(0.0));
        for i in 0..40 {
            let instance = if i % 2 == 0 { "0" } else { "1" };
            m.observe(&http(instance, 90 + i % 10, 10 + i), 100, 10);
        }
        // 40 requests over 10 s on 2 instances: 2 rps per instance.
        assert_eq!(m.aggregate(&MetricType::Throughput, 100, 10), Some(2.0));
        // Instance 0: 10, 12, …, 48 ms (mean 29); instance 1: 11, …, 49 (mean 30).
        assert_eq!(m.aggregate(&MetricType::ResponseTime, 100, 10), Some(30.0));
        let mut server = http("0", 100, 5);
        server.tags.insert("peer_type".into(), "Server".into());
        assert!(
            !m.observe(&server, 100, 10),
            "only the router's (client) timers count"
        );
        let mut untagged = http("0", 100, 5);
        untagged.tags.remove("peer_type");
        assert!(
            !m.observe(&untagged, 100, 10),
            "nor timers without a peer type"
        );
    }

    /// The numbers: 10 ms at 10/s on one instance and 400 ms at 1/s on another
    /// give CF's 205 ms (a request-weighted mean would say 45).
    #[test]
    fn response_time_weighs_instances_not_requests() {
        let mut m = AppMetrics::new([MetricType::ResponseTime, MetricType::Throughput]);
        for s in 0..40 {
            for _ in 0..10 {
                m.observe(&http("fast", 60 + s, 10), 100, 120);
            }
            m.observe(&http("slow", 60 + s, 400), 100, 120);
        }
        assert_eq!(
            m.aggregate(&MetricType::ResponseTime, 100, 120),
            Some(205.0)
        );
        // Over CF's 40 s: 10 rps and 1 rps, mean 5.5, rounded up.
        assert_eq!(m.aggregate(&MetricType::Throughput, 100, 120), Some(6.0));
    }

    /// Usage and quota in separate envelopes of one instance and timestamp are one sample.
    #[test]
    fn split_memory_envelopes_are_merged() {
        let mut m = AppMetrics::new([MetricType::MemoryUtil]);
        let q = 100.0 * MIB;
        assert!(!m.observe(&gauge("0", 10, &[("memory", 25.0 * MIB)]), 10, 60));
        assert!(m.observe(&gauge("0", 10, &[("memory_quota", q)]), 10, 60));
        assert_eq!(m.aggregate(&MetricType::MemoryUtil, 10, 60), Some(25.0));
        // Another instance's quota, or another timestamp's, does not complete it.
        assert!(!m.observe(&gauge("1", 11, &[("memory", 25.0 * MIB)]), 11, 60));
        assert!(!m.observe(&gauge("0", 12, &[("memory", 90.0 * MIB)]), 12, 60));
        assert_eq!(m.aggregate(&MetricType::MemoryUtil, 12, 60), Some(25.0));
    }

    #[test]
    fn late_and_future_samples() {
        let mut m = AppMetrics::new([MetricType::Cpu]);
        assert!(
            !m.observe(&gauge("0", 10, &[("cpu", 50.0)]), 200, 120),
            "too old"
        );
        assert!(m.observe(&gauge("0", 900, &[("cpu", 50.0)]), 200, 120));
        assert_eq!(
            m.aggregate(&MetricType::Cpu, 200, 120),
            Some(50.0),
            "a clock ahead of ours counts as now"
        );
    }
}
