"""Scenario (f): a remote policy, created on the daemon by the test (POST /v1/policies), fetched by the SDK with
GET /v1/policies?agent_id=<agent> at the start of dt.run() (in a background thread: the run waits
DT_POLICY_WARMUP_S before its first tool call, as a real agent's first model round-trip would), then four tool
calls with different arguments and run.final_answer().

    DT_AGENT_ID        the agent (the policy is the test's: e.g. stop when tool_call_count > 2)
    DT_POLICY_SECRET   when set, Dunetrace(policy_secret=...): the SDK enforces enforcing remote actions only when
                       signed with it (HMAC-SHA256), and skips unsigned ones. Unset: enforcing actions are
                       downgraded to `log` (the run completes)

Prints: {"scenario": "f_remote_policy", "run_id", "agent_id", "tool_calls", "policy_violation": {"policy_name"}
or null, "sdk_warnings": [the SDK's WARNING messages, e.g. the downgrade or a failed signature]}.
"""

import logging
import os
import time

from _common import client_kwargs, emit_result, env, setup_logging
from dunetrace import Dunetrace, PolicyViolation

setup_logging()
AGENT_ID = env("DT_AGENT_ID")
WARMUP_S = min(float(os.environ.get("DT_POLICY_WARMUP_S", "1.5")), 10.0)
warnings: list[str] = []


class Collect(logging.Handler):
    def emit(self, record: logging.LogRecord) -> None:
        if record.levelno >= logging.WARNING:
            warnings.append(record.getMessage())


logging.getLogger("dunetrace").addHandler(Collect())

kwargs = client_kwargs()
if os.environ.get("DT_POLICY_SECRET"):
    kwargs["policy_secret"] = os.environ["DT_POLICY_SECRET"]
dt = Dunetrace(**kwargs)

tool_calls = 0
violation = None
try:
    with dt.run(AGENT_ID, user_input="weather in paris", model="gpt-4o", tools=["search"]) as run:
        time.sleep(WARMUP_S)
        for i in range(4):
            tool_calls += 1
            run.tool_called("search", {"q": f"paris weather, day {i}"})
            run.tool_responded("search", success=True, output="sunny", latency_ms=5)
        run.final_answer()
except PolicyViolation as exc:
    violation = {"policy_name": exc.policy_name}

emit_result(
    "f_remote_policy",
    run_id=run.run_id,
    agent_id=AGENT_ID,
    tool_calls=tool_calls,
    policy_violation=violation,
    sdk_warnings=warnings,
)
dt.shutdown(timeout=10)
