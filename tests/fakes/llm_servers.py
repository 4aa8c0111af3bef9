"""Fake OpenAI (Chat Completions) and Anthropic (Messages) servers on 127.0.0.1, for the real SDKs.

Each server answers from a script: a list of ``Reply`` items consumed one per request, in order.
A reply either asks for one tool call or answers with text. The wire formats are those the
official ``openai`` (3.x) and ``anthropic`` (2.x) clients parse, including OpenAI's streamed
SSE chunks with ``stream_options.include_usage``. Every request body is recorded so a test can
check what the agent actually sent.
"""

from __future__ import annotations

import itertools
import json
import threading
import time
import uuid
from abc import abstractmethod
from collections.abc import Iterator
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler
from typing import Any

from tests.fakes.local_server import LocalHTTPServer


@dataclass(frozen=True)
class Reply:
    """One scripted model turn: a tool call (``tool`` set) or a text answer (``text`` set)."""

    text: str | None = None
    tool: str | None = None
    arguments: dict[str, Any] = field(default_factory=dict)
    input_tokens: int = 10
    output_tokens: int = 5

    @staticmethod
    def tool_call(name: str, arguments: dict[str, Any], input_tokens: int = 10, output_tokens: int = 5) -> Reply:
        return Reply(tool=name, arguments=arguments, input_tokens=input_tokens, output_tokens=output_tokens)

    @staticmethod
    def answer(text: str, input_tokens: int = 10, output_tokens: int = 5) -> Reply:
        return Reply(text=text, input_tokens=input_tokens, output_tokens=output_tokens)


@dataclass
class Recorded:
    path: str
    headers: dict[str, str]
    body: dict[str, Any]


class ScriptExhausted(Exception):
    pass


class FakeLLMServer(LocalHTTPServer):
    """Base: a threaded HTTP server on 127.0.0.1:0 answering from ``script``."""

    provider = "fake"

    def __init__(self, script: list[Reply]) -> None:
        self._script = list(script)
        self._lock = threading.Lock()
        self._ids = itertools.count(1)
        self.tag = uuid.uuid4().hex[:10]  # response ids unique across servers and test runs
        self.requests: list[Recorded] = []
        self.errors: list[str] = []
        super().__init__(self.provider)

    @property
    @abstractmethod
    def base_url(self) -> str:
        """Where the SDK under test is pointed."""

    @property
    def remaining(self) -> int:
        with self._lock:
            return len(self._script)

    # --- request handling -----------------------------------------------------------------

    def _next(self, recorded: Recorded) -> tuple[Reply, int]:
        with self._lock:
            self.requests.append(recorded)
            if not self._script:
                raise ScriptExhausted(f"{self.provider}: request {len(self.requests)} has no scripted reply")
            return self._script.pop(0), next(self._ids)

    @abstractmethod
    def handle(self, handler: BaseHTTPRequestHandler, path: str, body: dict[str, Any]) -> None:
        """Answer one request."""

    def _handler_class(self) -> type[BaseHTTPRequestHandler]:
        fake = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def do_POST(self) -> None:
                length = int(self.headers.get("Content-Length") or 0)
                raw = self.rfile.read(length)
                try:
                    body = json.loads(raw or b"{}")
                    fake.handle(self, self.path.split("?", 1)[0], body)
                except ScriptExhausted as exc:
                    fake.errors.append(str(exc))
                    send_json(self, 500, {"error": {"type": "script_exhausted", "message": str(exc)}})
                except Exception as exc:  # a broken fake must show up in the test, not hang it
                    fake.errors.append(f"{type(exc).__name__}: {exc}")
                    send_json(self, 500, {"error": {"type": "fake_error", "message": str(exc)}})

            def log_message(self, format: str, *args: Any) -> None:  # keep pytest output quiet
                pass

        return Handler


def send_json(handler: BaseHTTPRequestHandler, status: int, payload: dict[str, Any]) -> None:
    data = json.dumps(payload).encode()
    handler.send_response(status)
    handler.send_header("Content-Type", "application/json")
    handler.send_header("Content-Length", str(len(data)))
    handler.end_headers()
    handler.wfile.write(data)
    handler.wfile.flush()


def send_not_found(handler: BaseHTTPRequestHandler, path: str) -> None:
    send_json(handler, 404, {"error": {"type": "not_found", "message": f"no route {path}"}})


def send_sse(handler: BaseHTTPRequestHandler, events: list[bytes]) -> None:
    """A server-sent-events answer, one chunk of the chunked body per event."""
    handler.send_response(200)
    handler.send_header("Content-Type", "text/event-stream; charset=utf-8")
    handler.send_header("Cache-Control", "no-cache")
    handler.send_header("Transfer-Encoding", "chunked")
    handler.end_headers()
    for data in events:
        handler.wfile.write(f"{len(data):x}\r\n".encode() + data + b"\r\n")
        handler.wfile.flush()
    handler.wfile.write(b"0\r\n\r\n")
    handler.wfile.flush()


def _chunks(text: str, size: int) -> Iterator[str]:
    for start in range(0, len(text), size):
        yield text[start : start + size]


class FakeOpenAI(FakeLLMServer):
    """``POST /v1/chat/completions``, plain JSON or SSE when the request says ``stream: true``."""

    provider = "openai"
    model = "gpt-4o-mini-2024-07-18"

    @property
    def base_url(self) -> str:
        return f"http://127.0.0.1:{self.port}/v1"  # the openai SDK wants the /v1 in its base URL

    def handle(self, handler: BaseHTTPRequestHandler, path: str, body: dict[str, Any]) -> None:
        if path != "/v1/chat/completions":
            send_not_found(handler, path)
            return
        reply, n = self._next(Recorded(path, dict(handler.headers.items()), body))
        completion_id = f"chatcmpl-{self.tag}{n:03d}"
        call_id = f"call_{self.tag}{n:03d}"
        usage = {
            "prompt_tokens": reply.input_tokens,
            "completion_tokens": reply.output_tokens,
            "total_tokens": reply.input_tokens + reply.output_tokens,
        }
        if body.get("stream"):
            include_usage = bool((body.get("stream_options") or {}).get("include_usage"))
            self._stream(handler, reply, completion_id, call_id, usage if include_usage else None)
            return
        if reply.tool is not None:
            message: dict[str, Any] = {
                "role": "assistant",
                "content": None,
                "refusal": None,
                "tool_calls": [
                    {
                        "id": call_id,
                        "type": "function",
                        "function": {"name": reply.tool, "arguments": json.dumps(reply.arguments)},
                    }
                ],
            }
            finish = "tool_calls"
        else:
            message = {"role": "assistant", "content": reply.text, "refusal": None}
            finish = "stop"
        send_json(
            handler,
            200,
            {
                "id": completion_id,
                "object": "chat.completion",
                "created": int(time.time()),
                "model": self.model,
                "system_fingerprint": "fp_e2e",
                "choices": [{"index": 0, "message": message, "logprobs": None, "finish_reason": finish}],
                "usage": usage,
            },
        )

    def _stream(
        self,
        handler: BaseHTTPRequestHandler,
        reply: Reply,
        completion_id: str,
        call_id: str,
        usage: dict[str, int] | None,
    ) -> None:
        created = int(time.time())

        def chunk(choices: list[dict[str, Any]], with_usage: dict[str, int] | None = None) -> dict[str, Any]:
            out: dict[str, Any] = {
                "id": completion_id,
                "object": "chat.completion.chunk",
                "created": created,
                "model": self.model,
                "system_fingerprint": "fp_e2e",
                "choices": choices,
            }
            if usage is not None:
                out["usage"] = with_usage
            return out

        def choice(delta: dict[str, Any], finish: str | None = None) -> dict[str, Any]:
            return {"index": 0, "delta": delta, "logprobs": None, "finish_reason": finish}

        events: list[dict[str, Any]] = []
        if reply.tool is not None:
            arguments = json.dumps(reply.arguments)
            events.append(
                chunk(
                    [
                        choice(
                            {
                                "role": "assistant",
                                "content": None,
                                "tool_calls": [
                                    {
                                        "index": 0,
                                        "id": call_id,
                                        "type": "function",
                                        "function": {"name": reply.tool, "arguments": ""},
                                    }
                                ],
                            }
                        )
                    ]
                )
            )
            for part in _chunks(arguments, 7):
                events.append(chunk([choice({"tool_calls": [{"index": 0, "function": {"arguments": part}}]})]))
            events.append(chunk([choice({}, "tool_calls")]))
        else:
            events.append(chunk([choice({"role": "assistant", "content": ""})]))
            for part in _chunks(reply.text or "", 6):
                events.append(chunk([choice({"content": part})]))
            events.append(chunk([choice({}, "stop")]))
        if usage is not None:
            events.append(chunk([], usage))

        send_sse(handler, [f"data: {json.dumps(event)}\n\n".encode() for event in events] + [b"data: [DONE]\n\n"])


class FakeAnthropic(FakeLLMServer):
    """``POST /v1/messages``, plain JSON or Anthropic's server-sent events when the request says
    ``stream: true``. Accepts either auth header and any ``anthropic-version``."""

    provider = "anthropic"
    model = "claude-haiku-4-5-20251001"

    @property
    def base_url(self) -> str:
        return f"http://127.0.0.1:{self.port}"  # the anthropic SDK adds /v1/messages itself

    def handle(self, handler: BaseHTTPRequestHandler, path: str, body: dict[str, Any]) -> None:
        if path != "/v1/messages":
            send_not_found(handler, path)
            return
        reply, n = self._next(Recorded(path, dict(handler.headers.items()), body))
        if body.get("stream"):
            self._stream(handler, reply, n)
            return
        if reply.tool is not None:
            content: list[dict[str, Any]] = [
                {"type": "tool_use", "id": f"toolu_{self.tag}{n:03d}", "name": reply.tool, "input": reply.arguments}
            ]
            stop_reason = "tool_use"
        else:
            content = [{"type": "text", "text": reply.text}]
            stop_reason = "end_turn"
        send_json(
            handler,
            200,
            {
                "id": f"msg_{self.tag}{n:03d}",
                "type": "message",
                "role": "assistant",
                "model": self.model,
                "content": content,
                "stop_reason": stop_reason,
                "stop_sequence": None,
                "usage": {
                    "input_tokens": reply.input_tokens,
                    "output_tokens": reply.output_tokens,
                    "cache_creation_input_tokens": 0,
                    "cache_read_input_tokens": 0,
                },
            },
        )

    def _stream(self, handler: BaseHTTPRequestHandler, reply: Reply, n: int) -> None:
        """The Messages API's event sequence: message_start (input tokens), one content block in
        deltas, message_delta (stop reason, output tokens), message_stop."""
        message: dict[str, Any] = {
            "id": f"msg_{self.tag}{n:03d}",
            "type": "message",
            "role": "assistant",
            "model": self.model,
            "content": [],
            "stop_reason": None,
            "stop_sequence": None,
            "usage": {"input_tokens": reply.input_tokens, "output_tokens": 1},
        }
        events: list[tuple[str, dict[str, Any]]] = [("message_start", {"type": "message_start", "message": message})]
        if reply.tool is not None:
            block = {"type": "tool_use", "id": f"toolu_{self.tag}{n:03d}", "name": reply.tool, "input": {}}
            parts = _chunks(json.dumps(reply.arguments), 7)
            deltas = [{"type": "input_json_delta", "partial_json": part} for part in parts]
            stop_reason = "tool_use"
        else:
            block = {"type": "text", "text": ""}
            deltas = [{"type": "text_delta", "text": part} for part in _chunks(reply.text or "", 6)]
            stop_reason = "end_turn"
        events.append(("content_block_start", {"type": "content_block_start", "index": 0, "content_block": block}))
        events += [("content_block_delta", {"type": "content_block_delta", "index": 0, "delta": d}) for d in deltas]
        events.append(("content_block_stop", {"type": "content_block_stop", "index": 0}))
        delta = {"stop_reason": stop_reason, "stop_sequence": None}
        usage = {"output_tokens": reply.output_tokens}
        events.append(("message_delta", {"type": "message_delta", "delta": delta, "usage": usage}))
        events.append(("message_stop", {"type": "message_stop"}))
        send_sse(handler, [f"event: {name}\ndata: {json.dumps(data)}\n\n".encode() for name, data in events])
