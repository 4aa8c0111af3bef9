"""The LLM analysis: Anthropic (forced tool use) or OpenAI (json_schema), structured output,
bounded timeout and retries, never traced into the sidecar's own pipeline.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Protocol

from explain.errors import ExplainError

TOOL_NAME = "report_diagnosis"
SCHEMA: dict[str, Any] = {
    "type": "object",
    "properties": {
        "root_cause": {"type": "string", "description": "Plain-English root cause, 1-3 sentences."},
        "fix_content": {"type": "string", "description": "The fix (see the instructions for its form)."},
    },
    "required": ["root_cause", "fix_content"],
    "additionalProperties": False,
}
MAX_OUTPUT_TOKENS = 600
MAX_FIELD_CHARS = 2000


@dataclass(frozen=True, slots=True)
class Diagnosis:
    root_cause: str
    fix_content: str


class Analyzer(Protocol):
    name: str  # "anthropic:<model>" / "openai:<model>"

    async def analyze(self, system: str, prompt: str) -> Diagnosis:
        """Raises ExplainError (502 malformed / unreachable, 503 busy, 504 timeout)."""


def diagnosis_from(data: Any, source: str) -> Diagnosis:
    if not isinstance(data, dict):
        raise ExplainError(502, "llm_malformed_output", f"{source} did not return a JSON object")
    root_cause, fix = data.get("root_cause"), data.get("fix_content")
    if not isinstance(root_cause, str) or not isinstance(fix, str) or not root_cause.strip() or not fix.strip():
        raise ExplainError(502, "llm_malformed_output", f"{source} returned no root_cause / fix_content")
    return Diagnosis(root_cause.strip()[:MAX_FIELD_CHARS], fix.strip()[:MAX_FIELD_CHARS])


def status_error(provider: str, status: int) -> ExplainError:
    if status in (408, 429, 529) or status >= 500:
        return ExplainError(503, "llm_unavailable", f"{provider} is busy or failing (HTTP {status})")
    if status in (401, 403):
        return ExplainError(502, "llm_auth_failed", f"{provider} refused the API key (HTTP {status})")
    return ExplainError(502, "llm_bad_response", f"{provider} answered HTTP {status}")


def build_analyzer(config: Any) -> Analyzer | None:
    """Anthropic when its key is set, else OpenAI when its key is set, else none (templates).

    The SDKs are imported only when used: together they cost about 2.5 s and 150 MB to load.
    """
    if config.anthropic_api_key:
        from explain.llm_anthropic import AnthropicAnalyzer

        return AnthropicAnalyzer(
            config.anthropic_api_key,
            config.anthropic_base_url,
            config.anthropic_model,
            config.timeout_seconds,
            config.max_retries,
        )
    if config.openai_api_key:
        from explain.llm_openai import OpenAIAnalyzer

        return OpenAIAnalyzer(
            config.openai_api_key,
            config.openai_base_url,
            config.openai_model,
            config.timeout_seconds,
            config.max_retries,
        )
    return None
