"""Emits logs and metrics with the real OpenTelemetry Python SDK, as an instrumented app
does, to an OTLP endpoint; used by tests/src/e2e/otlp.rs.

    emit.py grpc|http ENDPOINT SERVICE LINES

Logs: LINES records `line N` at INFO, then one `it failed` at ERROR. Metrics: a counter
`orders` (+5, route=/buy), a histogram `latency` (0.05, 0.2, 0.7 s) and a gauge
`queue_depth` (42). Everything is flushed before the script exits 0.
"""

import logging
import sys

from opentelemetry.sdk._logs import LoggerProvider, LoggingHandler
from opentelemetry.sdk._logs.export import SimpleLogRecordProcessor
from opentelemetry.sdk.metrics import MeterProvider
from opentelemetry.sdk.metrics.export import PeriodicExportingMetricReader
from opentelemetry.sdk.resources import Resource

protocol, endpoint, service, lines = sys.argv[1], sys.argv[2], sys.argv[3], int(sys.argv[4])

if protocol == "grpc":
    from opentelemetry.exporter.otlp.proto.grpc._log_exporter import OTLPLogExporter
    from opentelemetry.exporter.otlp.proto.grpc.metric_exporter import OTLPMetricExporter

    logs = OTLPLogExporter(endpoint=endpoint, insecure=True)
    metrics = OTLPMetricExporter(endpoint=endpoint, insecure=True)
else:
    from opentelemetry.exporter.otlp.proto.http._log_exporter import OTLPLogExporter
    from opentelemetry.exporter.otlp.proto.http.metric_exporter import OTLPMetricExporter

    logs = OTLPLogExporter(endpoint=f"{endpoint}/v1/logs")
    metrics = OTLPMetricExporter(endpoint=f"{endpoint}/v1/metrics")

resource = Resource.create({"service.name": service, "service.instance.id": "7", "team": "shop"})

logger_provider = LoggerProvider(resource=resource)
logger_provider.add_log_record_processor(SimpleLogRecordProcessor(logs))
log = logging.getLogger("shop.orders")
log.setLevel(logging.INFO)
log.addHandler(LoggingHandler(level=logging.INFO, logger_provider=logger_provider))
for i in range(1, lines + 1):
    log.info("line %d", i)
log.error("it failed")

reader = PeriodicExportingMetricReader(metrics, export_interval_millis=60_000)
meter_provider = MeterProvider(resource=resource, metric_readers=[reader])
meter = meter_provider.get_meter("shop.metrics", "1.0")
meter.create_counter("orders").add(5, {"route": "/buy"})
latency = meter.create_histogram("latency", unit="s")
for v in (0.05, 0.2, 0.7):
    latency.record(v)
meter.create_gauge("queue_depth").set(42)

ok = logger_provider.force_flush() and meter_provider.force_flush()
logger_provider.shutdown()
meter_provider.shutdown()
sys.exit(0 if ok else 1)
