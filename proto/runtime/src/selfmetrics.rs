//! A component's own metrics as envelopes. Every interval the component's `/metrics`
//! exposition is turned into counter and gauge envelopes and sent through an agent, so its
//! health travels the pipeline like any app's metrics: source_id is the component's name
//! (`doppler`, `agent`, …, as Loggregator's components do) and the storage nozzle keeps
//! them under the same names `/metrics` shows. Process memory and CPU are added here.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;

use hydrant_proto::envelope;
use hydrant_proto::ingress::{self, IngressClient};
use hydrant_proto::transport::{self, Tls};
use hydrant_proto::v2::{self, Envelope, envelope::Message};

use crate::admin::Observe;
use crate::lifecycle::{Lifecycle, Phase};

crate::metrics! {
    PROCESS_MEMORY = "hydrant_process_resident_memory_bytes", Gauge,
        "Resident memory of the component's process (sent as an envelope only).";
    PROCESS_CPU = "hydrant_process_cpu_milliseconds_total", Counter,
        "CPU time of the component's process, user and system, in ms (envelopes carry whole totals).";
}

/// A sample's labels, in exposition order.
type Labels = Vec<(String, String)>;

/// Default time between two self-metrics snapshots.
pub const DEFAULT_INTERVAL: Duration = Duration::from_secs(10);

/// Queue bound of the self-metrics client, in envelopes: a few snapshots, so a missing
/// agent costs a little memory and the counted drops, never the component's data path.
pub const QUEUE_ENVELOPES: usize = 2_000;

/// Queue bound in bytes.
pub const QUEUE_BYTES: usize = 4 * 1024 * 1024;

/// Time allowed for the last snapshot to leave on shutdown.
const CLOSE_GRACE: Duration = Duration::from_secs(1);

/// Where and how a component sends its own metrics.
#[derive(Debug, Clone)]
pub struct SelfMetrics {
    /// Agent ingress address.
    pub agent: String,
    /// mTLS to the agent.
    pub tls: Option<Tls>,
    /// `source_id` of the envelopes: the component's name.
    pub source_id: String,
    /// `instance_id`: tells several instances of a component apart (e.g. its address).
    pub instance_id: String,
    /// Time between snapshots.
    pub interval: Duration,
}

/// Registers the sender with `life` when `config` is set: a snapshot every interval, and
/// a last one when the flush phase begins, handed to the agent within the grace period.
pub fn register<E: std::fmt::Display + Send + 'static>(
    life: &mut Lifecycle<E>,
    observe: Arc<dyn Observe>,
    config: Option<&SelfMetrics>,
) -> Result<(), transport::Error> {
    let Some(config) = config.cloned() else {
        return Ok(());
    };
    let mut ingress_config = ingress::Config::new(vec![config.agent.clone()]);
    ingress_config.tls = config.tls.clone();
    ingress_config.buffer_envelopes = QUEUE_ENVELOPES;
    ingress_config.buffer_bytes = QUEUE_BYTES;
    let client = IngressClient::start(ingress_config)?;
    let flush = life.token(Phase::Flush);
    let deadline = life.deadline();
    life.spawn(Phase::Flush, "self-metrics", async move {
        let mut tick = tokio::time::interval(config.interval.max(Duration::from_millis(100)));
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            let last = tokio::select! {
                _ = tick.tick() => false,
                () = flush.cancelled() => true,
            };
            let text = observe.metrics();
            let now = envelope::now_nanos();
            let mut batch = envelopes(&text, &config.source_id, &config.instance_id, now);
            batch.extend(process_envelopes(
                &config.source_id,
                &config.instance_id,
                now,
            ));
            for e in &batch {
                client.send_envelope(e);
            }
            if last {
                break;
            }
        }
        client
            .close(deadline.remaining(CLOSE_GRACE).min(CLOSE_GRACE))
            .await;
        Ok(())
    });
    Ok(())
}

/// Converts a Prometheus text exposition into envelopes: each counter sample becomes a
/// counter envelope carrying its `total`, and gauge samples sharing labels become one gauge
/// envelope. Labels become tags. Lines that do not parse are skipped.
pub fn envelopes(text: &str, source_id: &str, instance_id: &str, timestamp: i64) -> Vec<Envelope> {
    let mut counters = BTreeMap::new();
    let mut out = Vec::new();
    let mut gauges: BTreeMap<Labels, Vec<(String, f64)>> = BTreeMap::new();
    for line in text.lines() {
        if let Some(rest) = line.strip_prefix("# TYPE ") {
            if let Some((name, kind)) = rest.split_once(' ') {
                counters.insert(name.to_owned(), kind.trim() == "counter");
            }
            continue;
        }
        if line.starts_with('#') || line.trim().is_empty() {
            continue;
        }
        let Ok(crate::exposition::Sample {
            name,
            labels,
            value,
            ..
        }) = crate::exposition::parse(line)
        else {
            continue;
        };
        if counters.get(&name).copied().unwrap_or(false) {
            let mut e = envelope::counter(source_id, name, 0);
            if let Some(Message::Counter(c)) = &mut e.message {
                c.total = if value.is_finite() && value > 0.0 {
                    value as u64
                } else {
                    0
                };
            }
            out.push(finish(e, instance_id, timestamp, labels));
        } else {
            gauges.entry(labels).or_default().push((name, value));
        }
    }
    for (labels, metrics) in gauges {
        let e = envelope::gauge(source_id, metrics.iter().map(|(n, v)| (n.as_str(), *v, "")));
        out.push(finish(e, instance_id, timestamp, labels));
    }
    out
}

fn finish(mut e: Envelope, instance_id: &str, timestamp: i64, labels: Labels) -> Envelope {
    e.instance_id = instance_id.to_owned();
    e.timestamp = timestamp;
    e.tags.extend(labels);
    e
}

/// Resident memory and CPU time of this process, from /proc (none elsewhere).
fn process_envelopes(source_id: &str, instance_id: &str, timestamp: i64) -> Vec<Envelope> {
    let mut out = Vec::new();
    if let Some(rss) = resident_bytes() {
        let e = envelope::gauge(source_id, [(names::PROCESS_MEMORY, rss as f64, "bytes")]);
        out.push(finish(e, instance_id, timestamp, Vec::new()));
    }
    if let Some(cpu) = cpu_seconds() {
        let mut e = envelope::counter(source_id, names::PROCESS_CPU, 0);
        if let Some(Message::Counter(c)) = &mut e.message {
            c.total = (cpu * 1000.0) as u64;
        }
        out.push(finish(e, instance_id, timestamp, Vec::new()));
    }
    out
}

fn resident_bytes() -> Option<u64> {
    let status = std::fs::read_to_string("/proc/self/status").ok()?;
    let line = status.lines().find(|l| l.starts_with("VmRSS:"))?;
    let kib: u64 = line.split_whitespace().nth(1)?.parse().ok()?;
    Some(kib * 1024)
}

/// Clock ticks per second of /proc's CPU times (`USER_HZ`, 100 on every Linux ABI).
const USER_HZ: f64 = 100.0;

fn cpu_seconds() -> Option<f64> {
    let stat = std::fs::read_to_string("/proc/self/stat").ok()?;
    // Fields after the parenthesised command name: state is field 3, utime 14, stime 15.
    let after = &stat[stat.rfind(')')? + 2..];
    let fields: Vec<&str> = after.split_whitespace().collect();
    let utime: f64 = fields.get(11)?.parse().ok()?;
    let stime: f64 = fields.get(12)?.parse().ok()?;
    Some((utime + stime) / USER_HZ)
}

/// The value of a counter or gauge envelope named `name`, for tests and tools.
pub fn value_of(e: &Envelope, name: &str) -> Option<f64> {
    match &e.message {
        Some(Message::Counter(c)) if c.name == name => Some(c.total as f64),
        Some(Message::Gauge(v2::Gauge { metrics })) => metrics.get(name).map(|g| g.value),
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const TEXT: &str = "# HELP hydrant_x_in_total In.\n# TYPE hydrant_x_in_total counter\n\
        hydrant_x_in_total{direction=\"ingress\",shard_id=\"a\\\"b\"} 42\n\
        hydrant_x_in_total{direction=\"egress\",shard_id=\"\"} 7\n\
        # TYPE hydrant_x_buffered gauge\nhydrant_x_buffered 3.5\n\
        # TYPE hydrant_x_open gauge\nhydrant_x_open 2\nhydrant_x_open{shard_id=\"s\"} 1\n\
        garbage line\n";

    #[test]
    fn counters_carry_totals_and_gauges_group_by_labels() {
        let out = envelopes(TEXT, "doppler", "127.0.0.1:8081", 5);
        let counters: Vec<_> = out
            .iter()
            .filter(|e| matches!(e.message, Some(Message::Counter(_))))
            .collect();
        assert_eq!(counters.len(), 2);
        assert_eq!(value_of(counters[0], "hydrant_x_in_total"), Some(42.0));
        assert_eq!(counters[0].tags["shard_id"], "a\"b");
        assert_eq!(counters[0].tags["direction"], "ingress");
        assert_eq!(counters[0].source_id, "doppler");
        assert_eq!(counters[0].instance_id, "127.0.0.1:8081");
        assert_eq!(counters[0].timestamp, 5);
        let gauges: Vec<_> = out
            .iter()
            .filter(|e| matches!(e.message, Some(Message::Gauge(_))))
            .collect();
        assert_eq!(gauges.len(), 2, "unlabelled gauges share one envelope");
        let plain = gauges.iter().find(|e| e.tags.is_empty()).unwrap();
        assert_eq!(value_of(plain, "hydrant_x_buffered"), Some(3.5));
        assert_eq!(value_of(plain, "hydrant_x_open"), Some(2.0));
        let sharded = gauges.iter().find(|e| !e.tags.is_empty()).unwrap();
        assert_eq!(value_of(sharded, "hydrant_x_open"), Some(1.0));
    }

    #[test]
    fn process_metrics_are_read() {
        let out = process_envelopes("agent", "0", 1);
        assert_eq!(out.len(), 2);
        assert!(value_of(&out[0], names::PROCESS_MEMORY).unwrap() > 1e6);
    }
}
