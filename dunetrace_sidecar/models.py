"""The HTTP API's request and response shapes, as pydantic models.

Requests are validated by them (an error names the field); answers are built as them and
serialized by pydantic, which writes a non-finite number as ``null``, never as a bare NaN; the
OpenAPI document (``dunetrace_sidecar.openapi``) is generated from them. A policy body is only
documented here: ``detectors.policy_rules.parse_policy`` checks it, the one checker the daemon
and the in-process SDK share; the explain service's rules name the field the same way.
"""

from __future__ import annotations

import base64
import binascii
import json
import uuid
from datetime import UTC, datetime
from typing import Annotated, Any, ClassVar, Literal

from pydantic import BaseModel, BeforeValidator, ConfigDict, Field, StrictBool, ValidationError, WithJsonSchema
from pydantic_core import PydanticCustomError

from detectors.base import SEVERITIES

RunStatus = Literal["running", "completed", "errored", "stalled"]
ExitReason = Literal["final_answer", "completed", "error", "policy_violation"]
Source = Literal["otlp", "sdk"]
Severity = Literal["CRITICAL", "HIGH", "MEDIUM", "LOW"]
NotSeen = Literal["tool_names", "content", "root_span"]
MAX_LIMIT = 500
DEFAULT_LIMIT = 50
MAX_EVENTS_LIMIT = 1000
# Unix seconds accepted in filters: 1970 up to the year 2500, well inside BIGINT nanoseconds.
MAX_UNIX_SECONDS = 16_725_225_600


class Answer(BaseModel):
    """A response body: built by the daemon, never from client input."""

    model_config = ConfigDict(extra="forbid")


class Input(BaseModel):
    """A request body: strict types (no "5" for 5, no true for 1), unknown fields refused."""

    model_config = ConfigDict(extra="forbid", strict=True)
    error_code: ClassVar[str] = "invalid_parameter"  # the code of a 400 naming one of its fields


class Query(BaseModel):
    """Query parameters (strings in); parameters a route does not know are ignored."""

    model_config = ConfigDict(extra="ignore")


# --- parsing query strings ------------------------------------------------------------------


def ascii_number(text: str, max_digits: int = 18) -> int | None:
    """A whole number written in ASCII digits (no "²", no other scripts' digits), or None."""
    return int(text) if text.isascii() and text.isdigit() and len(text) <= max_digits else None


def _time_ns(value: Any) -> int:
    """RFC 3339 or Unix seconds → Unix nanoseconds."""
    text = str(value)
    if not text.isascii() or len(text) > 40:
        raise ValueError("expected RFC 3339 or Unix seconds")
    try:
        seconds = float(text)
    except ValueError:
        try:  # RFC 3339 allows lower-case t and z
            parsed = datetime.fromisoformat(text.upper().replace("Z", "+00:00"))
        except ValueError:
            raise ValueError(f"expected RFC 3339 or Unix seconds, got {text!r}") from None
        if parsed.tzinfo is None:
            parsed = parsed.replace(tzinfo=UTC)
        seconds = parsed.timestamp()
    if not 0 <= seconds <= MAX_UNIX_SECONDS:  # also rejects nan and ±inf
        raise ValueError(f"{text!r} is outside 1970 to 2500")
    return int(seconds * 1_000_000) * 1000


def _limit(maximum: int) -> Any:
    def parse(value: Any) -> int:
        number = ascii_number(str(value))
        if number is None or not 1 <= number <= maximum:
            raise ValueError(f"expected an integer from 1 to {maximum}")
        return number

    return parse


def _bool(value: Any) -> bool:
    lowered = str(value).strip().lower()
    if lowered in ("1", "true", "yes"):
        return True
    if lowered in ("0", "false", "no", ""):
        return False
    raise ValueError(f"expected true or false, got {str(value)[:40]!r}")


def encode_cursor(*position: int | str) -> str:
    """An opaque page cursor: the sort key of the last row of the page."""
    return base64.urlsafe_b64encode(json.dumps(position).encode()).decode().rstrip("=")


def _cursor(value: Any) -> tuple[int | str, ...]:
    try:
        text = str(value)
        position = json.loads(base64.urlsafe_b64decode(text + "=" * (-len(text) % 4)))
        if not isinstance(position, list) or not 2 <= len(position) <= 3:
            raise ValueError("not a position")
        if not isinstance(position[0], int) or not 0 <= position[0] < 2**63:
            raise ValueError("out of range")
        if not all(isinstance(p, (int, str)) and not isinstance(p, bool) for p in position):
            raise ValueError("not a position")
        return tuple(position)
    except (ValueError, binascii.Error, UnicodeDecodeError, RecursionError):
        raise PydanticCustomError("invalid_cursor", "not a cursor this API returned") from None


def _severity(value: Any) -> str:
    upper = str(value).upper()
    if upper not in SEVERITIES:
        raise ValueError(f"expected one of {', '.join(SEVERITIES)}")
    return upper


def _run_id(value: Any) -> str:
    """Both the UUID form and the 32-hex trace-id form name the same run."""
    text = str(value).strip().lower()
    if len(text) in (32, 36) and text.isascii():
        try:
            return str(uuid.UUID(text))
        except ValueError:
            pass
    raise ValueError(f"{str(value)[:40]!r} is not a run id (a UUID or 32 hex characters)")


_TIME_DOC = "RFC 3339 timestamp or Unix seconds"
Timestamp = Annotated[int, BeforeValidator(_time_ns), WithJsonSchema({"type": "string", "description": _TIME_DOC})]
PageSize = Annotated[
    int,
    BeforeValidator(_limit(MAX_LIMIT)),
    WithJsonSchema({"type": "integer", "minimum": 1, "maximum": MAX_LIMIT, "default": DEFAULT_LIMIT}),
]
EventsPageSize = Annotated[
    int,
    BeforeValidator(_limit(MAX_EVENTS_LIMIT)),
    WithJsonSchema({"type": "integer", "minimum": 1, "maximum": MAX_EVENTS_LIMIT, "default": MAX_EVENTS_LIMIT}),
]
Cursor = Annotated[
    tuple[int | str, ...],
    BeforeValidator(_cursor),
    WithJsonSchema({"type": "string", "description": "next_cursor of the previous page"}),
]
Flag = Annotated[bool, BeforeValidator(_bool), WithJsonSchema({"type": "boolean", "default": False})]
SeverityParam = Annotated[str, BeforeValidator(_severity), WithJsonSchema({"type": "string", "enum": list(SEVERITIES)})]
RunIdParam = Annotated[
    str, BeforeValidator(_run_id), WithJsonSchema({"type": "string", "description": "a UUID or 32 hex characters"})
]


class AgentsQuery(Query):
    since: Timestamp | None = Field(
        None, description=f"Count only runs started and signals detected at or after ({_TIME_DOC})"
    )


class RunsQuery(Query):
    agent_id: str | None = Field(None, description="Only this agent's runs")
    status: RunStatus | None = Field(None, description="Only runs in this status")
    since: Timestamp | None = Field(None, description=f"Runs started at or after ({_TIME_DOC})")
    until: Timestamp | None = Field(None, description=f"Runs started before ({_TIME_DOC})")
    limit: PageSize = Field(DEFAULT_LIMIT, description=f"Page size, 1-{MAX_LIMIT}")
    cursor: Cursor | None = Field(None, description="next_cursor of the previous page")


class SignalsQuery(Query):
    agent_id: str | None = Field(None, description="Only this agent's signals")
    run_id: RunIdParam | None = Field(None, description="Only this run's signals (UUID or 32 hex)")
    failure_type: str | None = Field(None, description="e.g. TOOL_LOOP")
    severity: SeverityParam | None = Field(None, description="CRITICAL, HIGH, MEDIUM or LOW")
    since: Timestamp | None = Field(None, description=f"Detected at or after ({_TIME_DOC})")
    until: Timestamp | None = Field(None, description=f"Detected before ({_TIME_DOC})")
    include_shadow: Flag = Field(False, description="Also shadow-mode signals")
    limit: PageSize = Field(DEFAULT_LIMIT, description=f"Page size, 1-{MAX_LIMIT}")
    cursor: Cursor | None = Field(None, description="next_cursor of the previous page")


class EventsQuery(Query):
    limit: EventsPageSize = Field(MAX_EVENTS_LIMIT, description=f"Page size, 1-{MAX_EVENTS_LIMIT}")
    cursor: Cursor | None = Field(None, description="events_next_cursor or next_cursor of the previous page")


class PoliciesQuery(Query):
    agent_id: str | None = Field(None, description="Only policies that apply to this agent (its own and '*')")


# --- request bodies ------------------------------------------------------------------------

Name = Annotated[str, Field(min_length=1, max_length=256, pattern=r"\S")]


class Condition(Input):
    trigger: Literal[
        "tool_call_count", "step_count", "cost_usd", "error_count", "finish_reason", "llm_latency_ms", "signal"
    ]
    operator: Literal["gt", "gte", "lt", "lte", "eq", "neq", "contains"]
    # Its type depends on the trigger; policy_rules.parse_policy checks it and names condition.value.
    value: Annotated[
        Any,
        WithJsonSchema(
            {"type": ["number", "string"], "description": "a number, or a string for finish_reason and signal"}
        ),
    ]


class Action(Input):
    type: Literal["stop", "switch_model", "inject_prompt", "log"]
    params: dict[str, Any] | None = Field(None, description="model for switch_model, prompt for inject_prompt")


class PolicyInput(Input):
    """A policy as POST/PUT /v1/policies take it (documentation: detectors.policy_rules checks it)."""

    error_code: ClassVar[str] = "invalid_policy"

    id: int | None = Field(None, description="ignored: the id is the path's, or given out on create")
    name: Name
    agent_id: Name = Field("*", description="'*' for every agent")
    condition: Condition
    action: Action
    priority: Annotated[int, Field(ge=-(2**31), le=2**31)] = Field(100, description="lower first")
    enabled: StrictBool = True


class ToggleInput(Input):
    error_code: ClassVar[str] = "invalid_policy"

    enabled: StrictBool | None = Field(None, description="set this; without it the policy flips")


class ExplainInput(Input):
    langfuse_trace_id: Annotated[str, Field(pattern=r"^[0-9a-fA-F]{32}$")] | None = Field(
        None, description="32 hex; default: the run's own trace id"
    )


class ApplyFixInput(Input):
    fix_content: Annotated[str, Field(min_length=1, max_length=1000, pattern=r"\S")]
    langfuse_prompt_name: Name
    label: Name | None = Field(None, description="default: langfuse.prompt_label")


# --- answers -------------------------------------------------------------------------------


class IngestAnswer(Answer):
    accepted: int = Field(description="events stored (or seen before: a retry's events are stored once)")
    ignored: int = Field(description="events of types the detectors do not use (memory, approvals, voice, …)")
    skipped: int = Field(description="events that could not be used (no run id or event id)")


class IngestEvent(BaseModel):
    """One event of the Dunetrace SDK (wire.md §3.2); read leniently, payloads reduced on arrival."""

    event_type: str
    run_id: str
    agent_id: str
    agent_version: str | None = None
    step_index: int | None = None
    timestamp: float
    payload: dict[str, Any]
    parent_run_id: str | None = None
    trace_id: str | None = None
    conversation_id: str | None = None
    event_id: str


class IngestBatch(BaseModel):
    """The Dunetrace SDK's batch (documentation only: the route reads it leniently, as the SDK writes it)."""

    api_key: str = Field("", description="the SDK repeats its key here; the Authorization header is what counts")
    agent_id: str = Field("", description="the first event's agent only: each event names its own")
    events: list[IngestEvent]


class DeployInput(Input):
    api_key: str | None = Field(None, description="sent by the SDK; the Authorization header is what counts")
    agent_id: Name
    version: Annotated[str, Field(min_length=1, max_length=256)]
    meta: dict[str, Any] | None = Field(None, description="names and numbers kept; longer text cut")


class Deployed(Answer):
    agent_id: str
    version: str
    deployed_at: str | None


class DetectorConfigQuery(Query):
    agent_id: str = Field("", description="the agent whose settings are wanted (none: the defaults)")
    agent_version: str | None = Field(None, description="sent by the SDK; not used")


class Baselines(Answer):
    p75_steps: float | None
    p75_latency_tool_ms: None = None
    p75_latency_llm_ms: None = None
    p75_token_growth: None = None
    p75_llm_tool_ratio: None = None
    p75_total_tokens: None = None
    p75_duration_s: None = None


class DetectorConfig(Answer):
    """The agent's detector settings in the Dunetrace SDK's schema (wire.md §8), for the detectors
    both have; the SDK's in-path detectors use them for trigger: signal policies."""

    schema_version: Literal[1]
    agent_id: str
    agent_version: str | None
    generated_at: int = Field(description="Unix seconds")
    ttl_s: int
    detectors: dict[str, dict[str, int | float]]
    packs: list[str]
    baselines: Baselines


class ErrorDetail(Answer):
    code: str = Field(description="machine-readable, e.g. run_not_found")
    message: str = Field(description="a sentence for people")


class Error(Answer):
    error: ErrorDetail


class Status(Answer):
    status: str


class Run(Answer):
    run_id: str = Field(description="a UUID")
    trace_id: str = Field(description="32 hex characters")
    agent_id: str
    service_name: str | None
    status: RunStatus
    started_at: str | None
    ended_at: str | None
    last_event_at: str | None
    step_count: int
    llm_calls: int
    tool_calls: int
    retrievals: int
    errors: int
    prompt_tokens: int
    completion_tokens: int
    exit_reason: ExitReason | None
    source: Source = Field(
        description="sdk: opened by a Dunetrace SDK (ours, spans of scope dunetrace.sdk; or the published "
        "one's POST /v1/ingest), listed from its start; otlp: any other instrumentation's spans and log records"
    )


class Event(Answer):
    event_id: str
    event_type: str
    step_index: int
    timestamp: str | None
    call_id: str
    payload: dict[str, Any] = Field(description="names, numbers and hashes; see detectors.md §2")


class SuggestedFix(Answer):
    description: str
    language: Literal["python", "text", "yaml"]
    code: str


class Explanation(Answer):
    """Deterministic, built from the evidence (no LLM)."""

    title: str
    what: str
    why_it_matters: str
    evidence_summary: str
    suggested_fixes: list[SuggestedFix]


class SignalOut(Answer):
    signal_id: str = Field(description="stable: from run and type")
    run_id: str
    agent_id: str
    failure_type: str = Field(description="e.g. TOOL_LOOP")
    severity: Severity
    confidence: float = Field(ge=0, le=1)
    step_index: int = Field(description="the step that proves it")
    evidence: dict[str, Any] = Field(description="names, numbers and hashes only")
    detected_at: str | None
    mode: Literal["live", "end"]
    shadow: bool = Field(description="stored, never alerted")
    explanation: Explanation


class RunDetail(Run):
    events: list[Event] = Field(description=f"in step order; the first {MAX_EVENTS_LIMIT} (see events_next_cursor)")
    events_next_cursor: str | None = Field(
        description="set when the run has more events: GET /v1/runs/{run_id}/events?cursor= gives the rest"
    )
    signals: list[SignalOut]
    not_seen: list[NotSeen] = Field(
        description="what the instrumentation did not send, so no detector could judge it: tool_names (tool"
        " calls known only from a finish reason), content (LLM calls with no prompt or output), root_span"
    )
    end_pending: bool = Field(
        description="the end-of-run detectors still wait runs.end_grace_seconds for spans that reach the sidecar"
        " after the root"
    )


class EventsPage(Answer):
    events: list[Event]
    next_cursor: str | None


class RunsPage(Answer):
    runs: list[Run]
    next_cursor: str | None


class SignalsPage(Answer):
    signals: list[SignalOut]
    next_cursor: str | None


class DeployMarker(Answer):
    version: str
    deployed_at: str | None


class Agent(Answer):
    agent_id: str
    run_count: int = Field(description="runs started in the window (all runs without since)")
    running_runs: int = Field(description="runs going on now, whenever they started")
    signal_count: int = Field(description="not shadow, detected in the window")
    failed_runs: int = Field(
        description="runs in the window that errored or raised a (not shadow) signal: the failure rate's numerator"
    )
    last_seen: str | None
    last_deploy: DeployMarker | None = Field(description="the latest POST /v1/deploy (the SDK's dt.mark_deploy)")


class Agents(Answer):
    agents: list[Agent]


class ConditionOut(Answer):
    trigger: str
    operator: str
    value: int | float | str  # as stored: a signature covers its exact JSON


class ActionOut(Answer):
    type: str
    params: dict[str, Any]


class Policy(Answer):
    id: int
    name: str
    agent_id: str
    condition: ConditionOut
    action: ActionOut
    priority: int
    enabled: bool
    signature: str | None = Field(
        None, description="with policies.signing_secret: hex HMAC-SHA256 the Dunetrace SDK verifies (sig_version 1)"
    )
    sig_version: int | None = None


class Policies(Answer):
    policies: list[Policy] = Field(description="in priority order")


class ExplainAnswer(Answer):
    signal_id: str
    run_id: str
    failure_type: str
    root_cause: str
    fix_content: str = Field(description="one sentence for prompt_addition")
    fix_type: Literal["prompt_addition", "code_change", "no_auto_apply"]
    apply_blocked: bool
    langfuse_prompt_name: str | None
    langfuse_prompt_version: int | None
    langfuse_trace_id: str
    source: Literal["langfuse", "sidecar_spans", "signal_only"]
    explainer: str = Field(description="template, anthropic:<model> or openai:<model>")
    fallback_reason: str | None = Field(None, description="why the LLM answer was not used")
    langfuse_error: str | None = Field(None, description="why the Langfuse trace was not used")


class AppliedFix(Answer):
    signal_id: str
    fix_id: str | None
    langfuse_prompt_name: str
    label: str
    old_version: int
    new_version: int
    prompt_url: str
    already_applied: bool
    applied_at: int | None = Field(description="Unix nanoseconds")


class RolledBack(Answer):
    signal_id: str
    fix_id: str
    langfuse_prompt_name: str
    label: str
    rolled_back_to_version: int
    withdrawn_version: int


class FixStatus(Answer):
    signal_id: str
    fix_applied: bool
    message: str | None = Field(None, description="when no fix was applied")
    fix_id: str | None = None
    failure_type: str | None = None
    agent_id: str | None = None
    langfuse_prompt_name: str | None = None
    prompt_url: str | None = Field(None, description="the fixed prompt version in Langfuse (Langfuse configured)")
    old_version: int | None = None
    new_version: int | None = None
    applied_at_ns: int | None = None
    rolled_back: bool | None = None
    runs_after_fix: int | None = None
    recurrences_after_fix: int | None = None
    adopted_runs: int | None = Field(None, description="runs whose generations used the new version")
    verdict: Literal["verified", "likely_fixed", "still_occurring", "insufficient_data"] | None = None


def first_error(exc: ValidationError) -> tuple[str, str, str]:
    """(field path, message, error type) of the first thing wrong, e.g. ("condition.trigger", …)."""
    error = exc.errors(include_url=False, include_input=False)[0]
    field = ".".join(str(part) for part in error["loc"]) or "body"
    message = error["msg"].removeprefix("Value error, ")
    return field, message, error["type"]
