"""LLM calls read off the wire, in the agent's process (dunetrace.auto): which HTTP requests are
calls to an LLM API, and what their JSON says — model, tokens, finish reason, the completion and
the tools it asked for. Nothing here leaves the process: the callers reduce the content
(dunetrace._content) before anything is recorded.

Known LLM APIs: any POST to ``api.openai.com`` or ``api.anthropic.com``, and on any host the
OpenAI-compatible and Anthropic paths (``/v1/chat/completions``, ``/v1/completions``,
``/v1/responses``, ``/v1/messages``, also without the ``/v1``). Bodies are JSON or server-sent
events (``stream: true``), as those APIs write them; a response body is kept up to
``MAX_BODY`` bytes while the client reads it (a tee on the transport's stream)."""

from __future__ import annotations

import json
import zlib
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import urlsplit

MAX_BODY = 8 * 1024 * 1024  # a response larger than this is counted, not read
LLM_HOSTS = {"api.openai.com": "openai", "api.anthropic.com": "anthropic"}
_OPENAI_PATHS = ("/chat/completions", "/completions", "/responses")
_ANTHROPIC_PATHS = ("/messages",)


@dataclass(slots=True)
class WireCall:
    """What one LLM call's request and response said (content still raw: reduce before use)."""

    provider: str
    host: str
    path: str
    model: str = ""
    stream: bool = False
    prompt: Any = None
    output: str | None = None
    tool_calls: list[dict[str, Any]] = field(default_factory=list)
    finish_reason: str | None = None
    input_tokens: int = 0
    output_tokens: int = 0
    reasoning_tokens: int = 0
    status: int | None = None
    response_read: bool = False


def llm_endpoint(method: str, url: str) -> tuple[str, str, str] | None:
    """``(provider, host, path)`` when ``method url`` is a call to a known LLM API, else None."""
    if method.upper() != "POST":
        return None
    try:
        parts = urlsplit(url)
    except ValueError:
        return None
    host = (parts.hostname or "").lower()
    path = parts.path.rstrip("/")
    known = LLM_HOSTS.get(host)
    if known is not None:
        return known, host, path
    if path.endswith(_ANTHROPIC_PATHS):
        return "anthropic", host, path
    if path.endswith(_OPENAI_PATHS):
        return "openai", host, path
    return None


def read_request(call: WireCall, body: bytes | str | None) -> None:
    """The request's model, stream flag and prompt (messages, system, input)."""
    data = _json_of(body)
    if not isinstance(data, Mapping):
        return
    call.model = _str(data.get("model"))
    call.stream = bool(data.get("stream"))
    prompt: dict[str, Any] = {}
    for key in ("system", "instructions", "messages", "input", "prompt"):
        if data.get(key) is not None:
            prompt[key] = data[key]
    call.prompt = prompt or None


def read_response(call: WireCall, status: int | None, body: bytes, encoding: str = "", content_type: str = "") -> None:
    """The response: JSON or server-sent events, OpenAI or Anthropic shaped."""
    call.status = status
    call.response_read = True
    raw = _decoded(body, encoding)
    if raw is None:
        return
    text = raw.decode("utf-8", "replace")
    if "text/event-stream" in content_type or text.lstrip().startswith(("data:", "event:")):
        _read_events(call, text)
        return
    data = _json_of(text)
    if isinstance(data, Mapping):
        _read_message(call, data)


# --- bodies --------------------------------------------------------------------------------------


def _decoded(body: bytes, encoding: str) -> bytes | None:
    encoding = (encoding or "").lower().strip()
    if not encoding or encoding == "identity":
        return body
    try:
        if encoding == "gzip":
            return zlib.decompress(body, 16 + zlib.MAX_WBITS)
        if encoding == "deflate":
            try:
                return zlib.decompress(body)
            except zlib.error:
                return zlib.decompress(body, -zlib.MAX_WBITS)
        if encoding == "br":
            import brotli  # optional: only when the client asked for br

            return bytes(brotli.decompress(body))
    except Exception:
        return None
    return None


def _json_of(body: bytes | str | None) -> Any:
    if not body:
        return None
    try:
        return json.loads(body)
    except (ValueError, TypeError, RecursionError):
        return None


def _str(value: Any) -> str:
    return value if isinstance(value, str) else ""


def _int(value: Any) -> int:
    return value if isinstance(value, int) and not isinstance(value, bool) and value > 0 else 0


def _usage(call: WireCall, usage: Any) -> None:
    if not isinstance(usage, Mapping):
        return
    call.input_tokens = _int(usage.get("prompt_tokens")) or _int(usage.get("input_tokens")) or call.input_tokens
    call.output_tokens = _int(usage.get("completion_tokens")) or _int(usage.get("output_tokens")) or call.output_tokens
    details = usage.get("completion_tokens_details") or usage.get("output_tokens_details")
    if isinstance(details, Mapping):
        call.reasoning_tokens = _int(details.get("reasoning_tokens")) or call.reasoning_tokens


def _read_message(call: WireCall, data: Mapping[str, Any]) -> None:
    """A whole (non-streamed) response: Chat Completions, Responses or Anthropic Messages."""
    call.model = call.model or _str(data.get("model"))
    _usage(call, data.get("usage"))
    choices = data.get("choices")
    if isinstance(choices, list) and choices and isinstance(choices[0], Mapping):  # chat completions
        choice = choices[0]
        call.finish_reason = _str(choice.get("finish_reason")) or None
        message = choice.get("message")
        if isinstance(message, Mapping):
            call.output = _str(message.get("content"))
            for item in message.get("tool_calls") or ():
                function = item.get("function") if isinstance(item, Mapping) else None
                if isinstance(function, Mapping):
                    call.tool_calls.append(
                        {"id": item.get("id"), "name": function.get("name"), "arguments": function.get("arguments")}
                    )
        elif "text" in choice:  # legacy completions
            call.output = _str(choice.get("text"))
        return
    content = data.get("content")
    if isinstance(content, list):  # anthropic messages
        call.finish_reason = _str(data.get("stop_reason")) or None
        texts = []
        for block in content:
            if not isinstance(block, Mapping):
                continue
            if block.get("type") == "text":
                texts.append(_str(block.get("text")))
            elif block.get("type") == "tool_use":
                call.tool_calls.append(
                    {"id": block.get("id"), "name": block.get("name"), "arguments": block.get("input")}
                )
        call.output = "".join(texts)
        return
    output = data.get("output")
    if isinstance(output, list):  # responses API
        texts = []
        for item in output:
            if not isinstance(item, Mapping):
                continue
            if item.get("type") == "function_call":
                call.tool_calls.append(
                    {
                        "id": item.get("call_id") or item.get("id"),
                        "name": item.get("name"),
                        "arguments": item.get("arguments"),
                    }
                )
            for part in item.get("content") or ():
                if isinstance(part, Mapping) and part.get("type") in ("output_text", "text"):
                    texts.append(_str(part.get("text")))
        call.output = "".join(texts)
        status = _str(data.get("status"))
        call.finish_reason = "tool_calls" if call.tool_calls else ("stop" if status == "completed" else status or None)


def _read_events(call: WireCall, text: str) -> None:
    """A streamed response: OpenAI chunks (``data: {...}`` … ``data: [DONE]``) or Anthropic's
    typed events (message_start, content_block_*, message_delta)."""
    texts: list[str] = []
    tools: dict[int, dict[str, Any]] = {}
    for line in text.splitlines():
        if not line.startswith("data:"):
            continue
        payload = line[5:].strip()
        if not payload or payload == "[DONE]":
            continue
        event = _json_of(payload)
        if not isinstance(event, Mapping):
            continue
        kind = event.get("type")
        if isinstance(kind, str):
            _anthropic_event(call, event, kind, texts, tools)
            continue
        call.model = call.model or _str(event.get("model"))
        _usage(call, event.get("usage"))
        for choice in event.get("choices") or ():
            if not isinstance(choice, Mapping):
                continue
            if choice.get("finish_reason"):
                call.finish_reason = _str(choice.get("finish_reason"))
            delta = choice.get("delta")
            if not isinstance(delta, Mapping):
                continue
            if isinstance(delta.get("content"), str):
                texts.append(delta["content"])
            for item in delta.get("tool_calls") or ():
                if not isinstance(item, Mapping):
                    continue
                given = item.get("index")
                index = given if isinstance(given, int) else len(tools)
                slot = tools.setdefault(index, {"id": "", "name": "", "arguments": ""})
                slot["id"] = item.get("id") or slot["id"]
                function = item.get("function")
                if isinstance(function, Mapping):
                    slot["name"] = function.get("name") or slot["name"]
                    slot["arguments"] += _str(function.get("arguments"))
    call.output = "".join(texts)
    call.tool_calls.extend(tools[index] for index in sorted(tools))


def _anthropic_event(
    call: WireCall, event: Mapping[str, Any], kind: str, texts: list[str], tools: dict[int, dict[str, Any]]
) -> None:
    if kind == "message_start" and isinstance(event.get("message"), Mapping):
        message = event["message"]
        call.model = call.model or _str(message.get("model"))
        _usage(call, message.get("usage"))
    elif kind == "content_block_start" and isinstance(event.get("content_block"), Mapping):
        block = event["content_block"]
        if block.get("type") == "tool_use":
            given = event.get("index")
            index = given if isinstance(given, int) else len(tools)
            tools[index] = {"id": block.get("id") or "", "name": block.get("name") or "", "arguments": ""}
        elif block.get("type") == "text":
            texts.append(_str(block.get("text")))
    elif kind == "content_block_delta" and isinstance(event.get("delta"), Mapping):
        delta = event["delta"]
        if delta.get("type") == "text_delta":
            texts.append(_str(delta.get("text")))
        elif delta.get("type") == "input_json_delta":
            at = event.get("index")
            if isinstance(at, int) and at in tools:
                tools[at]["arguments"] += _str(delta.get("partial_json"))
    elif kind == "message_delta":
        delta = event.get("delta")
        if isinstance(delta, Mapping) and delta.get("stop_reason"):
            call.finish_reason = _str(delta.get("stop_reason"))
        _usage(call, event.get("usage"))


# --- reading a response body as the client reads it ----------------------------------------------

_TEE_CLASSES: dict[type, type] = {}


class _Buffer:
    __slots__ = ("chunks", "done", "on_done", "size", "truncated")

    def __init__(self, on_done: Callable[[bytes | None], None]) -> None:
        self.chunks: list[bytes] = []
        self.size = 0
        self.truncated = False
        self.done = False
        self.on_done = on_done

    def feed(self, chunk: bytes) -> None:
        if self.truncated:
            return
        self.size += len(chunk)
        if self.size > MAX_BODY:
            self.truncated = True
            self.chunks.clear()
        else:
            self.chunks.append(bytes(chunk))

    def finish(self) -> None:
        if self.done:
            return
        self.done = True
        body = None if self.truncated else b"".join(self.chunks)
        self.chunks = []
        self.on_done(body)


def _teed(read: Callable[..., Iterator[Any]]) -> Callable[..., Iterator[Any]]:
    """``read`` (a response's chunk generator method) with each chunk kept as it passes."""

    def method(self: Any, *args: Any, **kwargs: Any) -> Iterator[Any]:
        buffer = self._dunetrace_buffer
        try:
            for chunk in read(self, *args, **kwargs):
                buffer.feed(chunk)
                yield chunk
        finally:
            buffer.finish()

    return method


def _tee_class(cls: type) -> type:
    """A subclass of the transport's response stream class that keeps what passes through it."""
    sub = _TEE_CLASSES.get(cls)
    if sub is not None:
        return sub
    methods: dict[str, Any] = {}
    base: Any = cls
    # urllib3's response (requests' ``raw``) is read through ``stream()``, and its ``__iter__``
    # reads through ``stream()`` too, so only ``stream()`` is teed (once); others by ``__iter__``.
    reader = "stream" if hasattr(cls, "stream") else "__iter__" if hasattr(cls, "__iter__") else None
    if reader is not None:
        methods[reader] = _teed(getattr(cls, reader))
    if hasattr(cls, "__aiter__"):

        async def __aiter__(self: Any) -> Any:
            buffer = self._dunetrace_buffer
            try:
                async for chunk in base.__aiter__(self):
                    buffer.feed(chunk)
                    yield chunk
            finally:
                buffer.finish()

        methods["__aiter__"] = __aiter__
    if hasattr(cls, "close"):

        def close(self: Any) -> Any:
            try:
                return base.close(self)
            finally:
                self._dunetrace_buffer.finish()

        methods["close"] = close
    if hasattr(cls, "aclose"):

        async def aclose(self: Any) -> Any:
            try:
                return await base.aclose(self)
            finally:
                self._dunetrace_buffer.finish()

        methods["aclose"] = aclose
    sub = type(f"DunetraceTee{cls.__name__}", (cls,), methods)
    _TEE_CLASSES[cls] = sub
    return sub


def tee_stream(stream: Any, on_done: Callable[[bytes | None], None]) -> bool:
    """Keep the body of a transport response stream as the client reads it; ``on_done(body)``
    when it was read whole or closed (``None`` if it was too large). False when the stream's
    class cannot take the tee (then the body is not read at all)."""
    if stream is None or isinstance(stream, (bytes, bytearray)):
        return False
    try:
        sub = _tee_class(type(stream))
        stream._dunetrace_buffer = _Buffer(on_done)
        stream.__class__ = sub
    except (TypeError, AttributeError):
        return False
    return True


def header(headers: Any, name: str) -> str:
    """One header's value from httpx's raw header list, a mapping, or None."""
    if headers is None:
        return ""
    try:
        if hasattr(headers, "get"):
            value = headers.get(name)
            if value is not None:
                return value.decode("latin-1") if isinstance(value, bytes) else str(value)
            return ""
        wanted = name.lower().encode()
        for key, value in headers:
            key_bytes = key if isinstance(key, bytes) else str(key).encode()
            if key_bytes.lower() == wanted:
                return value.decode("latin-1") if isinstance(value, bytes) else str(value)
    except (TypeError, ValueError):
        return ""
    return ""
