"""Hand-written tool loop on the bare openai SDK, instrumented by opentelemetry-instrumentation-openai-v2.

usage: python openai_v2_loop.py root|noroot|toolspans [stream]
  root       one manual root span "order-agent" around the loop (what a user would add)
  noroot     no root span: each chat call is its own trace
  toolspans  root span + a manual execute_tool span per tool execution (GenAI semconv names)
Content capture is controlled by the usual env vars
(OTEL_INSTRUMENTATION_GENAI_CAPTURE_MESSAGE_CONTENT, OTEL_SEMCONV_STABILITY_OPT_IN).
"""

import contextlib
import json
import os
import sys

sys.path.insert(0, os.path.dirname(__file__))
from otel_setup import FAKE_URL, setup

mode = sys.argv[1]
stream = len(sys.argv) > 2 and sys.argv[2] == "stream"
tp, lp = setup("openai-v2-order-svc", logs=True)

from opentelemetry import trace  # noqa: E402
from opentelemetry.instrumentation.openai_v2 import OpenAIInstrumentor  # noqa: E402

try:  # older instrumentations (openai-v2 <= 2.1b0) emit through the Events API
    from opentelemetry._events import set_event_logger_provider
    from opentelemetry.sdk._events import EventLoggerProvider

    set_event_logger_provider(EventLoggerProvider(lp))
except ImportError:
    pass
OpenAIInstrumentor().instrument(tracer_provider=tp, logger_provider=lp)

from openai import OpenAI  # noqa: E402

client = OpenAI(base_url=FAKE_URL + "/v1", api_key="sk-fake")
tracer = trace.get_tracer("order-agent")
TOOLS = [
    {
        "type": "function",
        "function": {
            "name": "lookup_order",
            "description": "Look up an order",
            "parameters": {"type": "object", "properties": {"order_id": {"type": "string"}}, "required": ["order_id"]},
        },
    }
]


calls = 0


def lookup_order(order_id):
    global calls
    calls += 1
    return f"Order {order_id}: status unknown, try again"


def chat(messages):
    if not stream:
        r = client.chat.completions.create(model="gpt-4o-mini", messages=messages, tools=TOOLS)
        return r.choices[0].message
    # streaming: rebuild the message
    content, tcs = "", {}
    for ch in client.chat.completions.create(
        model="gpt-4o-mini", messages=messages, tools=TOOLS, stream=True, stream_options={"include_usage": True}
    ):
        if not ch.choices:
            continue
        d = ch.choices[0].delta
        content += d.content or ""
        for tc in d.tool_calls or []:
            e = tcs.setdefault(tc.index, {"id": None, "name": None, "args": ""})
            e["id"] = tc.id or e["id"]
            if tc.function:
                e["name"] = tc.function.name or e["name"]
                e["args"] += tc.function.arguments or ""

    class M:
        pass

    m = M()
    m.content = content or None
    m.tool_calls = [
        type("TC", (), {"id": v["id"], "function": type("F", (), {"name": v["name"], "arguments": v["args"]})()})()
        for v in tcs.values()
    ] or None
    return m


def run():
    messages = [
        {"role": "system", "content": "You help with orders."},
        {"role": "user", "content": "Where is my order A123?"},
    ]
    for _ in range(10):
        msg = chat(messages)
        if not msg.tool_calls:
            return msg.content
        messages.append(
            {
                "role": "assistant",
                "content": msg.content,
                "tool_calls": [
                    {
                        "id": tc.id,
                        "type": "function",
                        "function": {"name": tc.function.name, "arguments": tc.function.arguments},
                    }
                    for tc in msg.tool_calls
                ],
            }
        )
        for tc in msg.tool_calls:
            cm = (
                tracer.start_as_current_span(
                    f"execute_tool {tc.function.name}",
                    attributes={
                        "gen_ai.operation.name": "execute_tool",
                        "gen_ai.tool.name": tc.function.name,
                        "gen_ai.tool.call.id": tc.id,
                    },
                )
                if mode == "toolspans"
                else contextlib.nullcontext()
            )
            with cm:
                out = lookup_order(**json.loads(tc.function.arguments))
            messages.append({"role": "tool", "tool_call_id": tc.id, "content": out})
    return None


if mode == "noroot":
    final = run()
else:
    with tracer.start_as_current_span(
        "invoke_agent order-agent",
        attributes={"gen_ai.operation.name": "invoke_agent", "gen_ai.agent.name": "order-agent"},
    ):
        final = run()
print("final:", final, "| tool executions:", calls)
if os.environ.get(
    "LINGER"
):  # behave like a long-running service: let both batch processors export on their own schedule
    import time

    time.sleep(float(os.environ["LINGER"]))
if os.environ.get("LOGS_FIRST"):  # export the log records before the spans
    lp.force_flush()
tp.force_flush()
lp.force_flush()
tp.shutdown()
lp.shutdown()
