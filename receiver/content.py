"""Content reduction: messages in any convention → lengths, hashes and detector features.

This is the privacy boundary. Functions here see raw content; what they return carries only
lengths, ``sha256:``/``hmac-sha256:`` hashes, names (tools, roles) and injection labels.
"""

from __future__ import annotations

import hashlib
import hmac
import json
import json.encoder
import json.scanner
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any

from detectors.events import normalise_finish_reason
from detectors.patterns import InjectionMatch, scan_injection, scan_messages
from receiver.pickling import pickled_by_fields


class Hasher:
    """``sha256:<hex>`` of the UTF-8 bytes, or ``hmac-sha256:<hex>`` with an operator key."""

    __slots__ = ("_key",)

    def __init__(self, key: str | None = None) -> None:
        self._key = key.encode() if key else None

    def __call__(self, text: str) -> str:
        data = text.encode("utf-8", "surrogatepass")
        if self._key is None:
            return "sha256:" + hashlib.sha256(data).hexdigest()
        return "hmac-sha256:" + hmac.new(self._key, data, hashlib.sha256).hexdigest()


# --- a convention-neutral view of a message ----------------------------------------------


@pickled_by_fields
@dataclass(slots=True)
class RequestedToolCall:
    """A tool call an LLM response asked for. ``arguments`` is canonical JSON (or raw text)."""

    call_id: str | None
    name: str
    arguments: str


@dataclass(slots=True)
class Message:
    role: str
    texts: list[str] = field(default_factory=list)
    tool_calls: list[RequestedToolCall] = field(default_factory=list)
    # (tool-call id or None, result text) for results fed back to the model
    tool_results: list[tuple[str | None, str]] = field(default_factory=list)
    finish_reason: str | None = None


# The stdlib's C scanner, called as json.loads calls it, without loads → decode → raw_decode
# around it (three Python calls per value, a third of parsing a tool call's arguments).
_SCAN_JSON = json.scanner.make_scanner(json.JSONDecoder())  # type: ignore[arg-type]  # typeshed: a decoder it is
_JSON_WHITESPACE = " \t\n\r"


def loads_json(value: Any) -> Any:
    """A string holding a JSON object or array, parsed; anything else (plain text, broken or
    absurdly nested JSON) as it is."""
    if isinstance(value, str) and value[:1] in ("{", "["):
        try:
            data, end = _SCAN_JSON(value, 0)
        except (ValueError, StopIteration, RecursionError):
            return value
        if end != len(value) and value[end:].strip(_JSON_WHITESPACE):
            return value  # more after the value: not JSON (json.loads: "Extra data")
        return data
    return value


def unwrap_tool_input(value: Any) -> tuple[Any, str | None]:
    """(the arguments, the tool-call id) of a tool span's input, out of the envelopes real
    instrumentations wrap them in (decided once, for every stack):

    - OpenLLMetry's decorators: ``{"args": [], "kwargs": {...}}`` → the kwargs object;
    - OpenLLMetry's LangChain callback: ``{"input_str": …, "inputs": {...}, "metadata": …,
      "kwargs": {"tool_call_id": …}}`` → ``inputs`` (the model's arguments, without the
      per-step metadata that differs on every call), and the tool-call id it carries.
    """
    data = loads_json(value)
    if not isinstance(data, dict):
        return data, None
    if set(data) == {"args", "kwargs"} and not data["args"]:
        return data["kwargs"], None
    if "input_str" in data:
        kwargs = data.get("kwargs")
        call_id = kwargs.get("tool_call_id") if isinstance(kwargs, dict) else None
        inputs = data.get("inputs")
        arguments = inputs if isinstance(inputs, dict) else data["input_str"]
        return arguments, call_id if isinstance(call_id, str) and call_id else None
    return data, None


def _json_encoder(**options: Any) -> Callable[[Any], str]:
    """``json.JSONEncoder(**options).encode``, built once (json.dumps with any option builds an
    encoder per call, ~1 µs) and calling the stdlib's C encoder directly (encode → iterencode are
    two Python calls per value). No circular-reference check: values come from JSON or OTLP
    attributes, which cannot hold a cycle (a deep one raises RecursionError, as it would anyway)."""
    encoder = json.JSONEncoder(**options)
    c_make_encoder = getattr(json.encoder, "c_make_encoder", None)  # not in typeshed
    if c_make_encoder is None:  # a Python without the _json accelerator
        return encoder.encode
    encode_string = json.encoder.encode_basestring_ascii if encoder.ensure_ascii else json.encoder.encode_basestring
    chunks = c_make_encoder(
        None,  # markers: no circular check
        encoder.default,
        encode_string,
        None,  # indent
        encoder.key_separator,
        encoder.item_separator,
        encoder.sort_keys,
        encoder.skipkeys,
        encoder.allow_nan,
    )
    return lambda value: "".join(chunks(value, 0))


_CANONICAL_JSON = _json_encoder(sort_keys=True, separators=(",", ":"), ensure_ascii=False)
_SORTED_JSON = _json_encoder(sort_keys=True, ensure_ascii=False)


def canonical_arguments(value: Any) -> str:
    """Arguments as sorted, compact JSON so the same call hashes the same across sources
    (envelopes removed: see ``unwrap_tool_input``)."""
    return canonical_json(unwrap_tool_input(value)[0])


def canonical_json(value: Any) -> str:
    """Unwrapped arguments (``unwrap_tool_input``) as ``canonical_arguments`` gives them."""
    if isinstance(value, str):
        return value
    try:
        return _CANONICAL_JSON(value)
    except (TypeError, ValueError, RecursionError):
        return "<unserialisable arguments>"


def _text_of(value: Any) -> str:
    if value is None:
        return ""
    if isinstance(value, str):
        return value
    try:
        return _SORTED_JSON(value)
    except (TypeError, ValueError, RecursionError):
        return "<unserialisable content>"


def messages_from_semconv(value: Any) -> list[Message]:
    """``gen_ai.input.messages`` / ``gen_ai.output.messages`` (a JSON string on spans)."""
    data = loads_json(value)
    if isinstance(data, dict):
        data = [data]
    if not isinstance(data, list):
        return [Message(role="unknown", texts=[_text_of(value)])] if value else []
    messages: list[Message] = []
    for item in data:
        if not isinstance(item, dict):
            continue
        message = Message(role=str(item.get("role") or "unknown"))
        reason = item.get("finish_reason")
        message.finish_reason = str(reason) if reason else None
        parts = item.get("parts")
        if parts is None and "content" in item:
            parts = [{"type": "text", "content": item["content"]}]
        for part in parts if isinstance(parts, list) else ():
            if not isinstance(part, dict):
                continue
            kind = part.get("type")
            if kind == "tool_call":
                message.tool_calls.append(
                    RequestedToolCall(
                        call_id=_str_or_none(part.get("id")),
                        name=bounded(str(part.get("name") or "")),
                        arguments=canonical_arguments(part.get("arguments")),
                    )
                )
            elif kind == "tool_call_response":
                message.tool_results.append(
                    (_str_or_none(part.get("id")), _text_of(part.get("response", part.get("result"))))
                )
            elif "content" in part:
                message.texts.append(_text_of(part.get("content")))
        messages.append(message)
    return messages


def system_instructions(value: Any) -> list[Message]:
    """``gen_ai.system_instructions``: a JSON list of parts, or plain text."""
    data = loads_json(value)
    if isinstance(data, list):
        texts = [_text_of(p.get("content")) for p in data if isinstance(p, dict)]
        return [Message(role="system", texts=texts)]
    return [Message(role="system", texts=[_text_of(value)])] if value else []


MAX_NAME_LENGTH = 256  # names and ids kept (agents, tools, models, call ids): longer ones are cut
TRUNCATED = "…[truncated]"


def bounded_json_int(text: str) -> int:
    """``json.loads(parse_int=...)`` for bodies from outside: an integer of at most 20 digits
    (a huge literal costs quadratic time to convert, and fits no count anyway)."""
    if len(text.lstrip("-")) > 20:
        raise ValueError("number too long")
    return int(text)


def bounded(text: str) -> str:
    """A name or id as kept: at most MAX_NAME_LENGTH characters, and marked when cut."""
    return text if len(text) <= MAX_NAME_LENGTH else text[:MAX_NAME_LENGTH] + TRUNCATED


def _str_or_none(value: Any) -> str | None:
    return None if value is None or value == "" else bounded(str(value))


def _group_indexed(attrs: Mapping[str, Any], prefix: str) -> dict[int, dict[str, Any]]:
    """``prefix.N.rest`` keys → {N: {rest: value}}."""
    groups: dict[int, dict[str, Any]] = {}
    cut = len(prefix)
    for key, value in attrs.items():
        if not key.startswith(prefix):
            continue
        index, _, rest = key[cut:].partition(".")
        if index.isdigit():
            groups.setdefault(int(index), {})[rest] = value
    return dict(sorted(groups.items()))


def messages_from_legacy(attrs: Mapping[str, Any], prefix: str) -> list[Message]:
    """OpenLLMetry <=0.53: ``gen_ai.prompt.N.*`` / ``gen_ai.completion.N.*``."""
    messages: list[Message] = []
    for fields in _group_indexed(attrs, prefix).values():
        message = Message(role=str(fields.get("role") or "unknown"))
        reason = fields.get("finish_reason")
        message.finish_reason = str(reason) if reason else None
        for call in _group_indexed(fields, "tool_calls.").values():
            message.tool_calls.append(
                RequestedToolCall(
                    call_id=_str_or_none(call.get("id")),
                    name=bounded(str(call.get("name") or "")),
                    arguments=canonical_arguments(call.get("arguments")),
                )
            )
        content = fields.get("content")
        tool_call_id = _str_or_none(fields.get("tool_call_id"))
        if message.role == "tool":
            message.tool_results.append((tool_call_id, _text_of(content)))
        elif content is not None and not _anthropic_blocks(message, content):
            message.texts.append(_text_of(content))
        messages.append(message)
    return messages


def fill_from_blocks(message: Message, content: Any) -> None:
    """A message's content: a list of content blocks (Bedrock Converse / Strands ``text``,
    ``toolUse``, ``toolResult``; Anthropic ``type: text | tool_use | tool_result``), as a list or
    its JSON, else plain text."""
    data = loads_json(content)
    if not (isinstance(data, list) and data and all(isinstance(b, dict) for b in data)):
        if content is not None:
            message.texts.append(_text_of(content))
        return
    for block in data:
        kind = block.get("type")
        use = block.get("toolUse")
        result = block.get("toolResult")
        if isinstance(use, dict) or kind == "tool_use":
            use = use if isinstance(use, dict) else block
            message.tool_calls.append(
                RequestedToolCall(
                    call_id=_str_or_none(use.get("toolUseId", use.get("id"))),
                    name=bounded(str(use.get("name") or "")),
                    arguments=canonical_arguments(use.get("input")),
                )
            )
        elif isinstance(result, dict) or kind == "tool_result":
            result = result if isinstance(result, dict) else block
            call_id = _str_or_none(result.get("toolUseId", result.get("tool_use_id")))
            message.tool_results.append((call_id, _blocks_text(result.get("content"))))
        elif "text" in block:
            message.texts.append(_text_of(block["text"]))
        else:
            message.texts.append(_text_of(block))


def _blocks_text(content: Any) -> str:
    """The text of a tool result's content (blocks or plain)."""
    if isinstance(content, list):
        return "".join(_text_of(b.get("text")) if isinstance(b, dict) and "text" in b else _text_of(b) for b in content)
    return _text_of(content)


def _anthropic_blocks(message: Message, content: Any) -> bool:
    """Legacy Anthropic puts content blocks as a JSON string; read tool_use / tool_result."""
    if not isinstance(content, str) or not content.startswith("[{"):
        return False
    blocks = loads_json(content)
    if not isinstance(blocks, list) or not all(isinstance(b, dict) and "type" in b for b in blocks):
        return False
    for block in blocks:
        kind = block["type"]
        if kind == "text":
            message.texts.append(_text_of(block.get("text")))
        elif kind == "tool_result":
            message.tool_results.append((_str_or_none(block.get("tool_use_id")), _text_of(block.get("content"))))
        # tool_use blocks repeat what tool_calls.M.* already said
    return True


def messages_from_openinference(attrs: Mapping[str, Any], prefix: str) -> list[Message]:
    """OpenInference: ``llm.input_messages.N.message.*`` / ``llm.output_messages.N.message.*``."""
    messages: list[Message] = []
    for fields in _group_indexed(attrs, prefix).values():
        message = Message(role=str(fields.get("message.role") or "unknown"))
        content = fields.get("message.content")
        tool_call_id = _str_or_none(fields.get("message.tool_call_id"))
        if message.role == "tool":
            message.tool_results.append((tool_call_id, _text_of(content)))
        elif content is not None:
            message.texts.append(_text_of(content))
        for part in _group_indexed(fields, "message.contents.").values():
            text = part.get("message_content.text")
            if text is not None:
                message.texts.append(_text_of(text))
        for call in _group_indexed(fields, "message.tool_calls.").values():
            message.tool_calls.append(
                RequestedToolCall(
                    call_id=_str_or_none(call.get("tool_call.id")),
                    name=bounded(str(call.get("tool_call.function.name") or "")),
                    arguments=canonical_arguments(call.get("tool_call.function.arguments")),
                )
            )
        messages.append(message)
    return messages


# --- features ---------------------------------------------------------------------------


@pickled_by_fields
@dataclass(slots=True)
class Injection:
    matched_patterns: tuple[str, ...]
    input_length: int
    source: str  # input | tool_result | retrieval

    def as_payload(self) -> dict[str, Any]:
        return {
            "matched_patterns": list(self.matched_patterns),
            "matched_pattern_count": len(self.matched_patterns),
            "input_length": self.input_length,
            "source": self.source,
        }


def injection_from(match: InjectionMatch | None, source: str) -> Injection | None:
    if match is None:
        return None
    return Injection(match.matched_patterns, match.input_length, source)


def merge_injections(*found: Injection | None) -> Injection | None:
    """One injection record per event: the first source that matched, all labels found."""
    present = [i for i in found if i is not None]
    if not present:
        return None
    labels: dict[str, None] = {}
    for item in present:
        labels.update(dict.fromkeys(item.matched_patterns))
    first = present[0]
    return Injection(tuple(labels), max(i.input_length for i in present), first.source)


@pickled_by_fields
@dataclass(slots=True)
class ToolResultSeen:
    """A tool result fed back to the model in an LLM request."""

    call_id: str | None
    output_hash: str
    output_length: int
    injection: Injection | None


@pickled_by_fields
@dataclass(slots=True)
class ToolRequest:
    """A tool call an LLM response requested, reduced to hashes (our SDK's spans send the
    arguments' hash without their length)."""

    call_id: str | None
    name: str
    args_hash: str | None
    args_length: int | None


@pickled_by_fields
@dataclass(slots=True)
class PromptFeatures:
    prompt_hash: str | None
    prompt_length: int | None
    injection: Injection | None
    tool_results: tuple[ToolResultSeen, ...]


@pickled_by_fields
@dataclass(slots=True)
class OutputFeatures:
    output_hash: str | None
    output_length: int | None
    tool_requests: tuple[ToolRequest, ...]
    finish_reason: str | None  # raw, as found in the messages


_SCANNED_ROLES = frozenset({"user", "system", "human", "developer"})


def prompt_features(messages: Iterable[Message], hasher: Hasher) -> PromptFeatures:
    lines: list[str] = []
    length = 0
    scanned: list[str] = []
    results: list[ToolResultSeen] = []
    any_content = False
    for message in messages:
        any_content = True
        for text in message.texts:
            lines.append(f"{message.role}:{text}")
            length += len(text)
            if message.role in _SCANNED_ROLES:
                scanned.append(text)
        for call_id, result in message.tool_results:
            lines.append(f"tool:{result}")
            length += len(result)
            results.append(
                ToolResultSeen(
                    call_id=call_id,
                    output_hash=hasher(result),
                    output_length=len(result),
                    injection=injection_from(scan_injection(result), "tool_result"),
                )
            )
    if not any_content:
        return PromptFeatures(None, None, None, ())
    user_input = injection_from(scan_messages(scanned), "input") if scanned else None
    injection = merge_injections(user_input, *(r.injection for r in results))
    return PromptFeatures(hasher("\n".join(lines)), length, injection, tuple(results))


def output_features(messages: Iterable[Message], hasher: Hasher) -> OutputFeatures:
    texts: list[str] = []
    requests: list[ToolRequest] = []
    finish_reason: str | None = None
    any_content = False
    for message in messages:
        any_content = True
        texts.extend(message.texts)
        finish_reason = finish_reason or message.finish_reason
        for call in message.tool_calls:
            requests.append(ToolRequest(call.call_id, call.name, hasher(call.arguments), len(call.arguments)))
    if not any_content:
        return OutputFeatures(None, None, (), None)
    joined = "".join(texts)
    return OutputFeatures(hasher(joined), len(joined), tuple(requests), finish_reason)


def response_finish_reason(raw: str | None, requested_tools: bool) -> str | None:
    """The normalised finish reason of a response; one that asked for tools is ``tool_calls``
    even where the instrumentation wrote ``stop`` (the Responses API has no finish reason: its
    instrumentations map "completed" to ``stop`` whatever the output held)."""
    reason = normalise_finish_reason(raw)
    return "tool_calls" if requested_tools and reason == "stop" else reason
