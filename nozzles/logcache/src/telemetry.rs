//! The log cache's metrics, declared once (gathered by `hydrant::telemetry::all`).

hydrant_runtime::metrics! {
    INGRESS = "hydrant_logcache_ingress_envelopes_total", Counter,
        "Envelopes received from the Firehose and stored.";
    EVICTED = "hydrant_logcache_evicted_envelopes_total", Counter,
        "Envelopes evicted, by reason (per_source cap, memory budget).";
    ENVELOPES = "hydrant_logcache_envelopes", Gauge,
        "Envelopes held.";
    SOURCES = "hydrant_logcache_sources", Gauge,
        "Sources held.";
    SOURCE_ENVELOPES = "hydrant_logcache_source_envelopes", Gauge,
        "Envelopes held for the largest sources (top 100), by source_id.";
    MEMORY = "hydrant_logcache_memory_bytes", Gauge,
        "Bytes held by the cache, as accounted against the budget.";
    MEMORY_LIMIT = "hydrant_logcache_memory_limit_bytes", Gauge,
        "The memory budget.";
    READS = "hydrant_logcache_reads_total", Counter,
        "Read API requests, by status (ok, not_found, bad_request, too_large).";
    READ_ENVELOPES = "hydrant_logcache_read_envelopes_total", Counter,
        "Envelopes returned by the read API.";
    RECONNECTS = "hydrant_logcache_firehose_reconnects_total", Counter,
        "Firehose subscriptions re-established.";
    FORWARDED = "hydrant_logcache_forwarded_envelopes_total", Counter,
        "Cluster: envelopes received for a source another node owns, delivered to it.";
    FORWARD_DROPPED = "hydrant_logcache_forward_dropped_envelopes_total", Counter,
        "Cluster: envelopes for another node's source that could not be delivered (the owner is down, or its queue overflowed).";
}
