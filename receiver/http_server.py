"""OTLP/HTTP: POST /v1/traces, /v1/logs, /v1/metrics in protobuf or JSON, gzip or plain.

Answers in the request's encoding; failures carry a ``google.rpc.Status`` body (otlp.md §2b).
``Content-Encoding: gzip|deflate`` bodies are inflated here, not by aiohttp (whose inflater
accepts a stream cut short and answers 200 for what it never read): the body limit holds for
the bytes on the wire and for the inflated bytes, a stream that does not end as its format
says is refused, and the inflated bytes count against admission's in-flight bound.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import zlib
from collections.abc import Awaitable, Callable
from typing import Any

from aiohttp import web
from aiohttp.http_exceptions import HttpProcessingError
from google.protobuf.message import Message
from google.rpc import status_pb2 as pb_status

from receiver import otlp_json
from receiver.admission import Admission
from receiver.auth import key_matches
from receiver.errors import (
    BAD_DATA,
    BAD_HTTP,
    INTERNAL,
    INTERNAL_MESSAGE,
    METHOD_NOT_ALLOWED,
    TIMEOUT,
    TOO_LARGE,
    UNAUTHENTICATED,
    UNSUPPORTED_MEDIA,
    ErrorKind,
    ReceiverError,
    log,
    log_refusal,
    retry_after_header,
)
from receiver.ingest import EncodedRequest, Ingest
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
        try:
            return await self._answer(signal, request, content_type)
        except ReceiverError as exc:
            self._refused(signal, request, exc)
            if exc.kind.retryable and exc.kind is not TIMEOUT:
                await self._drain(request)
            return error_response(exc.kind, exc.message, content_type, self._retry_after)
        except Exception as exc:  # a fault of ours: one line (traceback at debug), no text to the sender
            self._refused(signal, request, ReceiverError(INTERNAL, INTERNAL_MESSAGE, cause=exc))
            return error_response(INTERNAL, INTERNAL_MESSAGE, content_type)

    def _refused(self, signal: OtlpSignal, request: web.Request, exc: ReceiverError) -> None:
        self._ingest.note_refused("http", signal.name, exc.kind.name)
        log_refusal("otlp_http", request.path, exc.kind, http_peer(request), exc.cause)

    async def _answer(self, signal: OtlpSignal, request: web.Request, content_type: str) -> web.StreamResponse:
        if not key_matches(request.headers.get("Authorization", ""), self._keys):
            raise ReceiverError(UNAUTHENTICATED, "a valid 'Authorization: Bearer <key>' header is required")
        if request.method != "POST":
            raise ReceiverError(METHOD_NOT_ALLOWED, f"{request.method} is not allowed; use POST")
        if content_type not in (PROTOBUF, JSON):
            raise ReceiverError(
                UNSUPPORTED_MEDIA,
                f"Content-Type {content_type or '(none)'} is not supported; use {PROTOBUF} or {JSON}",
            )
        encoding = request.headers.get("Content-Encoding", "").strip().lower()
        if encoding not in _ENCODINGS:
            raise ReceiverError(UNSUPPORTED_MEDIA, f"Content-Encoding {encoding} is not supported; use gzip")
        # Admitted by its wire size before anything is read (a chunked body: the body limit).
        size = request.content_length if request.content_length is not None else self._max_body_bytes
        self._ingest.check_capacity()
        admitted = min(size, self._max_body_bytes)
        with self._admission.admit(admitted) as grow:
            body = await self._read(request)
            if encoding in ("gzip", "deflate"):
                body = inflate(body, encoding, self._max_body_bytes)
                grow(max(0, len(body) - admitted))
            encoded = EncodedRequest(body, "json" if content_type == JSON else "protobuf")
            result = await signal.export(self._ingest, encoded, "http")
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
            raise ReceiverError(TOO_LARGE, f"body exceeds the limit of {self._max_body_bytes} bytes") from None
        except Exception as exc:  # a truncated chunked body, a connection lost mid-body
            raise ReceiverError(BAD_DATA, "the body could not be read (cut short)", cause=exc) from None


DRAIN_LIMIT_BYTES = 1024 * 1024  # a refused body up to this size is read, so the 503 arrives

# After an early answer (413, 400) the rest of the body is not read: aiohttp would otherwise
# keep reading — and inflating — it on the event loop for up to 10 s ("lingering close").
LINGERING_TIME_SECONDS = 0.0


def http_peer(request: web.BaseRequest) -> str:
    """``host:port`` of the client (``[v6]:port``), from the socket, never from a header."""
    transport = request.transport
    peername = transport.get_extra_info("peername") if transport is not None else None
    if isinstance(peername, tuple) and len(peername) >= 2:
        host, port = str(peername[0]), peername[1]
        return f"[{host}]:{port}" if ":" in host else f"{host}:{port}"
    return request.remote or ""


class ServerLog(logging.LoggerAdapter):
    """aiohttp's server logger for one listener (``AppRunner(logger=...)``).

    aiohttp answers what is not HTTP (a bad request line, a header over 8 KiB, TLS sent to a
    plain port) itself, before any handler runs, and logs it at ERROR with a traceback. Here
    that is one refusal line like ours (reason ``bad_http``, the exception's class name, the
    traceback only at debug), and ``on_bad_http`` counts it.
    """

    def __init__(self, listener: str, on_bad_http: Callable[[], None] | None = None) -> None:
        super().__init__(logging.getLogger("aiohttp.server"), {})
        self._listener = listener
        self._on_bad_http = on_bad_http

    def log(self, level: int, msg: object, *args: Any, **kwargs: Any) -> None:
        exc_info = kwargs.get("exc_info")
        cause = exc_info if isinstance(exc_info, BaseException) else None
        if isinstance(msg, str) and msg.startswith("Error handling request"):
            peer = str(args[0]) if args else ""
            if isinstance(cause, HttpProcessingError):
                if self._on_bad_http is not None:
                    self._on_bad_http()
                log_refusal(self._listener, "-", BAD_HTTP, peer, cause)
            else:  # a handler raised: ours catch everything, so this is a bug
                log_refusal(self._listener, "-", INTERNAL, peer, cause)
            return
        if level >= logging.ERROR and cause is not None:  # e.g. "Unhandled exception"
            debug = log.isEnabledFor(logging.DEBUG)
            log.error("%s: %s on %s", msg, type(cause).__name__, self._listener, exc_info=cause if debug else None)
            return
        super().log(level, msg, *args, **kwargs)


def inflate(body: bytes, encoding: str, limit: int) -> bytes:
    """A gzip (one member or several, as concatenated files are) or deflate body, inflated to at
    most ``limit`` bytes; refused when it is broken, cut short or followed by anything else."""
    if encoding == "deflate":  # RFC 9110: zlib-wrapped; some clients send it raw
        wbits = zlib.MAX_WBITS if len(body) >= 2 and (body[0] * 256 + body[1]) % 31 == 0 else -zlib.MAX_WBITS
    else:
        wbits = 16 + zlib.MAX_WBITS
    if not body:
        return body
    out: list[bytes] = []
    size = 0
    rest = body
    try:
        while True:
            inflater = zlib.decompressobj(wbits)
            while rest:  # bounded steps: a bomb is refused after limit + 1 bytes, never inflated whole
                chunk = inflater.decompress(rest, limit + 1 - size)
                size += len(chunk)
                out.append(chunk)
                if size > limit:
                    raise ReceiverError(TOO_LARGE, f"body exceeds the limit of {limit} bytes after decompression")
                rest = inflater.unconsumed_tail
                if inflater.eof:
                    break
            if not inflater.eof:
                raise ReceiverError(BAD_DATA, f"the {encoding} stream ends before its end (cut short)")
            rest = inflater.unused_data
            if not rest:
                return b"".join(out)
            if wbits != 16 + zlib.MAX_WBITS:
                raise ReceiverError(BAD_DATA, f"bytes follow the end of the {encoding} stream")
    except zlib.error as exc:
        raise ReceiverError(BAD_DATA, f"the body is not a valid {encoding} stream", cause=exc) from None


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
