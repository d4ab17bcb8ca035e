//! Every metric the platform components (doppler, agent, cell) expose, declared in one
//! place ([`METRICS`]). The writer is `hydrant_runtime::metrics`; the app series are
//! `hydrant_runtime::series`; the `hydrant` binary gathers every crate's table.

pub use hydrant_runtime::metrics::{Metric, Text, Type};

hydrant_runtime::metrics! {
    DOPPLER_INGRESS = "hydrant_doppler_ingress_envelopes_total", Counter,
        "Envelopes accepted from agents and emitters.";
    DOPPLER_INGRESS_BATCHES = "hydrant_doppler_ingress_batches_total", Counter,
        "Batches (or single-envelope messages) accepted.";
    DOPPLER_REJECTED = "hydrant_doppler_rejected_messages_total", Counter,
        "Ingress messages refused, by reason (malformed, invalid_utf8, oversized, pending: the budget of half-received messages was full, slow: not received in full in time).";
    DOPPLER_PENDING_BYTES = "hydrant_doppler_pending_message_bytes", Gauge,
        "Bytes announced by gRPC messages being received (the --max-pending-bytes budget).";
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
        "Ingress messages refused, by reason (malformed, invalid_utf8, oversized, pending: the budget of half-received messages was full, slow: not received in full in time).";
    AGENT_PENDING_BYTES = "hydrant_agent_pending_message_bytes", Gauge,
        "Bytes announced by gRPC messages being received (the --max-pending-bytes budget).";
    AGENT_INGRESS_STREAMS = "hydrant_agent_ingress_streams", Gauge,
        "Open ingress streams from emitters.";
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
    AGENT_UNCONFIRMED = "hydrant_agent_unconfirmed_envelopes_total", Counter,
        "Envelopes written to a doppler stream in the last two ack timeouts (1.5 s) before it broke: possibly lost in flight to a host that went away (an upper bound).";
    AGENT_OTLP_LOGS = "hydrant_agent_otlp_log_envelopes_total", Counter,
        "Log envelopes made from OTLP log records (gRPC or HTTP).";
    AGENT_OTLP_METRICS = "hydrant_agent_otlp_metric_envelopes_total", Counter,
        "Metric envelopes made from OTLP data points (gRPC or HTTP).";
    AGENT_DRAINS = "hydrant_agent_drains", Gauge,
        "Syslog drains the agent writes to (one per drain URL and bound app, plus aggregate drains).";
    AGENT_DRAIN_SENT = "hydrant_agent_drain_sent_messages_total", Counter,
        "RFC 5424 messages written to syslog drains, by drain URL (without credentials or query) and scope (app, aggregate).";
    AGENT_DRAIN_DROPPED = "hydrant_agent_drain_dropped_envelopes_total", Counter,
        "Envelopes syslog drains lost (their buffer overflowed, or every retry failed), by drain URL and scope.";
    AGENT_DRAIN_ERRORS = "hydrant_agent_drain_errors_total", Counter,
        "Failed connections and writes to syslog drains, by drain URL and scope.";
    AGENT_DRAIN_INVALID = "hydrant_agent_drain_invalid_bindings", Gauge,
        "Bindings left out of the last poll because their drain URL cannot be used.";
    AGENT_DRAIN_REFRESH_ERRORS = "hydrant_agent_drain_binding_refresh_errors_total", Counter,
        "Polls of the scheduler's drain bindings that failed (the drains stay as they were).";
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

/// A text exposition for the metrics declared here.
pub fn text() -> Text {
    Text::new(METRICS)
}
