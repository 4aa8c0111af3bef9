"""Stage 1 of translation: one protobuf span (or gen_ai log record) → one ``SpanFacts``.

Pure and per-item: no run state. Content is reduced here (see ``receiver.content``); the
facts carry no raw text.
"""

from __future__ import annotations

import ast
import json
import logging
import math
import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, replace
from enum import Enum
from typing import Any

from opentelemetry.proto.common.v1 import common_pb2 as pb_common
from opentelemetry.proto.logs.v1 import logs_pb2 as pb_logs
from opentelemetry.proto.trace.v1 import trace_pb2 as pb_trace

from detectors.patterns import scan_injection
from receiver import keys as k
from receiver.content import (
    Hasher,
    Injection,
    Message,
    OutputFeatures,
    PromptFeatures,
    RequestedToolCall,
    ToolRequest,
    bounded,
    bounded_json_int,
    canonical_arguments,
    canonical_json,
    fill_from_blocks,
    injection_from,
    loads_json,
    messages_from_legacy,
    messages_from_openinference,
    messages_from_semconv,
    output_features,
    prompt_features,
    response_finish_reason,
    system_instructions,
    unwrap_tool_input,
)
from receiver.pickling import pickled_by_fields

STATUS_ERROR = pb_trace.Status.STATUS_CODE_ERROR
log = logging.getLogger("dunetrace.receiver")


class SpanRole(Enum):
    LLM = "llm"
    TOOL = "tool"
    RETRIEVAL = "retrieval"
    STRUCTURE = "structure"  # workflow / agent / chain: shapes the run, yields no event
    NONE = "none"  # not a GenAI span


@pickled_by_fields
@dataclass(slots=True)
class LlmFacts:
    model: str | None
    provider: str | None
    prompt_tokens: int | None
    completion_tokens: int | None
    response_id: str | None
    finish_reason: str | None  # normalised
    prompt: PromptFeatures
    output: OutputFeatures
    tools_available: tuple[str, ...]
    native_sdk_span: bool  # the Anthropic SDK tracing itself, next to an instrumentation's span
    prompt_name: str | None
    prompt_version: int | None


@pickled_by_fields
@dataclass(slots=True)
class ToolFacts:
    name: str
    call_id: str | None
    args_hash: str | None
    args_length: int | None
    output_hash: str | None
    output_length: int | None
    injection: Injection | None


@pickled_by_fields
@dataclass(slots=True)
class RetrievalFacts:
    index_name: str | None
    query_hash: str | None
    query_length: int | None
    result_count: int | None
    top_score: float | None
    injection: Injection | None


@pickled_by_fields
@dataclass(slots=True)
class RootInput:
    input_hash: str
    input_length: int
    injection: Injection | None


@pickled_by_fields
@dataclass(slots=True)
class SdkPolicy:
    """A local policy of our SDK that fired (a ``dunetrace.policy.triggered`` span event)."""

    ts_ns: int
    payload: Mapping[str, Any]  # the keys of the sidecar's own policy.triggered events, and source


@pickled_by_fields
@dataclass(slots=True)
class SpanFacts:
    run_id: str  # the trace id as a UUID
    span_id: str  # 16 hex
    parent_id: str  # 16 hex, "" for the root
    start_ns: int
    end_ns: int
    role: SpanRole
    is_error: bool
    error_type: str | None
    error_hash: str | None
    agent_name: str | None  # gen_ai.agent.name or OpenInference agent.name
    workflow_name: str | None  # gen_ai.workflow.name or traceloop.workflow.name
    service_name: str | None
    resource_agent_name: str | None  # gen_ai.agent.name on the resource: names every span's run
    agent_span_name: str | None  # the name of an OpenInference AGENT span
    llm: LlmFacts | None = None
    tool: ToolFacts | None = None
    retrieval: RetrievalFacts | None = None
    root_input: RootInput | None = None
    # Our SDK's root span (docs/sdk-spans.md): the exit reason it declares, its agent version
    # and the local policies that fired during the run.
    exit_reason: str | None = None
    agent_version: str | None = None
    policies: tuple[SdkPolicy, ...] = ()
    from_our_sdk: bool = False  # scope dunetrace.sdk: the run was opened by our SDK (listed, steps or not)

    @property
    def is_root(self) -> bool:
        return not self.parent_id


@pickled_by_fields
@dataclass(slots=True)
class LogContent:
    """Prompt and completion content that arrived as gen_ai log records for one span."""

    run_id: str
    span_id: str
    ts_ns: int  # the latest record time
    prompt: PromptFeatures | None
    output: OutputFeatures | None


class SpanRejected(ValueError):
    """The span cannot be used (bad ids); counted in partial_success, never stored."""


# --- attribute reading --------------------------------------------------------------------


def any_value(value: pb_common.AnyValue) -> Any:
    kind = value.WhichOneof("value")
    if kind == "string_value":
        return value.string_value
    if kind == "int_value":
        return value.int_value
    if kind == "double_value":
        return value.double_value
    if kind == "bool_value":
        return value.bool_value
    if kind == "array_value":
        return [any_value(v) for v in value.array_value.values]
    if kind == "kvlist_value":
        return {kv.key: any_value(kv.value) for kv in value.kvlist_value.values}
    if kind == "bytes_value":
        return value.bytes_value.hex()
    return None


def read_wanted(attributes: Iterable[pb_common.KeyValue], wanted: frozenset[str] = k.WANTED_KEYS) -> dict[str, Any]:
    """Only the keys the translator uses; every other attribute is skipped unconverted."""
    prefixes = k.WANTED_PREFIXES
    out: dict[str, Any] = {}
    for kv in attributes:
        key = kv.key
        if key in wanted or key.startswith(prefixes):
            value = kv.value
            # most values are strings: read here, without a call to any_value
            out[key] = value.string_value if value.WhichOneof("value") == "string_value" else any_value(value)
    return out


def _first(attrs: Mapping[str, Any], names: Iterable[str]) -> Any:
    for name in names:
        value = attrs.get(name)
        if value is not None and value != "":
            return value
    return None


# Numbers a span may carry, bounded where they enter: a value outside these is treated as
# absent, so one span cannot poison a store transaction shared with other clients' exports.
MAX_COUNT = 2**31 - 1  # tokens, versions
MAX_TIME_NS = 2**63 - 1  # fixed64 times above int64 are clamped (year 2262)
MAX_NUMBER_DIGITS = 18


def as_count(value: Any) -> int | None:
    """A non-negative count up to MAX_COUNT, from an int, a finite float or ASCII digits."""
    if isinstance(value, bool):
        return None
    if isinstance(value, float):
        value = int(value) if math.isfinite(value) else None
    elif isinstance(value, str):
        text = value.strip()
        value = int(text) if text.isascii() and text.isdigit() and len(text) <= MAX_NUMBER_DIGITS else None
    if isinstance(value, int) and 0 <= value <= MAX_COUNT:
        return value
    return None


def as_number(value: Any) -> float | None:
    """A finite number (JSON has no NaN or Infinity)."""
    if isinstance(value, bool):
        return None
    if isinstance(value, int):
        value = float(value) if abs(value) < 2**53 else None
    elif isinstance(value, str):
        try:
            value = float(value) if len(value) <= 64 else None
        except ValueError:
            return None
    return value if isinstance(value, float) and math.isfinite(value) else None


def _time_ns(value: int) -> int:
    return min(value, MAX_TIME_NS)


def _text(value: Any) -> str | None:
    if value is None or value == "":
        return None
    return value if isinstance(value, str) else str(value)


def as_name(value: Any) -> str | None:
    """A name or id (model, agent, tool, call id, error type, …), bounded (``bounded``)."""
    text = _text(value)
    return bounded(text) if text is not None else None


# --- ids -------------------------------------------------------------------------------


def run_id_from_trace_id(trace_id: bytes) -> str:
    """The run id: the 16-byte trace id as a UUID string (``str(uuid.UUID(bytes=…))``, without
    building the UUID object, which cost 6 % of translating a span)."""
    h = trace_id.hex()
    return f"{h[:8]}-{h[8:12]}-{h[12:16]}-{h[16:20]}-{h[20:]}"


def check_ids(trace_id: bytes, span_id: bytes, parent_span_id: bytes) -> None:
    if len(trace_id) != 16 or not any(trace_id):
        raise SpanRejected("trace_id must be 16 bytes and not all zero")
    if len(span_id) != 8 or not any(span_id):
        raise SpanRejected("span_id must be 8 bytes and not all zero")
    if parent_span_id and len(parent_span_id) != 8:
        raise SpanRejected("parent_span_id must be empty or 8 bytes")


# --- classification -------------------------------------------------------------------


def _kind(attrs: Mapping[str, Any], key: str) -> str | None:
    """A kind marker: only a string counts (an array or number there is no kind)."""
    value = attrs.get(key)
    return value if isinstance(value, str) and value else None


def classify(attrs: Mapping[str, Any]) -> SpanRole:
    """An explicit kind wins; only without one do model / tool attributes decide (spec §1)."""
    operation = _kind(attrs, k.GEN_AI_OPERATION_NAME)
    if operation:
        if operation in k.OPERATION_LLM:
            return SpanRole.LLM
        if operation in k.OPERATION_TOOL:
            return SpanRole.TOOL
        if operation in k.OPERATION_RETRIEVAL:
            return SpanRole.RETRIEVAL
        if operation in k.OPERATION_STRUCTURE:
            return SpanRole.STRUCTURE
    oi_kind = _kind(attrs, k.OPENINFERENCE_SPAN_KIND)
    if oi_kind:
        if oi_kind in k.OPENINFERENCE_LLM:
            return SpanRole.LLM
        if oi_kind in k.OPENINFERENCE_TOOL:
            return SpanRole.TOOL
        if oi_kind in k.OPENINFERENCE_RETRIEVAL:
            return SpanRole.RETRIEVAL
        return SpanRole.STRUCTURE
    tl_kind = _kind(attrs, k.TRACELOOP_SPAN_KIND)
    if tl_kind:
        if tl_kind in k.TRACELOOP_TOOL:
            return SpanRole.TOOL
        if tl_kind in k.TRACELOOP_STRUCTURE:
            return SpanRole.STRUCTURE
    if operation or oi_kind or tl_kind:
        return SpanRole.NONE
    if _first(attrs, k.REQUEST_MODEL_KEYS) is not None or attrs.get(k.LLM_REQUEST_TYPE):
        return SpanRole.LLM
    if attrs.get("gen_ai.tool.name"):
        return SpanRole.TOOL
    return SpanRole.NONE


# --- per-role extraction --------------------------------------------------------------


def _input_messages(attrs: Mapping[str, Any]) -> list[Message]:
    messages: list[Message] = []
    if k.SYSTEM_INSTRUCTIONS in attrs:
        messages += system_instructions(attrs[k.SYSTEM_INSTRUCTIONS])
    if k.INPUT_MESSAGES in attrs:
        messages += messages_from_semconv(attrs[k.INPUT_MESSAGES])
    else:
        messages += messages_from_legacy(attrs, k.LEGACY_PROMPT_PREFIX)
        messages += messages_from_openinference(attrs, k.OI_INPUT_MESSAGES_PREFIX)
    return messages


def _output_messages(attrs: Mapping[str, Any]) -> list[Message]:
    if k.OUTPUT_MESSAGES in attrs:
        return messages_from_semconv(attrs[k.OUTPUT_MESSAGES])
    return messages_from_legacy(attrs, k.LEGACY_COMPLETION_PREFIX) + messages_from_openinference(
        attrs, k.OI_OUTPUT_MESSAGES_PREFIX
    )


def _tool_names_from_definitions(value: Any) -> list[str]:
    data = json.loads(value) if isinstance(value, str) else value
    names: list[str] = []
    if isinstance(data, dict):
        data = [data]
    for item in data if isinstance(data, list) else ():
        if not isinstance(item, dict):
            continue
        name = item.get("name") or (item.get("function") or {}).get("name")
        if name:
            names.append(str(name))
    return names


def _available_tools(attrs: Mapping[str, Any]) -> tuple[str, ...]:
    names: list[str] = []
    try:
        if k.TOOL_DEFINITIONS in attrs:
            names += _tool_names_from_definitions(attrs[k.TOOL_DEFINITIONS])
        for key, value in attrs.items():
            if key.startswith(k.LEGACY_FUNCTIONS_PREFIX) and key.endswith(".name") and value:
                names.append(str(value))
            elif key.startswith(k.OI_TOOLS_PREFIX) and key.endswith(".tool.json_schema"):
                names += _tool_names_from_definitions(value)
    except (ValueError, RecursionError):
        pass  # malformed definitions: the tools stay unknown
    return tuple(dict.fromkeys(names))


def _finish_reason(attrs: Mapping[str, Any], output: OutputFeatures) -> str | None:
    reasons = attrs.get(k.FINISH_REASONS)
    raw: Any = None
    if isinstance(reasons, list) and reasons:
        raw = reasons[0]
    elif isinstance(reasons, str):
        raw = reasons
    raw = raw or output.finish_reason or attrs.get(k.OPENINFERENCE_FINISH_REASON)
    raw = raw or attrs.get(k.ANTHROPIC_STOP_REASON)
    return response_finish_reason(as_name(raw), bool(output.tool_requests))


def _text_or_messages(value: Any, role: str) -> list[Message]:
    """A content attribute that is either a JSON list of messages or plain text."""
    data = loads_json(value)
    if isinstance(data, (list, dict)):
        return messages_from_semconv(data)
    return [Message(role=role, texts=[value if isinstance(value, str) else json.dumps(value)])]


def _event_messages(events: Iterable[pb_trace.Span.Event]) -> tuple[list[Message], list[Message]]:
    """(input, output) messages a span carries as span events instead of attributes."""
    inputs: list[Message] = []
    outputs: list[Message] = []
    for event in events:
        name = event.name
        if name not in k.SPAN_CONTENT_EVENTS:
            continue
        attrs = {kv.key: any_value(kv.value) for kv in event.attributes}
        if name == k.LOG_EVENT_OPERATION_DETAILS:
            details_in, details_out = _messages_from_details(attrs)
            inputs += details_in
            outputs += details_out
        elif name == k.EVENT_CONTENT_PROMPT and k.EVENT_PROMPT_ATTR in attrs:
            inputs += _text_or_messages(attrs[k.EVENT_PROMPT_ATTR], "unknown")
        elif name == k.EVENT_CONTENT_COMPLETION and k.EVENT_COMPLETION_ATTR in attrs:
            outputs += _text_or_messages(attrs[k.EVENT_COMPLETION_ATTR], "assistant")
        elif name in k.GEN_AI_MESSAGE_EVENTS:
            body = loads_json(attrs[k.EVENT_CONTENT_ATTR]) if k.EVENT_CONTENT_ATTR in attrs else attrs
            direction, message = _message_from_log(name, body)
            (inputs if direction == "input" else outputs).append(message)
    return inputs, outputs


MAX_TOOL_CALLS_REPR = 65_536  # a Python repr longer than this is not parsed


def _response_tool_calls(attrs: Mapping[str, Any]) -> list[RequestedToolCall]:
    """``gen_ai.response.tool_calls``: JSON, or the Python repr OpenLIT writes."""
    raw = attrs.get(k.RESPONSE_TOOL_CALLS)
    data = loads_json(raw)
    if isinstance(data, str) and len(data) <= MAX_TOOL_CALLS_REPR:
        try:
            data = ast.literal_eval(data)  # literals only: no code runs
        except (ValueError, SyntaxError, MemoryError, RecursionError):
            return []
    if isinstance(data, dict):
        data = [data]
    return _tool_calls_in({"tool_calls": data}) if isinstance(data, list) else []


def _flattened_tool_call(attrs: Mapping[str, Any]) -> list[RequestedToolCall]:
    """Older OpenLIT puts the tool call a response asked for on the LLM span itself
    (``gen_ai.tool.name`` / ``gen_ai.tool.args`` / ``gen_ai.tool.call.id``). Several calls are
    joined with ", " there and cannot be told apart: those stay unnamed."""
    name = as_name(attrs.get(k.LLM_SPAN_TOOL_NAME))
    args = attrs.get(k.LLM_SPAN_TOOL_ARGS)
    if name is None or args is None or "," in name:
        return []
    return [RequestedToolCall(as_name(attrs.get(k.TOOL_CALL_ID)), name, canonical_arguments(args))]


def llm_facts(
    attrs: Mapping[str, Any], scope_name: str, hasher: Hasher, events: Iterable[pb_trace.Span.Event] = ()
) -> LlmFacts:
    inputs, outputs = _input_messages(attrs), _output_messages(attrs)
    if not inputs or not outputs:  # content as span events
        event_inputs, event_outputs = _event_messages(events)
        inputs, outputs = inputs or event_inputs, outputs or event_outputs
    requested = _response_tool_calls(attrs) if k.RESPONSE_TOOL_CALLS in attrs else _flattened_tool_call(attrs)
    if requested and not any(m.tool_calls for m in outputs):
        outputs = [*outputs, Message(role="assistant", tool_calls=requested)]
    output = output_features(outputs, hasher)
    provider = as_name(_first(attrs, k.PROVIDER_KEYS))
    return LlmFacts(
        model=as_name(_first(attrs, k.REQUEST_MODEL_KEYS) or _first(attrs, k.RESPONSE_MODEL_KEYS)),
        provider=provider.lower() if provider else None,
        prompt_tokens=as_count(_first(attrs, k.INPUT_TOKEN_KEYS)),
        completion_tokens=as_count(_first(attrs, k.OUTPUT_TOKEN_KEYS)),
        response_id=as_name(attrs.get(k.RESPONSE_ID)),
        finish_reason=_finish_reason(attrs, output),
        prompt=prompt_features(inputs, hasher),
        output=output,
        tools_available=_available_tools(attrs),
        native_sdk_span=scope_name == k.ANTHROPIC_NATIVE_SCOPE,
        prompt_name=as_name(attrs.get(k.LANGFUSE_PROMPT_NAME)),
        prompt_version=as_count(attrs.get(k.LANGFUSE_PROMPT_VERSION)),
    )


def _answered(llm: LlmFacts, attrs: Mapping[str, Any]) -> bool:
    """Whether an LLM span records any part of a provider's answer: a finish reason, output,
    tool requests, token usage, a response id or a response model. A span that only describes
    a request is no call (a failed call is one: its error is the answer)."""
    return (
        llm.finish_reason is not None
        or llm.output.output_length is not None
        or bool(llm.output.tool_requests)
        or llm.prompt_tokens is not None
        or llm.completion_tokens is not None
        or llm.response_id is not None
        or _first(attrs, k.RESPONSE_MODEL_KEYS) is not None
    )


def _tool_events(events: Iterable[pb_trace.Span.Event]) -> tuple[Any, str | None, str | None]:
    """(arguments, result text, tool-call id) a tool span carries as span events (Strands:
    ``gen_ai.tool.message`` with the arguments and ``gen_ai.choice`` with the result)."""
    args: Any = None
    result: str | None = None
    call_id: str | None = None
    for event in events:
        if event.name not in (k.LOG_EVENT_TOOL, k.LOG_EVENT_CHOICE):
            continue
        attrs = {kv.key: any_value(kv.value) for kv in event.attributes}
        call_id = call_id or as_name(attrs.get("id"))
        if event.name == k.LOG_EVENT_TOOL:
            args = attrs.get("content", args)
        else:
            _, message = _message_from_log(event.name, attrs)
            result = "".join(message.texts) if result is None else result
    return args, result, call_id


def tool_facts(attrs: Mapping[str, Any], hasher: Hasher, events: Iterable[pb_trace.Span.Event] = ()) -> ToolFacts:
    args = _first(attrs, k.TOOL_ARGS_KEYS)
    result = _first(attrs, k.TOOL_RESULT_KEYS)
    event_call_id = None
    if args is None and result is None:
        args, result, event_call_id = _tool_events(events)
    args_text: str | None = None
    enveloped_call_id = event_call_id
    if args is not None:
        arguments, enveloped_call_id = unwrap_tool_input(args)
        args_text = canonical_json(arguments)
    result_text = result if isinstance(result, str) or result is None else json.dumps(result)
    return ToolFacts(
        name=as_name(_first(attrs, k.TOOL_NAME_KEYS)) or "unknown",
        call_id=as_name(attrs.get(k.TOOL_CALL_ID)) or enveloped_call_id,
        args_hash=hasher(args_text) if args_text is not None else None,
        args_length=len(args_text) if args_text is not None else None,
        output_hash=hasher(result_text) if result_text is not None else None,
        output_length=len(result_text) if result_text is not None else None,
        injection=injection_from(scan_injection(result_text), "tool_result") if result_text else None,
    )


def _documents(attrs: Mapping[str, Any]) -> tuple[list[str], list[float]] | None:
    """(contents, scores) of the retrieved documents, or None when none are described."""
    if k.RETRIEVAL_DOCUMENTS in attrs:
        raw = attrs[k.RETRIEVAL_DOCUMENTS]
        try:
            data = json.loads(raw) if isinstance(raw, str) else raw
        except (ValueError, RecursionError):
            return None
        if not isinstance(data, list):
            return None
        contents = [str(d.get("content") or d.get("text") or "") for d in data if isinstance(d, dict)]
        scores = [s for d in data if isinstance(d, dict) if (s := as_number(d.get("score"))) is not None]
        return contents, scores
    prefix = k.OI_RETRIEVAL_DOCUMENTS_PREFIX
    groups: dict[str, dict[str, Any]] = {}
    for key, value in attrs.items():
        if key.startswith(prefix):
            index, _, rest = key[len(prefix) :].partition(".")
            groups.setdefault(index, {})[rest] = value
    if not groups:
        return None
    contents = [str(g.get("document.content") or "") for g in groups.values()]
    scores = [s for g in groups.values() if (s := as_number(g.get("document.score"))) is not None]
    return contents, scores


def retrieval_facts(attrs: Mapping[str, Any], hasher: Hasher) -> RetrievalFacts:
    query = _first(attrs, k.RETRIEVAL_QUERY_KEYS)
    docs = _documents(attrs)
    injection = None
    if docs is not None:
        injection = injection_from(scan_injection("\n".join(docs[0])), "retrieval")
    return RetrievalFacts(
        index_name=as_name(_first(attrs, k.RETRIEVAL_INDEX_KEYS)),
        query_hash=hasher(_text(query) or "") if query is not None else None,
        query_length=len(_text(query) or "") if query is not None else None,
        result_count=len(docs[0]) if docs is not None else None,
        top_score=max(docs[1]) if docs and docs[1] else None,
        injection=injection,
    )


def root_input(attrs: Mapping[str, Any], hasher: Hasher) -> RootInput | None:
    raw = _first(attrs, k.ROOT_INPUT_KEYS)
    if raw is None:
        return None
    text = raw if isinstance(raw, str) else json.dumps(raw)
    return RootInput(hasher(text), len(text), injection_from(scan_injection(text), "input"))


def _error(span: pb_trace.Span, attrs: Mapping[str, Any], hasher: Hasher) -> tuple[bool, str | None, str | None]:
    is_error = span.status.code == STATUS_ERROR
    error_type = as_name(attrs.get(k.ERROR_TYPE))
    message = span.status.message or None
    for event in span.events:
        if event.name != k.EXCEPTION_EVENT:
            continue
        for kv in event.attributes:
            if kv.key == k.EXCEPTION_TYPE and error_type is None:
                error_type = as_name(any_value(kv.value))
            elif kv.key == k.EXCEPTION_MESSAGE and message is None:
                message = _text(any_value(kv.value))
        break
    if not is_error:
        return False, None, None
    return True, error_type or "error", hasher(message) if message else None


# --- our SDK's spans: content reduced in the agent's process (docs/sdk-spans.md) --------------
# Their ``dunetrace.*`` features are taken instead of reducing content here; each value is
# checked on its own and a malformed one is ignored (as absent), never the span.

SHA256_HASH = re.compile(r"sha256:[0-9a-f]{64}")
MAX_SDK_LIST = 128  # tool requests of one response, injection labels of one text
MAX_POLICY_EVENTS = 64  # policy events read from one root span
MAX_POLICY_LIST = 256  # values of a policy's list
MAX_POLICY_JSON = 4096  # characters of a policy's value or observed value (JSON)
INJECTION_SOURCES = frozenset({"input", "tool_result", "retrieval"})
DECLARED_EXIT_REASONS = frozenset({"final_answer", "completed", "error", "policy_violation"})


def as_hash(value: Any) -> str | None:
    """A content hash as our SDK sends it (``sha256:`` + 64 lowercase hex), else absent."""
    return value if isinstance(value, str) and len(value) == 71 and SHA256_HASH.fullmatch(value) else None


def _either(value: Any, fallback: Any) -> Any:
    return fallback if value is None else value


def _sdk_injection(attrs: Mapping[str, Any], source: str) -> Injection | None:
    """``dunetrace.injection.*``: the labels that matched (the only required part), the source
    (``source`` when missing or unknown) and the scanned length (0 when missing)."""
    raw = attrs.get(k.DT_INJECTION_PATTERNS)
    if not isinstance(raw, list):
        return None
    labels = tuple(dict.fromkeys(bounded(v) for v in raw[:MAX_SDK_LIST] if isinstance(v, str) and v))
    if not labels:
        return None
    declared = attrs.get(k.DT_INJECTION_SOURCE)
    length = as_count(attrs.get(k.DT_INJECTION_INPUT_LENGTH))
    return Injection(labels, length or 0, declared if declared in INJECTION_SOURCES else source)


def _sdk_tool_requests(attrs: Mapping[str, Any]) -> tuple[ToolRequest, ...] | None:
    """The parallel ``dunetrace.tool_requests.*`` arrays as requests (None: not sent). An entry
    without a usable name is left out; a missing or malformed id or hash is absent."""
    names = attrs.get(k.DT_TOOL_REQUEST_NAMES)
    if not isinstance(names, list):
        return None
    ids = attrs.get(k.DT_TOOL_REQUEST_IDS)
    hashes = attrs.get(k.DT_TOOL_REQUEST_ARGS_HASHES)
    ids = ids if isinstance(ids, list) else []
    hashes = hashes if isinstance(hashes, list) else []
    requests = []
    for index, name in enumerate(names[:MAX_SDK_LIST]):
        if not isinstance(name, str) or not name:
            continue
        call_id = ids[index] if index < len(ids) and isinstance(ids[index], str) else None
        args_hash = as_hash(hashes[index]) if index < len(hashes) else None
        requests.append(ToolRequest(as_name(call_id), bounded(name), args_hash, None))
    return tuple(requests)


def sdk_llm_facts(llm: LlmFacts, attrs: Mapping[str, Any]) -> LlmFacts:
    """An LLM call's features from our SDK's attributes, where they are given."""
    prompt_hash = as_hash(attrs.get(k.DT_PROMPT_HASH))
    prompt_length = as_count(attrs.get(k.DT_PROMPT_LENGTH))
    injection = _sdk_injection(attrs, "input")
    prompt = llm.prompt
    if prompt_hash is not None or prompt_length is not None or injection is not None:
        prompt = PromptFeatures(
            prompt_hash or prompt.prompt_hash,
            _either(prompt_length, prompt.prompt_length),
            injection or prompt.injection,
            prompt.tool_results,
        )
    output_hash = as_hash(attrs.get(k.DT_OUTPUT_HASH))
    output_length = as_count(attrs.get(k.DT_OUTPUT_LENGTH))
    requests = _sdk_tool_requests(attrs)
    output = llm.output
    if output_hash is not None or output_length is not None or requests is not None:
        output = OutputFeatures(
            output_hash or output.output_hash,
            _either(output_length, output.output_length),
            _either(requests, output.tool_requests),
            output.finish_reason,
        )
    if prompt is llm.prompt and output is llm.output:
        return llm
    return replace(llm, prompt=prompt, output=output, finish_reason=_finish_reason(attrs, output))


def sdk_tool_facts(tool: ToolFacts, attrs: Mapping[str, Any]) -> ToolFacts:
    """A tool call's features from our SDK's attributes, where they are given."""
    return replace(
        tool,
        args_hash=as_hash(attrs.get(k.DT_TOOL_ARGS_HASH)) or tool.args_hash,
        args_length=_either(as_count(attrs.get(k.DT_TOOL_ARGS_LENGTH)), tool.args_length),
        output_hash=as_hash(attrs.get(k.DT_TOOL_RESULT_HASH)) or tool.output_hash,
        output_length=_either(as_count(attrs.get(k.DT_TOOL_RESULT_LENGTH)), tool.output_length),
        injection=_sdk_injection(attrs, "tool_result") or tool.injection,
    )


def sdk_retrieval_facts(retrieval: RetrievalFacts, attrs: Mapping[str, Any]) -> RetrievalFacts:
    """A retrieval's features from our SDK's attributes, where they are given."""
    return replace(
        retrieval,
        query_hash=as_hash(attrs.get(k.DT_RETRIEVAL_QUERY_HASH)) or retrieval.query_hash,
        query_length=_either(as_count(attrs.get(k.DT_RETRIEVAL_QUERY_LENGTH)), retrieval.query_length),
        result_count=_either(as_count(attrs.get(k.DT_RETRIEVAL_RESULT_COUNT)), retrieval.result_count),
        top_score=_either(as_number(attrs.get(k.DT_RETRIEVAL_TOP_SCORE)), retrieval.top_score),
        injection=_sdk_injection(attrs, "retrieval") or retrieval.injection,
    )


def sdk_exit_reason(attrs: Mapping[str, Any]) -> str | None:
    value = attrs.get(k.DT_EXIT_REASON)
    return value if isinstance(value, str) and value in DECLARED_EXIT_REASONS else None


def policy_value(value: Any) -> Any:
    """A policy's threshold or observed value as kept: a bool, a finite number, a list of names
    or a name (anything else is absent)."""
    if isinstance(value, bool) or value is None:
        return value
    if isinstance(value, (int, float)):
        return value if math.isfinite(value) and abs(value) < 2**53 else None
    if isinstance(value, list):
        return [name for name in (as_name(v) for v in value[:MAX_POLICY_LIST]) if name]
    return as_name(value)


def _policy_json(value: Any) -> Any:
    """``dunetrace.policy.value`` / ``.observed``: JSON text (a bare value is taken as it is)."""
    if isinstance(value, str):
        if len(value) > MAX_POLICY_JSON:
            return None
        try:
            value = json.loads(value, parse_int=bounded_json_int)
        except (ValueError, RecursionError):
            return None
    return policy_value(value)


def _policy_id(value: Any) -> int | None:
    """Local policies count from -1 downwards, so they never meet the sidecar's own ids."""
    return value if isinstance(value, int) and not isinstance(value, bool) and -MAX_COUNT <= value <= -1 else None


_POLICY_KEYS = frozenset(
    {
        k.DT_POLICY_ID,
        k.DT_POLICY_NAME,
        k.DT_POLICY_TRIGGER,
        k.DT_POLICY_OPERATOR,
        k.DT_POLICY_VALUE,
        k.DT_POLICY_OBSERVED,
        k.DT_POLICY_ACTION,
    }
)


def sdk_policies(events: Iterable[pb_trace.Span.Event], start_ns: int, end_ns: int) -> tuple[SdkPolicy, ...]:
    """The ``dunetrace.policy.triggered`` events of our SDK's root span, as the payload of the
    sidecar's own ``policy.triggered`` events (``source: "sdk"``). One without a usable policy
    id is left out; other malformed values are absent. Times are kept within the span."""
    found: list[SdkPolicy] = []
    for event in events:
        if event.name != k.DT_POLICY_EVENT:
            continue
        attrs = read_wanted(event.attributes, _POLICY_KEYS)
        policy_id = _policy_id(attrs.get(k.DT_POLICY_ID))
        if policy_id is None:
            continue
        payload = {
            "policy_id": policy_id,
            "policy_name": as_name(attrs.get(k.DT_POLICY_NAME)),
            "action_type": as_name(attrs.get(k.DT_POLICY_ACTION)),
            "action_params": {},  # not part of the span event
            "trigger": as_name(attrs.get(k.DT_POLICY_TRIGGER)),
            "operator": as_name(attrs.get(k.DT_POLICY_OPERATOR)),
            "value": _policy_json(attrs.get(k.DT_POLICY_VALUE)),
            "observed": _policy_json(attrs.get(k.DT_POLICY_OBSERVED)),
            "source": "sdk",
        }
        ts_ns = min(max(_time_ns(event.time_unix_nano), start_ns), end_ns)
        found.append(SdkPolicy(ts_ns, {key: value for key, value in payload.items() if value is not None}))
        if len(found) >= MAX_POLICY_EVENTS:
            break
    return tuple(found)


@dataclass(frozen=True, slots=True)
class ResourceIdentity:
    name: str | None  # service.name (not the SDK's unknown_service placeholder)
    agent_name: str | None  # gen_ai.agent.name set on the resource


def span_facts(span: pb_trace.Span, scope_name: str, service: ResourceIdentity, hasher: Hasher) -> SpanFacts:
    """Raises SpanRejected for spans whose ids cannot be used."""
    check_ids(span.trace_id, span.span_id, span.parent_span_id)
    ours = scope_name == k.DUNETRACE_SPANS_SCOPE
    attrs = read_wanted(span.attributes, k.DUNETRACE_SPANS_WANTED_KEYS if ours else k.WANTED_KEYS)
    role = classify(attrs)
    is_error, error_type, error_hash = _error(span, attrs, hasher)
    is_root = not span.parent_span_id
    oi_agent = attrs.get(k.OPENINFERENCE_SPAN_KIND) == "AGENT"
    llm = llm_facts(attrs, scope_name, hasher, span.events) if role is SpanRole.LLM else None
    if llm is not None and ours:
        llm = sdk_llm_facts(llm, attrs)
    if llm is not None and not is_error and not _answered(llm, attrs):
        # An LLM-kind span with no provider answer behind it (LlamaIndex's
        # ``_prepare_chat_with_tools``): part of the run's shape, not a call.
        role, llm = SpanRole.STRUCTURE, None
    tool = tool_facts(attrs, hasher, span.events) if role is SpanRole.TOOL else None
    retrieval = retrieval_facts(attrs, hasher) if role is SpanRole.RETRIEVAL else None
    if ours:
        tool = sdk_tool_facts(tool, attrs) if tool is not None else None
        retrieval = sdk_retrieval_facts(retrieval, attrs) if retrieval is not None else None
    start_ns = _time_ns(span.start_time_unix_nano)
    end_ns = _time_ns(max(span.end_time_unix_nano, span.start_time_unix_nano))
    return SpanFacts(
        run_id=run_id_from_trace_id(span.trace_id),
        span_id=span.span_id.hex(),
        parent_id=span.parent_span_id.hex(),
        start_ns=start_ns,
        end_ns=end_ns,
        role=role,
        is_error=is_error,
        error_type=error_type,
        error_hash=error_hash,
        agent_name=as_name(
            attrs.get(k.GEN_AI_AGENT_NAME)
            or attrs.get(k.OPENINFERENCE_AGENT_NAME)
            or (attrs.get(k.OPENINFERENCE_GRAPH_NODE_ID) if oi_agent else None)
        ),
        workflow_name=as_name(attrs.get(k.GEN_AI_WORKFLOW_NAME) or attrs.get(k.TRACELOOP_WORKFLOW_NAME)),
        service_name=service.name,
        resource_agent_name=service.agent_name,
        agent_span_name=as_name(span.name) if oi_agent else None,
        llm=llm,
        tool=tool,
        retrieval=retrieval,
        root_input=root_input(attrs, hasher) if is_root else None,
        exit_reason=sdk_exit_reason(attrs) if ours and is_root else None,
        agent_version=as_name(attrs.get(k.DT_AGENT_VERSION)) if ours and is_root else None,
        policies=sdk_policies(span.events, start_ns, end_ns) if ours and is_root else (),
        from_our_sdk=ours,
    )


def resource_identity(attributes: Iterable[pb_common.KeyValue]) -> ResourceIdentity:
    service = agent = None
    for kv in attributes:
        if kv.key == k.SERVICE_NAME:
            name = as_name(any_value(kv.value))
            if name and not name.startswith(k.UNKNOWN_SERVICE_PREFIX):
                service = name
        elif kv.key == k.GEN_AI_AGENT_NAME:
            agent = as_name(any_value(kv.value))
    return ResourceIdentity(service, agent)


@pickled_by_fields
@dataclass(slots=True)
class TranslatedSpans:
    facts: list[SpanFacts]
    rejected: int
    reasons: list[str]
    mirrored: int = 0  # spans of the Dunetrace SDK's OTel exporter, left to POST /v1/ingest

    def reject(self, reason: str) -> None:
        self.rejected += 1
        if reason not in self.reasons:
            self.reasons.append(reason)


# The Dunetrace SDK's DunetraceOTelExporter mirrors the events it ships to POST /v1/ingest as
# spans of this scope: taken from ingest only, or every call of the run would count twice.
DUNETRACE_SDK_SCOPE = "dunetrace"


def translate_request(resource_spans: Iterable[pb_trace.ResourceSpans], hasher: Hasher) -> TranslatedSpans:
    out = TranslatedSpans([], 0, [])
    for resource in resource_spans:
        service = resource_identity(resource.resource.attributes)
        for scope in resource.scope_spans:
            scope_name = scope.scope.name
            if scope_name == DUNETRACE_SDK_SCOPE:
                out.mirrored += len(scope.spans)
                continue
            for span in scope.spans:
                try:
                    out.facts.append(span_facts(span, scope_name, service, hasher))
                except SpanRejected as exc:
                    out.reject(str(exc))
                except Exception:  # one unreadable span never costs the others in its request
                    log.debug("span %s rejected: unreadable attribute values", span.span_id.hex(), exc_info=True)
                    out.reject("a span's attribute values could not be read")
    return out


# --- log records carrying gen_ai content --------------------------------------------------


def _log_event_name(record: pb_logs.LogRecord) -> str | None:
    if record.event_name:
        return record.event_name
    for kv in record.attributes:
        if kv.key == k.LOG_EVENT_NAME_ATTR:
            return as_name(any_value(kv.value))
    return None


def _tool_calls_in(body: Mapping[str, Any]) -> list[RequestedToolCall]:
    calls = []
    for call in body.get("tool_calls") or ():
        if not isinstance(call, dict):
            continue
        function = call.get("function")
        function = function if isinstance(function, dict) else {}
        calls.append(
            RequestedToolCall(
                call_id=as_name(call.get("id")),
                name=str(function.get("name") or call.get("name") or ""),
                arguments=canonical_arguments(function.get("arguments", call.get("arguments"))),
            )
        )
    return calls


def _message_from_log(event_name: str, body: Any) -> tuple[str, Message]:
    """("input" | "output", message) for one gen_ai log record body."""
    if not isinstance(body, dict):
        body = {"content": body}
    if event_name == k.LOG_EVENT_CHOICE:
        raw = body.get("message")
        inner = raw if isinstance(raw, dict) else {}
        message = Message(role="assistant", finish_reason=as_name(body.get("finish_reason")))
        # semconv: message is {"content", "tool_calls"}; Strands: message is the content itself
        content = inner.get("content") if inner else (raw if raw is not None else body.get("content"))
        fill_from_blocks(message, content)
        message.tool_calls += _tool_calls_in(body) or _tool_calls_in(inner)
        return "output", message
    role = event_name.removeprefix("gen_ai.").removesuffix(".message")
    message = Message(role=role)
    content = body.get("content")
    fill_from_blocks(message, content)
    if role == "tool" and not message.tool_results:
        text = "".join(message.texts)
        message.texts = []
        message.tool_results.append((as_name(body.get("id")), text))
    message.tool_calls += _tool_calls_in(body)
    return "input", message


def _messages_from_details(attrs: Mapping[str, Any]) -> tuple[list[Message], list[Message]]:
    """(input, output) messages of an operation-details record or span event; the finish
    reason of the attributes goes on the output when its messages carry none."""
    outputs = _output_messages(attrs)
    reasons = attrs.get(k.FINISH_REASONS)
    reason = reasons[0] if isinstance(reasons, list) and reasons else reasons
    if outputs and not any(m.finish_reason for m in outputs) and isinstance(reason, str):
        outputs[0].finish_reason = reason
    return _input_messages(attrs), outputs


def translate_logs(resource_logs: Iterable[pb_logs.ResourceLogs], hasher: Hasher) -> tuple[list[LogContent], int]:
    """gen_ai log records grouped per span → content facts; returns (facts, records dropped)."""
    grouped: dict[tuple[bytes, bytes], tuple[list[Message], list[Message]]] = {}
    times: dict[tuple[bytes, bytes], int] = {}
    dropped = 0
    for resource in resource_logs:
        for scope in resource.scope_logs:
            for record in scope.log_records:
                name = _log_event_name(record)
                if (
                    name not in k.GEN_AI_LOG_EVENTS
                    or len(record.trace_id) != 16
                    or len(record.span_id) != 8
                    or not any(record.trace_id)
                    or not any(record.span_id)
                ):
                    dropped += 1
                    continue
                key = (record.trace_id, record.span_id)
                inputs, outputs = grouped.setdefault(key, ([], []))
                record_ns = _time_ns(record.time_unix_nano or record.observed_time_unix_nano)
                times[key] = max(times.get(key, 0), record_ns)
                if name == k.LOG_EVENT_OPERATION_DETAILS:
                    try:
                        details_in, details_out = _messages_from_details(read_wanted(record.attributes))
                    except Exception:  # one unreadable record never costs the others
                        log.debug("log record dropped: unreadable attributes", exc_info=True)
                        dropped += 1
                        continue
                    inputs += details_in
                    outputs += details_out
                    continue
                try:
                    direction, message = _message_from_log(name, any_value(record.body))
                except Exception:  # one unreadable record never costs the others
                    log.debug("log record dropped: unreadable body", exc_info=True)
                    dropped += 1
                    continue
                (inputs if direction == "input" else outputs).append(message)
    facts = [
        LogContent(
            run_id=run_id_from_trace_id(trace_id),
            span_id=span_id.hex(),
            ts_ns=times[(trace_id, span_id)],
            prompt=prompt_features(inputs, hasher) if inputs else None,
            output=output_features(outputs, hasher) if outputs else None,
        )
        for (trace_id, span_id), (inputs, outputs) in grouped.items()
    ]
    return facts, dropped


__all__ = [
    "LlmFacts",
    "LogContent",
    "RetrievalFacts",
    "RootInput",
    "SdkPolicy",
    "SpanFacts",
    "SpanRejected",
    "SpanRole",
    "ToolFacts",
    "TranslatedSpans",
    "translate_logs",
    "translate_request",
]
