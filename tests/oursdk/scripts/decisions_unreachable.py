"""Live decisions with no sidecar to watch (DUNETRACE_DECISIONS_ENDPOINT points at a closed port):
three runs of a few steps each, a local stop policy that still stops the third run's loop."""

from __future__ import annotations

import time

from _common import env, result
from dunetrace import Dunetrace, PolicyViolation

dt = Dunetrace(api_key=env("DT_API_KEY"))
dt.add_policy(
    name="cap tool calls",
    condition={"trigger": "tool_call_count", "operator": "gt", "value": 3},
    action={"type": "stop"},
    agent_id="offline-stop",
)
completed = []
for agent in ("offline-a", "offline-b"):
    with dt.run(agent) as run:
        for i in range(3):
            run.tool_called("search", {"q": i})
            run.tool_responded("search", output="ok")
            time.sleep(0.2)
        run.final_answer()
    completed.append(run.run_id)

calls = 0
stopped = False
try:
    with dt.run("offline-stop") as run:
        for i in range(10):
            run.tool_called("search", {"q": i})
            calls += 1
            run.tool_responded("search", output="ok")
except PolicyViolation:
    stopped = True
dt.shutdown(timeout=5)
result("decisions_unreachable", completed=completed, calls=calls, stopped=stopped)
