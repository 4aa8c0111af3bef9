"""Local policies acting on runs: stop (PolicyViolation mid-loop), switch_model, inject_prompt on a
TOOL_LOOP signal, log; and the errors add_policy gives for the bodies in BAD_POLICIES (JSON)."""

from __future__ import annotations

import json

from _common import env, result
from dunetrace import Dunetrace, PolicyError, PolicyViolation

dt = Dunetrace()
dt.add_policy(
    name="cap tool calls",
    condition={"trigger": "tool_call_count", "operator": "gt", "value": 3},
    action={"type": "stop"},
    agent_id="oursdk-stop",
)
dt.add_policy(
    name="cost cap",
    condition={"trigger": "cost_usd", "operator": "gt", "value": 0.004},
    action={"type": "switch_model", "params": {"model": "gpt-4o-mini"}},
    agent_id="oursdk-steer",
)
dt.add_policy(
    name="loop fix",
    condition={"trigger": "signal", "operator": "eq", "value": "TOOL_LOOP"},
    action={"type": "inject_prompt", "params": {"prompt": "Stop repeating tool calls."}},
    agent_id="oursdk-steer",
)
dt.add_policy(
    name="note errors",
    condition={"trigger": "error_count", "operator": "gte", "value": 1},
    action={"type": "log"},
    agent_id="oursdk-steer",
)

stopped_at = None
violation = None
try:
    with dt.run("oursdk-stop") as stop_run:
        for i in range(10):
            stopped_at = i
            stop_run.tool_called("search", {"q": f"query {i}"})
            stop_run.tool_responded("search", output="result")
except PolicyViolation as exc:
    violation = {"policy_name": exc.policy_name, "action": exc.action, "message": str(exc)}

models = []
with dt.run("oursdk-steer") as steer:
    for i in range(5):
        model = steer.model_override or "gpt-4o"
        models.append(model)
        steer.llm_called(model, prompt_tokens=1000)  # gpt-4o: $0.0025 per call in, $0.001 out
        steer.llm_responded(completion_tokens=100, finish_reason="tool_calls", output="")
        steer.tool_called("lookup", {"q": "the same"})
        steer.tool_responded("lookup", success=i != 1, output="nothing", error="boom" if i == 1 else None)
    additions = list(steer.prompt_additions)
    popped = steer.pop_prompt_addition()
    steer.final_answer()

errors = []
for body in json.loads(env("BAD_POLICIES", "[]")):
    try:
        dt.add_policy(**body)
    except PolicyError as exc:
        errors.append({"field": exc.field, "message": str(exc), "is_value_error": isinstance(exc, ValueError)})
    else:
        errors.append(None)

dt.shutdown(timeout=5)
result(
    "policies",
    stop_run=stop_run.run_id,
    stopped_at=stopped_at,
    violation=violation,
    steer_run=steer.run_id,
    models=models,
    model_override=steer.model_override,
    additions=additions,
    popped=popped,
    left=steer.prompt_additions,
    errors=errors,
)
