"""An agent that repeats one tool with the same arguments: a TOOL_LOOP the sidecar must see."""

from __future__ import annotations

from _common import result
from dunetrace import Dunetrace

dt = Dunetrace()
with dt.run("oursdk-loop") as run:
    for _ in range(6):
        run.llm_called("gpt-4o", prompt_tokens=50)
        run.llm_responded(
            completion_tokens=10,
            finish_reason="tool_calls",
            output="",
            tool_calls=[{"id": "", "name": "search", "arguments": {"q": "same query"}}],
        )
        run.tool_called("search", {"q": "same query"})
        run.tool_responded("search", output="no results")
dt.shutdown(timeout=5)
result("tool_loop", run_id=run.run_id, signals=sorted({s.failure_type for s in run.signals}))
