"""The sidecar's live decisions acting inside a running agent (the SDK knows none of the policies:
no endpoint, so nothing is fetched; only the decisions stream reaches it).

An agent loops over tool calls, one every STEP_SECONDS; the sidecar's policy (created by the test)
decides stop on the third call, and the agent is stopped at its next step. A second run is steered:
the sidecar's switch_model and inject_prompt land on model_override and prompt_additions."""

from __future__ import annotations

import time

from _common import env, result
from dunetrace import Dunetrace, PolicyViolation

STEP_SECONDS = 0.25
dt = Dunetrace(api_key=env("DT_API_KEY"), flush_interval_ms=100)

calls = 0
violation = None
started = time.monotonic()
try:
    with dt.run("live-stop") as stop_run:
        for i in range(40):  # 10 s at most
            stop_run.tool_called("search", {"q": f"query {i}"})
            calls += 1
            stop_run.tool_responded("search", output="result")
            time.sleep(STEP_SECONDS)
except PolicyViolation as exc:
    violation = {"policy_name": exc.policy_name, "policy_id": exc.policy_id, "message": str(exc)}
stopped_after = time.monotonic() - started

models: list[str] = []
with dt.run("live-steer") as steer:
    for _ in range(12):
        models.append(steer.model_override or "gpt-4o")
        steer.llm_called(models[-1], prompt_tokens=100)
        steer.llm_responded(completion_tokens=10, finish_reason="tool_calls", output="")
        time.sleep(STEP_SECONDS)
        if steer.model_override and steer.prompt_additions:
            break
    model_override = steer.model_override
    additions = list(steer.prompt_additions)
    signals = [s["failure_type"] for s in steer.sidecar_signals]
    steer.final_answer()

dt.shutdown(timeout=5)
result(
    "decisions",
    stop_run=stop_run.run_id,
    calls=calls,
    violation=violation,
    stopped_after=stopped_after,
    steer_run=steer.run_id,
    models=models,
    model_override=model_override,
    additions=additions,
    signals=signals,
)
