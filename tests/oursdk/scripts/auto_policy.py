"""Local policies acting on auto-instrumented calls: ``switch_model`` after the first call that
costs anything, ``stop`` once the run has taken 3 steps. The agent loops on the real openai client
(against FAKE_OPENAI_BASE_URL) and follows ``run.model_override``; the stop is raised out of the
4th call, before it is sent.

Result: the run id, the models asked for, what stopped the loop and the exception's policy."""

from __future__ import annotations

from _common import env, result
from dunetrace import Dunetrace, PolicyViolation
from openai import OpenAI

dt = Dunetrace()
dt.auto_instrument(env("AUTO_FRAMEWORKS", "openai").split(","))
dt.add_policy(
    name="cost cap",
    condition={"trigger": "cost_usd", "operator": "gt", "value": 0},
    action={"type": "switch_model", "params": {"model": "gpt-4o-mini"}},
)
dt.add_policy(
    name="three steps", condition={"trigger": "step_count", "operator": "gte", "value": 3}, action={"type": "stop"}
)
client = OpenAI(base_url=env("FAKE_OPENAI_BASE_URL"), api_key="sk-fake-key", max_retries=0)

models: list[str] = []
stopped: dict[str, object] = {}
run_id = ""
try:
    with dt.run(env("AUTO_AGENT")) as run:
        run_id = run.run_id
        for _ in range(6):  # bounded: the policy ends it
            model = run.model_override or "gpt-4o"
            models.append(model)
            client.chat.completions.create(model=model, messages=[{"role": "user", "content": "go on"}])
except PolicyViolation as exc:
    stopped = {"policy": exc.policy_name, "attempted": len(models)}
except Exception as exc:
    stopped = {"other": f"{type(exc).__name__}: {exc}", "cause": type(exc.__cause__).__name__}

dt.shutdown(timeout=10)
result("auto_policy", run_id=run_id, models=models, stopped=stopped)
