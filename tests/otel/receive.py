"""An OTLP/HTTP receiver that decodes with OpenTelemetry's official protobuf definitions
(PyPI `opentelemetry-proto`); used by tests/src/e2e/otlp_export.rs.

    receive.py PORT OUT_FILE

Each POST to /v1/logs or /v1/metrics is parsed as ExportLogsServiceRequest or
ExportMetricsServiceRequest and appended to OUT_FILE as one line of JSON
({"path": ..., "request": <protobuf JSON>}); the answer is the empty response message.
A body the official classes cannot parse is answered 400 and recorded as an error.
"""

import json
import sys
from http.server import BaseHTTPRequestHandler, HTTPServer

from google.protobuf.json_format import MessageToDict
from opentelemetry.proto.collector.logs.v1 import logs_service_pb2
from opentelemetry.proto.collector.metrics.v1 import metrics_service_pb2

port, out = int(sys.argv[1]), sys.argv[2]
KINDS = {
    "/v1/logs": (logs_service_pb2.ExportLogsServiceRequest, logs_service_pb2.ExportLogsServiceResponse),
    "/v1/metrics": (metrics_service_pb2.ExportMetricsServiceRequest, metrics_service_pb2.ExportMetricsServiceResponse),
}


class Handler(BaseHTTPRequestHandler):
    def do_POST(self):
        body = self.rfile.read(int(self.headers.get("content-length", 0)))
        kinds = KINDS.get(self.path)
        try:
            request = kinds[0]()
            request.ParseFromString(body)
            line = {"path": self.path, "content_type": self.headers.get("content-type"),
                    "request": MessageToDict(request)}
            status, answer = 200, kinds[1]().SerializeToString()
        except Exception as e:  # recorded for the test to see
            line = {"path": self.path, "error": str(e)}
            status, answer = 400, b""
        with open(out, "a") as f:
            f.write(json.dumps(line) + "\n")
        self.send_response(status)
        self.send_header("content-type", "application/x-protobuf")
        self.send_header("content-length", str(len(answer)))
        self.end_headers()
        self.wfile.write(answer)

    def log_message(self, *args):
        pass


HTTPServer(("127.0.0.1", port), Handler).serve_forever()
