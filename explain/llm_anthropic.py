"""Anthropic analysis: forced tool use returns the diagnosis as structured input."""

from __future__ import annotations

import asyncio

import anthropic

from explain.analyzer import MAX_OUTPUT_TOKENS, SCHEMA, TOOL_NAME, Diagnosis, diagnosis_from, status_error
from explain.errors import ExplainError


class AnthropicAnalyzer:
    def __init__(self, api_key: str, base_url: str, model: str, timeout: float, max_retries: int) -> None:
        self.name = f"anthropic:{model}"
        self._model = model
        self._deadline = timeout * 2
        self._client = anthropic.AsyncAnthropic(
            api_key=api_key,
            base_url=base_url or None,
            timeout=anthropic.Timeout(timeout, connect=5.0),
            max_retries=max_retries,
            open_telemetry=False,  # the sidecar's own calls never enter the stream it analyses
        )

    async def analyze(self, system: str, prompt: str) -> Diagnosis:
        try:
            async with asyncio.timeout(self._deadline):
                message = await self._client.messages.create(
                    model=self._model,
                    max_tokens=MAX_OUTPUT_TOKENS,
                    system=system,
                    messages=[{"role": "user", "content": prompt}],
                    tools=[{"name": TOOL_NAME, "description": "Report the diagnosis.", "input_schema": SCHEMA}],
                    tool_choice={"type": "tool", "name": TOOL_NAME},
                )
        except (TimeoutError, anthropic.APITimeoutError):
            raise ExplainError(504, "llm_timeout", "Anthropic did not answer in time") from None
        except anthropic.APIStatusError as exc:
            raise status_error("Anthropic", exc.status_code) from None
        except anthropic.APIConnectionError:
            raise ExplainError(502, "llm_unreachable", "cannot reach Anthropic") from None
        for block in message.content:
            if getattr(block, "type", None) == "tool_use" and getattr(block, "name", None) == TOOL_NAME:
                return diagnosis_from(getattr(block, "input", None), "Anthropic")
        raise ExplainError(502, "llm_malformed_output", "Anthropic did not call the diagnosis tool")
