"""The protobuf messages the sidecar speaks, in one place (imported with a ``pb_`` alias).

OTLP itself comes from the ``opentelemetry-proto`` distribution and ``google.rpc`` from
``googleapis-common-protos``; nothing is generated in this repository.
"""

from google.rpc import error_details_pb2 as pb_error_details
from google.rpc import status_pb2 as pb_status
from opentelemetry.proto.collector.logs.v1 import logs_service_pb2 as pb_logs_service
from opentelemetry.proto.collector.metrics.v1 import metrics_service_pb2 as pb_metrics_service
from opentelemetry.proto.collector.trace.v1 import trace_service_pb2 as pb_trace_service
from opentelemetry.proto.common.v1 import common_pb2 as pb_common
from opentelemetry.proto.logs.v1 import logs_pb2 as pb_logs
from opentelemetry.proto.trace.v1 import trace_pb2 as pb_trace

__all__ = [
    "pb_common",
    "pb_error_details",
    "pb_logs",
    "pb_logs_service",
    "pb_metrics_service",
    "pb_status",
    "pb_trace",
    "pb_trace_service",
]
