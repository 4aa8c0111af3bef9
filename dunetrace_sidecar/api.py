"""The HTTP API on :8002 — runs and agents (read), health, readiness, the OpenAPI document.

Every error, ours or aiohttp's (404, 405, 413, …), has one shape:
``{"error": {"code": "<machine_code>", "message": "<a sentence>"}}``.
"""

from __future__ import annotations

import asyncio
import base64
import binascii
import json
import logging
import re
import uuid
from collections.abc import Awaitable, Callable
from datetime import UTC, datetime
from typing import Any, TypeVar

from aiohttp import web
from prometheus_client.aiohttp import make_aiohttp_handler

import detectors.library  # noqa: F401  (registers the detectors)
from detectors.base import REGISTRY, SEVERITIES
from detectors.events import RunEvent, RunRow, fold_content, number_steps
from dunetrace_sidecar.metrics import Metrics
from dunetrace_sidecar.openapi import openapi_document
from dunetrace_sidecar.policies import POLICY_VIOLATION, PolicyBook, PolicyError, PolicyService
from dunetrace_sidecar.views import iso, not_seen, signal_view
from explain.errors import ExplainError
from explain.service import ExplainService
from receiver.auth import key_matches
from store.duckdb_store import DuckStore, RunFilter, SignalFilter, StoreUnavailable

log = logging.getLogger("dunetrace.api")

T = TypeVar("T")
OPEN_PATHS = frozenset({"/healthz", "/readyz", "/metrics"})
MAX_LIMIT = 500
DEFAULT_LIMIT = 50
RUN_STATUSES = frozenset({"running", "completed", "errored", "stalled"})
# Every type a signal can have: the detectors' and the policies' own.
FAILURE_TYPES = (*sorted(REGISTRY), POLICY_VIOLATION)

STORE = web.AppKey("store", DuckStore)
METRICS = web.AppKey("metrics", Metrics)
POLICIES = web.AppKey("policies", PolicyService)
EXPLAIN = web.AppKey("explain", ExplainService)
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


def error_body(code: str, message: str) -> dict[str, Any]:
    return {"error": {"code": code, "message": message}}


def json_response(body: Any, status: int = 200, headers: dict[str, str] | None = None) -> web.Response:
    """Strict JSON out: a non-finite number is an error here, never a bare NaN in an answer."""
    return web.json_response(body, status=status, headers=headers, dumps=_strict_dumps)


def _strict_dumps(value: Any) -> str:
    return json.dumps(value, allow_nan=False)


def error_response(status: int, code: str, message: str, headers: dict[str, str] | None = None) -> web.Response:
    return json_response(error_body(code, message), status=status, headers=headers)


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


# --- parsing request parameters ----------------------------------------------------------


def parse_run_id(text: str) -> str:
    """Both the UUID form and the 32-hex trace-id form name the same run."""
    candidate = text.strip().lower()
    if re.fullmatch(r"[0-9a-f]{32}", candidate) or re.fullmatch(
        r"[0-9a-f]{8}(-[0-9a-f]{4}){3}-[0-9a-f]{12}", candidate
    ):
        return str(uuid.UUID(candidate))
    raise ApiError(400, "invalid_run_id", f"{text!r} is not a run id (a UUID or 32 hex characters)")


# Unix seconds accepted in filters: 1970 up to the year 2500, well inside BIGINT nanoseconds.
MAX_UNIX_SECONDS = 16_725_225_600


def parse_time_ns(name: str, text: str) -> int:
    """RFC 3339 or Unix seconds → Unix nanoseconds."""
    invalid = ApiError(400, "invalid_parameter", f"{name}: expected RFC 3339 or Unix seconds, got {text[:40]!r}")
    if not text.isascii() or len(text) > 40:
        raise invalid
    try:
        seconds = float(text)
    except ValueError:
        try:  # RFC 3339 allows lower-case t and z
            parsed = datetime.fromisoformat(text.upper().replace("Z", "+00:00"))
        except ValueError:
            raise invalid from None
        if parsed.tzinfo is None:
            parsed = parsed.replace(tzinfo=UTC)
        seconds = parsed.timestamp()
    if not 0 <= seconds <= MAX_UNIX_SECONDS:  # also rejects nan and ±inf
        raise ApiError(400, "invalid_parameter", f"{name}: {text!r} is outside 1970 to 2500")
    return int(seconds * 1_000_000) * 1000


def ascii_number(text: str, max_digits: int = 18) -> int | None:
    """A whole number written in ASCII digits (no "²", no other scripts' digits), or None."""
    return int(text) if text.isascii() and text.isdigit() and len(text) <= max_digits else None


def parse_limit(text: str | None) -> int:
    if text is None:
        return DEFAULT_LIMIT
    number = ascii_number(text)
    if number is None or not 1 <= number <= MAX_LIMIT:
        raise ApiError(400, "invalid_parameter", f"limit: expected an integer from 1 to {MAX_LIMIT}")
    return number


def encode_cursor(position_ns: int, row_id: str) -> str:
    return base64.urlsafe_b64encode(f"{position_ns}:{row_id}".encode()).decode().rstrip("=")


def decode_cursor(text: str) -> tuple[int, str]:
    """(position in ns, row id) of the last row of the previous page; the id is a UUID."""
    try:
        raw = base64.urlsafe_b64decode(text + "=" * (-len(text) % 4)).decode()
        position, _, row_id = raw.partition(":")
        position_ns = ascii_number(position, 19)
        if position_ns is None:
            raise ValueError("not a position")
        if not 0 <= position_ns < 2**63:
            raise ValueError("out of range")
        return position_ns, str(uuid.UUID(row_id))
    except (ValueError, binascii.Error, UnicodeDecodeError):
        raise ApiError(400, "invalid_cursor", "cursor: not a cursor this API returned") from None


def parse_bool(name: str, text: str | None) -> bool:
    if text is None:
        return False
    lowered = text.strip().lower()
    if lowered in ("1", "true", "yes"):
        return True
    if lowered in ("0", "false", "no", ""):
        return False
    raise ApiError(400, "invalid_parameter", f"{name}: expected true or false, got {text!r}")


# --- views -----------------------------------------------------------------------------


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


def event_view(step: int, event: RunEvent) -> dict[str, Any]:
    return {
        "event_id": event.event_id,
        "event_type": event.kind,
        "step_index": step,
        "timestamp": iso(event.ts_ns),
        "call_id": event.call_id,
        "payload": event.payload,
    }


async def _read(request: web.Request, fn: Callable[..., T], *args: Any) -> T:
    return await asyncio.get_running_loop().run_in_executor(None, fn, *args)


# --- handlers -------------------------------------------------------------------------


async def healthz(request: web.Request) -> web.Response:
    return json_response({"status": "ok"})


async def readyz(request: web.Request) -> web.Response:
    store = request.app[STORE]
    if await _read(request, store.ping):
        return json_response({"status": "ready"})
    return error_response(503, "not_ready", "the store is not available")


async def metrics(request: web.Request) -> web.StreamResponse:
    """Prometheus exposition, content-negotiated (text or OpenMetrics); no key needed."""
    return await make_aiohttp_handler(request.app[METRICS].registry)(request)


async def openapi(request: web.Request) -> web.Response:
    return json_response(openapi_document())


async def list_agents(request: web.Request) -> web.Response:
    agents = await _read(request, request.app[STORE].list_agents)
    return json_response(
        {
            "agents": [
                {
                    "agent_id": a["agent_id"],
                    "run_count": a["run_count"],
                    "running_runs": a["running_runs"],
                    "signal_count": a["signal_count"],
                    "last_seen": iso(a["last_seen_ns"]),
                }
                for a in agents
            ]
        }
    )


async def list_runs(request: web.Request) -> web.Response:
    query = request.query
    status = query.get("status")
    if status is not None and status not in RUN_STATUSES:
        raise ApiError(400, "invalid_parameter", f"status: expected one of {', '.join(sorted(RUN_STATUSES))}")
    flt = RunFilter(
        agent_id=query.get("agent_id"),
        status=status,
        since_ns=parse_time_ns("since", query["since"]) if "since" in query else None,
        until_ns=parse_time_ns("until", query["until"]) if "until" in query else None,
        after=decode_cursor(query["cursor"]) if "cursor" in query else None,
        limit=parse_limit(query.get("limit")),
    )
    rows = await _read(request, request.app[STORE].list_runs, flt)
    next_cursor = encode_cursor(rows[-1].started_ns, rows[-1].run_id) if len(rows) == flt.limit else None
    return json_response({"runs": [run_view(r) for r in rows], "next_cursor": next_cursor})


async def get_run(request: web.Request) -> web.Response:
    run_id = parse_run_id(request.match_info["run_id"])
    # Asked before the reads: once it says "not pending", the end judgement is committed, so
    # the signals read next include it.
    end_pending = request.app[END_PENDING](run_id)
    store = request.app[STORE]
    row = await _read(request, store.get_run, run_id)
    if row is None:
        raise ApiError(404, "run_not_found", f"no run {run_id}")
    events = await _read(request, store.run_events, run_id)
    signals = await _read(request, store.run_signals, run_id)
    body = run_view(row)
    folded = fold_content(events)
    body["events"] = [event_view(step, event) for step, event in number_steps(folded)]
    body["signals"] = [signal_view(s) for s in signals]
    body["not_seen"] = not_seen(folded)
    body["end_pending"] = end_pending
    return json_response(body)


async def list_signals(request: web.Request) -> web.Response:
    query = request.query
    severity = query.get("severity")
    if severity is not None and severity.upper() not in SEVERITIES:
        raise ApiError(400, "invalid_parameter", f"severity: expected one of {', '.join(SEVERITIES)}")
    failure_type = query.get("failure_type")
    if failure_type is not None and failure_type not in FAILURE_TYPES:
        raise ApiError(400, "invalid_parameter", f"failure_type: expected one of {', '.join(FAILURE_TYPES)}")
    flt = SignalFilter(
        agent_id=query.get("agent_id"),
        run_id=parse_run_id(query["run_id"]) if "run_id" in query else None,
        failure_type=failure_type,
        severity=severity.upper() if severity else None,
        since_ns=parse_time_ns("since", query["since"]) if "since" in query else None,
        until_ns=parse_time_ns("until", query["until"]) if "until" in query else None,
        include_shadow=parse_bool("include_shadow", query.get("include_shadow")),
        after=decode_cursor(query["cursor"]) if "cursor" in query else None,
        limit=parse_limit(query.get("limit")),
    )
    signals = await _read(request, request.app[STORE].list_signals, flt)
    last = signals[-1] if signals else None
    next_cursor = encode_cursor(last.detected_ns, last.signal_id) if last and len(signals) == flt.limit else None
    return json_response({"signals": [signal_view(s) for s in signals], "next_cursor": next_cursor})


async def get_signal(request: web.Request) -> web.Response:
    raw = request.match_info["signal_id"]
    try:
        signal_id = str(uuid.UUID(raw))
    except ValueError:
        raise ApiError(400, "invalid_signal_id", f"{raw!r} is not a signal id (a UUID)") from None
    signal = await _read(request, request.app[STORE].get_signal, signal_id)
    if signal is None:
        raise ApiError(404, "signal_not_found", f"no signal {signal_id}")
    return json_response(signal_view(signal))


def _no_constant(name: str) -> Any:
    raise ValueError(f"{name} is not JSON")


def _bounded_int(text: str) -> int:
    if len(text.lstrip("-")) > 20:
        raise ValueError("number too long")
    return int(text)


async def _json_body(request: web.Request, required: bool) -> dict[str, Any]:
    if not request.can_read_body:
        if required:
            raise ApiError(400, "invalid_body", "a JSON object body is required")
        return {}
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
    return body


async def _counted(request: web.Request, operation: str, call: Awaitable[dict[str, Any]]) -> web.Response:
    counter = request.app[METRICS].explain_requests
    try:
        answer = await call
    except (ApiError, ExplainError) as exc:
        counter.labels(operation, exc.code).inc()
        raise
    counter.labels(operation, "fallback" if answer.get("fallback_reason") else "ok").inc()
    return json_response(answer)


async def explain_signal(request: web.Request) -> web.Response:
    body = await _json_body(request, required=False)
    service = request.app[EXPLAIN]
    return await _counted(
        request, "explain", service.explain(request.match_info["signal_id"], body.get("langfuse_trace_id"))
    )


async def apply_fix(request: web.Request) -> web.Response:
    body = await _json_body(request, required=True)
    return await _counted(request, "apply_fix", request.app[EXPLAIN].apply_fix(request.match_info["signal_id"], body))


async def rollback_fix(request: web.Request) -> web.Response:
    return await _counted(request, "rollback", request.app[EXPLAIN].rollback(request.match_info["signal_id"]))


async def fix_status(request: web.Request) -> web.Response:
    return json_response(await request.app[EXPLAIN].fix_status(request.match_info["signal_id"]))


def _policy_id(request: web.Request) -> int:
    raw = request.match_info["policy_id"]
    number = ascii_number(raw)
    if number is None or number > 2**62:
        raise ApiError(400, "invalid_policy_id", f"{raw[:40]!r} is not a policy id (a positive whole number)")
    return number


def _policy_error(exc: PolicyError) -> ApiError:
    return ApiError(400, "invalid_policy", str(exc))


async def list_policies(request: web.Request) -> web.Response:
    book = request.app[POLICIES].book
    agent_id = request.query.get("agent_id")
    policies = book.all() if agent_id is None else book.for_agent(agent_id, enabled_only=False)
    return json_response({"policies": [p.as_dict() for p in policies]})


async def create_policy(request: web.Request) -> web.Response:
    body = await _json_body(request, required=True)
    try:
        policy = await request.app[POLICIES].create(body)
    except PolicyError as exc:
        raise _policy_error(exc) from None
    return json_response(policy.as_dict(), status=201, headers={"Location": f"/v1/policies/{policy.id}"})


async def get_policy(request: web.Request) -> web.Response:
    policy = request.app[POLICIES].book.get(_policy_id(request))
    if policy is None:
        raise ApiError(404, "policy_not_found", f"no policy {request.match_info['policy_id']}")
    return json_response(policy.as_dict())


async def replace_policy(request: web.Request) -> web.Response:
    policy_id = _policy_id(request)
    body = await _json_body(request, required=True)
    try:
        policy = await request.app[POLICIES].replace(policy_id, body)
    except PolicyError as exc:
        raise _policy_error(exc) from None
    if policy is None:
        raise ApiError(404, "policy_not_found", f"no policy {policy_id}")
    return json_response(policy.as_dict())


async def delete_policy(request: web.Request) -> web.Response:
    policy_id = _policy_id(request)
    if not await request.app[POLICIES].delete(policy_id):
        raise ApiError(404, "policy_not_found", f"no policy {policy_id}")
    return web.Response(status=204)


async def toggle_policy(request: web.Request) -> web.Response:
    policy_id = _policy_id(request)
    body = await _json_body(request, required=False)
    enabled = body.get("enabled")
    if enabled is not None and not isinstance(enabled, bool):
        raise ApiError(400, "invalid_policy", "enabled: true or false is required")
    policy = await request.app[POLICIES].toggle(policy_id, enabled)
    if policy is None:
        raise ApiError(404, "policy_not_found", f"no policy {policy_id}")
    return json_response(policy.as_dict())


ROUTES: tuple[tuple[str, str, Callable[[web.Request], Awaitable[web.StreamResponse]]], ...] = (
    ("GET", "/healthz", healthz),
    ("GET", "/readyz", readyz),
    ("GET", "/openapi.json", openapi),
    ("GET", "/metrics", metrics),
    ("GET", "/v1/agents", list_agents),
    ("GET", "/v1/runs", list_runs),
    ("GET", "/v1/runs/{run_id}", get_run),
    ("GET", "/v1/signals", list_signals),
    ("GET", "/v1/signals/{signal_id}", get_signal),
    ("POST", "/v1/signals/{signal_id}/explain", explain_signal),
    ("POST", "/v1/signals/{signal_id}/apply-fix", apply_fix),
    ("POST", "/v1/signals/{signal_id}/rollback-fix", rollback_fix),
    ("GET", "/v1/signals/{signal_id}/fix-status", fix_status),
    ("GET", "/v1/policies", list_policies),
    ("POST", "/v1/policies", create_policy),
    ("GET", "/v1/policies/{policy_id}", get_policy),
    ("PUT", "/v1/policies/{policy_id}", replace_policy),
    ("DELETE", "/v1/policies/{policy_id}", delete_policy),
    ("PATCH", "/v1/policies/{policy_id}/toggle", toggle_policy),
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
    for method, path, handler in ROUTES:
        app.router.add_route(method, path, handler)
    return app
