//! The OTLP export nozzle's metrics, declared once (gathered by `hydrant::telemetry::all`).

hydrant_runtime::metrics! {
    RECEIVED = "hydrant_otlp_export_received_envelopes_total", Counter,
        "Envelopes received from the Firehose.";
    SENT = "hydrant_otlp_export_sent_total", Counter,
        "Log records and data points the endpoint accepted, by signal (logs, metrics).";
    DROPPED = "hydrant_otlp_export_dropped_envelopes_total", Counter,
        "Envelopes not exported, by reason (overflow: the queue was full; failed: every attempt failed; rejected: the endpoint refused them; unsupported: timers).";
    ERRORS = "hydrant_otlp_export_errors_total", Counter,
        "Failed export requests (each retry counts).";
    QUEUED = "hydrant_otlp_export_queued_envelopes", Gauge,
        "Envelopes waiting to be exported.";
    RECONNECTS = "hydrant_otlp_export_firehose_reconnects_total", Counter,
        "Firehose subscriptions re-established.";
}
