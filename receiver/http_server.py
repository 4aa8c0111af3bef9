"""OTLP/HTTP: POST /v1/traces, /v1/logs, /v1/metrics in protobuf or JSON, gzip or plain.

Answers in the request's encoding; failures carry a ``google.rpc.Status`` body (otlp.md §2b).
aiohttp decompresses ``Content-Encoding: gzip|deflate`` itself and enforces
``client_max_size`` on the decompressed bytes, which is the limit the specification means.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Awaitable, Callable

from aiohttp import web
from google.protobuf.message import DecodeError, Message
from google.rpc import status_pb2 as pb_status

from receiver import otlp_json
from receiver.admission import Admission
from receiver.auth import key_matches
from receiver.errors import (
    BAD_DATA,
    METHOD_NOT_ALLOWED,
    TIMEOUT,
    TOO_LARGE,
    UNAUTHENTICATED,
    UNSUPPORTED_MEDIA,
    ErrorKind,
    ReceiverError,
    retry_after_header,
)
from receiver.ingest import Ingest
from receiver.signals import ALL_SIGNALS, OtlpSignal

PROTOBUF = "application/x-protobuf"
JSON = "application/json"
_ENCODINGS = frozenset({"", "identity", "gzip", "deflate"})


def _encode(message: Message, content_type: str) -> bytes:
    return otlp_json.dumps(message) if content_type == JSON else message.SerializeToString()


def error_response(kind: ErrorKind, message: str, content_type: str, retry_after: int | None = None) -> web.Response:
    status = pb_status.Status(code=kind.grpc_code.value[0], message=message)
    headers = {"Retry-After": retry_after_header(retry_after)} if retry_after and kind.retryable else {}
    if kind is METHOD_NOT_ALLOWED:
        headers["Allow"] = "POST"
    content_type = content_type if content_type in (PROTOBUF, JSON) else JSON
    return web.Response(
        status=kind.http_status, body=_encode(status, content_type), content_type=content_type, headers=headers
    )


class OtlpHttpHandler:
    def __init__(
        self,
        ingest: Ingest,
        max_body_bytes: int,
        retry_after_seconds: int,
        admission: Admission,
        read_timeout: float,
        keys: tuple[str, ...] = (),
    ) -> None:
        self._keys = keys
        self._ingest = ingest
        self._max_body_bytes = max_body_bytes
        self._retry_after = retry_after_seconds
        self._admission = admission
        self._read_timeout = read_timeout

    def for_signal(self, signal: OtlpSignal) -> Callable[[web.Request], Awaitable[web.StreamResponse]]:
        async def handle(request: web.Request) -> web.StreamResponse:
            return await self._handle(signal, request)

        return handle

    async def _handle(self, signal: OtlpSignal, request: web.Request) -> web.StreamResponse:
        content_type = request.content_type
        if not key_matches(request.headers.get("Authorization", ""), self._keys):
            self._ingest.note_refused("http", signal.name, UNAUTHENTICATED.name)
            return error_response(
                UNAUTHENTICATED, "a valid 'Authorization: Bearer <key>' header is required", content_type
            )
        if request.method != "POST":
            self._ingest.note_refused("http", signal.name, METHOD_NOT_ALLOWED.name)
            return error_response(METHOD_NOT_ALLOWED, f"{request.method} is not allowed; use POST", content_type)
        if content_type not in (PROTOBUF, JSON):
            self._ingest.note_refused("http", signal.name, UNSUPPORTED_MEDIA.name)
            return error_response(
                UNSUPPORTED_MEDIA,
                f"Content-Type {content_type or '(none)'} is not supported; use {PROTOBUF} or {JSON}",
                JSON,
            )
        encoding = request.headers.get("Content-Encoding", "").strip().lower()
        if encoding not in _ENCODINGS:
            self._ingest.note_refused("http", signal.name, UNSUPPORTED_MEDIA.name)
            return error_response(
                UNSUPPORTED_MEDIA, f"Content-Encoding {encoding} is not supported; use gzip", content_type
            )
        # Admitted by its wire size before anything is read (a chunked body: the body limit).
        size = request.content_length if request.content_length is not None else self._max_body_bytes
        try:
            self._ingest.check_capacity()
            with self._admission.admit(min(size, self._max_body_bytes)):
                body = await self._read(request)
                message = self._decode(signal, body, content_type)
                result = await signal.export(self._ingest, message, "http")
        except ReceiverError as exc:
            self._ingest.note_refused("http", signal.name, exc.kind.name)
            if exc.kind.retryable and exc.kind is not TIMEOUT:
                await self._drain(request)
            return error_response(exc.kind, exc.message, content_type, self._retry_after)
        return web.Response(status=200, body=_encode(signal.response(result), content_type), content_type=content_type)

    async def _drain(self, request: web.Request) -> None:
        """Read and drop what is left of a refused body (up to DRAIN_LIMIT_BYTES): closing a
        socket with unread data makes the kernel send a reset, and the client would never see
        the 503 telling it when to retry."""
        remaining = DRAIN_LIMIT_BYTES
        with contextlib.suppress(Exception):
            async with asyncio.timeout(self._read_timeout):
                while remaining > 0:
                    chunk = await request.content.readany()
                    if not chunk:
                        return
                    remaining -= len(chunk)

    async def _read(self, request: web.Request) -> bytes:
        try:
            return await asyncio.wait_for(request.read(), self._read_timeout)
        except TimeoutError:
            raise ReceiverError(TIMEOUT, f"the body did not arrive within {self._read_timeout:g} s") from None
        except web.HTTPRequestEntityTooLarge:
            raise ReceiverError(
                TOO_LARGE, f"body exceeds the limit of {self._max_body_bytes} bytes after decompression"
            ) from None
        except Exception as exc:  # broken gzip / deflate stream, truncated chunked body
            raise ReceiverError(BAD_DATA, f"could not read the body: {type(exc).__name__}") from None

    @staticmethod
    def _decode(signal: OtlpSignal, body: bytes, content_type: str) -> Message:
        message = signal.request_type()
        if content_type == JSON:
            try:
                return otlp_json.parse(body, message)
            except otlp_json.JsonDecodeError as exc:
                raise ReceiverError(BAD_DATA, str(exc)) from None
        try:
            message.ParseFromString(body)
        except DecodeError as exc:
            raise ReceiverError(BAD_DATA, f"body is not a valid {signal.request_type.__name__}: {exc}") from None
        return message


DRAIN_LIMIT_BYTES = 1024 * 1024  # a refused body up to this size is read, so the 503 arrives

# After an early answer (413, 400) the rest of the body is not read: aiohttp would otherwise
# keep reading — and inflating — it on the event loop for up to 10 s ("lingering close").
LINGERING_TIME_SECONDS = 0.0


def build_otlp_app(
    ingest: Ingest,
    max_body_bytes: int,
    retry_after_seconds: int,
    admission: Admission,
    read_timeout: float,
    keys: tuple[str, ...] = (),
) -> web.Application:
    app = web.Application(client_max_size=max_body_bytes)
    handler = OtlpHttpHandler(ingest, max_body_bytes, retry_after_seconds, admission, read_timeout, keys)
    for signal in ALL_SIGNALS:
        app.router.add_route("*", signal.http_path, handler.for_signal(signal))
    return app
