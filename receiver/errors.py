"""One table from failure kind to the OTLP answer on each transport (and whether to retry).

OTLP/HTTP: 400 and 413 are final; 429/502/503/504 are retried (503 with Retry-After here).
OTLP/gRPC: INVALID_ARGUMENT and RESOURCE_EXHAUSTED-without-RetryInfo are final; UNAVAILABLE
with ``google.rpc.retryinfo-bin`` is retried after the delay.
"""

from __future__ import annotations

import math
import random
from dataclasses import dataclass

import grpc


@dataclass(frozen=True, slots=True)
class ErrorKind:
    name: str
    http_status: int
    grpc_code: grpc.StatusCode
    retryable: bool


UNAUTHENTICATED = ErrorKind("unauthenticated", 401, grpc.StatusCode.UNAUTHENTICATED, retryable=False)
BAD_DATA = ErrorKind("bad_data", 400, grpc.StatusCode.INVALID_ARGUMENT, retryable=False)
TOO_LARGE = ErrorKind("too_large", 413, grpc.StatusCode.RESOURCE_EXHAUSTED, retryable=False)
UNSUPPORTED_MEDIA = ErrorKind("unsupported_media_type", 415, grpc.StatusCode.INVALID_ARGUMENT, retryable=False)
METHOD_NOT_ALLOWED = ErrorKind("method_not_allowed", 405, grpc.StatusCode.UNIMPLEMENTED, retryable=False)
QUEUE_FULL = ErrorKind("queue_full", 503, grpc.StatusCode.UNAVAILABLE, retryable=True)
# The body did not arrive in time: the connection is closed; exporters retry 408.
TIMEOUT = ErrorKind("timeout", 408, grpc.StatusCode.DEADLINE_EXCEEDED, retryable=True)
BUSY = ErrorKind("busy", 503, grpc.StatusCode.UNAVAILABLE, retryable=True)  # in-flight bound reached
STORE_UNAVAILABLE = ErrorKind("store_unavailable", 503, grpc.StatusCode.UNAVAILABLE, retryable=True)
SHUTTING_DOWN = ErrorKind("shutting_down", 503, grpc.StatusCode.UNAVAILABLE, retryable=True)


class ReceiverError(Exception):
    """Refuse a whole export request with ``kind``; ``message`` goes back to the sender."""

    def __init__(self, kind: ErrorKind, message: str) -> None:
        super().__init__(message)
        self.kind = kind
        self.message = message


def retry_delay_seconds(base_seconds: int) -> float:
    """The delay to ask of a refused client: 1-3x the configured base, at random.

    Every client refused in one burst would otherwise come back in the same instant and be
    refused again together, while the store sits idle in between.
    """
    return base_seconds * random.uniform(1.0, 3.0)


def retry_after_header(base_seconds: int) -> str:
    """HTTP Retry-After takes whole seconds."""
    return str(math.ceil(retry_delay_seconds(base_seconds)))
