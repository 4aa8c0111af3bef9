"""Content reduced in the agent's process: what leaves it is a length, a ``sha256:`` hash or an
injection label, never the text (docs/sdk-spans.md). Hashes match the sidecar's receiver:
``sha256:`` + 64 lowercase hex of the UTF-8 text; tool arguments as sorted, compact JSON."""

from __future__ import annotations

import hashlib
import json
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from ._detectors.events import normalise_finish_reason as normalise_finish_reason  # run_context reads it here
from ._detectors.patterns import INJECTION_PATTERNS, scanned_labels

INPUT = "input"
TOOL_RESULT = "tool_result"
RETRIEVAL = "retrieval"


def sha256_text(text: str) -> str:
    return "sha256:" + hashlib.sha256(text.encode("utf-8", "surrogatepass")).hexdigest()


def text_of(value: Any) -> str:
    """Text as it is; anything else (messages, dicts) as JSON."""
    if value is None:
        return ""
    if isinstance(value, str):
        return value
    try:
        return json.dumps(value, sort_keys=True, ensure_ascii=False, default=str)
    except (TypeError, ValueError, RecursionError):
        return repr(value)


def canonical_arguments(value: Any) -> str:
    """Tool arguments as sorted, compact JSON (a JSON string is parsed first), so the same call
    hashes the same whether the agent passed a dict or the model's JSON text."""
    if isinstance(value, str):
        if value[:1] not in ("{", "["):
            return value
        try:
            value = json.loads(value)
        except (ValueError, RecursionError):
            return value
    if value is None:
        return ""
    try:
        return json.dumps(value, sort_keys=True, separators=(",", ":"), ensure_ascii=False, default=str)
    except (TypeError, ValueError, RecursionError):
        return repr(value)


@dataclass(frozen=True, slots=True)
class Reduced:
    """One piece of content, reduced: its hash, its length, the injection patterns it matched."""

    hash: str
    length: int
    injection: tuple[str, ...] = ()
    source: str = ""

    def injection_payload(self) -> dict[str, Any] | None:
        if not self.injection:
            return None
        return {
            "matched_patterns": list(self.injection),
            "matched_pattern_count": len(self.injection),
            "input_length": self.length,
            "source": self.source,
        }

    def injection_attributes(self) -> dict[str, Any]:
        if not self.injection:
            return {}
        return {
            "dunetrace.injection.patterns": list(self.injection),
            "dunetrace.injection.source": self.source,
            "dunetrace.injection.input_length": self.length,
        }


def reduce(text: str, scan_source: str | None = None) -> Reduced:
    """Hash and length of ``text``; with ``scan_source``, also the injection patterns it matches."""
    labels = scanned_labels(text) if scan_source and text else ()
    return Reduced(sha256_text(text), len(text), labels, (scan_source or "") if labels else "")


def reduce_prompt(prompt: Any) -> Reduced:
    """A prompt, reduced: hash and length of the whole (text, or messages as JSON), injection
    patterns found in any one message — each message scanned once per process, however many calls
    repeat it."""
    text = text_of(prompt)
    if not isinstance(prompt, (list, tuple)):
        return reduce(text, INPUT)
    found: set[str] = set()
    for message in prompt:
        body = message.get("content") if isinstance(message, (dict, Mapping)) else message
        part = body if isinstance(body, str) else text_of(body)
        if part:
            labels = scanned_labels(part)
            if labels:
                found.update(labels)
    if not found:
        return Reduced(sha256_text(text), len(text))
    ordered = tuple(label for label, _ in INJECTION_PATTERNS if label in found)  # the spec's order
    return Reduced(sha256_text(text), len(text), ordered, INPUT)


@dataclass(frozen=True, slots=True)
class ToolRequest:
    """A tool call the completion asked for."""

    name: str
    call_id: str
    args_hash: str
    args_length: int


def tool_requests(items: Any) -> list[ToolRequest]:
    """The tool calls a completion asked for, from dicts (``{"name", "id", "arguments"}`` or the
    OpenAI shape ``{"id", "function": {"name", "arguments"}}``) or objects with those attributes."""
    out: list[ToolRequest] = []
    for item in items or ():
        get = item.get if isinstance(item, Mapping) else lambda key, default=None, o=item: getattr(o, key, default)
        function = get("function")
        if function is not None:
            fget = (
                function.get
                if isinstance(function, Mapping)
                else lambda key, default=None, o=function: getattr(o, key, default)
            )
            name, arguments = fget("name"), fget("arguments")
        else:
            name = get("name")
            arguments = get("arguments", get("args", get("input")))
        if not isinstance(name, str) or not name:
            continue
        call_id = get("id") or get("call_id") or ""
        args = canonical_arguments(arguments)
        out.append(ToolRequest(name, str(call_id), sha256_text(args), len(args)))
    return out
