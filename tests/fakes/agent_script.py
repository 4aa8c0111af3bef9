"""A small OpenLLMetry-instrumented agent, run as its own process by the end-to-end tests.

``Traceloop.init`` is process-global, so every scenario runs in a fresh interpreter:

    python tests/fakes/agent_script.py < config.json

The JSON config on stdin (never argv, so nothing of it lands in resource attributes):

- ``provider``: ``openai`` or ``anthropic``; ``llm_base_url``: the fake provider server
- ``otlp_endpoint``: given to ``Traceloop.init(api_endpoint=...)`` as is (``http://host:port``
  → OTLP/HTTP, ``host:port`` without a scheme → OTLP/gRPC, insecure)
- ``batch``: use a batch span processor (flushed explicitly at the end) instead of a simple one
- ``app_name``, ``workflow``: service name and the ``@workflow`` name
- ``prompt``: the user message; ``tool_secret``: a string every tool result contains
- ``stream``: stream the chat completions (OpenAI only); ``max_steps``: LLM calls at most
- ``span_dump``: optional path; every finished span is also written there as a JSON line

The agent loop: ask the model (with one tool, ``lookup_order``); while it asks for the tool,
run the ``@tool`` and send the result back; stop at a text answer or after ``max_steps``
LLM calls. The last stdout line is ``AGENT_RESULT {json}`` with the workflow's trace id.
"""

from __future__ import annotations

import json
import os
import sys
from collections.abc import Callable, Sequence
from typing import Any

from opentelemetry import trace
from opentelemetry.sdk.trace import ReadableSpan
from opentelemetry.sdk.trace.export import SimpleSpanProcessor, SpanExporter, SpanExportResult
from traceloop.sdk import Traceloop
from traceloop.sdk.decorators import agent, tool, workflow

SYSTEM_PROMPT = "You are a support agent. Use lookup_order to answer questions about orders."
TOOL_DESCRIPTION = "Look up the status of an order by its id."
TOOL_SCHEMA = {
    "type": "object",
    "properties": {"order_id": {"type": "string", "description": "The order id"}},
    "required": ["order_id"],
}


class JsonLinesSpanExporter(SpanExporter):
    """Writes each span (name, scope, ids, attributes) as one JSON line: what was exported."""

    def __init__(self, path: str) -> None:
        self._path = path

    def export(self, spans: Sequence[ReadableSpan]) -> SpanExportResult:
        with open(self._path, "a", encoding="utf-8") as out:
            for span in spans:
                context = span.get_span_context()
                record = {
                    "name": span.name,
                    "scope": span.instrumentation_scope.name if span.instrumentation_scope else None,
                    "trace_id": format(context.trace_id, "032x") if context else None,
                    "parent": format(span.parent.span_id, "016x") if span.parent else None,
                    "attributes": {k: _plain(v) for k, v in (span.attributes or {}).items()},
                    "events": [{"name": e.name, "attributes": dict(e.attributes or {})} for e in span.events],
                }
                out.write(json.dumps(record, default=str) + "\n")
        return SpanExportResult.SUCCESS

    def shutdown(self) -> None:
        pass


def _plain(value: Any) -> Any:
    return list(value) if isinstance(value, tuple) else value


class Agent:
    def __init__(self, config: dict[str, Any]) -> None:
        self.config = config
        self.llm_requests = 0
        self.finish_reasons: list[str] = []
        self.tool_runs = 0
        secret = config["tool_secret"]

        def lookup_order(order_id: str) -> str:
            self.tool_runs += 1
            return f"Order {order_id} status: {secret}"

        self.lookup_order: Callable[..., str] = tool(name="lookup_order")(lookup_order)

    # --- OpenAI ---------------------------------------------------------------------------

    def run_openai(self) -> str | None:
        import openai

        client: Any = openai.OpenAI(base_url=self.config["llm_base_url"], api_key="test", max_retries=0, timeout=20.0)
        tools = [
            {
                "type": "function",
                "function": {"name": "lookup_order", "description": TOOL_DESCRIPTION, "parameters": TOOL_SCHEMA},
            }
        ]
        messages: list[dict[str, Any]] = [
            {"role": "system", "content": SYSTEM_PROMPT},
            {"role": "user", "content": self.config["prompt"]},
        ]
        stream = bool(self.config.get("stream"))
        for _ in range(int(self.config["max_steps"])):
            self.llm_requests += 1
            if stream:
                text, calls, finish = self._openai_streamed(client, messages, tools)
            else:
                response = client.chat.completions.create(model="gpt-4o-mini", messages=messages, tools=tools)
                choice = response.choices[0]
                text = choice.message.content
                calls = [(c.id, c.function.name, c.function.arguments) for c in choice.message.tool_calls or []]
                finish = choice.finish_reason
            self.finish_reasons.append(finish)
            if not calls:
                return text
            messages.append(
                {
                    "role": "assistant",
                    "content": text,
                    "tool_calls": [
                        {"id": cid, "type": "function", "function": {"name": name, "arguments": args}}
                        for cid, name, args in calls
                    ],
                }
            )
            for cid, name, args in calls:
                assert name == "lookup_order", name
                messages.append({"role": "tool", "tool_call_id": cid, "content": self.lookup_order(**json.loads(args))})
        return None

    def _openai_streamed(
        self, client: Any, messages: list[dict[str, Any]], tools: list[dict[str, Any]]
    ) -> tuple[str | None, list[tuple[str, str, str]], str]:
        stream = client.chat.completions.create(
            model="gpt-4o-mini",
            messages=messages,
            tools=tools,
            stream=True,
            stream_options={"include_usage": True},
        )
        text_parts: list[str] = []
        calls: dict[int, list[str]] = {}
        finish = ""
        saw_usage = False
        for chunk in stream:
            if chunk.usage is not None:
                saw_usage = True
            for choice in chunk.choices:
                delta = choice.delta
                if delta.content:
                    text_parts.append(delta.content)
                for call in delta.tool_calls or []:
                    slot = calls.setdefault(call.index, ["", "", ""])
                    if call.id:
                        slot[0] = call.id
                    if call.function and call.function.name:
                        slot[1] = call.function.name
                    if call.function and call.function.arguments:
                        slot[2] += call.function.arguments
                if choice.finish_reason:
                    finish = choice.finish_reason
        assert saw_usage, "the fake sent no usage chunk"
        ordered = [(calls[i][0], calls[i][1], calls[i][2]) for i in sorted(calls)]
        return ("".join(text_parts) or None), ordered, finish

    # --- Anthropic ------------------------------------------------------------------------

    def run_anthropic(self) -> str | None:
        import anthropic

        client: Any = anthropic.Anthropic(
            base_url=self.config["llm_base_url"], api_key="test", max_retries=0, timeout=20.0
        )
        tools = [{"name": "lookup_order", "description": TOOL_DESCRIPTION, "input_schema": TOOL_SCHEMA}]
        messages: list[dict[str, Any]] = [{"role": "user", "content": self.config["prompt"]}]
        for _ in range(int(self.config["max_steps"])):
            self.llm_requests += 1
            response = client.messages.create(
                model="claude-haiku-4-5", max_tokens=512, system=SYSTEM_PROMPT, messages=messages, tools=tools
            )
            self.finish_reasons.append(str(response.stop_reason))
            uses = [block for block in response.content if block.type == "tool_use"]
            if not uses:
                return "".join(block.text for block in response.content if block.type == "text")
            messages.append(
                {
                    "role": "assistant",
                    "content": [{"type": "tool_use", "id": b.id, "name": b.name, "input": b.input} for b in uses],
                }
            )
            results = []
            for block in uses:
                assert block.name == "lookup_order", block.name
                output = self.lookup_order(**block.input)
                results.append({"type": "tool_result", "tool_use_id": block.id, "content": output})
            messages.append({"role": "user", "content": results})
        return None


def main() -> int:
    config = json.loads(sys.stdin.read())
    Traceloop.init(
        app_name=config["app_name"],
        api_endpoint=config["otlp_endpoint"],
        disable_batch=not config.get("batch", False),
        telemetry_enabled=False,
    )
    provider = trace.get_tracer_provider()
    if config.get("span_dump"):
        provider.add_span_processor(SimpleSpanProcessor(JsonLinesSpanExporter(config["span_dump"])))  # type: ignore[attr-defined]

    runner = Agent(config)
    seen: dict[str, Any] = {}

    def session_body() -> str | None:
        seen["trace_id"] = format(trace.get_current_span().get_span_context().trace_id, "032x")
        return support_agent()

    def agent_body() -> str | None:
        return runner.run_openai() if config["provider"] == "openai" else runner.run_anthropic()

    support_agent = agent(name="support_agent")(agent_body)
    session = workflow(name=config["workflow"])(session_body)
    final = session()

    flushed = provider.force_flush(30_000)  # type: ignore[attr-defined]
    result = {
        "trace_id": seen["trace_id"],
        "llm_requests": runner.llm_requests,
        "tool_runs": runner.tool_runs,
        "finish_reasons": runner.finish_reasons,
        "final_is_text": bool(final),
        "flushed": flushed,
    }
    sys.stdout.flush()
    print("AGENT_RESULT " + json.dumps(result), flush=True)
    return 0 if flushed else 3


if __name__ == "__main__":
    os.environ.setdefault("TRACELOOP_METRICS_ENABLED", "false")
    sys.exit(main())
