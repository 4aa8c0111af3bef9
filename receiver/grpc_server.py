"""OTLP/gRPC: the Trace, Logs and Metrics services on grpc.aio.

Handlers take the raw request bytes and hand them on undecoded (``EncodedRequest``: they are
decoded where they are translated, in a worker process); a message that does not decode gets
INVALID_ARGUMENT (grpc's own deserializer failure would surface as a non-retryable INTERNAL).
gzip message compression and the receive size limit (RESOURCE_EXHAUSTED) are grpc's.
Backpressure is UNAVAILABLE with a ``google.rpc.RetryInfo`` in the ``google.rpc.retryinfo-bin``
trailer (what the Python exporter reads) and in ``grpc-status-details-bin``.
"""

from __future__ import annotations

from collections.abc import Callable, Coroutine
from typing import Any

import grpc
from google.protobuf import any_pb2, duration_pb2
from google.rpc import error_details_pb2 as pb_error_details
from google.rpc import status_pb2 as pb_status

from receiver.admission import Admission
from receiver.auth import key_matches
from receiver.errors import (
    INTERNAL,
    INTERNAL_MESSAGE,
    UNAUTHENTICATED,
    ReceiverError,
    grpc_peer,
    log_refusal,
    retry_delay_seconds,
)
from receiver.ingest import EncodedRequest, Ingest
from receiver.signals import ALL_SIGNALS, OtlpSignal

RETRY_INFO_KEY = "google.rpc.retryinfo-bin"
STATUS_DETAILS_KEY = "grpc-status-details-bin"

Handler = Callable[[bytes, grpc.aio.ServicerContext], Coroutine[Any, Any, bytes]]


def _retry_trailers(code: grpc.StatusCode, message: str, base_seconds: int) -> tuple[tuple[str, bytes], ...]:
    delay = duration_pb2.Duration()
    delay.FromNanoseconds(int(retry_delay_seconds(base_seconds) * 1e9))
    retry_info = pb_error_details.RetryInfo(retry_delay=delay)
    detail = any_pb2.Any()
    detail.Pack(retry_info)
    status = pb_status.Status(code=code.value[0], message=message, details=[detail])
    return (
        (RETRY_INFO_KEY, retry_info.SerializeToString()),
        (STATUS_DETAILS_KEY, status.SerializeToString()),
    )


class OtlpGrpcHandlers:
    def __init__(self, ingest: Ingest, retry_after_seconds: int, admission: Admission, keys: tuple[str, ...]) -> None:
        self._keys = keys
        self._ingest = ingest
        self._retry_after = retry_after_seconds
        self._admission = admission

    def generic_handlers(self) -> list[grpc.GenericRpcHandler]:
        return [
            grpc.method_handlers_generic_handler(
                signal.grpc_service, {"Export": grpc.unary_unary_rpc_method_handler(self._export(signal))}
            )
            for signal in ALL_SIGNALS
        ]

    def _export(self, signal: OtlpSignal) -> Handler:
        async def export(body: bytes, context: grpc.aio.ServicerContext) -> bytes:
            try:
                metadata = dict(context.invocation_metadata() or ())
                if not key_matches(str(metadata.get("authorization", "")), self._keys):
                    raise ReceiverError(UNAUTHENTICATED, "a valid 'authorization: Bearer <key>' metadata is required")
                self._ingest.check_capacity()
                with self._admission.admit(len(body)):
                    result = await signal.export(self._ingest, EncodedRequest(body, "grpc"), "grpc")
                return signal.response(result).SerializeToString()
            except ReceiverError as exc:
                refusal = exc
            except Exception as exc:  # a fault of ours: one line (traceback at debug), no text to the sender
                # (grpc would log the traceback and send its text as the status details)
                refusal = ReceiverError(INTERNAL, INTERNAL_MESSAGE, cause=exc)
            self._ingest.note_refused("grpc", signal.name, refusal.kind.name)
            log_refusal(
                "otlp_grpc", f"{signal.grpc_service}/Export", refusal.kind, grpc_peer(context.peer()), refusal.cause
            )
            code = refusal.kind.grpc_code
            trailers = _retry_trailers(code, refusal.message, self._retry_after) if refusal.kind.retryable else ()
            await context.abort(code, refusal.message, trailing_metadata=trailers)
            raise AssertionError("unreachable: abort() raises")

        return export


def build_grpc_server(
    ingest: Ingest,
    max_message_bytes: int,
    retry_after_seconds: int,
    admission: Admission,
    keys: tuple[str, ...] = (),
    handshake_timeout_seconds: int = 120,
) -> grpc.aio.Server:
    server = grpc.aio.server(
        options=[
            # A connection must finish its handshake (TLS, then HTTP/2's) this soon.
            ("grpc.server_handshake_timeout_ms", handshake_timeout_seconds * 1000),
            ("grpc.max_receive_message_length", max_message_bytes),
            ("grpc.max_send_message_length", 4 * 1024 * 1024),
            # Connections that go quiet are dropped (keepalive pings from us, unanswered).
            ("grpc.keepalive_time_ms", 60_000),
            ("grpc.keepalive_timeout_ms", 20_000),
            ("grpc.max_connection_idle_ms", 300_000),
        ],
        # A hard ceiling beyond admission control (refused by grpc itself: RESOURCE_EXHAUSTED).
        maximum_concurrent_rpcs=admission.max_requests * 4,
    )
    server.add_generic_rpc_handlers(OtlpGrpcHandlers(ingest, retry_after_seconds, admission, keys).generic_handlers())
    return server
