"""Plain OpenTelemetry SDK setup pointing at the capture receiver, plus the addresses every stack script uses.

OTLP_PROTO=grpc|http (default http); OTLP_ENDPOINT overrides the default receiver address
(http: base URL such as http://127.0.0.1:27318; grpc: host:port).
FAKE_BASE_URL overrides the fake LLM's base URL (default http://127.0.0.1:27500, no /v1).
"""

import os

from opentelemetry import trace
from opentelemetry.sdk.resources import Resource
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import BatchSpanProcessor

RECEIVER_HTTP = "http://127.0.0.1:27318"
RECEIVER_GRPC = "127.0.0.1:27317"
FAKE_URL = os.environ.get("FAKE_BASE_URL", "http://127.0.0.1:27500").rstrip("/")


def otlp_endpoint(proto: str = "http") -> str:
    return os.environ.get("OTLP_ENDPOINT", RECEIVER_GRPC if proto == "grpc" else RECEIVER_HTTP)


def setup(service_name: str, logs: bool = False):
    proto = os.environ.get("OTLP_PROTO", "http")
    res = Resource.create({"service.name": service_name})
    tp = TracerProvider(resource=res)
    if proto == "grpc":
        from opentelemetry.exporter.otlp.proto.grpc.trace_exporter import OTLPSpanExporter

        ep = otlp_endpoint("grpc")
        exp = OTLPSpanExporter(endpoint=ep, insecure=True)
    else:
        from opentelemetry.exporter.otlp.proto.http.trace_exporter import OTLPSpanExporter

        ep = otlp_endpoint("http")
        exp = OTLPSpanExporter(endpoint=ep.rstrip("/") + "/v1/traces")
    tp.add_span_processor(BatchSpanProcessor(exp))
    trace.set_tracer_provider(tp)
    lp = None
    if logs:
        from opentelemetry._logs import set_logger_provider
        from opentelemetry.sdk._logs import LoggerProvider
        from opentelemetry.sdk._logs.export import BatchLogRecordProcessor

        lp = LoggerProvider(resource=res)
        if proto == "grpc":
            from opentelemetry.exporter.otlp.proto.grpc._log_exporter import OTLPLogExporter

            lexp = OTLPLogExporter(endpoint=ep, insecure=True)
        else:
            from opentelemetry.exporter.otlp.proto.http._log_exporter import OTLPLogExporter

            lexp = OTLPLogExporter(endpoint=ep.rstrip("/") + "/v1/logs")
        lp.add_log_record_processor(BatchLogRecordProcessor(lexp))
        set_logger_provider(lp)
    print(f"[otel] service.name={service_name} proto={proto} endpoint={ep}", flush=True)
    return tp, lp
