"""The published Dunetrace SDK's ``POST /v1/ingest`` batches, reduced at this boundary.

The SDK (``pip install dunetrace``, 0.5.x) sends ``{"api_key", "agent_id", "events": [...]}``;
each event has the 11 keys of ``fixtures/dunetrace-sdk/wire.md`` §3.2 and a payload per event
type (§3.4) that carries free text: the user's input, the system prompt, tool arguments and
results, LLM output, retrieved content, error messages. Here every event is checked on its
own and its payload reduced to names, numbers, lengths, hashes and injection labels, exactly
as the OTLP receiver reduces spans; nothing else leaves this module.

A batch that is not a JSON object with an ``events`` list can never succeed (400, the SDK
drops it). An event that cannot be used (no run id, …) is skipped alone and counted; event
types the detectors have no use for (memory, approvals, voice, policy evaluation reports) are
acknowledged and not stored.
"""

from __future__ import annotations

import json
import time
import uuid
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from detectors.patterns import scan_injection
from receiver.content import Hasher, bounded_json_int, injection_from, merge_injections, normalise_finish_reason
from receiver.pickling import pickled_by_fields
from receiver.spans import MAX_TIME_NS, as_count, as_name, as_number, policy_value

MAX_EVENTS = 20_000  # per batch: the SDK sends at most 100, or its whole buffer (10,000) at shutdown
MAX_LIST = 256  # tools of a run, values of a policy's list

# The SDK's event types whose facts the detectors use; the others are acknowledged, not kept.
KEPT = frozenset(
    {
        "run.started",
        "run.completed",
        "run.errored",
        "llm.called",
        "llm.responded",
        "tool.called",
        "tool.responded",
        "retrieval.called",
        "retrieval.responded",
        "policy.triggered",
        "external.signal",
    }
)


class BatchInvalid(ValueError):
    """The body can never be accepted: not JSON, not an object, no events list."""


@pickled_by_fields
@dataclass(slots=True)
class SdkEvent:
    """One SDK event, its content reduced. ``payload`` holds names, numbers and hashes only."""

    run_id: str  # the SDK's run id as a canonical UUID: also the OTel trace id of that run
    event_id: str
    kind: str  # the SDK's event_type
    ts_ns: int
    agent_id: str
    payload: dict[str, Any]


@pickled_by_fields
@dataclass(slots=True)
class SdkBatch:
    events: list[SdkEvent] = field(default_factory=list)
    skipped: int = 0  # events that could not be used (no run id, no event id, not an object)
    ignored: int = 0  # event types kept out of the store (memory, approvals, voice, …)
    reasons: list[str] = field(default_factory=list)

    def skip(self, reason: str) -> None:
        self.skipped += 1
        if reason not in self.reasons and len(self.reasons) < 5:
            self.reasons.append(reason)


def parse_batch(body: bytes, hasher: Hasher) -> SdkBatch:
    """The usable events of one ``POST /v1/ingest`` body. Raises BatchInvalid for a body that
    is not a batch. Lenient where the SDK is: bare NaN / Infinity in a payload are read (and
    then dropped as numbers)."""
    try:
        document = json.loads(body, parse_int=bounded_json_int)
    except (ValueError, RecursionError, UnicodeDecodeError):
        raise BatchInvalid("the body is not JSON") from None
    if not isinstance(document, dict):
        raise BatchInvalid("the body must be a JSON object {api_key, agent_id, events}")
    events = document.get("events")
    if not isinstance(events, list):
        raise BatchInvalid("'events' must be a list")
    if len(events) > MAX_EVENTS:
        raise BatchInvalid(f"at most {MAX_EVENTS} events per batch")
    batch = SdkBatch()
    now_ns = time.time_ns()
    for raw in events:
        if not isinstance(raw, dict):
            batch.skip("an event is not an object")
            continue
        kind = raw.get("event_type")
        if not isinstance(kind, str):
            batch.skip("an event has no event_type")
            continue
        run_id = _run_id(raw.get("run_id"))
        if run_id is None:
            batch.skip("an event has no usable run_id (a UUID)")
            continue
        event_id = raw.get("event_id")
        if not isinstance(event_id, str) or not event_id or len(event_id) > 128:
            batch.skip("an event has no usable event_id")
            continue
        if kind not in KEPT:
            batch.ignored += 1
            continue
        payload = raw.get("payload")
        reduced = REDUCERS[kind](payload if isinstance(payload, dict) else {}, hasher)
        agent_version = as_name(raw.get("agent_version"))
        if kind == "run.started" and agent_version:
            reduced["agent_version"] = agent_version
        batch.events.append(
            SdkEvent(
                run_id=run_id,
                event_id=event_id,
                kind=kind,
                ts_ns=_ts_ns(raw.get("timestamp"), now_ns),
                agent_id=as_name(raw.get("agent_id")) or "",
                payload={k: v for k, v in reduced.items() if v is not None},
            )
        )
    return batch


def _run_id(value: Any) -> str | None:
    """UUIDs of any version (LangChain's root run ids are UUIDv7); never the nil UUID."""
    if not isinstance(value, str) or len(value) > 64:
        return None
    try:
        parsed = uuid.UUID(value)
    except ValueError:
        return None
    return None if parsed.int == 0 else str(parsed)


def _ts_ns(value: Any, now_ns: int) -> int:
    seconds = as_number(value)
    if seconds is None or seconds <= 0:
        return now_ns
    return min(int(seconds * 1_000_000) * 1000, MAX_TIME_NS)


# --- content → features ------------------------------------------------------------------


def _text(payload: Mapping[str, Any], key: str) -> str | None:
    value = payload.get(key)
    if value is None:
        return None
    return value if isinstance(value, str) else json.dumps(value, default=str, ensure_ascii=False)


def _length(payload: Mapping[str, Any], key: str, text: str) -> int:
    """The text's length before the SDK capped it (``<key>_original_length``), else its own."""
    original = as_count(payload.get(f"{key}_original_length"))
    return original if original is not None and payload.get(f"{key}_truncated") else len(text)


def _content(payload: Mapping[str, Any], key: str, hasher: Hasher, prefix: str) -> dict[str, Any]:
    """``<prefix>_hash`` and ``<prefix>_length`` of a free-text field (nothing when absent; only
    the length when empty)."""
    text = _text(payload, key)
    if text is None:
        return {}
    features: dict[str, Any] = {f"{prefix}_length": _length(payload, key, text)}
    if text:
        features[f"{prefix}_hash"] = hasher(text)
    return features


def _injection(text: str | None, source: str) -> dict[str, Any] | None:
    found = injection_from(scan_injection(text), source) if text else None
    return found.as_payload() if found else None


def _names(value: Any) -> list[str]:
    if not isinstance(value, list):
        return []
    return [name for name in (as_name(v) for v in value[:MAX_LIST]) if name]


def _error(payload: Mapping[str, Any], hasher: Hasher, default_type: str) -> dict[str, Any]:
    message = _text(payload, "error")
    if not message:
        return {}
    return {"error_type": as_name(payload.get("error_type")) or default_type, "error_hash": hasher(message)}


def _run_started(p: Mapping[str, Any], hasher: Hasher) -> dict[str, Any]:
    found = merge_injections(
        *(
            injection_from(scan_injection(text), "input")
            for key in ("input_text", "system_prompt")
            if (text := _text(p, key))
        )
    )
    return {
        "model": as_name(p.get("model")),
        "tools": _names(p.get("tools")),
        **_content(p, "input_text", hasher, "input"),
        **_content(p, "system_prompt", hasher, "system_prompt"),
        "injection": found.as_payload() if found else None,
        "sdk_version": as_name(p.get("sdk_version")),
    }


def _run_completed(p: Mapping[str, Any], hasher: Hasher) -> dict[str, Any]:
    exit_reason = p.get("exit_reason")
    return {
        "exit_reason": exit_reason if exit_reason in ("final_answer", "completed") else "completed",
        "total_steps": as_count(p.get("total_steps")),
        "dropped_events": as_count(p.get("dropped_events")),
    }


def _run_errored(p: Mapping[str, Any], hasher: Hasher) -> dict[str, Any]:
    policy = p.get("exit_reason") == "policy_violation"
    return {
        "error_type": as_name(p.get("error_type")) or "error",
        "error_hash": hasher(message) if (message := _text(p, "error")) else None,
        "total_steps": as_count(p.get("step_index")),
        "exit_reason": "policy_violation" if policy else None,
        "policy_name": as_name(p.get("policy_name")) if policy else None,
        "dropped_events": as_count(p.get("dropped_events")),
    }


def _llm_called(p: Mapping[str, Any], hasher: Hasher) -> dict[str, Any]:
    return {
        "model": as_name(p.get("model")),
        "provider": as_name(p.get("provider")),
        "prompt_tokens": as_count(p.get("prompt_tokens")),
        "prompt_tokens_estimated": True if p.get("prompt_tokens_estimated") is True else None,
        "sdk_call": as_count(p.get("call_id")),
    }


def _llm_responded(p: Mapping[str, Any], hasher: Hasher) -> dict[str, Any]:
    output = _content(p, "output", hasher, "output")
    if not output:
        # No text sent: the SDK's own output_length is the caller's figure, 0 when a manual
        # caller gave none — unknown then, not empty.
        given = as_count(p.get("output_length"))
        output = {"output_length": given} if given else {}
    return {
        "completion_tokens": as_count(p.get("completion_tokens")),
        "prompt_tokens": as_count(p.get("prompt_tokens")),
        "reasoning_tokens": as_count(p.get("reasoning_tokens")),
        "latency_ms": as_number(p.get("latency_ms")),
        "finish_reason": normalise_finish_reason(as_name(p.get("finish_reason"))),
        **output,
        **_error(p, hasher, "llm_error"),
        "sdk_call": as_count(p.get("call_id")),
    }


def _tool_called(p: Mapping[str, Any], hasher: Hasher) -> dict[str, Any]:
    return {"tool_name": as_name(p.get("tool_name")) or "unknown", **_content(p, "args", hasher, "args")}


def _tool_responded(p: Mapping[str, Any], hasher: Hasher) -> dict[str, Any]:
    output = _text(p, "output")
    features = _content(p, "output", hasher, "output")
    given = as_count(p.get("output_length"))  # the tool's real length (the text may be capped)
    if given is not None:
        features["output_length"] = given
    success = p.get("success")
    return {
        "tool_name": as_name(p.get("tool_name")) or "unknown",
        "success": success if isinstance(success, bool) else True,
        **features,
        "latency_ms": as_number(p.get("latency_ms")),
        **_error(p, hasher, "tool_error"),
        "injection": _injection(output, "tool_result"),
    }


def _retrieval_called(p: Mapping[str, Any], hasher: Hasher) -> dict[str, Any]:
    return {"index_name": as_name(p.get("index_name")), **_content(p, "query", hasher, "query")}


def _retrieval_responded(p: Mapping[str, Any], hasher: Hasher) -> dict[str, Any]:
    content = _text(p, "content")
    score = as_number(p.get("top_score"))
    return {
        "index_name": as_name(p.get("index_name")),
        "result_count": as_count(p.get("result_count")),
        "top_score": score,
        "latency_ms": as_number(p.get("latency_ms")),
        **_content(p, "content", hasher, "content"),
        **_error(p, hasher, "retrieval_error"),
        "injection": _injection(content, "retrieval"),
    }


def _policy_triggered(p: Mapping[str, Any], hasher: Hasher) -> dict[str, Any]:
    return {
        "policy_name": as_name(p.get("policy_name")),
        "action_type": as_name(p.get("action_type")),
        "trigger": as_name(p.get("trigger")),
        "value": policy_value(p.get("value")),
        "source": "sdk",
    }


def _external_signal(p: Mapping[str, Any], hasher: Hasher) -> dict[str, Any]:
    # meta is the caller's free-form object: not kept
    return {"signal_name": as_name(p.get("signal_name")), "source": as_name(p.get("source"))}


REDUCERS = {
    "run.started": _run_started,
    "run.completed": _run_completed,
    "run.errored": _run_errored,
    "llm.called": _llm_called,
    "llm.responded": _llm_responded,
    "tool.called": _tool_called,
    "tool.responded": _tool_responded,
    "retrieval.called": _retrieval_called,
    "retrieval.responded": _retrieval_responded,
    "policy.triggered": _policy_triggered,
    "external.signal": _external_signal,
}
assert set(REDUCERS) == KEPT
