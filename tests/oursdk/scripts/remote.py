"""The sidecar's policies (GET /v1/policies?agent_id=, Bearer api_key) beside a local one; two
runs, each stopped mid-loop. With DT_ENDPOINT dead, the local policy alone stops the runs."""

from __future__ import annotations

import time

from _common import env, result
from dunetrace import Dunetrace, PolicyViolation

dt = Dunetrace(api_key=env("DT_API_KEY"), endpoint=env("DT_ENDPOINT"))
dt.add_policy(
    name="local note",
    condition={"trigger": "tool_call_count", "operator": "gt", "value": 2},
    action={"type": "log"},
)
dt.add_policy(
    name="local stop",
    condition={"trigger": "tool_call_count", "operator": "gt", "value": 4},
    action={"type": "stop"},
)

runs = []
for _ in range(2):
    started = time.monotonic()
    stopped = None
    try:
        with dt.run("oursdk-remote") as run:
            entered = time.monotonic() - started
            for i in range(8):
                run.tool_called("search", {"q": f"q{i}"})
                run.tool_responded("search", output="r")
    except PolicyViolation as exc:
        stopped = {"policy": exc.policy_name, "policy_id": exc.policy_id, "tool_calls": i + 1}
    runs.append({"run_id": run.run_id, "entered_s": entered, "stopped": stopped})
time.sleep(float(env("LINGER", "0")))  # long enough for a fetch to time out, when asked
dt.shutdown(timeout=5)
result("remote", runs=runs)
