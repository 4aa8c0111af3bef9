"""The docs' "Local policies" code block (../shared/spec/seed-dunetrace-docs.txt), verbatim between the
fmt markers, then an agent loop that makes each of its three policies act."""

# ruff: noqa: E501, I001
# fmt: off
# --- the docs, verbatim ---
from dunetrace import Dunetrace, PolicyViolation
dt = Dunetrace()
# Stop the run if tool calls exceed 5
dt.add_policy(
name="cap tool calls",
condition={"trigger": "tool_call_count", "operator": "gt", "value": 5},
action={"type": "stop"},
)
# Downgrade model when estimated cost exceeds $0.50
dt.add_policy(
name="cost cap",
condition={"trigger": "cost_usd", "operator": "gt", "value": 0.50},
action={"type": "switch_model", "params": {"model": "gpt-4o-mini"}},
)
# Inject a corrective prompt when a loop is detected mid-run
dt.add_policy(
name="loop fix",
condition={"trigger": "signal", "operator": "eq", "value": "TOOL_LOOP"},
action={"type": "inject_prompt", "params": {"prompt": "Stop repeating tool calls. Summarise what you know and answer directly."}},
)
# --- end of the docs ---
# fmt: on

from _common import result  # noqa: E402

model = "gpt-4o"
models = []
stopped = None
try:
    with dt.run("oursdk-docs") as run:
        for _ in range(10):
            model = run.model_override or model
            models.append(model)
            run.llm_called(model, prompt_tokens=100_000)  # gpt-4o: $0.25 a call in, $0.05 out
            run.llm_responded(completion_tokens=5_000, finish_reason="tool_calls", output="")
            run.tool_called("search", {"q": "the same question"})
            run.tool_responded("search", output="nothing new")
except PolicyViolation as exc:
    stopped = {"policy": exc.policy_name, "at_tool_call": len(models)}
additions = list(run.prompt_additions)
dt.shutdown(timeout=5)
result("docs_local_policies", run_id=run.run_id, models=models, stopped=stopped, additions=additions)
