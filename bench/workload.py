"""Realistic agent traces as pre-encoded OTLP export requests.

Each run: a root workflow span, then `steps` alternating LLM and tool spans (LLM spans carry
1–4 KB of prompt and completion in the current gen_ai keys, or OpenLLMetry's older flattened
keys for a share of runs; tool spans carry 1–4 KB of result), a share of runs loop on one
tool, fail a tool, or truncate. Requests hold whole runs, about `spans_per_request` spans.
"""

from __future__ import annotations

import json
import random
import uuid
from dataclasses import dataclass

from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import ExportTraceServiceRequest
from opentelemetry.proto.common.v1.common_pb2 import AnyValue, KeyValue
from opentelemetry.proto.trace.v1.trace_pb2 import Span, Status

# What a support agent's prompts, answers and tool results read like: English, with the words
# ("you", "your", "not", "act", "model", "system") that real text is full of and that the
# injection scan's anchors meet, so the scan does the work it does on real traffic.
SENTENCES = [
    "Thank you for contacting support about your order.",
    "I checked the tracking number and the package is with the carrier now.",
    "Your refund has been approved and should appear within five business days.",
    "Please do not share your password or payment details with anyone.",
    "The model returned a short summary of the quarterly revenue report.",
    "If the delivery address is wrong, act quickly so we can update it before dispatch.",
    "We will follow up with the warehouse and let you know what they say.",
    "The forecast for tomorrow shows light rain in the afternoon and a cool evening.",
    "According to our policy, exchanges are possible within thirty days of delivery.",
    "Can you tell me the status of the invoice I received last week?",
    "The customer asked whether the shipping fee can be waived for this order.",
    "Here is the information you requested from the knowledge base article.",
    "The system shows two open tickets for this account, both about late packages.",
    "I could not find an order with that number; could you check it again?",
    "Your account was updated and a confirmation email is on its way.",
    "The report lists revenue by region, with the largest growth in the north.",
    "Based on the previous conversation, the customer prefers delivery on weekdays.",
    "Note that the carrier does not deliver on public holidays.",
    "Let me look up the order history and the latest payment for you.",
    "The summary should mention the refund, the new delivery date and the contact person.",
]


def _kv(key: str, value: str | int | float | bool | list[str]) -> KeyValue:
    if isinstance(value, bool):
        return KeyValue(key=key, value=AnyValue(bool_value=value))
    if isinstance(value, int):
        return KeyValue(key=key, value=AnyValue(int_value=value))
    if isinstance(value, float):
        return KeyValue(key=key, value=AnyValue(double_value=value))
    if isinstance(value, list):
        kv = KeyValue(key=key)
        kv.value.array_value.values.extend(AnyValue(string_value=v) for v in value)
        return kv
    return KeyValue(key=key, value=AnyValue(string_value=value))


def _text(rng: random.Random, size: int) -> str:
    out: list[str] = []
    length = 0
    while length < size:
        sentence = rng.choice(SENTENCES)
        out.append(sentence)
        length += len(sentence) + 1
    return " ".join(out)


@dataclass
class RunShape:
    steps: int  # LLM + tool spans
    legacy_keys: bool
    loop: bool
    tool_fails: bool
    truncates: bool


def build_run(rng: random.Random, shape: RunShape, t0: int) -> list[Span]:
    trace_id = uuid.uuid4().bytes
    root_id = rng.randbytes(8)
    spans: list[Span] = []
    t = t0 + 1_000
    tools = ["lookup_order", "get_weather", "search_kb", "fetch_report"]
    # The tool the last LLM call asked for, with its arguments: the tool span that follows runs
    # exactly that call, as an agent does. Arguments differ from call to call except in a loop.
    # A healthy run goes round its four tools from a random one (no tool three times in five calls,
    # which would be a loop); a looping run calls the first with the same arguments.
    tool, arguments = tools[0], {"q": "A-1042"}
    offset = rng.randrange(len(tools))
    for step in range(shape.steps):
        span_id = rng.randbytes(8)
        start, end = t, t + rng.randint(200_000, 2_000_000)
        t = end + 10_000
        if step % 2 == 0:
            prompt = _text(rng, rng.randint(1000, 4000))
            completion = _text(rng, rng.randint(200, 1500))
            tool = tools[0] if shape.loop else tools[(offset + step // 2) % len(tools)]
            arguments = {"q": "A-1042"} if shape.loop else {"q": f"A-{rng.randint(1000, 9999)}"}
            finish = "length" if shape.truncates and step >= shape.steps - 4 else "tool_calls"
            attrs = [
                _kv("gen_ai.request.model", "gpt-4o-mini"),
                _kv("gen_ai.response.model", "gpt-4o-mini-2024-07-18"),
                _kv("gen_ai.response.id", f"chatcmpl-{uuid.uuid4().hex}"),
                _kv("gen_ai.usage.input_tokens", 200 + step * 80),
                _kv("gen_ai.usage.output_tokens", 35),
                _kv("traceloop.workflow.name", "bench_agent"),
            ]
            if shape.legacy_keys:
                attrs += [
                    _kv("llm.request.type", "chat"),
                    _kv("gen_ai.system", "openai"),
                    _kv("gen_ai.prompt.0.role", "system"),
                    _kv("gen_ai.prompt.0.content", "You are a concise support agent."),
                    _kv("gen_ai.prompt.1.role", "user"),
                    _kv("gen_ai.prompt.1.content", prompt),
                    _kv("gen_ai.completion.0.role", "assistant"),
                    _kv("gen_ai.completion.0.content", completion),
                    _kv("gen_ai.completion.0.finish_reason", finish),
                ]
            else:
                messages = [
                    {"role": "system", "parts": [{"type": "text", "content": "You are a concise support agent."}]},
                    {"role": "user", "parts": [{"type": "text", "content": prompt}]},
                ]
                output = [
                    {
                        "role": "assistant",
                        "parts": [
                            {"type": "text", "content": completion},
                            {"type": "tool_call", "id": f"call_{step}", "name": tool, "arguments": arguments},
                        ],
                        "finish_reason": finish,
                    }
                ]
                attrs += [
                    _kv("gen_ai.operation.name", "chat"),
                    _kv("gen_ai.provider.name", "openai"),
                    _kv("gen_ai.input.messages", json.dumps(messages)),
                    _kv("gen_ai.output.messages", json.dumps(output)),
                    _kv("gen_ai.response.finish_reasons", [finish]),
                ]
            span = Span(
                trace_id=trace_id,
                span_id=span_id,
                parent_span_id=root_id,
                name="openai.chat",
                kind=Span.SPAN_KIND_CLIENT,
                start_time_unix_nano=start,
                end_time_unix_nano=end,
                attributes=attrs,
            )
        else:
            failed = shape.tool_fails and step >= shape.steps - 6
            attrs = [
                _kv("traceloop.span.kind", "tool"),
                _kv("traceloop.entity.name", tool),
                _kv("gen_ai.tool.name", tool),
                _kv("traceloop.workflow.name", "bench_agent"),
                _kv("traceloop.entity.input", json.dumps({"args": [], "kwargs": arguments})),
            ]
            if not failed:
                attrs.append(_kv("traceloop.entity.output", _text(rng, rng.randint(1000, 4000))))
            span = Span(
                trace_id=trace_id,
                span_id=span_id,
                parent_span_id=root_id,
                name=f"{tool}.tool",
                kind=Span.SPAN_KIND_INTERNAL,
                start_time_unix_nano=start,
                end_time_unix_nano=end,
                attributes=attrs,
                status=Status(code=Status.STATUS_CODE_ERROR if failed else Status.STATUS_CODE_UNSET),
            )
        spans.append(span)
    root = Span(
        trace_id=trace_id,
        span_id=root_id,
        name="bench_agent.workflow",
        kind=Span.SPAN_KIND_INTERNAL,
        start_time_unix_nano=t0,
        end_time_unix_nano=t + 1_000,
        attributes=[
            _kv("traceloop.span.kind", "workflow"),
            _kv("traceloop.workflow.name", "bench_agent"),
            _kv("traceloop.entity.input", json.dumps({"args": [_text(rng, 300)], "kwargs": {}})),
        ],
    )
    spans.append(root)
    return spans


def build_requests(
    n_requests: int, spans_per_request: int = 512, steps: int = 15, seed: int = 7, t0: int = 1_795_000_000_000_000_000
) -> tuple[list[bytes], int]:
    """(encoded requests, total spans). Every run has fresh trace ids."""
    rng = random.Random(seed)
    requests: list[bytes] = []
    total = 0
    for _ in range(n_requests):
        request = ExportTraceServiceRequest()
        rs = request.resource_spans.add()
        rs.resource.attributes.append(_kv("service.name", "bench-agent"))
        ss = rs.scope_spans.add()
        ss.scope.name = "bench"
        while len(ss.spans) < spans_per_request:
            shape = RunShape(
                steps=steps,
                legacy_keys=rng.random() < 0.3,
                loop=rng.random() < 0.1,
                tool_fails=rng.random() < 0.1,
                truncates=rng.random() < 0.1,
            )
            ss.spans.extend(build_run(rng, shape, t0))
            t0 += 5_000_000_000
        total += len(ss.spans)
        requests.append(request.SerializeToString())
    return requests, total
