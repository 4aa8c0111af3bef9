"""One table from failure kind to the OTLP answer on each transport (and whether to retry),
and the one log line a refused request gets.

OTLP/HTTP: 400 and 413 are final; 429/502/503/504 are retried (503 with Retry-After here).
OTLP/gRPC: INVALID_ARGUMENT and RESOURCE_EXHAUSTED-without-RetryInfo are final; UNAVAILABLE
with ``google.rpc.retryinfo-bin`` is retried after the delay.
"""

from __future__ import annotations

import logging
import math
import pickle
import random
import traceback
from dataclasses import dataclass
from urllib.parse import unquote

import grpc

log = logging.getLogger("dunetrace.receiver")


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
# A translation worker process stopped with the request in hand (dunetrace_sidecar/translation.py).
WORKER_LOST = ErrorKind("worker_lost", 503, grpc.StatusCode.UNAVAILABLE, retryable=True)
SHUTTING_DOWN = ErrorKind("shutting_down", 503, grpc.StatusCode.UNAVAILABLE, retryable=True)
# Not HTTP at all (a bad request line, a header over 8 KiB, TLS sent to a plain port): the
# HTTP server answers it itself, before any handler of ours runs.
BAD_HTTP = ErrorKind("bad_http", 400, grpc.StatusCode.INVALID_ARGUMENT, retryable=False)
# A fault of ours (a bug): final, so a request that will always fail is not retried forever.
INTERNAL = ErrorKind("internal", 500, grpc.StatusCode.INTERNAL, retryable=False)

INTERNAL_MESSAGE = "internal error; see the sidecar's log"
# Every kind by name (a worker's refusal crosses processes by it: ReceiverError.__reduce__).
KINDS = {kind.name: kind for kind in list(globals().values()) if isinstance(kind, ErrorKind)}


class ReceiverError(Exception):
    """Refuse a whole export request with ``kind``; ``message`` goes back to the sender.

    ``message`` is ours, written for the sender: never an exception's text, which can quote
    the payload or the library's internals. ``cause`` is the exception behind the refusal,
    if any: its class name goes into the log line, its traceback only at debug level.
    """

    def __init__(self, kind: ErrorKind, message: str, cause: BaseException | None = None) -> None:
        super().__init__(message)
        self.kind = kind
        self.message = message
        self.cause = cause

    def __reduce__(self) -> tuple[object, tuple[str, str, BaseException | None, str | None]]:
        """A translation worker's refusal reaches the daemon with the same ErrorKind object (the
        kinds are compared with ``is``) and its cause, with the cause's traceback as text (for
        the debug log line); a cause that does not pickle arrives as None."""
        cause = self.cause
        try:
            pickle.dumps(cause)
        except Exception:
            cause = None
        trace = "".join(traceback.format_exception(cause)) if cause is not None and cause.__traceback__ else None
        return _refused, (self.kind.name, self.message, cause, trace)


class RemoteTraceback(Exception):
    """Where a refusal's cause was raised, in another process: its traceback as text."""

    def __str__(self) -> str:
        return f"\n{self.args[0]}"


def _refused(kind: str, message: str, cause: BaseException | None, trace: str | None) -> ReceiverError:
    if cause is not None and trace is not None:
        cause.__cause__ = RemoteTraceback(trace)
    return ReceiverError(KINDS[kind], message, cause)


def log_refusal(listener: str, what: str, kind: ErrorKind, peer: str, cause: BaseException | None = None) -> None:
    """The one log line of a refused request: which listener, what was asked, why, from whom.

    Never the payload, never an exception's text (only its class name); the traceback only
    when the sidecar logs at debug. WARNING when the sender must change something (its data,
    its key, its setup); INFO for backpressure, which the exporters retry by themselves (the
    ``dunetrace_export_requests_total`` counter shows how much); ERROR for a fault of ours.
    """
    level = logging.ERROR if kind is INTERNAL else logging.INFO if kind.retryable else logging.WARNING
    if not log.isEnabledFor(level):
        return
    because = f" cause={type(cause).__name__}" if cause is not None else ""
    debug = cause is not None and log.isEnabledFor(logging.DEBUG)
    log.log(
        level,
        "refused %s %s reason=%s peer=%s%s",
        listener,
        what,
        kind.name,
        peer or "unknown",
        because,
        exc_info=(type(cause), cause, cause.__traceback__) if debug and cause is not None else None,
    )


def grpc_peer(peer: str | None) -> str:
    """grpc's ``ipv4:127.0.0.1:5000`` / ``ipv6:%5B::1%5D:5000`` as ``127.0.0.1:5000`` / ``[::1]:5000``."""
    text = unquote(peer or "")
    for prefix in ("ipv4:", "ipv6:"):
        if text.startswith(prefix):
            return text[len(prefix) :]
    return text


def retry_delay_seconds(base_seconds: int) -> float:
    """The delay to ask of a refused client: 1-3x the configured base, at random.

    Every client refused in one burst would otherwise come back in the same instant and be
    refused again together, while the store sits idle in between.
    """
    return base_seconds * random.uniform(1.0, 3.0)


def retry_after_header(base_seconds: int) -> str:
    """HTTP Retry-After takes whole seconds."""
    return str(math.ceil(retry_delay_seconds(base_seconds)))
