"""Scenario (p): privacy. PRIVACY_MARKER (a unique string chosen by the test) is put in every free-text field the
SDK sends: user_input, system_prompt, tool arguments (from the fake LLM's tool call and our own), tool output,
tool error, the LLM's output (the fake LLM's answer, recorded by the auto-instrumented openai client, and a manual
llm_responded output), external_signal meta, retrieval query and content, a memory value, and the message of an
exception that ends a second run (run.errored). The test then looks for the marker in the daemon's database file,
its log and its API answers.

The test scripts the fake OpenAI server: a tool call lookup({"q": <marker>}), then an answer containing the marker.
Prints: {"scenario": "p_privacy", "run_id", "errored_run_id", "agent_id"}.
"""

import json

from _common import FAKE_OPENAI_KEY, client_kwargs, emit_result, env, setup_logging
from dunetrace import Dunetrace
from openai import OpenAI

setup_logging()
MARK = env("PRIVACY_MARKER")
AGENT_ID = "privacy-agent"
TOOLS = [
    {
        "type": "function",
        "function": {"name": "lookup", "parameters": {"type": "object", "properties": {"q": {"type": "string"}}}},
    }
]

dt = Dunetrace(**client_kwargs())
dt.auto_instrument(["openai"])
oai = OpenAI(api_key=FAKE_OPENAI_KEY, base_url=env("FAKE_OPENAI_BASE_URL"), max_retries=0, timeout=30)

with dt.run(
    AGENT_ID,
    user_input=f"user asks about {MARK}",
    system_prompt=f"system prompt with {MARK}",
    model="gpt-4o",
    tools=["lookup"],
) as run:
    messages = [{"role": "system", "content": f"system prompt with {MARK}"}, {"role": "user", "content": MARK}]
    for _ in range(4):  # bounded: a tool call, then the answer
        response = oai.chat.completions.create(model="gpt-4o", messages=messages, tools=TOOLS)
        message = response.choices[0].message
        if not message.tool_calls:
            break
        messages.append(message.model_dump(exclude_none=True))
        for call in message.tool_calls:
            args = json.loads(call.function.arguments)
            run.tool_called(call.function.name, {**args, "note": f"note {MARK}"})
            run.tool_responded(call.function.name, success=False, output=f"output {MARK}", error=f"error {MARK}")
            messages.append({"role": "tool", "tool_call_id": call.id, "content": f"output {MARK}"})
    run.external_signal("rate_limit", source="postgres", detail=f"meta {MARK}", nested={"deep": MARK})
    run.retrieval_called("docs-index", query=f"query {MARK}")
    run.retrieval_responded("docs-index", result_count=1, top_score=0.9, latency_ms=4, content=f"content {MARK}")
    run.memory_written("note", f"memory {MARK}", source="user_input")
    run.llm_called("gpt-4o", prompt_tokens=50)
    run.llm_responded(completion_tokens=10, latency_ms=100, finish_reason="stop", output=f"manual output {MARK}")
    run.final_answer()

try:
    with dt.run(AGENT_ID, user_input=f"second question {MARK}", model="gpt-4o") as errored:
        errored.tool_called("lookup", {"q": MARK})
        raise RuntimeError(f"exception message {MARK}")
except RuntimeError:
    pass

emit_result("p_privacy", run_id=run.run_id, errored_run_id=errored.run_id, agent_id=AGENT_ID)
dt.shutdown(timeout=10)
