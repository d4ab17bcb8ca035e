//! The storage nozzle's metrics, declared once (gathered by `hydrant::telemetry::all`).

hydrant_runtime::metrics! {
    RECEIVED = "hydrant_storage_received_envelopes_total", Counter,
        "Firehose envelopes received.";
    INGESTED = "hydrant_storage_ingested_samples_total", Counter,
        "Samples stored (after the WAL sync when enabled).";
    REFUSED = "hydrant_storage_refused_samples_total", Counter,
        "Samples refused because their metric reached the series cap, by metric.";
    SERIES = "hydrant_storage_series", Gauge,
        "Series in the catalog.";
    BUFFER_ROWS = "hydrant_storage_buffer_rows", Gauge,
        "Samples in the write buffer (queryable, not yet in Parquet).";
    PARTS = "hydrant_storage_parquet_files", Gauge,
        "Parquet parts on disk.";
    PARTS_BYTES = "hydrant_storage_parquet_bytes", Gauge,
        "Bytes of Parquet parts on disk.";
    PART_CACHE_BYTES = "hydrant_storage_part_cache_bytes", Gauge,
        "Memory held by Parquet parts decoded for PromQL reads.";
    PART_CACHE_READS = "hydrant_storage_part_cache_reads_total", Counter,
        "PromQL part reads, by result (hit: the part was decoded in memory; miss: it was read from disk).";
    SEALED = "hydrant_storage_sealed_parts_total", Counter,
        "Parts written by sealing buffer partitions.";
    COMPACTIONS = "hydrant_storage_compactions_total", Counter,
        "Hours compacted into one part.";
    EXPIRED = "hydrant_storage_expired_hours_total", Counter,
        "Hours dropped by retention.";
    CORRUPT = "hydrant_storage_corrupt_records_total", Counter,
        "Damaged catalog lines and WAL records skipped when the store opened.";
    QUARANTINED = "hydrant_storage_quarantined_parts_total", Counter,
        "Damaged Parquet parts (empty, failing their checksum, no footer) moved to quarantine/ when the store opened, by table (metrics, logs).";
    UNSTORED = "hydrant_storage_unstored_envelopes_total", Counter,
        "Envelopes received but not stored because a write failed (a full disk).";
    LOG_ROWS = "hydrant_storage_log_rows", Gauge,
        "Log rows in memory, not yet in a Parquet part.";
    LOG_EVICTED = "hydrant_storage_log_rows_evicted_total", Counter,
        "Log rows dropped to keep the in-memory bound between two writes.";
    LOG_WRITTEN = "hydrant_storage_log_rows_written_total", Counter,
        "Log rows written to Parquet parts.";
    LOG_PARTS = "hydrant_storage_log_files", Gauge,
        "Parquet parts of the log table on disk.";
    LOG_BYTES = "hydrant_storage_log_bytes", Gauge,
        "Bytes of the log table's Parquet parts on disk.";
    QUERIES = "hydrant_storage_queries_total", Counter,
        "Queries, by API (query, query_range, sql) and result (ok, bad_data, execution).";
    ERRORS = "hydrant_storage_errors_total", Counter,
        "Ingest, maintenance and part-deletion errors, by stage (ingest, maintenance, delete).";
    SINK_SAMPLES = "hydrant_storage_sink_samples_total", Counter,
        "Samples forwarded, by sink and result (sent, failed after retries or refused, overflow of the queue).";
    SINK_RETRIES = "hydrant_storage_sink_retries_total", Counter,
        "Sink requests retried, by sink.";
    SINK_QUEUE = "hydrant_storage_sink_queue_samples", Gauge,
        "Samples waiting in each sink's queue.";
    RECONNECTS = "hydrant_storage_firehose_reconnects_total", Counter,
        "Firehose subscriptions re-established.";
    OBJECT_UPLOADS = "hydrant_storage_object_uploads_total", Counter,
        "Objects (parts, catalog segments, manifests) uploaded to the object store.";
    OBJECT_UPLOAD_BYTES = "hydrant_storage_object_upload_bytes_total", Counter,
        "Bytes uploaded to the object store.";
    OBJECT_GENERATION = "hydrant_storage_object_manifest_generation", Gauge,
        "Generation of the last manifest this node published.";
    OBJECT_PENDING = "hydrant_storage_object_pending_parts", Gauge,
        "Parts on local disk not yet published to the object store (as of the last sync).";
    OBJECT_DOWNLOADS = "hydrant_storage_object_downloads_total", Counter,
        "Peers' parts downloaded from the object store.";
    OBJECT_DOWNLOAD_BYTES = "hydrant_storage_object_download_bytes_total", Counter,
        "Bytes of peers' parts downloaded from the object store.";
    OBJECT_PEERS = "hydrant_storage_object_peers", Gauge,
        "Other storage nodes read from the object store.";
    OBJECT_PEER_SERIES = "hydrant_storage_object_peer_series", Gauge,
        "Series in each peer's catalog, by node.";
}
