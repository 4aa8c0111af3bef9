"""Fakes for the Dunetrace SDK's side of the wire (tests/sdk), on 127.0.0.1 in the test process.

* ``IngestProxy`` stands between the SDK and the real daemon: it answers ``503`` + ``Retry-After`` to the first
  ``fail_first`` ``POST /v1/ingest`` requests itself, and forwards every other request (ingest, policies,
  detector-config, ...) to the daemon unchanged, answering with the daemon's answer (``502`` when the daemon cannot
  be reached, e.g. after a kill -9: retryable for the SDK). Every exchange is recorded, with the events it carried.
* ``StubBackend`` answers what the SDK 0.5.7 expects without any daemon (ingest ``200 {"accepted": n}``, policies
  ``{"policies": [...]}``, detector-config ``schema_version`` 1), recording the same way: for checking the scenario
  scripts on their own.

``sign_policy`` signs a policy the way the SDK 0.5.7 verifies it (wire.md §7), for serving signed policies from
the stub. Every wait is bounded. The SDK opens one connection per request (``Connection: close``).
"""

from __future__ import annotations

import hashlib
import hmac
import http.client
import json
import threading
import time
import urllib.parse
from abc import abstractmethod
from collections.abc import Callable
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler
from typing import Any

from tests.fakes.local_server import LocalHTTPServer

HOP_HEADERS = {"connection", "keep-alive", "transfer-encoding", "host", "content-length", "proxy-connection"}


@dataclass
class Exchange:
    """One request the SDK made and the answer it got."""

    method: str
    path: str
    query: dict[str, list[str]]
    headers: dict[str, str]
    body: Any  # parsed JSON, or None
    target: str = ""  # the request target as sent (path and query)
    status: int = 0
    answered_by: str = ""  # "proxy" (scripted failure or stub) or "upstream"
    at: float = field(default_factory=time.monotonic)

    @property
    def events(self) -> list[dict[str, Any]]:
        if self.path == "/v1/ingest" and isinstance(self.body, dict):
            return [e for e in self.body.get("events") or [] if isinstance(e, dict)]
        return []

    @property
    def ok(self) -> bool:
        return 200 <= self.status < 300


class _RecordingServer(LocalHTTPServer):
    name = "recording"

    def __init__(self) -> None:
        self.exchanges: list[Exchange] = []
        self._cond = threading.Condition()
        super().__init__(self.name)

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    # --- what was seen -------------------------------------------------------------------------

    def snapshot(self) -> list[Exchange]:
        with self._cond:
            return list(self.exchanges)

    def ingests(self) -> list[Exchange]:
        return [x for x in self.snapshot() if x.method == "POST" and x.path == "/v1/ingest"]

    def delivered_events(self) -> list[dict[str, Any]]:
        """Events of every ingest POST answered 2xx, in arrival order (a retried batch counts once per 2xx)."""
        return [e for x in self.ingests() if x.ok for e in x.events]

    def wait_until(self, predicate: Callable[[list[Exchange]], bool], timeout: float = 30.0, what: str = "") -> None:
        deadline = time.monotonic() + timeout
        with self._cond:
            while not predicate(list(self.exchanges)):
                left = deadline - time.monotonic()
                if left <= 0:
                    raise AssertionError(f"{self.name}: timed out after {timeout}s waiting for {what or predicate}")
                self._cond.wait(min(left, 0.5))

    # --- request handling ---------------------------------------------------------------------

    @abstractmethod
    def answer(self, exchange: Exchange, raw: bytes) -> tuple[int, dict[str, str], bytes]:
        """The fake's reply to one request: (status, headers, body)."""

    def _handler_class(self) -> type[BaseHTTPRequestHandler]:
        fake = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def _any(self) -> None:
                length = int(self.headers.get("Content-Length") or 0)
                raw = self.rfile.read(length) if length else b""
                split = urllib.parse.urlsplit(self.path)
                try:
                    body = json.loads(raw) if raw else None
                except ValueError:
                    body = None
                exchange = Exchange(
                    method=self.command,
                    path=split.path,
                    query=urllib.parse.parse_qs(split.query, keep_blank_values=True),
                    headers=dict(self.headers.items()),
                    body=body,
                    target=self.path,
                )
                try:
                    status, headers, payload = fake.answer(exchange, raw)
                except Exception as exc:  # a broken fake must show up in the test, not hang it
                    status, headers = 500, {"Content-Type": "application/json"}
                    payload = json.dumps({"error": f"{fake.name}: {type(exc).__name__}: {exc}"}).encode()
                exchange.status = status
                self.send_response(status)
                for key, value in headers.items():
                    if key.lower() not in HOP_HEADERS:
                        self.send_header(key, value)
                self.send_header("Content-Length", str(len(payload)))
                self.send_header("Connection", "close")
                self.end_headers()
                if self.command != "HEAD":
                    self.wfile.write(payload)
                self.close_connection = True
                with fake._cond:
                    fake.exchanges.append(exchange)
                    fake._cond.notify_all()

            do_GET = do_POST = do_PUT = do_DELETE = do_PATCH = _any

            def log_message(self, format: str, *args: Any) -> None:
                pass

        return Handler


def _json_answer(status: int, payload: Any, extra: dict[str, str] | None = None) -> tuple[int, dict[str, str], bytes]:
    return status, {"Content-Type": "application/json", **(extra or {})}, json.dumps(payload).encode()


class IngestProxy(_RecordingServer):
    """Forwards to ``upstream`` (``http://host:port`` of the daemon's API); the first ``fail_first`` ingest POSTs
    get ``503`` with ``Retry-After: retry_after`` instead (their body is read and dropped)."""

    name = "ingest-proxy"

    def __init__(self, upstream: str, fail_first: int = 0, retry_after: int = 1, timeout: float = 10.0) -> None:
        parsed = urllib.parse.urlsplit(upstream)
        assert parsed.scheme == "http" and parsed.hostname in ("127.0.0.1", "localhost"), upstream
        self._upstream = (parsed.hostname, parsed.port or 80)
        self._failures_left = fail_first
        self._retry_after = retry_after
        self._timeout = timeout
        self._lock = threading.Lock()
        super().__init__()

    def set_upstream(self, upstream: str) -> None:
        """Point at a restarted daemon (its API port changes)."""
        parsed = urllib.parse.urlsplit(upstream)
        with self._lock:
            self._upstream = (parsed.hostname, parsed.port or 80)

    def answer(self, exchange: Exchange, raw: bytes) -> tuple[int, dict[str, str], bytes]:
        if exchange.method == "POST" and exchange.path == "/v1/ingest":
            with self._lock:
                fail = self._failures_left > 0
                self._failures_left -= 1 if fail else 0
            if fail:
                exchange.answered_by = "proxy"
                return _json_answer(503, {"error": "scripted 503"}, {"Retry-After": str(self._retry_after)})
        exchange.answered_by = "upstream"
        with self._lock:
            host, port = self._upstream
        target = exchange.target or exchange.path
        headers = {k: v for k, v in exchange.headers.items() if k.lower() not in HOP_HEADERS}
        connection = http.client.HTTPConnection(host, port, timeout=self._timeout)
        try:
            connection.request(exchange.method, target, body=raw or None, headers=headers)
            response = connection.getresponse()
            payload = response.read()
            return response.status, dict(response.getheaders()), payload
        except OSError as exc:
            return _json_answer(502, {"error": f"upstream unreachable: {type(exc).__name__}"})
        finally:
            connection.close()


class StubBackend(_RecordingServer):
    """What the SDK 0.5.7 needs from a backend, and nothing more: ``policies`` maps agent_id -> policy list."""

    name = "stub-backend"

    def __init__(self, policies: dict[str, list[dict[str, Any]]] | None = None) -> None:
        self.policies = dict(policies or {})
        super().__init__()

    def answer(self, exchange: Exchange, raw: bytes) -> tuple[int, dict[str, str], bytes]:
        exchange.answered_by = "proxy"
        agent_id = (exchange.query.get("agent_id") or [""])[0]
        if exchange.method == "POST" and exchange.path == "/v1/ingest":
            return _json_answer(200, {"accepted": len(exchange.events)})
        if exchange.method == "GET" and exchange.path.startswith("/v1/runs/"):
            # just enough of the daemon's run answer for a scenario waiting until its run is stored
            run_id = exchange.path.rsplit("/", 1)[1]
            for event in self.delivered_events():
                if event.get("run_id") == run_id and event.get("event_type") in ("run.completed", "run.errored"):
                    status = "completed" if event["event_type"] == "run.completed" else "errored"
                    return _json_answer(200, {"run_id": run_id, "status": status})
            return _json_answer(404, {"error": "no such run"})
        if exchange.method == "GET" and exchange.path == "/v1/policies":
            return _json_answer(200, {"policies": self.policies.get(agent_id, [])})
        if exchange.method == "GET" and exchange.path == "/v1/detector-config":
            config = {"schema_version": 1, "detectors": {}, "packs": [], "baselines": None}
            return _json_answer(200, config)
        if exchange.method == "POST" and exchange.path == "/v1/deploy":
            return _json_answer(200, {"ok": True})
        return _json_answer(404, {"error": f"no route {exchange.method} {exchange.path}"})


def sign_policy(policy: dict[str, Any], secret: str) -> dict[str, Any]:
    """``policy`` with ``signature`` (hex HMAC-SHA256 of the SDK's canonical string) and ``sig_version`` 1."""
    fields = [
        str(policy.get("id", "")),
        policy.get("agent_id", ""),
        policy.get("name", ""),
        json.dumps(policy.get("condition", {}), sort_keys=True),
        json.dumps(policy.get("action", {}), sort_keys=True),
        str(policy.get("enabled", True)),
        str(policy.get("priority", 100)),
    ]
    signature = hmac.new(secret.encode(), "\x00".join(fields).encode(), hashlib.sha256).hexdigest()
    return {**policy, "signature": signature, "sig_version": 1}
