"""A fake Langfuse server on 127.0.0.1 for the real ``langfuse`` SDK (5.x) and the sidecar.

It speaks the parts of the public API the sidecar uses (see ``/work/shared/spec/integrations.md`` §1):
health, projects, v2 observations, the deprecated ``GET /api/public/traces/{id}``, prompt management
(get / list / create / label update, with the server's label and tag semantics) and OTLP ingestion.
Traces are seeded from the test (``add_trace``) or arrive through ``POST /api/public/otel/v1/traces``.

Everything runs in an aiohttp app on a background thread (its own event loop), so the fake works the
same for sync code, ``asyncio.to_thread`` and a test's own event loop. Failure knobs (``fail_next``,
``delay_seconds``, ``observations_v2_enabled``, ``legacy_traces_enabled``, ``stop``) let a test play an
unhealthy or older server. ``BackgroundAiohttpServer`` is the reusable lifecycle base.
"""

from __future__ import annotations

import asyncio
import base64
import binascii
import copy
import gzip
import json
import threading
import time
import uuid
from abc import ABC, abstractmethod
from collections.abc import Awaitable, Callable, Iterable
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any, Self

from aiohttp import web

Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]
JSON_BODY = web.RequestKey("json_body", object)  # the parsed JSON body, set by the middleware
RAW_BODY = web.RequestKey("raw_body", bytes)


# --- lifecycle base ---------------------------------------------------------------------------


class BackgroundAiohttpServer(ABC):
    """An aiohttp ``Application`` served on 127.0.0.1 from a daemon thread with its own event loop.

    ``start()`` binds (port 0 the first time, so the OS picks one) and returns ``self``; ``stop()`` closes
    the listening socket and all connections, so the URL becomes unreachable (connection refused).
    ``start()`` after ``stop()`` binds the *same* port again, with all state kept ("the server came back").
    Use as a context manager for start/stop.
    """

    thread_name = "fake-server"

    def __init__(self) -> None:
        self.host = "127.0.0.1"
        self._port = 0
        self._loop: asyncio.AbstractEventLoop | None = None
        self._thread: threading.Thread | None = None
        self._runner: web.AppRunner | None = None
        self._lifecycle = threading.Lock()

    @abstractmethod
    def make_app(self) -> web.Application:
        """The app this server runs."""

    # lifecycle

    def start(self) -> Self:
        with self._lifecycle:
            if self._thread is not None:
                return self
            loop = asyncio.new_event_loop()
            ready = threading.Event()
            failure: list[BaseException] = []

            def run() -> None:
                asyncio.set_event_loop(loop)
                try:
                    loop.run_until_complete(self._bind())
                except BaseException as exc:  # reported to the starting thread
                    failure.append(exc)
                    ready.set()
                    loop.close()
                    return
                ready.set()
                loop.run_forever()
                loop.close()

            thread = threading.Thread(target=run, name=self.thread_name, daemon=True)
            thread.start()
            if not ready.wait(timeout=10):
                raise RuntimeError(f"{self.thread_name}: did not start within 10 s")
            if failure:
                thread.join(timeout=5)
                raise RuntimeError(f"{self.thread_name}: could not bind {self.host}:{self._port}") from failure[0]
            self._loop, self._thread = loop, thread
            return self

    async def _bind(self) -> None:
        runner = web.AppRunner(self.make_app(), access_log=None, handler_cancellation=True, shutdown_timeout=0.5)
        await runner.setup()
        site = web.TCPSite(runner, self.host, self._port)
        await site.start()
        server = site._server
        assert isinstance(server, asyncio.Server) and server.sockets
        self._port = int(server.sockets[0].getsockname()[1])
        self._runner = runner

    def stop(self) -> None:
        with self._lifecycle:
            loop, thread, runner = self._loop, self._thread, self._runner
            if loop is None or thread is None:
                return
            if runner is not None:
                asyncio.run_coroutine_threadsafe(runner.cleanup(), loop).result(timeout=15)
            loop.call_soon_threadsafe(loop.stop)
            thread.join(timeout=15)
            self._loop = self._thread = self._runner = None

    close = stop

    @property
    def running(self) -> bool:
        return self._thread is not None

    def __enter__(self) -> Self:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

    @property
    def port(self) -> int:
        if not self._port:
            raise RuntimeError(f"{self.thread_name}: not started")
        return self._port

    @property
    def base_url(self) -> str:
        return f"http://{self.host}:{self.port}"


# --- recorded data ----------------------------------------------------------------------------


@dataclass
class ReceivedRequest:
    """One request as the fake saw it. ``status`` is filled in once the fake has answered."""

    method: str
    path: str  # percent-decoded, e.g. /api/public/v2/prompts/folder/x
    raw_path: str  # as sent, e.g. /api/public/v2/prompts/folder%2Fx
    query: dict[str, str]
    headers: dict[str, str]
    body: Any  # parsed JSON body, or None (OTLP bodies: see ``otlp_exports``)
    raw_body: bytes
    status: int | None = None


@dataclass
class ReceivedSpan:
    """A span taken from an OTLP export (protobuf or JSON), ids as lowercase hex."""

    trace_id: str
    span_id: str
    parent_span_id: str | None
    name: str
    start_time_unix_nano: int
    end_time_unix_nano: int
    attributes: dict[str, Any]
    status_code: int
    status_message: str
    resource_attributes: dict[str, Any]


@dataclass
class OtlpExport:
    """One ``POST /api/public/otel/v1/traces`` that the fake accepted."""

    content_type: str
    content_encoding: str | None
    ingestion_version: str | None  # the ``x-langfuse-ingestion-version`` header
    headers: dict[str, str]
    spans: list[ReceivedSpan]


@dataclass
class _FailureRule:
    remaining: int
    status: int
    retry_after: float | str | None
    path_prefix: str | None
    method: str | None
    message: str

    def matches(self, method: str, path: str) -> bool:
        if self.remaining <= 0:
            return False
        if self.method is not None and self.method.upper() != method:
            return False
        return self.path_prefix is None or path.startswith(self.path_prefix)


# --- helpers ----------------------------------------------------------------------------------


def iso(moment: datetime) -> str:
    """``2026-01-02T03:04:05.678Z``: the timestamp format the Langfuse API sends."""
    moment = moment.astimezone(UTC)
    return moment.strftime("%Y-%m-%dT%H:%M:%S.") + f"{moment.microsecond // 1000:03d}Z"


def _to_datetime(value: Any, what: str) -> datetime:
    if isinstance(value, datetime):
        return value if value.tzinfo else value.replace(tzinfo=UTC)
    if isinstance(value, str):
        parsed = datetime.fromisoformat(value.replace("Z", "+00:00"))
        return parsed if parsed.tzinfo else parsed.replace(tzinfo=UTC)
    if isinstance(value, int | float):
        return datetime.fromtimestamp(float(value), tz=UTC)
    raise TypeError(f"{what}: expected datetime, ISO string or unix seconds, got {value!r}")


def _raw_io(value: Any) -> str | None:
    """v2 observations return input/output as the raw stored string."""
    if value is None:
        return None
    if isinstance(value, str):
        return value
    return json.dumps(value, separators=(",", ":"))


def _parsed_io(value: Any) -> Any:
    """The legacy API returns input/output as JSON when the stored string is JSON."""
    if isinstance(value, str):
        try:
            return json.loads(value)
        except ValueError:
            return value
    return value


def _new_span_id() -> str:
    return uuid.uuid4().hex[:16]


class _ApiError(Exception):
    def __init__(self, status: int, message: str, **extra: Any) -> None:
        super().__init__(message)
        self.status = status
        self.message = message
        self.extra = extra


def _error_response(status: int, message: str, headers: dict[str, str] | None = None, **extra: Any) -> web.Response:
    payload = {"message": message, **extra}
    return web.json_response(payload, status=status, headers=headers)


# --- observations -----------------------------------------------------------------------------

OBSERVATION_KEYS = frozenset(
    {
        "id",
        "type",
        "name",
        "startTime",
        "endTime",
        "completionStartTime",
        "parentObservationId",
        "isRootObservation",
        "level",
        "statusMessage",
        "version",
        "environment",
        "userId",
        "sessionId",
        "input",
        "output",
        "metadata",
        "model",
        "modelParameters",
        "usageDetails",
        "costDetails",
        "totalCost",
        "promptId",
        "promptName",
        "promptVersion",
        "latency",
        "timeToFirstToken",
    }
)
LEVELS = ("DEBUG", "DEFAULT", "WARNING", "ERROR")

# field groups of GET /api/public/v2/observations, in the server's order
FIELD_GROUPS: dict[str, tuple[str, ...]] = {
    "core": ("id", "traceId", "startTime", "endTime", "projectId", "parentObservationId", "type"),
    "basic": (
        "name",
        "level",
        "statusMessage",
        "version",
        "environment",
        "bookmarked",
        "public",
        "userId",
        "sessionId",
        "isRootObservation",
    ),
    "time": ("completionStartTime", "createdAt", "updatedAt"),
    "io": ("input", "output"),
    "metadata": ("metadata",),
    "model": ("model", "internalModelId", "modelParameters"),
    "usage": ("usageDetails", "costDetails", "totalCost", "usagePricingTierName"),
    "prompt": ("promptId", "promptName", "promptVersion"),
    "metrics": ("latency", "timeToFirstToken"),
    "trace_context": ("tags", "release", "traceName"),
}

V2_DISABLED_MESSAGE = (
    "The observations v2 API is only available in a Langfuse v4 write mode. Learn more at: https://langfuse.com/docs/v4"
)


class FakeLangfuse(BackgroundAiohttpServer):
    """Fake Langfuse. See the module docstring and ``tests/fakes/test_fakes.py`` for usage."""

    thread_name = "fake-langfuse"

    def __init__(
        self,
        public_key: str | None = None,
        secret_key: str | None = None,
        project_id: str = "fake-project",
        *,
        server_version: str = "3.999.0",
    ) -> None:
        super().__init__()
        # unique keys by default: langfuse.Langfuse() is a singleton per public key (shared prompt cache)
        tag = uuid.uuid4().hex[:12]
        self.public_key = public_key or f"pk-lf-fake-{tag}"
        self.secret_key = secret_key or f"sk-lf-fake-{tag}"
        self.project_id = project_id
        self.server_version = server_version

        # knobs, settable from the test at any time
        self.delay_seconds: float = 0.0
        self.observations_v2_enabled: bool = True  # False: v2 observations answer 404 (an older v3 server)
        self.legacy_traces_enabled: bool = True  # False: GET /api/public/traces/{id} answers 404 (v4 server)
        self.ingest_otlp_as_observations: bool = True  # OTLP spans become observations of their trace

        self._lock = threading.RLock()
        self._failures: list[_FailureRule] = []
        self._traces: dict[str, dict[str, Any]] = {}
        self._prompts: dict[str, list[dict[str, Any]]] = {}
        self._requests: list[ReceivedRequest] = []
        self._otlp: list[OtlpExport] = []
        self.errors: list[str] = []  # exceptions inside the fake itself; a test may assert this is empty

    # ------------------------------------------------------------------ knobs

    def fail_next(
        self,
        n: int,
        status: int,
        retry_after: float | str | None = None,
        *,
        path: str | None = None,
        method: str | None = None,
        message: str | None = None,
    ) -> None:
        """Answer the next ``n`` requests whose path starts with ``path`` (all paths when None; health
        included) and whose method is ``method`` (any when None) with ``status`` and a JSON
        ``{"message": ...}`` body, plus ``Retry-After: <retry_after>`` when given. Rules queue up; the
        first matching rule with requests left is used. Failed requests are still recorded."""
        with self._lock:
            self._failures.append(
                _FailureRule(n, status, retry_after, path, method, message or f"fake failure: HTTP {status}")
            )

    def clear_failures(self) -> None:
        with self._lock:
            self._failures.clear()

    # ------------------------------------------------------------------ recorded requests

    @property
    def requests(self) -> list[ReceivedRequest]:
        """Every request received (oldest first), a snapshot copy."""
        with self._lock:
            return list(self._requests)

    def requests_to(self, method: str, path_prefix: str) -> list[ReceivedRequest]:
        with self._lock:
            return [r for r in self._requests if r.method == method.upper() and r.path.startswith(path_prefix)]

    def publishes(self, name: str | None = None) -> list[ReceivedRequest]:
        """Successful ``POST /api/public/v2/prompts`` requests (optionally for one prompt name)."""
        return [
            r
            for r in self.requests_to("POST", "/api/public/v2/prompts")
            if r.path == "/api/public/v2/prompts"
            and r.status is not None
            and 200 <= r.status < 300
            and (name is None or (isinstance(r.body, dict) and r.body.get("name") == name))
        ]

    def label_updates(self, name: str | None = None) -> list[ReceivedRequest]:
        """Successful ``PATCH /api/public/v2/prompts/{name}/versions/{v}`` requests."""
        prefix = "/api/public/v2/prompts/" + (f"{name}/versions/" if name is not None else "")
        return [
            r
            for r in self.requests_to("PATCH", prefix)
            if r.status is not None and 200 <= r.status < 300 and "/versions/" in r.path
        ]

    def clear_requests(self) -> None:
        with self._lock:
            self._requests.clear()

    @property
    def otlp_exports(self) -> list[OtlpExport]:
        with self._lock:
            return list(self._otlp)

    @property
    def received_trace_ids(self) -> list[str]:
        """Distinct trace ids (32 lowercase hex) received through OTLP, in arrival order."""
        seen: dict[str, None] = {}
        for export in self.otlp_exports:
            for span in export.spans:
                seen.setdefault(span.trace_id, None)
        return list(seen)

    # ------------------------------------------------------------------ traces

    def add_trace(
        self,
        trace_id: str,
        observations: Iterable[dict[str, Any]] = (),
        *,
        name: str | None = None,
        timestamp: datetime | str | None = None,
        user_id: str | None = None,
        session_id: str | None = None,
        tags: list[str] | None = None,
        input: Any = None,
        output: Any = None,
        metadata: dict[str, Any] | None = None,
        release: str | None = None,
        version: str | None = None,
        environment: str = "default",
        public: bool = False,
        visible_after: float = 0.0,
    ) -> str:
        """Seed (or extend) a trace. ``observations`` use the API's camelCase keys (see ``OBSERVATION_KEYS``);
        every key is optional: ``id`` defaults to a random 16-hex span id, ``type`` to ``SPAN``, ``level`` to
        ``DEFAULT``, ``startTime`` to the trace timestamp + 10 ms per observation, ``endTime`` to start + 1 s,
        ``latency`` to end - start (seconds). ``input``/``output`` may be any JSON value: v2 returns them as raw
        strings (``json.dumps`` unless already a string), the legacy endpoint as parsed JSON. Calling again
        with the same id appends observations and overwrites the trace fields that are given.
        ``visible_after`` (seconds) hides the trace from both read endpoints until then (ingestion lag)."""
        with self._lock:
            now = datetime.now(UTC)
            trace = self._traces.get(trace_id)
            if trace is None:
                trace = {
                    "id": trace_id,
                    "timestamp": _to_datetime(timestamp, "timestamp") if timestamp is not None else now,
                    "name": None,
                    "userId": None,
                    "sessionId": None,
                    "tags": [],
                    "input": None,
                    "output": None,
                    "metadata": None,
                    "release": None,
                    "version": None,
                    "environment": environment,
                    "public": public,
                    "createdAt": now,
                    "observations": [],
                    "visible_at": 0.0,
                }
                self._traces[trace_id] = trace
            elif timestamp is not None:
                trace["timestamp"] = _to_datetime(timestamp, "timestamp")
            given = {
                "name": name,
                "userId": user_id,
                "sessionId": session_id,
                "tags": tags,
                "input": input,
                "output": output,
                "metadata": metadata,
                "release": release,
                "version": version,
            }
            trace.update({k: v for k, v in given.items() if v is not None})
            trace["environment"] = environment if environment != "default" else trace["environment"]
            trace["public"] = public or trace["public"]
            if visible_after > 0:
                trace["visible_at"] = time.monotonic() + visible_after
            trace["updatedAt"] = now
            for obs in observations:
                self._append_observation(trace, obs)
            return trace_id

    def add_observations(self, trace_id: str, observations: Iterable[dict[str, Any]]) -> None:
        """Append observations to a trace (created if missing)."""
        self.add_trace(trace_id, observations)

    def trace(self, trace_id: str) -> dict[str, Any] | None:
        """The stored trace (a deep copy; observations in the internal camelCase form), or None."""
        with self._lock:
            trace = self._traces.get(trace_id)
            return copy.deepcopy(trace) if trace is not None else None

    def _append_observation(self, trace: dict[str, Any], given: dict[str, Any]) -> None:
        unknown = set(given) - OBSERVATION_KEYS
        if unknown:
            raise ValueError(f"unknown observation keys {sorted(unknown)}; allowed: {sorted(OBSERVATION_KEYS)}")
        index = len(trace["observations"])
        start = (
            _to_datetime(given["startTime"], "startTime")
            if given.get("startTime") is not None
            else trace["timestamp"] + timedelta(milliseconds=10 * index)
        )
        end = (
            _to_datetime(given["endTime"], "endTime")
            if given.get("endTime") is not None
            else start + timedelta(seconds=1)
        )
        level = given.get("level") or "DEFAULT"
        if level not in LEVELS:
            raise ValueError(f"level must be one of {LEVELS}, got {level!r}")
        parent = given.get("parentObservationId")
        obs: dict[str, Any] = {
            "id": given.get("id") or _new_span_id(),
            "traceId": trace["id"],
            "type": (given.get("type") or "SPAN").upper(),
            "name": given.get("name"),
            "startTime": start,
            "endTime": end,
            "completionStartTime": _to_datetime(given["completionStartTime"], "completionStartTime")
            if given.get("completionStartTime") is not None
            else None,
            "parentObservationId": parent,
            "isRootObservation": given.get("isRootObservation", parent is None),
            "level": level,
            "statusMessage": given.get("statusMessage"),
            "version": given.get("version"),
            "environment": given.get("environment") or trace["environment"],
            "userId": given.get("userId", trace["userId"]),
            "sessionId": given.get("sessionId", trace["sessionId"]),
            "input": _raw_io(given.get("input")),
            "output": _raw_io(given.get("output")),
            "metadata": given.get("metadata"),
            "model": given.get("model"),
            "modelParameters": given.get("modelParameters"),
            "usageDetails": given.get("usageDetails"),
            "costDetails": given.get("costDetails"),
            "totalCost": given.get("totalCost"),
            "promptId": given.get("promptId"),
            "promptName": given.get("promptName"),
            "promptVersion": given.get("promptVersion"),
            "latency": given["latency"] if given.get("latency") is not None else (end - start).total_seconds(),
            "timeToFirstToken": given.get("timeToFirstToken"),
            "createdAt": datetime.now(UTC),
        }
        if obs["usageDetails"] is not None:
            usage = {k: int(v) for k, v in obs["usageDetails"].items()}
            if "total" not in usage and ("input" in usage or "output" in usage):
                usage["total"] = usage.get("input", 0) + usage.get("output", 0)
            obs["usageDetails"] = usage
        if obs["costDetails"] is not None and obs["totalCost"] is None:
            obs["totalCost"] = obs["costDetails"].get("total", sum(obs["costDetails"].values()))
        obs["updatedAt"] = obs["createdAt"]
        trace["observations"].append(obs)

    def _visible_traces(self) -> list[dict[str, Any]]:
        now = time.monotonic()
        return [t for t in self._traces.values() if t["visible_at"] <= now]

    # ------------------------------------------------------------------ prompts

    def seed_prompt(
        self,
        name: str,
        prompt: str | list[dict[str, Any]],
        type: str | None = None,
        labels: Iterable[str] = ("production",),
        config: Any = None,
        tags: list[str] | None = None,
        commit_message: str | None = None,
    ) -> dict[str, Any]:
        """Create a new version exactly as ``POST /api/public/v2/prompts`` would (version max+1, ``latest``
        added, labels moved off older versions, tags inherited when None), without recording a request.
        ``type`` defaults to ``chat`` for a list and ``text`` for a string. Returns the API prompt object."""
        kind = type or ("chat" if isinstance(prompt, list) else "text")
        with self._lock:
            return self._create_prompt_version(
                {
                    "name": name,
                    "prompt": prompt,
                    "type": kind,
                    "labels": list(labels),
                    "config": config if config is not None else {},
                    "tags": tags,
                    "commitMessage": commit_message,
                }
            )

    def versions(self, name: str) -> list[dict[str, Any]]:
        """Every stored version of ``name`` as API prompt objects, oldest first ([] when unknown)."""
        with self._lock:
            return [self._prompt_json(v) for v in self._prompts.get(name, [])]

    def prompt_version(self, name: str, version: int) -> dict[str, Any] | None:
        with self._lock:
            found = self._find_version(name, version)
            return self._prompt_json(found) if found is not None else None

    def label_version(self, name: str, label: str) -> int | None:
        """The version that carries ``label`` now (``latest`` included), or None."""
        with self._lock:
            found = self._find_label(name, label)
            return found["version"] if found is not None else None

    def latest_version(self, name: str) -> int | None:
        with self._lock:
            found = self._prompts.get(name)
            return max(v["version"] for v in found) if found else None

    def _find_version(self, name: str, version: int) -> dict[str, Any] | None:
        return next((v for v in self._prompts.get(name, []) if v["version"] == version), None)

    def _find_label(self, name: str, label: str) -> dict[str, Any] | None:
        return next((v for v in self._prompts.get(name, []) if label in v["labels"]), None)

    def _prompt_json(self, stored: dict[str, Any]) -> dict[str, Any]:
        out = copy.deepcopy({k: v for k, v in stored.items() if k not in ("createdAt", "updatedAt")})
        out["createdAt"] = iso(stored["createdAt"])
        out["updatedAt"] = iso(stored["updatedAt"])
        return out

    def _create_prompt_version(self, body: dict[str, Any]) -> dict[str, Any]:
        """Server semantics of createPrompt.ts; ``body`` is already validated. Caller holds the lock."""
        name = body["name"]
        kind = body.get("type") or "text"
        existing = self._prompts.setdefault(name, [])
        latest = max(existing, key=lambda v: v["version"]) if existing else None
        if latest is not None and latest["type"] != kind:
            raise _ApiError(
                400, "Previous versions have different prompt type. Create a new prompt with a different name."
            )
        final_labels = list(dict.fromkeys([*(body.get("labels") or []), "latest"]))
        tags = body.get("tags")
        final_tags = list(dict.fromkeys(tags if tags is not None else (latest["tags"] if latest else [])))
        now = datetime.now(UTC)
        for older in existing:
            kept = [label for label in older["labels"] if label not in final_labels]
            if kept != older["labels"]:
                older["labels"] = kept
                older["updatedAt"] = now
            if older["tags"] != final_tags:
                older["tags"] = list(final_tags)
                older["updatedAt"] = now
        stored = {
            "id": str(uuid.uuid4()),
            "name": name,
            "version": (latest["version"] + 1) if latest else 1,
            "type": kind,
            "prompt": copy.deepcopy(body["prompt"]),
            "config": copy.deepcopy(body.get("config") if body.get("config") is not None else {}),
            "labels": final_labels,
            "tags": final_tags,
            "commitMessage": body.get("commitMessage"),
            "resolutionGraph": None,
            "projectId": self.project_id,
            "createdBy": "API",
            "isActive": None,
            "createdAt": now,
            "updatedAt": now,
        }
        existing.append(stored)
        return self._prompt_json(stored)

    # ------------------------------------------------------------------ app

    def make_app(self) -> web.Application:
        app = web.Application(middlewares=[self._middleware], client_max_size=64 * 1024 * 1024)
        r = app.router
        r.add_get("/api/public/health", self._health)
        r.add_get("/api/public/projects", self._projects)
        r.add_get("/api/public/v2/observations", self._observations_v2)
        r.add_get("/api/public/traces/{trace_id}", self._legacy_trace)
        r.add_get("/api/public/v2/prompts", self._list_prompts)
        r.add_post("/api/public/v2/prompts", self._create_prompt)
        # current servers route prompts/[...promptName] (a catch-all): a folder name may arrive URL-encoded
        # (folder%2Fname, as the SDK's high-level client sends it) or with a plain slash; PATCH splits off
        # a trailing /versions/{version}
        r.add_patch(r"/api/public/v2/prompts/{name:.+}/versions/{version}", self._update_labels)
        r.add_get(r"/api/public/v2/prompts/{name:.+}", self._get_prompt)
        r.add_post("/api/public/otel/v1/traces", self._otel_traces)
        return app

    @web.middleware
    async def _middleware(self, request: web.Request, handler: Handler) -> web.StreamResponse:
        raw = await request.read()
        body: Any = None
        if raw and "json" in (request.content_type or "") and request.path != "/api/public/otel/v1/traces":
            try:
                body = json.loads(raw)
            except ValueError:
                body = None
        record = ReceivedRequest(
            method=request.method,
            path=request.path,
            raw_path=request.raw_path.split("?", 1)[0],
            query=dict(request.query),
            headers=dict(request.headers),
            body=body,
            raw_body=raw,
        )
        with self._lock:
            self._requests.append(record)
        response = await self._answer(request, handler, raw, body)
        record.status = response.status
        return response

    async def _answer(self, request: web.Request, handler: Handler, raw: bytes, body: Any) -> web.StreamResponse:
        if self.delay_seconds > 0:
            await asyncio.sleep(self.delay_seconds)
        with self._lock:
            rule = next((f for f in self._failures if f.matches(request.method, request.path)), None)
            if rule is not None:
                rule.remaining -= 1
        if rule is not None:
            headers = {"Retry-After": str(rule.retry_after)} if rule.retry_after is not None else None
            return _error_response(rule.status, rule.message, headers=headers)
        if request.path != "/api/public/health" and not self._authorized(request):
            return _error_response(
                401, "Invalid authorization header. Confirm that you've configured the correct host."
            )
        request[JSON_BODY] = body
        request[RAW_BODY] = raw
        try:
            return await handler(request)
        except _ApiError as exc:
            return _error_response(exc.status, exc.message, **exc.extra)
        except web.HTTPException as exc:
            return _error_response(exc.status, exc.reason or "error")
        except Exception as exc:  # a broken fake must show up in the test, with a JSON body the SDK can read
            self.errors.append(f"{request.method} {request.path}: {type(exc).__name__}: {exc}")
            return _error_response(500, f"fake error: {type(exc).__name__}: {exc}")

    def _authorized(self, request: web.Request) -> bool:
        header = request.headers.get("Authorization", "")
        scheme, _, value = header.partition(" ")
        if scheme.lower() != "basic" or not value:
            return False
        try:
            decoded = base64.b64decode(value.strip(), validate=True).decode()
        except (binascii.Error, UnicodeDecodeError):
            return False
        user, _, password = decoded.partition(":")
        return user == self.public_key and password == self.secret_key

    # ------------------------------------------------------------------ handlers

    async def _health(self, request: web.Request) -> web.Response:
        return web.json_response({"status": "OK", "version": self.server_version})

    async def _projects(self, request: web.Request) -> web.Response:
        project = {
            "id": self.project_id,
            "name": "Fake project",
            "organization": {"id": "fake-org", "name": "Fake organization"},
            "metadata": {},
        }
        return web.json_response({"data": [project]})

    async def _observations_v2(self, request: web.Request) -> web.Response:
        if not self.observations_v2_enabled:
            raise _ApiError(404, V2_DISABLED_MESSAGE, error="LangfuseNotFoundError")
        q = request.query
        groups = [g.strip() for g in q.get("fields", "core,basic").split(",") if g.strip()]
        unknown = [g for g in groups if g not in FIELD_GROUPS]
        if unknown:
            raise _ApiError(400, f"Invalid field groups: {', '.join(unknown)}")
        selected = {"core", *groups}
        try:
            limit = int(q.get("limit", "50"))
        except ValueError as exc:
            raise _ApiError(400, "limit must be an integer") from exc
        if not 1 <= limit <= 1000:
            raise _ApiError(400, "limit must be between 1 and 1000")
        if q.get("parseIoAsJson", "false").lower() == "true":
            raise _ApiError(400, "parseIoAsJson is deprecated; input/output are always returned as raw strings")
        conditions = self._parse_filter(q.get("filter"))

        with self._lock:
            rows = [(t, o) for t in self._visible_traces() for o in t["observations"]]
            rows = [(t, o) for t, o in rows if self._matches_query(t, o, q) and self._matches_filter(t, o, conditions)]
            rows.sort(key=lambda row: (row[1]["startTime"], row[1]["traceId"], row[1]["id"]), reverse=True)
            if q.get("cursor"):
                last = self._decode_cursor(q["cursor"])
                rows = [row for row in rows if (row[1]["startTime"], row[1]["traceId"], row[1]["id"]) < last]
            page = rows[: limit + 1]
            has_more = len(page) > limit
            page = page[:limit]
            data = [self._observation_v2(t, o, selected) for t, o in page]
        meta: dict[str, Any] = {}
        if has_more and page:
            last_obs = page[-1][1]
            meta["cursor"] = base64.b64encode(
                json.dumps(
                    {
                        "lastStartTimeTo": iso(last_obs["startTime"]),
                        "lastTraceId": last_obs["traceId"],
                        "lastId": last_obs["id"],
                    }
                ).encode()
            ).decode()
        return web.json_response({"data": data, "meta": meta})

    @staticmethod
    def _decode_cursor(cursor: str) -> tuple[datetime, str, str]:
        try:
            decoded = json.loads(base64.b64decode(cursor))
            return (_to_datetime(decoded["lastStartTimeTo"], "cursor"), decoded["lastTraceId"], decoded["lastId"])
        except (ValueError, KeyError, TypeError, binascii.Error) as exc:
            raise _ApiError(400, "Invalid cursor") from exc

    @staticmethod
    def _matches_query(trace: dict[str, Any], obs: dict[str, Any], q: Any) -> bool:
        simple = {
            "traceId": obs["traceId"],
            "type": obs["type"],
            "level": obs["level"],
            "name": obs["name"],
            "userId": obs["userId"],
            "sessionId": obs["sessionId"],
            "version": obs["version"],
        }
        for param, actual in simple.items():
            if param in q and q[param] != actual:
                return False
        if "parentObservationId" in q and (q["parentObservationId"] or None) != obs["parentObservationId"]:
            return False
        if "isRootObservation" in q and (q["isRootObservation"].lower() == "true") != obs["isRootObservation"]:
            return False
        environments = q.getall("environment", [])
        if environments and obs["environment"] not in environments:
            return False
        if "fromStartTime" in q and obs["startTime"] < _to_datetime(q["fromStartTime"], "fromStartTime"):
            return False
        return not ("toStartTime" in q and obs["startTime"] >= _to_datetime(q["toStartTime"], "toStartTime"))

    @staticmethod
    def _parse_filter(raw: str | None) -> list[dict[str, Any]]:
        if not raw:
            return []
        try:
            conditions = json.loads(raw)
        except ValueError as exc:
            raise _ApiError(400, "filter must be a JSON array") from exc
        if not isinstance(conditions, list) or not all(isinstance(c, dict) for c in conditions):
            raise _ApiError(400, "filter must be a JSON array of objects")
        for c in conditions:
            if not {"type", "column", "operator"} <= set(c):
                raise _ApiError(400, "every filter condition needs type, column and operator")
        return conditions

    _FILTER_COLUMNS: dict[str, str] = {  # noqa: RUF012 - constant lookup table
        "id": "id",
        "type": "type",
        "name": "name",
        "traceId": "traceId",
        "startTime": "startTime",
        "endTime": "endTime",
        "environment": "environment",
        "level": "level",
        "statusMessage": "statusMessage",
        "version": "version",
        "userId": "userId",
        "sessionId": "sessionId",
        "isRootObservation": "isRootObservation",
        "latency": "latency",
        "timeToFirstToken": "timeToFirstToken",
        "totalCost": "totalCost",
        "model": "model",
        "providedModelName": "model",
        "promptName": "promptName",
        "promptVersion": "promptVersion",
        "input": "input",
        "output": "output",
    }

    def _filter_value(self, trace: dict[str, Any], obs: dict[str, Any], cond: dict[str, Any]) -> Any:
        column = cond["column"]
        usage = obs["usageDetails"] or {}
        if column in self._FILTER_COLUMNS:
            return obs[self._FILTER_COLUMNS[column]]
        if column == "traceName":
            return trace["name"]
        if column in ("traceTags", "tags"):
            return trace["tags"]
        if column == "inputTokens":
            return usage.get("input")
        if column == "outputTokens":
            return usage.get("output")
        if column in ("totalTokens", "tokens"):
            return usage.get("total")
        if column == "metadata":
            return (obs["metadata"] or {}).get(cond.get("key", ""))
        raise _ApiError(400, f"Invalid filter column: {column}")

    def _matches_filter(self, trace: dict[str, Any], obs: dict[str, Any], conditions: list[dict[str, Any]]) -> bool:
        return all(self._condition_holds(self._filter_value(trace, obs, c), c) for c in conditions)

    @staticmethod
    def _condition_holds(actual: Any, cond: dict[str, Any]) -> bool:
        op, kind, value = cond["operator"], cond["type"], cond.get("value")
        if kind == "null":
            return (actual is None) == (op == "is null")
        if op == "is set":
            return actual is not None
        if op == "is not set":
            return actual is None
        if kind == "datetime":
            value = _to_datetime(value, "filter value")
        if kind in ("stringOptions", "categoryOptions"):
            inside = actual in (value or [])
            return inside if op == "any of" else not inside
        if kind == "arrayOptions":
            have, want = set(actual or []), set(value or [])
            return {"any of": bool(have & want), "none of": not (have & want), "all of": want <= have}.get(op, False)
        if actual is None:
            return op == "does not contain"
        if kind in ("string", "stringObject"):
            text, needle = str(actual), str(value)
            if op in ("contains", "matches") and kind != "stringObject":
                return needle.lower() in text.lower()
            return {
                "=": text == needle,
                "contains": needle in text,
                "matches": needle in text,
                "does not contain": needle not in text,
                "starts with": text.startswith(needle),
                "ends with": text.endswith(needle),
            }.get(op, False)
        if kind == "boolean":
            return (actual == value) if op == "=" else (actual != value)
        comparisons: dict[str, Callable[[Any, Any], bool]] = {
            "=": lambda a, b: a == b,
            ">": lambda a, b: a > b,
            "<": lambda a, b: a < b,
            ">=": lambda a, b: a >= b,
            "<=": lambda a, b: a <= b,
        }
        if op not in comparisons:
            raise _ApiError(400, f"Invalid operator {op!r} for filter type {kind!r}")
        return comparisons[op](actual, value)

    def _observation_v2(self, trace: dict[str, Any], obs: dict[str, Any], groups: set[str]) -> dict[str, Any]:
        full: dict[str, Any] = {
            **obs,
            "projectId": self.project_id,
            "startTime": iso(obs["startTime"]),
            "endTime": iso(obs["endTime"]) if obs["endTime"] else None,
            "completionStartTime": iso(obs["completionStartTime"]) if obs["completionStartTime"] else None,
            "createdAt": iso(obs["createdAt"]),
            "updatedAt": iso(obs["updatedAt"]),
            "bookmarked": False,
            "public": trace["public"],
            "internalModelId": None,
            "usagePricingTierName": None,
            "tags": trace["tags"],
            "release": trace["release"],
            "traceName": trace["name"],
        }
        if full["usageDetails"] is None and "usage" in groups:
            full["usageDetails"] = {}
        if full["costDetails"] is None and "usage" in groups:
            full["costDetails"] = {}
        out: dict[str, Any] = {}
        for group, keys in FIELD_GROUPS.items():
            if group in groups:
                for key in keys:
                    out[key] = copy.deepcopy(full[key])
        return out

    async def _legacy_trace(self, request: web.Request) -> web.Response:
        if not self.legacy_traces_enabled:
            raise _ApiError(404, "Not found: GET /api/public/traces/{traceId} has been removed")
        trace_id = request.match_info["trace_id"]
        groups = set((request.query.get("fields") or "core,io,scores,observations,metrics").split(","))
        with self._lock:
            trace = next((t for t in self._visible_traces() if t["id"] == trace_id), None)
            if trace is None:
                raise _ApiError(404, "Trace not found within authorized project", error="LangfuseNotFoundError")
            observations = [self._observation_legacy(o) for o in trace["observations"]]
            starts = [o["startTime"] for o in trace["observations"]]
            ends = [o["endTime"] for o in trace["observations"] if o["endTime"]]
            latency = (max(ends) - min(starts)).total_seconds() if starts and ends else 0.0
            total_cost = sum(o["totalCost"] or 0.0 for o in trace["observations"])
            payload: dict[str, Any] = {
                "id": trace["id"],
                "projectId": self.project_id,
                "timestamp": iso(trace["timestamp"]),
                "name": trace["name"],
                "input": _parsed_io(trace["input"]) if "io" in groups else None,
                "output": _parsed_io(trace["output"]) if "io" in groups else None,
                "sessionId": trace["sessionId"],
                "release": trace["release"],
                "version": trace["version"],
                "userId": trace["userId"],
                "metadata": copy.deepcopy(trace["metadata"]) if "io" in groups else None,
                "tags": list(trace["tags"]),
                "public": trace["public"],
                "bookmarked": False,
                "environment": trace["environment"],
                "createdAt": iso(trace["createdAt"]),
                "updatedAt": iso(trace["updatedAt"]),
                "externalId": None,
                "htmlPath": f"/project/{self.project_id}/traces/{trace['id']}",
                "latency": latency if "metrics" in groups else None,
                "totalCost": total_cost if "metrics" in groups else None,
                "observations": observations if "observations" in groups else [],
                "scores": [],
                "_deprecation": {
                    "message": "GET /api/public/traces/{traceId} is deprecated. Use GET /api/public/v2/observations"
                    "?traceId=<id> to read the observations of a trace.",
                    "replacement": "GET /api/public/v2/observations",
                    "sunsetAt": "2026-11-16",
                },
            }
        return web.json_response(payload)

    def _observation_legacy(self, obs: dict[str, Any]) -> dict[str, Any]:
        usage = obs["usageDetails"] or {}
        cost = obs["costDetails"] or {}
        return {
            "id": obs["id"],
            "traceId": obs["traceId"],
            "projectId": self.project_id,
            "type": obs["type"],
            "name": obs["name"],
            "startTime": iso(obs["startTime"]),
            "endTime": iso(obs["endTime"]) if obs["endTime"] else None,
            "completionStartTime": iso(obs["completionStartTime"]) if obs["completionStartTime"] else None,
            "model": obs["model"],
            "modelParameters": copy.deepcopy(obs["modelParameters"]) or {},
            "input": _parsed_io(obs["input"]),
            "output": _parsed_io(obs["output"]),
            "version": obs["version"],
            "metadata": copy.deepcopy(obs["metadata"]) or {},
            "usage": {
                "input": usage.get("input", 0),
                "output": usage.get("output", 0),
                "total": usage.get("total", 0),
                "unit": "TOKENS",
            },
            "usageDetails": dict(usage),
            "costDetails": dict(cost),
            "level": obs["level"],
            "statusMessage": obs["statusMessage"],
            "parentObservationId": obs["parentObservationId"],
            "promptId": obs["promptId"],
            "promptName": obs["promptName"],
            "promptVersion": obs["promptVersion"],
            "modelId": None,
            "inputPrice": None,
            "outputPrice": None,
            "totalPrice": None,
            "calculatedInputCost": cost.get("input"),
            "calculatedOutputCost": cost.get("output"),
            "calculatedTotalCost": obs["totalCost"],
            "latency": obs["latency"],
            "timeToFirstToken": obs["timeToFirstToken"],
            "environment": obs["environment"],
            "createdAt": iso(obs["createdAt"]),
            "updatedAt": iso(obs["updatedAt"]),
        }

    # prompts

    async def _get_prompt(self, request: web.Request) -> web.Response:
        name = request.match_info["name"]
        q = request.query
        if "version" in q and "label" in q:
            raise _ApiError(400, "Cannot specify both version and label")
        with self._lock:
            if "version" in q:
                try:
                    version = int(q["version"])
                except ValueError as exc:
                    raise _ApiError(400, "version must be an integer") from exc
                found = self._find_version(name, version)
                wanted = f"version {version}"
            else:
                label = q.get("label") or "production"
                found = self._find_label(name, label)
                wanted = f"label '{label}'"
            if found is None:
                raise _ApiError(404, f"Prompt not found: '{name}' with {wanted}", error="LangfuseNotFoundError")
            return web.json_response(self._prompt_json(found))

    async def _list_prompts(self, request: web.Request) -> web.Response:
        q = request.query
        with self._lock:
            metas = []
            for name, versions in sorted(self._prompts.items()):
                if not versions or ("name" in q and q["name"] != name):
                    continue
                if "label" in q and not any(q["label"] in v["labels"] for v in versions):
                    continue
                latest = max(versions, key=lambda v: v["version"])
                metas.append(
                    {
                        "name": name,
                        "type": latest["type"],
                        "versions": sorted(v["version"] for v in versions),
                        "labels": sorted({label for v in versions for label in v["labels"]}),
                        "tags": list(latest["tags"]),
                        "lastUpdatedAt": iso(max(v["updatedAt"] for v in versions)),
                        "lastConfig": copy.deepcopy(latest["config"]),
                    }
                )
        page, limit = int(q.get("page", "1")), int(q.get("limit", "50"))
        chunk = metas[(page - 1) * limit : page * limit]
        total_pages = (len(metas) + limit - 1) // limit
        meta = {"page": page, "limit": limit, "totalItems": len(metas), "totalPages": total_pages}
        return web.json_response({"data": chunk, "meta": meta})

    async def _create_prompt(self, request: web.Request) -> web.Response:
        body = request[JSON_BODY]
        if not isinstance(body, dict):
            raise _ApiError(400, "Request body must be a JSON object")
        name = body.get("name")
        if not isinstance(name, str) or not name or len(name) > 255:
            raise _ApiError(400, "Invalid request data: name must be a non-empty string (max 255 characters)")
        kind = body.get("type") or "text"
        if kind not in ("text", "chat"):
            raise _ApiError(400, f"Invalid request data: type must be 'text' or 'chat', got {kind!r}")
        prompt = body.get("prompt")
        if kind == "text" and not isinstance(prompt, str):
            raise _ApiError(400, "Invalid request data: a text prompt must be a string")
        if kind == "chat":
            self._validate_chat_messages(prompt)
        labels = body.get("labels") or []
        if not isinstance(labels, list) or not all(isinstance(label, str) for label in labels):
            raise _ApiError(400, "Invalid request data: labels must be a list of strings")
        tags = body.get("tags")
        if tags is not None and (not isinstance(tags, list) or not all(isinstance(t, str) for t in tags)):
            raise _ApiError(400, "Invalid request data: tags must be a list of strings")
        with self._lock:
            created = self._create_prompt_version({**body, "type": kind, "labels": labels, "tags": tags})
        return web.json_response(created)

    @staticmethod
    def _validate_chat_messages(prompt: Any) -> None:
        if not isinstance(prompt, list):
            raise _ApiError(400, "Invalid request data: a chat prompt must be a list of messages")
        for message in prompt:
            if not isinstance(message, dict):
                raise _ApiError(400, "Invalid request data: chat messages must be objects")
            if message.get("type") == "placeholder":
                if not isinstance(message.get("name"), str):
                    raise _ApiError(400, "Invalid request data: a placeholder needs a name")
                continue
            if message.get("type") not in (None, "chatmessage"):
                raise _ApiError(400, f"Invalid request data: unknown chat message type {message.get('type')!r}")
            if not isinstance(message.get("role"), str) or not isinstance(message.get("content"), str):
                raise _ApiError(400, "Invalid request data: chat messages need string role and content")

    async def _update_labels(self, request: web.Request) -> web.Response:
        name = request.match_info["name"]
        try:
            version = int(request.match_info["version"])
        except ValueError as exc:
            raise _ApiError(400, "version must be an integer") from exc
        body = request[JSON_BODY]
        new_labels = body.get("newLabels") if isinstance(body, dict) else None
        if not isinstance(new_labels, list) or not all(isinstance(label, str) for label in new_labels):
            raise _ApiError(400, "Invalid request data: newLabels must be a list of strings")
        if "latest" in new_labels:
            raise _ApiError(400, "Label 'latest' is always assigned to the latest prompt version")
        with self._lock:
            target = self._find_version(name, version)
            if target is None:
                raise _ApiError(404, f"Prompt not found: {name}", error="LangfuseNotFoundError")
            now = datetime.now(UTC)
            moving = list(dict.fromkeys(new_labels))
            for other in self._prompts[name]:
                if other is not target and any(label in other["labels"] for label in moving):
                    other["labels"] = [label for label in other["labels"] if label not in moving]
                    other["updatedAt"] = now
            target["labels"] = list(dict.fromkeys([*moving, *target["labels"]]))
            target["updatedAt"] = now
            return web.json_response(self._prompt_json(target))

    # OTLP ingestion

    async def _otel_traces(self, request: web.Request) -> web.Response:
        raw: bytes = request[RAW_BODY]
        if raw[:2] == b"\x1f\x8b":  # aiohttp already inflated Content-Encoding: gzip bodies; this is a 2nd layer
            try:
                raw = gzip.decompress(raw)
            except (OSError, EOFError) as exc:
                raise _ApiError(400, "Invalid gzip body") from exc
        content_type = request.content_type or ""
        if not raw:
            spans: list[ReceivedSpan] = []
        elif "protobuf" in content_type:
            spans = self._spans_from_protobuf(raw)
        elif "json" in content_type:
            spans = self._spans_from_json(raw)
        else:
            raise _ApiError(415, f"Unsupported content type {content_type!r}; send application/x-protobuf or json")
        for span in spans:
            if not _valid_hex_id(span.trace_id, 32) or not _valid_hex_id(span.span_id, 16):
                raise _ApiError(400, f"Invalid traceId or spanId in span {span.name!r}: the whole batch is rejected")
        export = OtlpExport(
            content_type=content_type,
            content_encoding=request.headers.get("Content-Encoding"),
            ingestion_version=request.headers.get("x-langfuse-ingestion-version"),
            headers=dict(request.headers),
            spans=spans,
        )
        with self._lock:
            self._otlp.append(export)
            if self.ingest_otlp_as_observations:
                for span in spans:
                    self._ingest_span(span)
        if "protobuf" in content_type:
            return web.Response(body=b"", content_type="application/x-protobuf")
        return web.json_response({})

    @staticmethod
    def _spans_from_protobuf(raw: bytes) -> list[ReceivedSpan]:
        from google.protobuf.message import DecodeError
        from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import ExportTraceServiceRequest

        message = ExportTraceServiceRequest()
        try:
            message.ParseFromString(raw)
        except DecodeError as exc:
            raise _ApiError(400, "Invalid OTLP protobuf body") from exc
        spans = []
        for resource_spans in message.resource_spans:
            resource = {kv.key: _any_value_pb(kv.value) for kv in resource_spans.resource.attributes}
            for scope_spans in resource_spans.scope_spans:
                for s in scope_spans.spans:
                    spans.append(
                        ReceivedSpan(
                            trace_id=s.trace_id.hex(),
                            span_id=s.span_id.hex(),
                            parent_span_id=s.parent_span_id.hex() or None,
                            name=s.name,
                            start_time_unix_nano=s.start_time_unix_nano,
                            end_time_unix_nano=s.end_time_unix_nano,
                            attributes={kv.key: _any_value_pb(kv.value) for kv in s.attributes},
                            status_code=s.status.code,
                            status_message=s.status.message,
                            resource_attributes=resource,
                        )
                    )
        return spans

    @staticmethod
    def _spans_from_json(raw: bytes) -> list[ReceivedSpan]:
        try:
            payload = json.loads(raw)
        except ValueError as exc:
            raise _ApiError(400, "Invalid OTLP JSON body") from exc
        spans = []
        for resource_spans in payload.get("resourceSpans") or []:
            resource_attrs = (resource_spans.get("resource") or {}).get("attributes") or []
            resource = _attributes_json(resource_attrs)
            for scope_spans in resource_spans.get("scopeSpans") or []:
                for s in scope_spans.get("spans") or []:
                    status = s.get("status") or {}
                    code = status.get("code", 0)
                    code = {"STATUS_CODE_UNSET": 0, "STATUS_CODE_OK": 1, "STATUS_CODE_ERROR": 2}.get(code, code)
                    spans.append(
                        ReceivedSpan(
                            trace_id=str(s.get("traceId") or "").lower(),
                            span_id=str(s.get("spanId") or "").lower(),
                            parent_span_id=str(s.get("parentSpanId") or "").lower() or None,
                            name=s.get("name") or "",
                            start_time_unix_nano=int(s.get("startTimeUnixNano") or 0),
                            end_time_unix_nano=int(s.get("endTimeUnixNano") or 0),
                            attributes={
                                kv["key"]: _any_value_json(kv.get("value") or {}) for kv in s.get("attributes") or []
                            },
                            status_code=int(code),
                            status_message=status.get("message") or "",
                            resource_attributes=resource,
                        )
                    )
        return spans

    def _ingest_span(self, span: ReceivedSpan) -> None:
        """Map an OTLP span onto an observation, the way Langfuse's ingestion does (the main attributes)."""
        a = span.attributes
        start = datetime.fromtimestamp(span.start_time_unix_nano / 1e9, tz=UTC)
        end = datetime.fromtimestamp(span.end_time_unix_nano / 1e9, tz=UTC) if span.end_time_unix_nano else None
        obs_type = a.get("langfuse.observation.type")
        if not obs_type:
            obs_type = (
                "GENERATION" if any(k.startswith(("gen_ai.request.model", "gen_ai.usage")) for k in a) else "SPAN"
            )
        level = a.get("langfuse.observation.level") or ("ERROR" if span.status_code == 2 else "DEFAULT")
        usage = _json_attr(a.get("langfuse.observation.usage_details"))
        if usage is None:
            tokens_in = a.get("gen_ai.usage.input_tokens", a.get("gen_ai.usage.prompt_tokens"))
            tokens_out = a.get("gen_ai.usage.output_tokens", a.get("gen_ai.usage.completion_tokens"))
            if tokens_in is not None or tokens_out is not None:
                usage = {"input": int(tokens_in or 0), "output": int(tokens_out or 0)}
        prompt_version = a.get("langfuse.observation.prompt.version")
        observation = {
            "id": span.span_id,
            "type": str(obs_type).upper(),
            "name": span.name,
            "startTime": start,
            "endTime": end,
            "parentObservationId": span.parent_span_id,
            "level": str(level).upper() if str(level).upper() in LEVELS else "DEFAULT",
            "statusMessage": a.get("langfuse.observation.status_message") or span.status_message or None,
            "input": a.get("langfuse.observation.input"),
            "output": a.get("langfuse.observation.output"),
            "metadata": _json_attr(a.get("langfuse.observation.metadata")),
            "model": a.get("langfuse.observation.model.name")
            or a.get("gen_ai.response.model")
            or a.get("gen_ai.request.model"),
            "modelParameters": _json_attr(a.get("langfuse.observation.model.parameters")),
            "usageDetails": usage,
            "costDetails": _json_attr(a.get("langfuse.observation.cost_details")),
            "promptName": a.get("langfuse.observation.prompt.name"),
            "promptVersion": int(prompt_version) if prompt_version is not None else None,
            "environment": a.get("langfuse.environment") or span.resource_attributes.get("langfuse.environment"),
        }
        explicit_name = a.get("langfuse.trace.name")
        tags = a.get("langfuse.trace.tags")
        trace = self._traces.get(span.trace_id)
        name = explicit_name
        if name is None and span.parent_span_id is None and (trace is None or trace["name"] is None):
            name = span.name  # the root span names the trace unless langfuse.trace.name says otherwise
        earlier = trace is None or trace["timestamp"] > start
        self.add_trace(
            span.trace_id,
            [observation],
            name=name,
            timestamp=start if earlier else None,
            user_id=a.get("user.id"),
            session_id=a.get("session.id"),
            tags=list(tags) if isinstance(tags, list) else None,
        )


def _valid_hex_id(value: str, length: int) -> bool:
    return len(value) == length and all(c in "0123456789abcdef" for c in value) and value.strip("0") != ""


def _json_attr(value: Any) -> Any:
    if isinstance(value, str):
        try:
            return json.loads(value)
        except ValueError:
            return None
    return value


def _any_value_pb(value: Any) -> Any:
    kind = value.WhichOneof("value")
    if kind is None:
        return None
    if kind == "array_value":
        return [_any_value_pb(v) for v in value.array_value.values]
    if kind == "kvlist_value":
        return {kv.key: _any_value_pb(kv.value) for kv in value.kvlist_value.values}
    if kind == "bytes_value":
        return value.bytes_value.hex()
    return getattr(value, kind)


def _attributes_json(attributes: list[dict[str, Any]] | None) -> dict[str, Any]:
    return {kv["key"]: _any_value_json(kv.get("value") or {}) for kv in attributes or []}


def _any_value_json(value: dict[str, Any]) -> Any:
    if "stringValue" in value:
        return value["stringValue"]
    if "intValue" in value:
        return int(value["intValue"])
    if "doubleValue" in value:
        return float(value["doubleValue"])
    if "boolValue" in value:
        return bool(value["boolValue"])
    if "arrayValue" in value:
        return [_any_value_json(v) for v in (value["arrayValue"].get("values") or [])]
    if "kvlistValue" in value:
        return _attributes_json(value["kvlistValue"].get("values"))
    if "bytesValue" in value:
        return base64.b64decode(value["bytesValue"]).hex()
    return None
