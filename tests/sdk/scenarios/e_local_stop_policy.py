"""Scenario (e): a local `stop` policy (dt.add_policy) on the tool-call count.

The policy stops the run when tool_call_count > 2: the third tool.called raises PolicyViolation out of the
`with dt.run()` block, and the SDK sends policy.triggered then run.errored (error_type PolicyViolation,
exit_reason policy_violation). The test scripts the fake OpenAI server with four get_weather calls and an answer;
only three model calls are made.

Prints: {"scenario": "e_local_stop_policy", "run_id", "agent_id", "llm_calls", "tool_calls",
"policy_violation": {"policy_name", "action"} or null}.
"""

import json

from _common import FAKE_OPENAI_KEY, client_kwargs, emit_result, env, setup_logging
from dunetrace import Dunetrace, PolicyViolation
from openai import OpenAI

setup_logging()
AGENT_ID = "policy-stop-agent"
TOOLS = [
    {
        "type": "function",
        "function": {
            "name": "get_weather",
            "description": "weather",
            "parameters": {"type": "object", "properties": {"city": {"type": "string"}}},
        },
    }
]

dt = Dunetrace(**client_kwargs())
dt.auto_instrument(["openai"])
oai = OpenAI(api_key=FAKE_OPENAI_KEY, base_url=env("FAKE_OPENAI_BASE_URL"), max_retries=0, timeout=30)
dt.add_policy(
    name="cap tool calls",
    condition={"trigger": "tool_call_count", "operator": "gt", "value": 2},
    action={"type": "stop"},
    agent_id=AGENT_ID,
)

counts = {"llm": 0, "tool": 0}
violation = None
try:
    with dt.run(AGENT_ID, user_input="What's the weather in Paris?", model="gpt-4o", tools=["get_weather"]) as run:
        messages = [{"role": "user", "content": "What's the weather in Paris?"}]
        for _ in range(10):  # bounded
            response = oai.chat.completions.create(model="gpt-4o", messages=messages, tools=TOOLS)
            counts["llm"] += 1
            message = response.choices[0].message
            if not message.tool_calls:
                run.final_answer()
                break
            messages.append(message.model_dump(exclude_none=True))
            for call in message.tool_calls:
                args = json.loads(call.function.arguments)
                counts["tool"] += 1
                run.tool_called(call.function.name, args)  # the third raises PolicyViolation
                output = json.dumps({"city": args.get("city"), "forecast": "sunny"})
                run.tool_responded(call.function.name, success=True, output=output, latency_ms=1)
                messages.append({"role": "tool", "tool_call_id": call.id, "content": output})
except PolicyViolation as exc:
    violation = {"policy_name": exc.policy_name, "action": str(exc.action)}

emit_result(
    "e_local_stop_policy",
    run_id=run.run_id,
    agent_id=AGENT_ID,
    llm_calls=counts["llm"],
    tool_calls=counts["tool"],
    policy_violation=violation,
)
dt.shutdown(timeout=10)
