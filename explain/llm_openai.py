"""OpenAI analysis: json_schema response format returns the diagnosis as JSON text."""

from __future__ import annotations

import asyncio
import json

import openai

from explain.analyzer import MAX_OUTPUT_TOKENS, SCHEMA, Diagnosis, diagnosis_from, status_error
from explain.errors import ExplainError


class OpenAIAnalyzer:
    def __init__(self, api_key: str, base_url: str, model: str, timeout: float, max_retries: int) -> None:
        self.name = f"openai:{model}"
        self._model = model
        self._deadline = timeout * 2
        self._client = openai.AsyncOpenAI(
            api_key=api_key,
            base_url=base_url or None,
            timeout=openai.Timeout(timeout, connect=5.0),
            max_retries=max_retries,
        )

    async def analyze(self, system: str, prompt: str) -> Diagnosis:
        try:
            async with asyncio.timeout(self._deadline):
                completion = await self._client.chat.completions.create(
                    model=self._model,
                    max_completion_tokens=MAX_OUTPUT_TOKENS,
                    messages=[{"role": "system", "content": system}, {"role": "user", "content": prompt}],
                    response_format={
                        "type": "json_schema",
                        "json_schema": {"name": "diagnosis", "strict": True, "schema": SCHEMA},
                    },
                )
        except (TimeoutError, openai.APITimeoutError):
            raise ExplainError(504, "llm_timeout", "OpenAI did not answer in time") from None
        except openai.APIStatusError as exc:
            raise status_error("OpenAI", exc.status_code) from None
        except openai.APIConnectionError:
            raise ExplainError(502, "llm_unreachable", "cannot reach OpenAI") from None
        content = completion.choices[0].message.content if completion.choices else None
        try:
            data = json.loads(content or "")
        except ValueError:
            raise ExplainError(502, "llm_malformed_output", "OpenAI's answer is not JSON") from None
        return diagnosis_from(data, "OpenAI")
