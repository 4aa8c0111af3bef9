"""Fake alert receivers on 127.0.0.1: a Slack incoming webhook, a generic webhook, a redirect target.

``Recorder`` is an aiohttp app served from a background thread (``BackgroundAiohttpServer``: port 0 the
first time, the *same* port after ``stop()``/``start()``, with everything recorded kept). It records every
request (method, path, headers, the raw body, when it arrived) and answers ``200`` with the text ``ok``, as
a Slack incoming webhook does, unless it has been told otherwise:

- ``fail(status, times, retry_after=...)``: the next ``times`` requests get ``status`` (e.g. 500, or 429 /
  503 with a ``Retry-After`` header); ``times=None`` answers it for ever;
- ``redirect(location, times=None)``: answer ``302`` with ``Location: location``;
- ``stop()``: the port is closed (connection refused) until ``start()``.

Rules queue up in order; each one is used up before the next applies. ``Blackhole`` is a listening socket
that never accepts: a connection succeeds at the TCP level but no answer ever comes (a hung destination).
"""

from __future__ import annotations

import json
import socket
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, Self

from aiohttp import web

from tests.fakes.langfuse_server import BackgroundAiohttpServer

DEFAULT_PATH = "/hooks/alerts"


@dataclass(frozen=True)
class Received:
    """One request as the receiver saw it."""

    method: str
    path: str
    headers: dict[str, str]  # names lowercased (HTTP header names are case-insensitive)
    body: bytes  # exactly the bytes on the wire (after transfer decoding)
    received_at: float  # time.time()
    received_monotonic: float  # time.monotonic(), comparable with the test's own clock
    status: int  # what the receiver answered

    @property
    def text(self) -> str:
        return self.body.decode()

    def json(self) -> Any:
        return json.loads(self.body)


@dataclass
class _Rule:
    status: int
    remaining: int | None  # None: for ever
    headers: dict[str, str]
    body: str


class Recorder(BackgroundAiohttpServer):
    """Records every request; answers ``ok_status`` / ``ok_body`` unless a queued rule says otherwise."""

    thread_name = "fake-alert-receiver"

    def __init__(self, ok_status: int = 200, ok_body: str = "ok", path: str = DEFAULT_PATH) -> None:
        super().__init__()
        self.ok_status = ok_status
        self.ok_body = ok_body
        self.path = path
        self._lock = threading.Lock()
        self._received: list[Received] = []
        self._rules: list[_Rule] = []

    # --- knobs ---------------------------------------------------------------------------

    def fail(self, status: int, times: int | None = 1, retry_after: float | str | None = None) -> Self:
        headers = {} if retry_after is None else {"Retry-After": str(retry_after)}
        with self._lock:
            self._rules.append(_Rule(status, times, headers, f"fake failure {status}"))
        return self

    def redirect(self, location: str, times: int | None = None, status: int = 302) -> Self:
        with self._lock:
            self._rules.append(_Rule(status, times, {"Location": location}, "moved"))
        return self

    def reset_rules(self) -> None:
        with self._lock:
            self._rules.clear()

    # --- what arrived --------------------------------------------------------------------

    @property
    def url(self) -> str:
        return self.base_url + self.path

    @property
    def received(self) -> list[Received]:
        with self._lock:
            return list(self._received)

    @property
    def posts(self) -> list[Received]:
        return [r for r in self.received if r.method == "POST"]

    def posts_where(self, predicate: Callable[[Received], bool]) -> list[Received]:
        return [r for r in self.posts if predicate(r)]

    def posts_mentioning(self, needle: str) -> list[Received]:
        """POSTs whose raw body contains ``needle`` (e.g. a run id or a signal id)."""
        return self.posts_where(lambda r: needle.encode() in r.body)

    # --- the app -------------------------------------------------------------------------

    def make_app(self) -> web.Application:
        app = web.Application(client_max_size=16 * 1024 * 1024)
        app.router.add_route("*", "/{tail:.*}", self._handle)
        return app

    async def _handle(self, request: web.Request) -> web.StreamResponse:
        body = await request.read()
        with self._lock:
            rule = self._rules[0] if self._rules else None
            if rule is not None and rule.remaining is not None:
                rule.remaining -= 1
                if rule.remaining <= 0:
                    self._rules.pop(0)
            status = rule.status if rule else self.ok_status
            self._received.append(
                Received(
                    method=request.method,
                    path=request.path,
                    headers={k.lower(): v for k, v in request.headers.items()},
                    body=body,
                    received_at=time.time(),
                    received_monotonic=time.monotonic(),
                    status=status,
                )
            )
        if rule is None:
            return web.Response(status=self.ok_status, text=self.ok_body, content_type="text/plain")
        return web.Response(status=rule.status, text=rule.body, headers=rule.headers, content_type="text/plain")


class Blackhole:
    """A listening socket on 127.0.0.1 that never accepts: connects succeed, no reply ever comes."""

    def __init__(self) -> None:
        self._sock: socket.socket | None = None
        self.port = 0

    def start(self) -> Self:
        sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        sock.bind(("127.0.0.1", 0))
        sock.listen(64)
        self._sock, self.port = sock, int(sock.getsockname()[1])
        return self

    def stop(self) -> None:
        if self._sock is not None:
            self._sock.close()
            self._sock = None

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}{DEFAULT_PATH}"

    def __enter__(self) -> Self:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()
