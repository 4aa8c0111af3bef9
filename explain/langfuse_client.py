"""Langfuse through the official SDK's raw async API (no singleton, no threads, no global
tracer, no prompt cache — ../shared/spec/integrations.md §1).

Traces: v2 observations first (the real-time read path); on 404 (a v3 server) the legacy
trace endpoint. Prompts: read by label uncached, publish a new version, move labels.
Every SDK or transport failure becomes an ``ExplainError`` with the status the API answers.
"""

from __future__ import annotations

import json
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Any, TypeVar
from urllib.parse import quote

import httpx
from langfuse.api import (
    AsyncLangfuseAPI,
    ChatMessage,
    CreateChatPromptRequest,
    CreateChatPromptType,
    CreateTextPromptRequest,
    NotFoundError,
    PlaceholderMessage,
    Prompt_Chat,
    Prompt_Text,
)
from langfuse.api.core import ApiError

from explain.errors import ExplainError

T = TypeVar("T")
Prompt = Prompt_Text | Prompt_Chat
MAX_OBSERVATIONS = 500  # one trace; more pages are not read
PAGE = 100
FIELDS = "core,basic,time,io,model,prompt"


@dataclass(frozen=True, slots=True)
class Observation:
    """One Langfuse observation, as much as explain needs (held in memory, never stored)."""

    id: str
    type: str
    name: str | None
    parent_id: str | None
    level: str | None
    status_message: str | None
    input: str | None
    output: str | None
    model: str | None
    prompt_name: str | None
    prompt_version: int | None


def _text(value: Any) -> str | None:
    if value is None:
        return None
    return value if isinstance(value, str) else json.dumps(value, default=str)


def _observation(raw: dict[str, Any]) -> Observation:
    def pick(*names: str) -> Any:
        for name in names:
            if raw.get(name) is not None:
                return raw[name]
        return None

    version = pick("promptVersion", "prompt_version")
    return Observation(
        id=str(raw.get("id")),
        type=str(pick("type") or ""),
        name=pick("name"),
        parent_id=pick("parentObservationId", "parent_observation_id"),
        level=pick("level"),
        status_message=pick("statusMessage", "status_message"),
        input=_text(pick("input")),
        output=_text(pick("output")),
        model=pick("model", "providedModelName", "provided_model_name"),
        prompt_name=pick("promptName", "prompt_name"),
        prompt_version=int(version) if isinstance(version, (int, str)) and str(version).isdigit() else None,
    )


class LangfuseClient:
    def __init__(self, base_url: str, public_key: str, secret_key: str, timeout_seconds: float) -> None:
        self.base_url = base_url.rstrip("/")
        self._http = httpx.AsyncClient(timeout=timeout_seconds, follow_redirects=False)
        self._api = AsyncLangfuseAPI(
            base_url=self.base_url,
            username=public_key,
            password=secret_key,
            x_langfuse_public_key=public_key,
            timeout=timeout_seconds,
            follow_redirects=False,
            httpx_client=self._http,
        )
        self._auth = httpx.BasicAuth(public_key, secret_key)
        self._project_id: str | None = None

    async def close(self) -> None:
        await self._http.aclose()

    async def _call(self, what: str, call: Callable[[], Awaitable[T]]) -> T:
        try:
            return await call()
        except NotFoundError:
            raise
        except ApiError as exc:
            status = exc.status_code or 0
            if status in (401, 403):
                raise ExplainError(502, "langfuse_auth_failed", f"Langfuse refused our credentials ({what})") from None
            if status == 404:
                raise NotFoundError(body=None) from None
            if status in (408, 429) or status >= 500:
                raise ExplainError(503, "langfuse_unavailable", f"Langfuse answered {status} ({what})") from None
            raise ExplainError(502, "langfuse_bad_response", f"Langfuse answered {status} ({what})") from None
        except httpx.TimeoutException:
            raise ExplainError(504, "langfuse_timeout", f"Langfuse did not answer in time ({what})") from None
        except httpx.HTTPError as exc:
            raise ExplainError(
                502, "langfuse_unreachable", f"cannot reach Langfuse ({what}): {type(exc).__name__}"
            ) from None
        except (ValueError, TypeError) as exc:  # a response the SDK's models cannot read
            raise ExplainError(502, "langfuse_bad_response", f"unexpected answer from Langfuse ({what})") from exc

    # --- traces ---------------------------------------------------------------------------

    async def trace_observations(self, trace_id: str) -> list[Observation] | None:
        """The trace's observations, or None when Langfuse does not have the trace (yet)."""
        try:
            return await self._v2_observations(trace_id)
        except NotFoundError:
            pass  # no v2 endpoint (a v3 server): the legacy trace endpoint
        try:
            return await self._legacy_trace(trace_id)
        except NotFoundError:
            return None

    async def _v2_observations(self, trace_id: str) -> list[Observation] | None:
        found: list[Observation] = []
        cursor: str | None = None
        while len(found) < MAX_OBSERVATIONS:

            async def fetch(after: str | None = cursor) -> Any:
                return await self._api.observations.get_many(
                    trace_id=trace_id, fields=FIELDS, limit=PAGE, cursor=after, request_options={"max_retries": 1}
                )

            page = await self._call("observations", fetch)
            found += [_observation(o.model_dump(by_alias=True)) for o in page.data]
            cursor = getattr(page.meta, "cursor", None) if page.meta else None
            if not cursor or not page.data:
                break
        return found or None

    async def _legacy_trace(self, trace_id: str) -> list[Observation]:
        async def fetch() -> httpx.Response:
            return await self._http.get(
                f"{self.base_url}/api/public/traces/{quote(trace_id, safe='')}", auth=self._auth
            )

        response = await self._call("legacy trace", fetch)
        if response.status_code == 404:
            raise NotFoundError(body=None)
        if response.status_code >= 400:
            raise ApiError(status_code=response.status_code, headers=dict(response.headers), body=None)
        try:
            body = response.json()
        except ValueError:
            raise ExplainError(502, "langfuse_bad_response", "Langfuse's trace answer is not JSON") from None
        return [_observation(o) for o in (body.get("observations") or [])[:MAX_OBSERVATIONS] if isinstance(o, dict)]

    # --- prompts --------------------------------------------------------------------------

    async def get_prompt(self, name: str, label: str) -> Prompt | None:
        try:
            return await self._call(
                "get prompt",
                lambda: self._api.prompts.get(quote(name, safe=""), label=label, request_options={"max_retries": 1}),
            )
        except NotFoundError:
            return None

    async def publish_prompt(self, current: Prompt, new_prompt: Any, label: str, commit_message: str) -> Prompt:
        """A new version of ``current``'s prompt with ``label`` moved onto it, type and config kept."""
        request: CreateTextPromptRequest | CreateChatPromptRequest
        if isinstance(current, Prompt_Chat):
            request = CreateChatPromptRequest(
                name=current.name,
                prompt=new_prompt,
                config=current.config if current.config is not None else {},
                type=CreateChatPromptType.CHAT,
                labels=[label],
                commit_message=commit_message,
            )
        else:
            request = CreateTextPromptRequest(
                name=current.name,
                prompt=new_prompt,
                config=current.config if current.config is not None else {},
                labels=[label],
                commit_message=commit_message,
            )
        try:
            # No automatic retry: a create that timed out may have happened; the caller checks first.
            return await self._call(
                "create prompt", lambda: self._api.prompts.create(request=request, request_options={"max_retries": 0})
            )
        except NotFoundError:
            raise ExplainError(502, "langfuse_bad_response", "Langfuse answered 404 to creating a prompt") from None

    async def move_label(self, name: str, version: int, label: str) -> None:
        try:
            await self._call(
                "update prompt labels",
                lambda: self._api.prompt_version.update(quote(name, safe=""), version, new_labels=[label]),
            )
        except NotFoundError:
            raise ExplainError(
                404, "prompt_not_found", f"Langfuse has no version {version} of prompt {name!r}"
            ) from None

    async def project_id(self) -> str | None:
        if self._project_id is None:
            try:
                projects = await self._call("projects", lambda: self._api.projects.get())
            except (ExplainError, NotFoundError):
                return None
            self._project_id = projects.data[0].id if projects.data else None
        return self._project_id

    def prompt_url(self, project_id: str | None, name: str, version: int) -> str:
        if project_id is None:
            return f"{self.base_url}/prompts/{quote(name, safe='')}?version={version}"
        return f"{self.base_url}/project/{project_id}/prompts/{quote(name, safe='')}?version={version}"


def chat_messages_for_create(prompt: Prompt_Chat) -> list[dict[str, Any]]:
    """The fetched messages as a create request takes them (the SDK's "message" type is not
    accepted back: strip ``type`` from role/content messages, keep placeholders)."""
    out: list[dict[str, Any]] = []
    for message in prompt.prompt:
        if isinstance(message, PlaceholderMessage):
            out.append({"type": "placeholder", "name": message.name})
        elif isinstance(message, ChatMessage):
            out.append({"role": message.role, "content": message.content})
        else:
            data = message.model_dump() if hasattr(message, "model_dump") else dict(message)
            data.pop("type", None)
            out.append(data)
    return out
