"""The HTTP API on :8002 — runs and agents (read), health, readiness, the OpenAPI document.

Every error, ours or aiohttp's (404, 405, 413, …), has one shape:
``{"error": {"code": "<machine_code>", "message": "<a sentence>"}}``.
"""

from __future__ import annotations

import asyncio
import bisect
import json
import logging
import re
import uuid
from collections.abc import Awaitable, Callable
from typing import Any, TypeVar

from aiohttp import web
from prometheus_client.aiohttp import make_aiohttp_handler
from pydantic import BaseModel, ValidationError
from pydantic_core import to_json

import detectors.library  # noqa: F401  (registers the detectors)
from detectors.base import REGISTRY
from detectors.events import RunEvent, RunRow, fold_content, number_steps
from dunetrace_sidecar.metrics import Metrics
from dunetrace_sidecar.models import (
    MAX_EVENTS_LIMIT,
    Agent,
    Agents,
    AppliedFix,
    ApplyFixInput,
    Event,
    EventsPage,
    EventsQuery,
    ExplainAnswer,
    ExplainInput,
    FixStatus,
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
from dunetrace_sidecar.policies import POLICY_VIOLATION, PolicyBook, PolicyError, PolicyService
from dunetrace_sidecar.policies import Policy as PolicyRule
from dunetrace_sidecar.views import iso, not_seen, signal_view
from explain.errors import ExplainError
from explain.service import ExplainService
from receiver.auth import key_matches
from store.duckdb_store import DuckStore, RunFilter, SignalFilter, StoreUnavailable

log = logging.getLogger("dunetrace.api")

T = TypeVar("T")
M = TypeVar("M", bound=BaseModel)
Q = TypeVar("Q", bound=Query)
I = TypeVar("I", bound=Input)  # noqa: E741
OPEN_PATHS = frozenset({"/healthz", "/readyz", "/metrics"})
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
    if request.path not in OPEN_PATHS and not key_matches(request.headers.get("Authorization", ""), keys):
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


def _bounded_int(text: str) -> int:
    if len(text.lstrip("-")) > 20:
        raise ValueError("number too long")
    return int(text)


async def parse_body(model: type[I], request: web.Request, required: bool) -> I:
    """Strict JSON (no NaN or Infinity, bounded numbers and nesting), then the model."""
    if not request.can_read_body:
        if required:
            raise ApiError(400, "invalid_body", "a JSON object body is required")
        return model.model_validate({})
    try:
        body = json.loads(await request.text(), parse_constant=_no_constant, parse_int=_bounded_int)
    except (ValueError, RecursionError):
        raise ApiError(
            400,
            "invalid_body",
            "the body is not JSON (strict: no NaN or Infinity, numbers of at most 20 digits, nesting within reason)",
        ) from None
    if not isinstance(body, dict):
        raise ApiError(400, "invalid_body", "the body must be a JSON object")
    try:
        return model.model_validate(body)
    except ValidationError as exc:
        field, message, _ = first_error(exc)
        raise ApiError(400, model.error_code, f"{field}: {message}") from None


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


async def list_agents(request: web.Request) -> Agents:
    agents = await _read(request, request.app[STORE].list_agents)
    return Agents(
        agents=[
            Agent(
                agent_id=a["agent_id"],
                run_count=a["run_count"],
                running_runs=a["running_runs"],
                signal_count=a["signal_count"],
                last_seen=iso(a["last_seen_ns"]),
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
    book = request.app[POLICIES].book
    policies = book.all() if query.agent_id is None else book.for_agent(query.agent_id, enabled_only=False)
    return Policies(policies=[_policy(p) for p in policies])


async def create_policy(request: web.Request, body: PolicyInput) -> web.Response:
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


async def replace_policy(request: web.Request, body: PolicyInput) -> Policy:
    policy_id = _policy_id(request)
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


_SIGNAL_ERRORS = (400, 401, 404)
ROUTES: tuple[Route, ...] = (
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
    Route("GET", "/v1/agents", list_agents, "Agents seen, with run counts and last seen time", Agents, errors=(401,)),
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
        body=PolicyInput,
        errors=(400, 401),
    ),
    Route("GET", "/v1/policies/{policy_id}", get_policy, "One policy", Policy, errors=(400, 401, 404)),
    Route(
        "PUT",
        "/v1/policies/{policy_id}",
        replace_policy,
        "Replace a policy",
        Policy,
        body=PolicyInput,
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
    for route in ROUTES:
        app.router.add_route(route.method, route.path, bind(route))
    return app
