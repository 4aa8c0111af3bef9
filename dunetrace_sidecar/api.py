"""The HTTP API on :8002 — runs and agents (read), health, readiness, the OpenAPI document.

Every error, ours or aiohttp's (404, 405, 413, …), has one shape:
``{"error": {"code": "<machine_code>", "message": "<a sentence>"}}``.
"""

from __future__ import annotations

import asyncio
import bisect
import hashlib
import hmac
import importlib.resources
import json
import logging
import re
import time
import uuid
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import asdict, dataclass
from typing import Any, TypeVar

from aiohttp import web
from prometheus_client.aiohttp import make_aiohttp_handler
from pydantic import BaseModel, ValidationError
from pydantic_core import to_json

import detectors.library  # noqa: F401  (registers the detectors)
from detectors.base import REGISTRY
from detectors.events import RunEvent, RunRow, fold_content, number_steps
from detectors.policy_rules import Policy as PolicyRule
from detectors.policy_rules import PolicyError
from detectors.settings import DetectorSettings
from dunetrace_sidecar.metrics import Metrics
from dunetrace_sidecar.models import (
    MAX_EVENTS_LIMIT,
    Agent,
    Agents,
    AgentsQuery,
    AppliedFix,
    ApplyFixInput,
    Baselines,
    Deployed,
    DeployInput,
    DeployMarker,
    DetectorConfig,
    DetectorConfigQuery,
    Event,
    EventsPage,
    EventsQuery,
    ExplainAnswer,
    ExplainInput,
    FixStatus,
    IngestAnswer,
    IngestBatch,
    Input,
    Policies,
    PoliciesQuery,
    Policy,
    PolicyInput,
    Query,
    RolledBack,
    Run,
    RunDetail,
    RunsPage,
    RunsQuery,
    SignalOut,
    SignalsPage,
    SignalsQuery,
    Status,
    ToggleInput,
    ascii_number,
    encode_cursor,
    first_error,
)
from dunetrace_sidecar.openapi import Route, openapi_document
from dunetrace_sidecar.policies import POLICY_VIOLATION, PolicyBook, PolicyService
from dunetrace_sidecar.views import iso, not_seen, signal_view
from explain.errors import ExplainError
from explain.service import ExplainService
from receiver.auth import key_matches
from receiver.content import bounded, bounded_json_int
from receiver.errors import TIMEOUT, ReceiverError, log_refusal, retry_after_header
from receiver.sdk_ingest import BatchInvalid, SdkBatch
from store.duckdb_store import DuckStore, RunFilter, SignalFilter, StoreUnavailable, WriteBatch

log = logging.getLogger("dunetrace.api")

T = TypeVar("T")
M = TypeVar("M", bound=BaseModel)
Q = TypeVar("Q", bound=Query)
I = TypeVar("I", bound=Input)  # noqa: E741
OPEN_PATHS = frozenset({"/healthz", "/readyz", "/metrics", "/"})
OPEN_PREFIXES = ("/ui/", "/runs/")  # the dashboard's files, and the alerts' links into it
DASHBOARD = importlib.resources.files("dunetrace_sidecar") / "dashboard"
# The dashboard's files: the page itself holds no data (its script asks the API, with the key).
DASHBOARD_TYPES = {".html": "text/html", ".js": "text/javascript", ".css": "text/css", ".svg": "image/svg+xml"}
DASHBOARD_HEADERS = {
    "Content-Security-Policy": "default-src 'self'; script-src 'self'; style-src 'self'; img-src 'self' data:;"
    " connect-src 'self'; frame-ancestors 'none'; base-uri 'none'; form-action 'none'",
    "X-Content-Type-Options": "nosniff",
    "Referrer-Policy": "no-referrer",
    "Cache-Control": "no-cache",
}
# Every type a signal can have: the detectors' and the policies' own.
FAILURE_TYPES = (*sorted(REGISTRY), POLICY_VIOLATION)

STORE = web.AppKey("store", DuckStore)
METRICS = web.AppKey("metrics", Metrics)
POLICIES = web.AppKey("policies", PolicyService)
EXPLAIN = web.AppKey("explain", ExplainService)
OPENAPI: web.AppKey[dict[str, Any]] = web.AppKey("openapi")
LOOPBACK_ONLY = web.AppKey("loopback_only", bool)  # the API listens on a loopback address only
# run id → whether its end-of-run detectors still wait for late spans (runs.end_grace_seconds)
END_PENDING: web.AppKey[Callable[[str], bool]] = web.AppKey("end_pending")
API_KEYS = web.AppKey("api_keys", tuple)


@dataclass(frozen=True)
class SdkBackend:
    """What the Dunetrace SDK's routes need from the daemon (README, "Using the Dunetrace SDK")."""

    export: Callable[[bytes], Awaitable[SdkBatch]]  # the pipeline: reduce, assemble, judge, commit
    check_capacity: Callable[[], None]  # raises ReceiverError when exports are being refused
    max_body_bytes: int
    retry_after_seconds: int
    read_timeout_seconds: float
    detector_settings: Callable[[], DetectorSettings]
    p75_steps: Callable[[str], float | None]
    signing_secret: str = ""


SDK = web.AppKey("sdk", SdkBackend)


class ApiError(Exception):
    def __init__(self, status: int, code: str, message: str) -> None:
        super().__init__(message)
        self.status = status
        self.code = code
        self.message = message


def json_response(body: Any, status: int = 200, headers: dict[str, str] | None = None) -> web.Response:
    """The one JSON encoder of answers that are not models: a non-finite number becomes null,
    never a bare NaN (pydantic does the same for models)."""
    return web.Response(
        body=to_json(body, inf_nan_mode="null"), status=status, headers=headers, content_type="application/json"
    )


def error_response(status: int, code: str, message: str, headers: dict[str, str] | None = None) -> web.Response:
    return json_response({"error": {"code": code, "message": message}}, status=status, headers=headers)


_HTTP_CODES = {
    400: "bad_request",
    401: "unauthorized",
    404: "not_found",
    405: "method_not_allowed",
    413: "payload_too_large",
    415: "unsupported_media_type",
}


# Routes of the Dunetrace cloud that the published SDK calls and the sidecar does not serve.
CLOUD_ONLY = (("/v1/approvals", "approvals (require_approval policies)"), ("/v1/orgs/packs", "detector packs"))


@web.middleware
async def errors_middleware(
    request: web.Request, handler: Callable[[web.Request], Awaitable[web.StreamResponse]]
) -> web.StreamResponse:
    try:
        return await handler(request)
    except (ApiError, ExplainError) as exc:
        return error_response(exc.status, exc.code, exc.message)
    except web.HTTPException as exc:
        if exc.status < 400:
            raise
        code = _HTTP_CODES.get(exc.status, "http_error")
        message = exc.reason if exc.status != 404 else f"no such endpoint: {request.method} {request.path}"
        unsupported = next((what for prefix, what in CLOUD_ONLY if request.path.startswith(prefix)), None)
        if exc.status == 404 and unsupported:
            code, message = "not_supported", f"{unsupported}: a Dunetrace cloud feature the sidecar does not serve"
        headers = {"Allow": exc.headers["Allow"]} if "Allow" in exc.headers else None
        return error_response(exc.status, code, message, headers)
    except StoreUnavailable as exc:
        return error_response(503, "store_unavailable", str(exc))
    except Exception:
        log.exception("unhandled error on %s %s", request.method, request.path)
        return error_response(500, "internal", "internal error; see the sidecar's log")


@web.middleware
async def auth_middleware(
    request: web.Request, handler: Callable[[web.Request], Awaitable[web.StreamResponse]]
) -> web.StreamResponse:
    keys: tuple[str, ...] = request.app[API_KEYS]
    open_path = request.path in OPEN_PATHS or request.path.startswith(OPEN_PREFIXES)
    if not open_path and not key_matches(request.headers.get("Authorization", ""), keys):
        return error_response(
            401,
            "unauthorized",
            "a valid 'Authorization: Bearer <key>' header is required",
            {"WWW-Authenticate": 'Bearer realm="dunetrace"'},
        )
    return await handler(request)


LOOPBACK_NAMES = frozenset({"127.0.0.1", "localhost", "::1"})
SAFE_METHODS = frozenset({"GET", "HEAD", "OPTIONS"})


def _host_name(host: str) -> str:
    """The name part of a Host header ("[::1]:8002" → "::1", "localhost:8002" → "localhost")."""
    if host.startswith("["):
        return host[1 : host.find("]")] if "]" in host else host
    return host.rsplit(":", 1)[0] if host.count(":") == 1 else host


@web.middleware
async def browser_middleware(
    request: web.Request, handler: Callable[[web.Request], Awaitable[web.StreamResponse]]
) -> web.StreamResponse:
    """What a web page can make a browser send never reaches the keyless loopback API:

    - a foreign ``Host`` (how a DNS-rebound page reaches 127.0.0.1) is refused when the API has
      no keys and listens on loopback only;
    - a state change from another origin is refused (``Origin`` or ``Sec-Fetch-Site`` says so);
    - a state change with a body must say ``Content-Type: application/json``, which a page can
      send cross-origin only after a CORS preflight this API never grants.
    curl, the SDKs and pages served by the API itself send none of these, or the right ones."""
    host = _host_name(request.headers.get("Host", "").strip().lower())
    if request.app[LOOPBACK_ONLY] and not request.app[API_KEYS] and host not in LOOPBACK_NAMES:
        return error_response(
            403, "forbidden_host", "this API answers only requests addressed to 127.0.0.1, localhost or [::1]"
        )
    if request.method not in SAFE_METHODS and request.match_info.http_exception is None:  # a route of ours
        origin = request.headers.get("Origin")
        cross_site = request.headers.get("Sec-Fetch-Site", "") in ("cross-site", "same-site")
        if cross_site or (origin is not None and origin != f"{request.scheme}://{request.host}"):
            return error_response(403, "cross_origin", "state changes are not accepted from another origin")
        if request.can_read_body and request.content_type != "application/json":
            return error_response(415, "unsupported_media_type", "a request body must be application/json")
    return await handler(request)


# --- requests in, answers out -------------------------------------------------------------


def parse_run_id(text: str) -> str:
    """Both the UUID form and the 32-hex trace-id form name the same run."""
    candidate = text.strip().lower()
    if re.fullmatch(r"[0-9a-f]{32}", candidate) or re.fullmatch(
        r"[0-9a-f]{8}(-[0-9a-f]{4}){3}-[0-9a-f]{12}", candidate
    ):
        return str(uuid.UUID(candidate))
    raise ApiError(400, "invalid_run_id", f"{text[:40]!r} is not a run id (a UUID or 32 hex characters)")


def parse_query(model: type[Q], request: web.Request) -> Q:
    try:
        return model.model_validate(dict(request.query))
    except ValidationError as exc:
        field, message, kind = first_error(exc)
        raise ApiError(400, kind if kind == "invalid_cursor" else "invalid_parameter", f"{field}: {message}") from None


def _no_constant(name: str) -> Any:
    raise ValueError(f"{name} is not JSON")


async def parse_body(model: type[I], request: web.Request, required: bool) -> I:
    """Strict JSON (no NaN or Infinity, bounded numbers and nesting), then the model."""
    body = await read_json_object(request, required)
    try:
        return model.model_validate(body)
    except ValidationError as exc:
        field, message, _ = first_error(exc)
        raise ApiError(400, model.error_code, f"{field}: {message}") from None


async def read_json_object(request: web.Request, required: bool = True) -> dict[str, Any]:
    """The body as a strict JSON object ({} when it may be left out and is)."""
    if not request.can_read_body:
        if required:
            raise ApiError(400, "invalid_body", "a JSON object body is required")
        return {}
    try:
        body = json.loads(await request.text(), parse_constant=_no_constant, parse_int=bounded_json_int)
    except (ValueError, RecursionError):
        raise ApiError(
            400,
            "invalid_body",
            "the body is not JSON (strict: no NaN or Infinity, numbers of at most 20 digits, nesting within reason)",
        ) from None
    if not isinstance(body, dict):
        raise ApiError(400, "invalid_body", "the body must be a JSON object")
    return body


def answer(model: BaseModel, status: int = 200, headers: dict[str, str] | None = None) -> web.Response:
    """A model as JSON; optional fields that were never set (an explanation's fallback_reason, …)
    are left out rather than sent as null."""
    return web.Response(
        body=model.model_dump_json(exclude_unset=True).encode(),
        status=status,
        headers=headers,
        content_type="application/json",
    )


def bind(route: Route) -> Callable[[web.Request], Awaitable[web.StreamResponse]]:
    """The aiohttp handler of a route: its query and body validated by its models, its answer
    serialized from its model."""

    async def handle(request: web.Request) -> web.StreamResponse:
        parsed: dict[str, Any] = {}
        if route.query is not None:
            parsed["query"] = parse_query(route.query, request)
        if route.body is not None:
            parsed["body"] = await parse_body(route.body, request, route.body_required)
        result = await route.handler(request, **parsed)
        return answer(result, route.status) if isinstance(result, BaseModel) else result

    return handle


def run_view(row: RunRow) -> dict[str, Any]:
    return {
        "run_id": row.run_id,
        "trace_id": row.run_id.replace("-", ""),
        "agent_id": row.agent_id,
        "service_name": row.service_name,
        "status": row.status,
        "started_at": iso(row.started_ns),
        "ended_at": iso(row.ended_ns),
        "last_event_at": iso(row.last_event_ns),
        "step_count": row.step_count,
        "llm_calls": row.llm_calls,
        "tool_calls": row.tool_calls,
        "retrievals": row.retrievals,
        "errors": row.errors,
        "prompt_tokens": row.prompt_tokens,
        "completion_tokens": row.completion_tokens,
        "exit_reason": row.exit_reason,
        "source": row.source,
    }


def event_view(step: int, event: RunEvent) -> Event:
    return Event(
        event_id=event.event_id,
        event_type=event.kind,
        step_index=step,
        timestamp=iso(event.ts_ns),
        call_id=event.call_id,
        payload=dict(event.payload),
    )


def events_page(
    numbered: list[tuple[int, RunEvent]], cursor: tuple[int | str, ...] | None, limit: int
) -> tuple[list[Event], str | None]:
    """One page of a run's events in step order; the cursor is the last one's sort key, so a
    page starts where the previous one ended even when late spans were stored in between."""
    start = 0
    if cursor is not None:
        match cursor:
            case (int() as ts_ns, int() as rank, str() as event_id):
                after = (ts_ns, rank, event_id)
            case _:
                raise ApiError(400, "invalid_cursor", "cursor: not a cursor this API returned")
        start = bisect.bisect_right([e.sort_key() for _, e in numbered], after)
    page = numbered[start : start + limit]
    more = start + limit < len(numbered)
    return [event_view(step, event) for step, event in page], (encode_cursor(*page[-1][1].sort_key()) if more else None)


async def _read(request: web.Request, fn: Callable[..., T], *args: Any) -> T:
    return await asyncio.get_running_loop().run_in_executor(None, fn, *args)


# --- handlers -------------------------------------------------------------------------


async def dashboard_file(name: str) -> web.Response:
    suffix = name[name.rfind(".") :] if "." in name else ""
    resource = DASHBOARD / name
    if suffix not in DASHBOARD_TYPES or "/" in name or name.startswith(".") or not resource.is_file():
        raise ApiError(404, "not_found", f"no dashboard file {name[:80]!r}")
    return web.Response(body=resource.read_bytes(), content_type=DASHBOARD_TYPES[suffix], headers=DASHBOARD_HEADERS)


async def dashboard(request: web.Request) -> web.Response:
    """The dashboard (README, "Dashboard"): one page over this API."""
    return await dashboard_file("index.html")


async def dashboard_asset(request: web.Request) -> web.Response:
    return await dashboard_file(request.match_info["name"])


async def dashboard_run(request: web.Request) -> web.Response:
    """Where an alert's link lands (alerts.dashboard_url pointing at this API): the run's page."""
    run_id = parse_run_id(request.match_info["run_id"])
    raise web.HTTPFound(f"/#/runs/{run_id}")


async def healthz(request: web.Request) -> Status:
    return Status(status="ok")


async def readyz(request: web.Request) -> Status:
    store = request.app[STORE]
    if await _read(request, store.ping):
        return Status(status="ready")
    raise ApiError(503, "not_ready", "the store is not available")


async def metrics(request: web.Request) -> web.StreamResponse:
    """Prometheus exposition, content-negotiated (text or OpenMetrics); no key needed."""
    return await make_aiohttp_handler(request.app[METRICS].registry)(request)


async def openapi(request: web.Request) -> web.Response:
    return json_response(request.app[OPENAPI])


async def list_agents(request: web.Request, query: AgentsQuery) -> Agents:
    agents = await _read(request, request.app[STORE].list_agents, query.since)
    return Agents(
        agents=[
            Agent(
                agent_id=a["agent_id"],
                run_count=a["run_count"],
                running_runs=a["running_runs"],
                signal_count=a["signal_count"],
                failed_runs=a["failed_runs"],
                last_seen=iso(a["last_seen_ns"]),
                last_deploy=DeployMarker(version=a["deploy_version"], deployed_at=iso(a["deployed_ns"]))
                if a["deploy_version"] is not None
                else None,
            )
            for a in agents
        ]
    )


def _after(cursor: tuple[int | str, ...] | None) -> tuple[int, str] | None:
    """A runs / signals cursor: (position in ns, row UUID)."""
    if cursor is None:
        return None
    if len(cursor) != 2 or not isinstance(cursor[0], int) or not isinstance(cursor[1], str):
        raise ApiError(400, "invalid_cursor", "cursor: not a cursor this API returned")
    try:
        return cursor[0], str(uuid.UUID(cursor[1]))
    except ValueError:
        raise ApiError(400, "invalid_cursor", "cursor: not a cursor this API returned") from None


async def list_runs(request: web.Request, query: RunsQuery) -> RunsPage:
    flt = RunFilter(
        agent_id=query.agent_id,
        status=query.status,
        since_ns=query.since,
        until_ns=query.until,
        after=_after(query.cursor),
        limit=query.limit,
    )
    rows = await _read(request, request.app[STORE].list_runs, flt)
    next_cursor = encode_cursor(rows[-1].started_ns, rows[-1].run_id) if len(rows) == flt.limit else None
    return RunsPage(runs=[Run.model_validate(run_view(r)) for r in rows], next_cursor=next_cursor)


async def _numbered_events(request: web.Request, run_id: str) -> list[tuple[int, RunEvent]]:
    return number_steps(fold_content(await _read(request, request.app[STORE].run_events, run_id)))


async def get_run(request: web.Request) -> RunDetail:
    run_id = parse_run_id(request.match_info["run_id"])
    # Asked before the reads: once it says "not pending", the end judgement is committed, so
    # the signals read next include it.
    end_pending = request.app[END_PENDING](run_id)
    store = request.app[STORE]
    row = await _read(request, store.get_run, run_id)
    if row is None:
        raise ApiError(404, "run_not_found", f"no run {run_id}")
    numbered = await _numbered_events(request, run_id)
    signals = await _read(request, store.run_signals, run_id)
    events, next_cursor = events_page(numbered, None, MAX_EVENTS_LIMIT)
    return RunDetail.model_validate(
        {
            **run_view(row),
            "events": events,
            "events_next_cursor": next_cursor,
            "signals": [signal_view(s) for s in signals],
            "not_seen": not_seen([event for _, event in numbered]),
            "end_pending": end_pending,
        }
    )


async def list_run_events(request: web.Request, query: EventsQuery) -> EventsPage:
    run_id = parse_run_id(request.match_info["run_id"])
    if await _read(request, request.app[STORE].get_run, run_id) is None:
        raise ApiError(404, "run_not_found", f"no run {run_id}")
    events, next_cursor = events_page(await _numbered_events(request, run_id), query.cursor, query.limit)
    return EventsPage(events=events, next_cursor=next_cursor)


async def list_signals(request: web.Request, query: SignalsQuery) -> SignalsPage:
    if query.failure_type is not None and query.failure_type not in FAILURE_TYPES:
        raise ApiError(400, "invalid_parameter", f"failure_type: expected one of {', '.join(FAILURE_TYPES)}")
    flt = SignalFilter(
        agent_id=query.agent_id,
        run_id=query.run_id,
        failure_type=query.failure_type,
        severity=query.severity,
        since_ns=query.since,
        until_ns=query.until,
        include_shadow=query.include_shadow,
        after=_after(query.cursor),
        limit=query.limit,
    )
    signals = await _read(request, request.app[STORE].list_signals, flt)
    last = signals[-1] if signals else None
    next_cursor = encode_cursor(last.detected_ns, last.signal_id) if last and len(signals) == flt.limit else None
    return SignalsPage.model_validate({"signals": [signal_view(s) for s in signals], "next_cursor": next_cursor})


async def get_signal(request: web.Request) -> SignalOut:
    raw = request.match_info["signal_id"]
    try:
        signal_id = str(uuid.UUID(raw))
    except ValueError:
        raise ApiError(400, "invalid_signal_id", f"{raw[:40]!r} is not a signal id (a UUID)") from None
    signal = await _read(request, request.app[STORE].get_signal, signal_id)
    if signal is None:
        raise ApiError(404, "signal_not_found", f"no signal {signal_id}")
    return SignalOut.model_validate(signal_view(signal))


async def _counted(request: web.Request, operation: str, call: Awaitable[dict[str, Any]], model: type[M]) -> M:
    counter = request.app[METRICS].explain_requests
    try:
        result = await call
    except (ApiError, ExplainError) as exc:
        counter.labels(operation, exc.code).inc()
        raise
    counter.labels(operation, "fallback" if result.get("fallback_reason") else "ok").inc()
    return model.model_validate(result)


async def explain_signal(request: web.Request, body: ExplainInput) -> ExplainAnswer:
    service = request.app[EXPLAIN]
    return await _counted(
        request, "explain", service.explain(request.match_info["signal_id"], body.langfuse_trace_id), ExplainAnswer
    )


async def apply_fix(request: web.Request, body: ApplyFixInput) -> AppliedFix:
    fix = body.model_dump(exclude_none=True)
    return await _counted(
        request, "apply_fix", request.app[EXPLAIN].apply_fix(request.match_info["signal_id"], fix), AppliedFix
    )


async def rollback_fix(request: web.Request) -> RolledBack:
    return await _counted(
        request, "rollback", request.app[EXPLAIN].rollback(request.match_info["signal_id"]), RolledBack
    )


async def fix_status(request: web.Request) -> FixStatus:
    return FixStatus.model_validate(await request.app[EXPLAIN].fix_status(request.match_info["signal_id"]))


def _policy_id(request: web.Request) -> int:
    raw = request.match_info["policy_id"]
    number = ascii_number(raw)
    if number is None or number > 2**62:
        raise ApiError(400, "invalid_policy_id", f"{raw[:40]!r} is not a policy id (a positive whole number)")
    return number


def _policy(policy: PolicyRule) -> Policy:
    return Policy.model_validate(policy.as_dict())


async def list_policies(request: web.Request, query: PoliciesQuery) -> Policies:
    """Also what the Dunetrace SDK fetches (wire.md §7): with policies.signing_secret set, each
    policy carries the signature the SDK needs to enforce its action."""
    book = request.app[POLICIES].book
    policies = book.all() if query.agent_id is None else book.for_agent(query.agent_id, enabled_only=False)
    backend = request.app.get(SDK)
    secret = backend.signing_secret if backend is not None else ""
    served = []
    for policy in policies:
        body = policy.as_dict()
        if secret:
            body |= {"signature": policy_signature(body, secret), "sig_version": 1}
        served.append(Policy.model_validate(body))
    return Policies(policies=served)


async def create_policy(request: web.Request) -> web.Response:
    body = await read_json_object(request)  # checked by detectors.policy_rules, as the SDK checks its own
    try:
        policy = await request.app[POLICIES].create(body)
    except PolicyError as exc:
        raise ApiError(400, "invalid_policy", str(exc)) from None
    return answer(_policy(policy), status=201, headers={"Location": f"/v1/policies/{policy.id}"})


async def get_policy(request: web.Request) -> Policy:
    policy = request.app[POLICIES].book.get(_policy_id(request))
    if policy is None:
        raise ApiError(404, "policy_not_found", f"no policy {request.match_info['policy_id']}")
    return _policy(policy)


async def replace_policy(request: web.Request) -> Policy:
    policy_id = _policy_id(request)
    body = await read_json_object(request)
    try:
        policy = await request.app[POLICIES].replace(policy_id, body)
    except PolicyError as exc:
        raise ApiError(400, "invalid_policy", str(exc)) from None
    if policy is None:
        raise ApiError(404, "policy_not_found", f"no policy {policy_id}")
    return _policy(policy)


async def delete_policy(request: web.Request) -> web.Response:
    policy_id = _policy_id(request)
    if not await request.app[POLICIES].delete(policy_id):
        raise ApiError(404, "policy_not_found", f"no policy {policy_id}")
    return web.Response(status=204)


async def toggle_policy(request: web.Request, body: ToggleInput) -> Policy:
    policy_id = _policy_id(request)
    policy = await request.app[POLICIES].toggle(policy_id, body.enabled)
    if policy is None:
        raise ApiError(404, "policy_not_found", f"no policy {policy_id}")
    return _policy(policy)


# --- the Dunetrace SDK's routes (README, "Using the Dunetrace SDK") ---------------------------

# SDK detector-config keys and class attributes for the detectors both have (wire.md §8).
SDK_DETECTORS: dict[str, tuple[str, dict[str, str]]] = {
    "TOOL_LOOP": ("tool_loop", {"window": "WINDOW", "threshold": "THRESHOLD"}),
    "TOOL_THRASHING": ("tool_thrashing", {"window": "WINDOW"}),
    "TOOL_AVOIDANCE": ("tool_avoidance", {"min_llm_calls": "MIN_LLM_CALLS"}),
    "GOAL_ABANDONMENT": ("goal_abandonment", {"stall_steps": "STALL_STEPS"}),
    "RAG_EMPTY_RETRIEVAL": ("rag_empty_retrieval", {"min_results": "MIN_RESULTS", "min_score": "MIN_SCORE"}),
    "LLM_TRUNCATION_LOOP": ("llm_truncation_loop", {"threshold": "THRESHOLD"}),
    "CONTEXT_BLOAT": (
        "context_bloat",
        {"min_calls": "MIN_CALLS", "min_last_tokens": "MIN_LAST_TOKENS", "growth_factor": "GROWTH_FACTOR"},
    ),
    "RETRY_STORM": ("retry_storm", {"threshold": "THRESHOLD"}),
    "STEP_COUNT_INFLATION": ("step_count_inflation", {"inflation_factor": "INFLATION_FACTOR"}),
    "CASCADING_TOOL_FAILURE": ("cascading_tool_failure", {"threshold": "THRESHOLD"}),
    "FIRST_STEP_FAILURE": ("first_step_failure", {"max_step": "MAX_STEP"}),
    "REASONING_STALL": ("reasoning_stall", {"min_llm_calls": "MIN_LLM_CALLS", "ratio": "RATIO_THRESHOLD"}),
}


def _sdk(request: web.Request) -> SdkBackend:
    backend = request.app.get(SDK)
    if backend is None:
        raise ApiError(503, "ingest_unavailable", "this API takes no SDK events")
    return backend


async def _read_body(request: web.Request, limit: int) -> bytes:
    """The whole body, up to ``limit`` bytes (the API's own limit is for its small JSON bodies)."""
    chunks: list[bytes] = []
    size = 0
    while chunk := await request.content.readany():
        size += len(chunk)
        if size > limit:
            raise ApiError(413, "payload_too_large", f"the batch is over {limit} bytes (receiver.max_http_body_bytes)")
        chunks.append(chunk)
    return b"".join(chunks)


async def ingest(request: web.Request) -> web.Response:
    """The Dunetrace SDK's batch: 2xx only once its events are committed; 503 + Retry-After
    when exports are being refused (the SDK retries it); 400/413 only for a batch that can
    never succeed (the SDK drops it), logged and counted."""
    backend = _sdk(request)
    counter = request.app[METRICS].export_requests
    try:
        backend.check_capacity()
        try:
            async with asyncio.timeout(backend.read_timeout_seconds):  # a slow upload holds no connection
                body = await _read_body(request, backend.max_body_bytes)
        except TimeoutError:
            raise ReceiverError(TIMEOUT, f"the body did not arrive within {backend.read_timeout_seconds:g} s") from None
        batch = await backend.export(body)
    except ReceiverError as exc:
        counter.labels("sdk", "events", exc.kind.name).inc()
        log_refusal("api", "/v1/ingest", exc.kind, request.remote or "?", exc.cause)
        retry = {"Retry-After": retry_after_header(backend.retry_after_seconds)} if exc.kind.retryable else None
        return error_response(exc.kind.http_status, exc.kind.name, exc.message, retry)
    except BatchInvalid as exc:
        counter.labels("sdk", "events", "invalid_batch").inc()
        log.warning("refused api /v1/ingest reason=invalid_batch peer=%s (%s)", request.remote, exc)
        raise ApiError(400, "invalid_batch", f"{exc}; the SDK drops a batch answered 400") from None
    except ApiError as exc:
        counter.labels("sdk", "events", exc.code).inc()
        log.warning("refused api /v1/ingest reason=%s peer=%s", exc.code, request.remote)
        raise
    if batch.skipped:
        log.warning("ingest: %d event(s) skipped: %s", batch.skipped, "; ".join(batch.reasons))
    return answer(IngestAnswer(accepted=len(batch.events), ignored=batch.ignored, skipped=batch.skipped))


def policy_signature(policy: Mapping[str, Any], secret: str) -> str:
    """The Dunetrace SDK's policy signature (sig_version 1): hex HMAC-SHA256 over its canonical
    string — id, agent, name, condition and action as sorted JSON, enabled, priority, joined by
    NUL, exactly as ``dunetrace.policies._policy_canonical`` writes it."""
    canonical = "\x00".join(
        [
            str(policy["id"]),
            policy["agent_id"],
            policy["name"],
            json.dumps(policy["condition"], sort_keys=True),
            json.dumps(policy["action"], sort_keys=True),
            str(policy["enabled"]),
            str(policy["priority"]),
        ]
    )
    return hmac.new(secret.encode(), canonical.encode(), hashlib.sha256).hexdigest()


async def detector_config(request: web.Request, query: DetectorConfigQuery) -> DetectorConfig:
    backend = _sdk(request)
    detectors: dict[str, dict[str, int | float]] = {}
    for failure_type, settings in backend.detector_settings().for_agent(query.agent_id).items():
        if failure_type not in SDK_DETECTORS or not settings.enabled:
            continue
        key, attributes = SDK_DETECTORS[failure_type]
        values = asdict(settings)
        detectors[key] = {attribute: values[ours] for ours, attribute in attributes.items()}
    # the SDK reads seven baselines; the sidecar keeps the step count's
    baselines: dict[str, float | None] = dict.fromkeys(Baselines.model_fields)
    baselines["p75_steps"] = backend.p75_steps(query.agent_id)
    return DetectorConfig.model_validate(
        {
            "schema_version": 1,
            "agent_id": query.agent_id,
            "agent_version": query.agent_version,
            "generated_at": int(time.time()),
            "ttl_s": 60,
            "detectors": detectors,
            "packs": [],
            "baselines": baselines,
        }
    )


def _meta(value: Mapping[str, Any] | None) -> dict[str, Any]:
    """Deploy metadata as kept: names and numbers (text cut at 256 characters), nothing nested."""
    kept: dict[str, Any] = {}
    for key, item in list((value or {}).items())[:32]:
        if isinstance(item, bool | int | float) or item is None:
            kept[bounded(str(key))] = item
        elif isinstance(item, str):
            kept[bounded(str(key))] = bounded(item)
    return kept


async def deploy(request: web.Request, body: DeployInput) -> web.Response:
    deployed_ns = time.time_ns()
    meta = json.dumps(_meta(body.meta))
    row = (bounded(body.agent_id), bounded(body.version), deployed_ns, meta)
    try:
        await asyncio.wrap_future(request.app[STORE].submit(WriteBatch(deploys=[row])))
    except StoreUnavailable:
        raise ApiError(503, "store_unavailable", "the store is not taking writes; retry shortly") from None
    marker = Deployed(agent_id=row[0], version=row[1], deployed_at=iso(deployed_ns))
    return answer(marker, status=201)


_SIGNAL_ERRORS = (400, 401, 404)
ROUTES: tuple[Route, ...] = (
    Route(
        "GET",
        "/",
        dashboard,
        "The dashboard (HTML; its script reads this API)",
        None,
        answer_schema={"type": "string"},
        answer_type="text/html",
        open=True,
    ),
    Route(
        "GET",
        "/runs/{run_id}",
        dashboard_run,
        "The run's page in the dashboard (where alerts link): a redirect to /#/runs/{run_id}",
        None,
        status=302,
        description="To the dashboard's page of the run",
        errors=(400,),
        open=True,
    ),
    Route(
        "GET",
        "/ui/{name}",
        dashboard_asset,
        "The dashboard's scripts and styles",
        None,
        answer_schema={"type": "string"},
        answer_type="text/javascript",
        errors=(404,),
        open=True,
    ),
    Route("GET", "/healthz", healthz, "Liveness: the process serves HTTP", Status, open=True),
    Route("GET", "/readyz", readyz, "Readiness: the store takes reads and writes", Status, errors=(503,), open=True),
    Route("GET", "/openapi.json", openapi, "This document", None, answer_schema={"type": "object"}),
    Route(
        "GET",
        "/metrics",
        metrics,
        "Prometheus metrics (text exposition, or OpenMetrics when asked for)",
        None,
        answer_schema={"type": "string"},
        answer_type="text/plain",
        open=True,
    ),
    Route(
        "GET",
        "/v1/agents",
        list_agents,
        "Agents seen, with run and signal counts (over a window with since) and last seen time",
        Agents,
        query=AgentsQuery,
        errors=(400, 401),
    ),
    Route(
        "GET",
        "/v1/runs",
        list_runs,
        "Runs, newest first, filtered and paged",
        RunsPage,
        query=RunsQuery,
        errors=(400, 401),
    ),
    Route(
        "GET",
        "/v1/runs/{run_id}",
        get_run,
        f"One run with its signals and its first {MAX_EVENTS_LIMIT} events in step order",
        RunDetail,
        errors=(400, 401, 404),
    ),
    Route(
        "GET",
        "/v1/runs/{run_id}/events",
        list_run_events,
        "A run's events in step order, paged",
        EventsPage,
        query=EventsQuery,
        errors=(400, 401, 404),
    ),
    Route(
        "GET",
        "/v1/signals",
        list_signals,
        "Signals, newest first, with their deterministic explanation",
        SignalsPage,
        query=SignalsQuery,
        errors=(400, 401),
    ),
    Route(
        "GET",
        "/v1/signals/{signal_id}",
        get_signal,
        "One signal with its evidence and explanation",
        SignalOut,
        errors=_SIGNAL_ERRORS,
    ),
    Route(
        "POST",
        "/v1/signals/{signal_id}/explain",
        explain_signal,
        "Root cause and one fix for a signal (LLM when configured, else deterministic)",
        ExplainAnswer,
        body=ExplainInput,
        body_required=False,
        errors=(*_SIGNAL_ERRORS, 503),
    ),
    Route(
        "POST",
        "/v1/signals/{signal_id}/apply-fix",
        apply_fix,
        "Append the fix to the Langfuse prompt and publish it as a new version with the label",
        AppliedFix,
        description="Published (or already applied)",
        body=ApplyFixInput,
        errors=(*_SIGNAL_ERRORS, 403, 502, 503, 504),
    ),
    Route(
        "POST",
        "/v1/signals/{signal_id}/rollback-fix",
        rollback_fix,
        "Move the label back to the version before the fix",
        RolledBack,
        errors=(*_SIGNAL_ERRORS, 502, 503, 504),
    ),
    Route(
        "GET",
        "/v1/signals/{signal_id}/fix-status",
        fix_status,
        "Whether the fix worked: runs after it, recurrences, adoption, verdict",
        FixStatus,
        errors=_SIGNAL_ERRORS,
    ),
    Route(
        "GET",
        "/v1/policies",
        list_policies,
        "Policies; ?agent_id= gives that agent's and the '*' ones (what SDKs fetch)",
        Policies,
        query=PoliciesQuery,
        errors=(401,),
    ),
    Route(
        "POST",
        "/v1/policies",
        create_policy,
        "Create a policy",
        Policy,
        status=201,
        description="Created",
        raw_body=PolicyInput,
        errors=(400, 401),
    ),
    Route("GET", "/v1/policies/{policy_id}", get_policy, "One policy", Policy, errors=(400, 401, 404)),
    Route(
        "PUT",
        "/v1/policies/{policy_id}",
        replace_policy,
        "Replace a policy",
        Policy,
        raw_body=PolicyInput,
        errors=(400, 401, 404),
    ),
    Route(
        "DELETE",
        "/v1/policies/{policy_id}",
        delete_policy,
        "Delete a policy",
        None,
        status=204,
        description="Deleted",
        errors=(400, 401, 404),
    ),
    Route(
        "POST",
        "/v1/ingest",
        ingest,
        "The Dunetrace SDK's event batches: acknowledged (2xx) once committed; 503 + Retry-After when busy",
        IngestAnswer,
        raw_body=IngestBatch,
        errors=(400, 401, 413, 503),
    ),
    Route(
        "GET",
        "/v1/detector-config",
        detector_config,
        "The agent's detector settings in the Dunetrace SDK's schema (the detectors both have)",
        DetectorConfig,
        query=DetectorConfigQuery,
        errors=(400, 401),
    ),
    Route(
        "POST",
        "/v1/deploy",
        deploy,
        "A deploy marker for an agent (the Dunetrace SDK's dt.mark_deploy), shown on GET /v1/agents",
        Deployed,
        status=201,
        description="Recorded",
        body=DeployInput,
        errors=(400, 401, 503),
    ),
    Route(
        "PATCH",
        "/v1/policies/{policy_id}/toggle",
        toggle_policy,
        'Enable or disable (flip, or set with {"enabled": bool})',
        Policy,
        body=ToggleInput,
        body_required=False,
        errors=(400, 401, 404),
    ),
)


def build_api_app(
    store: DuckStore,
    api_keys: tuple[str, ...],
    explainer: ExplainService | None = None,
    metrics: Metrics | None = None,
    policies: PolicyService | None = None,
    loopback_only: bool = True,
    end_pending: Callable[[str], bool] = lambda _run_id: False,
    sdk: SdkBackend | None = None,
) -> web.Application:
    app = web.Application(
        middlewares=[errors_middleware, auth_middleware, browser_middleware], client_max_size=1024 * 1024
    )
    app[LOOPBACK_ONLY] = loopback_only
    app[END_PENDING] = end_pending
    app[STORE] = store
    app[EXPLAIN] = explainer or ExplainService(store, None, None, prompt_label="production", cache_seconds=0)
    app[API_KEYS] = api_keys
    app[METRICS] = metrics or Metrics()
    app[POLICIES] = policies or PolicyService(PolicyBook([], {}), store)
    app[OPENAPI] = openapi_document(ROUTES)
    if sdk is not None:
        app[SDK] = sdk
    for route in ROUTES:
        app.router.add_route(route.method, route.path, bind(route))
    return app
