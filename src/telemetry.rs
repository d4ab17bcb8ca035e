//! Every metric Hydrant exposes, declared in one place, and a Prometheus text writer that
//! refuses undeclared names (so dashboards can be checked against [`METRICS`]).
//!
//! Components keep their counters in atomics and render them on each `/metrics` scrape;
//! nothing is emitted from inside hot loops.

use std::fmt::Write as _;

/// Prometheus metric type.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Type {
    /// Monotonic.
    Counter,
    /// Goes up and down.
    Gauge,
}

/// A declared metric.
#[derive(Debug, Clone, Copy)]
pub struct Metric {
    /// Full name, `hydrant_<component>_…`.
    pub name: &'static str,
    /// Counter or gauge.
    pub kind: Type,
    /// One-line help text.
    pub help: &'static str,
}

macro_rules! metrics {
    ($($ident:ident = $name:literal, $kind:ident, $help:literal;)*) => {
        /// Metric name constants.
        pub mod names {
            $(
                #[doc = $help]
                pub const $ident: &str = $name;
            )*
        }
        /// All declared metrics.
        pub const METRICS: &[Metric] = &[
            $(Metric { name: $name, kind: Type::$kind, help: $help },)*
        ];
    };
}

metrics! {
    DOPPLER_INGRESS = "hydrant_doppler_ingress_envelopes_total", Counter,
        "Envelopes accepted from agents and emitters.";
    DOPPLER_INGRESS_BATCHES = "hydrant_doppler_ingress_batches_total", Counter,
        "Batches (or single-envelope messages) accepted.";
    DOPPLER_REJECTED = "hydrant_doppler_rejected_messages_total", Counter,
        "Ingress messages refused, by reason (malformed, invalid_utf8, oversized).";
    DOPPLER_INGRESS_STREAMS = "hydrant_doppler_ingress_streams", Gauge,
        "Open ingress streams.";
    DOPPLER_EGRESS = "hydrant_doppler_egress_envelopes_total", Counter,
        "Envelopes delivered to subscribers, by shard id.";
    DOPPLER_DROPPED = "hydrant_doppler_dropped_envelopes_total", Counter,
        "Envelopes dropped, by direction (ingress, egress) and shard id.";
    DOPPLER_SUBSCRIPTIONS = "hydrant_doppler_subscriptions", Gauge,
        "Open Firehose subscriptions, by shard id.";
    DOPPLER_SUBSCRIPTIONS_TOTAL = "hydrant_doppler_subscriptions_total", Counter,
        "Firehose subscriptions accepted since start.";
    DOPPLER_SUBSCRIPTIONS_REJECTED = "hydrant_doppler_subscriptions_rejected_total", Counter,
        "Firehose subscriptions refused (no selectors).";
    DOPPLER_BUFFERED = "hydrant_doppler_subscription_buffered_envelopes", Gauge,
        "Envelopes waiting in subscription buffers, by shard id.";
    AGENT_INGRESS = "hydrant_agent_ingress_envelopes_total", Counter,
        "Envelopes accepted from local emitters.";
    AGENT_REJECTED = "hydrant_agent_rejected_messages_total", Counter,
        "Ingress messages refused, by reason (malformed, invalid_utf8, oversized).";
    AGENT_EGRESS = "hydrant_agent_egress_envelopes_total", Counter,
        "Envelopes written to doppler streams.";
    AGENT_EGRESS_BATCHES = "hydrant_agent_egress_batches_total", Counter,
        "Batches written to doppler streams.";
    AGENT_DROPPED = "hydrant_agent_dropped_envelopes_total", Counter,
        "Envelopes dropped, by reason (overflow, oversize, shutdown).";
    AGENT_BUFFERED = "hydrant_agent_buffered_envelopes", Gauge,
        "Envelopes waiting to be sent to a doppler.";
    AGENT_DOPPLER_STREAMS = "hydrant_agent_doppler_streams", Gauge,
        "Open streams to dopplers.";
    AGENT_RECONNECTS = "hydrant_agent_reconnects_total", Counter,
        "Doppler streams re-established after a failure.";
    AGENT_DOPPLER_ERRORS = "hydrant_agent_doppler_errors_total", Counter,
        "Failed doppler connection attempts and broken streams.";
    AGENT_COUNTER_KEYS = "hydrant_agent_counter_aggregator_keys", Gauge,
        "Distinct counters whose totals the agent tracks.";
    CELL_APPS = "hydrant_cell_apps", Gauge,
        "Apps the cell is running (not deleted).";
    CELL_INSTANCES = "hydrant_cell_instances", Gauge,
        "Instance slots by state (STARTING, RUNNING, CRASHED, DOWN).";
    CELL_STARTS = "hydrant_cell_instance_starts_total", Counter,
        "Instance processes started.";
    CELL_CRASHES = "hydrant_cell_instance_crashes_total", Counter,
        "Instance crashes (unrequested exits and failed starts).";
    CELL_OOM_KILLS = "hydrant_cell_oom_kills_total", Counter,
        "Instances killed for exceeding their memory quota.";
    CELL_LOG_LINES = "hydrant_cell_log_lines_total", Counter,
        "Log lines read from instances.";
    CELL_LOG_LINES_RATE_LIMITED = "hydrant_cell_log_lines_rate_limited_total", Counter,
        "Log lines dropped by the per-instance log rate limit.";
    CELL_EMIT_DROPPED = "hydrant_cell_emit_dropped_envelopes_total", Counter,
        "Envelopes the cell could not hand to the agent.";
    UP = "hydrant_up", Gauge,
        "1 while the component runs, by component.";
}

/// Looks up a declared metric.
pub fn metric(name: &str) -> Option<&'static Metric> {
    METRICS.iter().find(|m| m.name == name)
}

/// Builds a Prometheus text exposition.
#[derive(Debug, Default)]
pub struct Text {
    out: String,
    last: &'static str,
}

impl Text {
    /// An empty exposition.
    pub fn new() -> Text {
        Text::default()
    }

    /// Writes one sample. Samples of one metric must be written consecutively.
    ///
    /// # Panics
    /// If `name` is not declared in [`METRICS`] (a programming error caught by tests).
    pub fn sample(&mut self, name: &'static str, labels: &[(&str, &str)], value: f64) {
        let m =
            metric(name).unwrap_or_else(|| panic!("metric {name} is not declared in telemetry"));
        if self.last != name {
            let kind = match m.kind {
                Type::Counter => "counter",
                Type::Gauge => "gauge",
            };
            let _ = writeln!(self.out, "# HELP {name} {}\n# TYPE {name} {kind}", m.help);
            self.last = name;
        }
        self.out.push_str(name);
        if !labels.is_empty() {
            self.out.push('{');
            for (i, (k, v)) in labels.iter().enumerate() {
                if i > 0 {
                    self.out.push(',');
                }
                let _ = write!(self.out, "{k}=\"{}\"", escape(v));
            }
            self.out.push('}');
        }
        let _ = writeln!(self.out, " {value}");
    }

    /// The finished exposition.
    pub fn finish(self) -> String {
        self.out
    }
}

fn escape(v: &str) -> String {
    v.replace('\\', "\\\\")
        .replace('"', "\\\"")
        .replace('\n', "\\n")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_are_unique_and_prefixed() {
        let mut seen = std::collections::HashSet::new();
        for m in METRICS {
            assert!(seen.insert(m.name), "{} declared twice", m.name);
            assert!(m.name.starts_with("hydrant_"), "{}", m.name);
            assert_eq!(
                m.kind == Type::Counter,
                m.name.ends_with("_total"),
                "{}",
                m.name
            );
        }
    }

    #[test]
    fn writes_help_once_and_escapes_labels() {
        let mut t = Text::new();
        t.sample(names::DOPPLER_EGRESS, &[("shard_id", "a\"b")], 1.0);
        t.sample(names::DOPPLER_EGRESS, &[("shard_id", "")], 2.0);
        let s = t.finish();
        assert_eq!(s.matches("# TYPE").count(), 1);
        assert!(
            s.contains(r#"hydrant_doppler_egress_envelopes_total{shard_id="a\"b"} 1"#),
            "{s}"
        );
    }
}
