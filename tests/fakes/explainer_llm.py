"""A fake LLM for the sidecar's structured-output analysis ("explain"), for the real anthropic/openai SDKs.

One aiohttp server on 127.0.0.1 (background thread, port 0) speaks three wire formats
(see ``/work/shared/spec/integrations.md`` §2):

- Anthropic ``POST /v1/messages``: with ``tools`` it answers a ``tool_use`` block (the tool named by
  ``tool_choice {"type":"tool","name":X}``, else the first tool) whose ``input`` is the configured answer,
  ``stop_reason: "tool_use"``; without tools (or with ``output_config.format`` json_schema) a text block
  holding the answer as JSON, ``stop_reason: "end_turn"``.
- OpenAI ``POST /v1/chat/completions``: ``choices[0].message.content`` is the answer as a JSON string
  (``response_format`` json_schema / json_object / none); a forced function tool gets a ``tool_calls`` answer.
- OpenAI ``POST /v1/responses``: one output message whose ``output_text`` is the answer as JSON.

Unlike ``llm_servers.py`` (a scripted conversation), this fake answers every request with the same
configured object, and has failure knobs: ``fail_next``, ``malformed``, ``delay_seconds``, ``stop()``.
"""

from __future__ import annotations

import asyncio
import copy
import itertools
import json
import threading
import time
import uuid
from dataclasses import dataclass
from typing import Any

from aiohttp import web

from tests.fakes.langfuse_server import BackgroundAiohttpServer, Handler

DEFAULT_ANSWER: dict[str, Any] = {
    "root_cause": "The agent retried the same failing tool call without changing its arguments.",
    "fix_content": "If a tool call fails twice with the same error, stop retrying and report the error.",
}
MALFORMED_TEXT = "Sure! Here is the diagnosis: the agent looped {not json"
MALFORMED_TOOL_INPUT: dict[str, Any] = {"note": "the required fields are missing"}

_ANTHROPIC_ERROR_TYPES = {
    400: "invalid_request_error",
    401: "authentication_error",
    403: "permission_error",
    404: "not_found_error",
    413: "request_too_large",
    429: "rate_limit_error",
    500: "api_error",
    529: "overloaded_error",
}
_OPENAI_ERROR_TYPES = {
    400: ("invalid_request_error", None),
    401: ("invalid_request_error", "invalid_api_key"),
    403: ("invalid_request_error", "unsupported_country_region_territory"),
    404: ("invalid_request_error", "model_not_found"),
    429: ("requests", "rate_limit_exceeded"),
    500: ("server_error", None),
    503: ("server_error", None),
}


@dataclass
class LLMRequest:
    """One request as the fake saw it; ``status`` is filled in once answered."""

    api: str  # "anthropic" | "openai" | "openai-responses" | "unknown"
    path: str
    headers: dict[str, str]
    body: Any  # the parsed JSON body (None if it was not JSON)
    size: int  # bytes of the raw request body
    status: int | None = None

    @property
    def api_key(self) -> str | None:
        """The key the client sent, from ``x-api-key`` or ``Authorization: Bearer``."""
        headers = {k.lower(): v for k, v in self.headers.items()}
        if headers.get("x-api-key"):
            return headers["x-api-key"]
        scheme, _, value = headers.get("authorization", "").partition(" ")
        return value.strip() if scheme.lower() == "bearer" and value.strip() else None

    @property
    def prompt_text(self) -> str:
        """All prompt text of the request joined by newlines: Anthropic ``system`` + message contents,
        OpenAI message contents, Responses ``instructions`` + ``input``. Tool schemas are not included."""
        body = self.body if isinstance(self.body, dict) else {}
        parts: list[str] = []
        parts.extend(_texts(body.get("system")))
        parts.extend(_texts(body.get("instructions")))
        for message in body.get("messages") or []:
            if isinstance(message, dict):
                parts.extend(_texts(message.get("content")))
        parts.extend(_texts(body.get("input")))
        return "\n".join(p for p in parts if p)


def _texts(content: Any) -> list[str]:
    if content is None:
        return []
    if isinstance(content, str):
        return [content]
    if isinstance(content, list):
        out: list[str] = []
        for item in content:
            if isinstance(item, str):
                out.append(item)
            elif isinstance(item, dict):
                if isinstance(item.get("text"), str):
                    out.append(item["text"])
                elif "content" in item:
                    out.extend(_texts(item["content"]))
        return out
    return []


@dataclass
class _Failure:
    remaining: int
    status: int
    retry_after: float | str | None
    path: str | None


class FakeExplainerLLM(BackgroundAiohttpServer):
    """Answers Anthropic Messages, OpenAI Chat Completions and OpenAI Responses with ``answer``."""

    thread_name = "fake-explainer-llm"

    def __init__(
        self,
        answer: dict[str, Any] | None = None,
        *,
        api_key: str | None = None,
        anthropic_model: str = "claude-haiku-4-5-20251001",
        openai_model: str = "gpt-4o-mini-2024-07-18",
    ) -> None:
        super().__init__()
        self.answer: dict[str, Any] = copy.deepcopy(answer if answer is not None else DEFAULT_ANSWER)
        self.api_key = api_key  # None: any non-empty key is accepted
        self.anthropic_model = anthropic_model
        self.openai_model = openai_model
        # knobs
        self.malformed: bool = False
        self.delay_seconds: float = 0.0
        self._lock = threading.Lock()
        self._failures: list[_Failure] = []
        self._requests: list[LLMRequest] = []
        self._ids = itertools.count(1)
        self._tag = uuid.uuid4().hex[:10]
        self.errors: list[str] = []

    # ------------------------------------------------------------------ URLs

    @property
    def anthropic_base_url(self) -> str:
        """For ``anthropic.Anthropic(base_url=...)`` (the SDK appends ``/v1/messages``)."""
        return self.base_url

    @property
    def openai_base_url(self) -> str:
        """For ``openai.OpenAI(base_url=...)``, which wants the ``/v1``."""
        return f"{self.base_url}/v1"

    # ------------------------------------------------------------------ knobs and records

    def fail_next(
        self, n: int, status: int = 529, retry_after: float | str | None = None, *, path: str | None = None
    ) -> None:
        """Answer the next ``n`` requests (only those whose path starts with ``path`` when given, e.g.
        ``"/v1/messages"``) with ``status`` and the provider's JSON error body (Anthropic's
        ``{"type":"error","error":{"type":"overloaded_error",...}}`` on /v1/messages, OpenAI's
        ``{"error":{...}}`` otherwise). ``retry_after`` (seconds) is sent as the ``retry-after`` header;
        both SDKs honour it (a float such as 0.05 keeps retry tests fast). Without it the SDKs back off
        0.5 s, 1 s, ... Rules queue up."""
        with self._lock:
            self._failures.append(_Failure(n, status, retry_after, path))

    def clear_failures(self) -> None:
        with self._lock:
            self._failures.clear()

    @property
    def requests(self) -> list[LLMRequest]:
        with self._lock:
            return list(self._requests)

    @property
    def last_request(self) -> LLMRequest:
        with self._lock:
            if not self._requests:
                raise AssertionError("the fake LLM has received no request")
            return self._requests[-1]

    def requests_for(self, api: str) -> list[LLMRequest]:
        return [r for r in self.requests if r.api == api]

    def clear_requests(self) -> None:
        with self._lock:
            self._requests.clear()

    # ------------------------------------------------------------------ app

    def make_app(self) -> web.Application:
        app = web.Application(middlewares=[self._middleware], client_max_size=64 * 1024 * 1024)
        app.router.add_post("/v1/messages", self._messages)
        app.router.add_post("/v1/chat/completions", self._chat_completions)
        app.router.add_post("/v1/responses", self._responses)
        return app

    @web.middleware
    async def _middleware(self, request: web.Request, handler: Handler) -> web.StreamResponse:
        raw = await request.read()
        try:
            body: Any = json.loads(raw) if raw else None
        except ValueError:
            body = None
        api = {
            "/v1/messages": "anthropic",
            "/v1/chat/completions": "openai",
            "/v1/responses": "openai-responses",
        }.get(request.path, "unknown")
        record = LLMRequest(api=api, path=request.path, headers=dict(request.headers), body=body, size=len(raw))
        with self._lock:
            self._requests.append(record)
        response = await self._answer(request, handler, record)
        record.status = response.status
        return response

    async def _answer(self, request: web.Request, handler: Handler, record: LLMRequest) -> web.StreamResponse:
        if self.delay_seconds > 0:
            await asyncio.sleep(self.delay_seconds)
        with self._lock:
            failure = next(
                (f for f in self._failures if f.remaining > 0 and (f.path is None or request.path.startswith(f.path))),
                None,
            )
            if failure is not None:
                failure.remaining -= 1
        if failure is not None:
            headers = {"retry-after": str(failure.retry_after)} if failure.retry_after is not None else {}
            return self._error(record.api, failure.status, f"fake failure: HTTP {failure.status}", headers)
        key = record.api_key
        if not key or (self.api_key is not None and key != self.api_key):
            return self._error(
                record.api, 401, "invalid x-api-key" if record.api == "anthropic" else "Incorrect API key"
            )
        if not isinstance(record.body, dict):
            return self._error(record.api, 400, "the request body must be a JSON object")
        try:
            return await handler(request)
        except web.HTTPException as exc:
            return self._error(record.api, exc.status, exc.reason or "error")
        except _BadRequest as exc:
            return self._error(record.api, 400, str(exc))
        except Exception as exc:  # a broken fake must show up in the test
            self.errors.append(f"{request.path}: {type(exc).__name__}: {exc}")
            return self._error(record.api, 500, f"fake error: {type(exc).__name__}: {exc}")

    def _error(self, api: str, status: int, message: str, headers: dict[str, str] | None = None) -> web.Response:
        n = next(self._ids)
        headers = dict(headers or {})
        if api == "anthropic":
            request_id = f"req_{self._tag}{n:04d}"
            headers["request-id"] = request_id
            error_type = _ANTHROPIC_ERROR_TYPES.get(status, "api_error")
            payload: dict[str, Any] = {
                "type": "error",
                "error": {"type": error_type, "message": "Overloaded" if status == 529 else message},
                "request_id": request_id,
            }
        else:
            headers["x-request-id"] = f"req_{self._tag}{n:04d}"
            error_type, code = _OPENAI_ERROR_TYPES.get(status, ("server_error", None))
            payload = {"error": {"message": message, "type": error_type, "param": None, "code": code}}
        return web.json_response(payload, status=status, headers=headers)

    def _answer_json(self) -> str:
        return MALFORMED_TEXT if self.malformed else json.dumps(self.answer)

    def _tool_input(self) -> dict[str, Any]:
        return copy.deepcopy(MALFORMED_TOOL_INPUT if self.malformed else self.answer)

    # ------------------------------------------------------------------ Anthropic

    async def _messages(self, request: web.Request) -> web.Response:
        body: dict[str, Any] = await request.json()
        if body.get("stream"):
            raise _BadRequest("this fake does not stream")
        for required in ("model", "max_tokens", "messages"):
            if required not in body:
                raise _BadRequest(f"{required}: Field required")
        n = next(self._ids)
        tools = [t for t in body.get("tools") or [] if isinstance(t, dict)]
        choice = body.get("tool_choice") or {"type": "auto"}
        content: list[dict[str, Any]]
        if tools and choice.get("type") != "none":
            names = [t.get("name") for t in tools]
            name = choice.get("name") if choice.get("type") == "tool" else names[0]
            if name not in names:
                raise _BadRequest(f"tool_choice names {name!r}, which is not in tools {names}")
            content = [
                {"type": "tool_use", "id": f"toolu_{self._tag}{n:04d}", "name": name, "input": self._tool_input()}
            ]
            stop_reason = "tool_use"
        else:
            content = [{"type": "text", "text": self._answer_json()}]
            stop_reason = "end_turn"
        usage_in = max(1, len(json.dumps(body)) // 4)
        usage_out = max(1, len(json.dumps(content)) // 4)
        return web.json_response(
            {
                "id": f"msg_{self._tag}{n:04d}",
                "type": "message",
                "role": "assistant",
                "model": body.get("model") or self.anthropic_model,
                "content": content,
                "stop_reason": stop_reason,
                "stop_sequence": None,
                "usage": {
                    "input_tokens": usage_in,
                    "output_tokens": usage_out,
                    "cache_creation_input_tokens": 0,
                    "cache_read_input_tokens": 0,
                },
            },
            headers={"request-id": f"req_{self._tag}{n:04d}"},
        )

    # ------------------------------------------------------------------ OpenAI

    async def _chat_completions(self, request: web.Request) -> web.Response:
        body: dict[str, Any] = await request.json()
        if body.get("stream"):
            raise _BadRequest("this fake does not stream")
        if "model" not in body or "messages" not in body:
            raise _BadRequest("model and messages are required")
        n = next(self._ids)
        tools = [t for t in body.get("tools") or [] if isinstance(t, dict) and t.get("type") == "function"]
        choice = body.get("tool_choice")
        forced = choice.get("function", {}).get("name") if isinstance(choice, dict) else None
        message: dict[str, Any]
        if tools and (forced or choice == "required"):
            name = forced or tools[0]["function"]["name"]
            message = {
                "role": "assistant",
                "content": None,
                "refusal": None,
                "tool_calls": [
                    {
                        "id": f"call_{self._tag}{n:04d}",
                        "type": "function",
                        "function": {"name": name, "arguments": json.dumps(self._tool_input())},
                    }
                ],
            }
            finish = "tool_calls"
        else:
            message = {"role": "assistant", "content": self._answer_json(), "refusal": None}
            finish = "stop"
        prompt_tokens = max(1, len(json.dumps(body)) // 4)
        completion_tokens = max(1, len(json.dumps(message)) // 4)
        return web.json_response(
            {
                "id": f"chatcmpl-{self._tag}{n:04d}",
                "object": "chat.completion",
                "created": int(time.time()),
                "model": body.get("model") or self.openai_model,
                "system_fingerprint": "fp_fake",
                "choices": [{"index": 0, "message": message, "logprobs": None, "finish_reason": finish}],
                "usage": {
                    "prompt_tokens": prompt_tokens,
                    "completion_tokens": completion_tokens,
                    "total_tokens": prompt_tokens + completion_tokens,
                },
            },
            headers={"x-request-id": f"req_{self._tag}{n:04d}"},
        )

    async def _responses(self, request: web.Request) -> web.Response:
        body: dict[str, Any] = await request.json()
        if body.get("stream"):
            raise _BadRequest("this fake does not stream")
        n = next(self._ids)
        text = self._answer_json()
        input_tokens = max(1, len(json.dumps(body)) // 4)
        output_tokens = max(1, len(text) // 4)
        return web.json_response(
            {
                "id": f"resp_{self._tag}{n:04d}",
                "object": "response",
                "created_at": int(time.time()),
                "status": "completed",
                "model": body.get("model") or self.openai_model,
                "output": [
                    {
                        "id": f"msg_{self._tag}{n:04d}",
                        "type": "message",
                        "role": "assistant",
                        "status": "completed",
                        "content": [{"type": "output_text", "text": text, "annotations": []}],
                    }
                ],
                "parallel_tool_calls": True,
                "tool_choice": body.get("tool_choice") or "auto",
                "tools": body.get("tools") or [],
                "text": body.get("text") or {"format": {"type": "text"}},
                "error": None,
                "incomplete_details": None,
                "instructions": body.get("instructions"),
                "metadata": {},
                "temperature": 1.0,
                "top_p": 1.0,
                "usage": {
                    "input_tokens": input_tokens,
                    "input_tokens_details": {"cached_tokens": 0},
                    "output_tokens": output_tokens,
                    "output_tokens_details": {"reasoning_tokens": 0},
                    "total_tokens": input_tokens + output_tokens,
                },
            },
            headers={"x-request-id": f"req_{self._tag}{n:04d}"},
        )


class _BadRequest(Exception):
    pass
