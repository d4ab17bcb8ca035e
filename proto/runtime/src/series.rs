//! Series about apps rather than components: the cell's container metrics, and what the
//! storage nozzle derives from logs and `http` timers. The cell and the storage nozzle use
//! these names, and dashboards may use them too.

crate::metrics! {
    CPU = "cpu", Gauge,
        "CPU of an instance, percent of one core (cell container metric).";
    CPU_ENTITLEMENT = "cpu_entitlement", Gauge,
        "CPU of an instance as a percentage of its memory-proportional share of the cell.";
    MEMORY = "memory", Gauge,
        "Resident memory of an instance, bytes.";
    MEMORY_QUOTA = "memory_quota", Gauge,
        "Memory quota of an instance, bytes.";
    DISK = "disk", Gauge,
        "Disk used by an instance, bytes.";
    DISK_QUOTA = "disk_quota", Gauge,
        "Disk quota of an instance, bytes.";
    CONTAINER_AGE = "container_age", Gauge,
        "Time since the instance started, nanoseconds.";
    LOG_LINES = "log_lines_total", Counter,
        "Log lines, by source_id, instance_id, source_type and stream (storage nozzle).";
    HTTP_SECONDS = "http_seconds", Gauge,
        "Duration of each request, from `http` timers (storage nozzle).";
    HTTP_REQUESTS = "http_requests_total", Counter,
        "Requests, from `http` timers (storage nozzle).";
}
