"""Scenario (k): a small run the test uses to check that what the daemon acknowledged survives kill -9. The test
watches the SDK's POSTs through its pass-through proxy and SIGKILLs the daemon right after the 2xx for the batch
that carries run.completed, then restarts it on the same database.

One run, manual hooks: an LLM call, three tool calls with different arguments, a final LLM call, final_answer.
Prints: {"scenario": "k_durable", "run_id", "agent_id"}.
"""

import time

from _common import client_kwargs, emit_result, setup_logging
from dunetrace import Dunetrace

setup_logging()
AGENT_ID = "durable-agent"
dt = Dunetrace(**client_kwargs())
with dt.run(AGENT_ID, user_input="check three warehouses", model="gpt-4o", tools=["stock"]) as run:
    run.llm_called("gpt-4o", prompt_tokens=90)
    run.llm_responded(completion_tokens=15, latency_ms=250, finish_reason="tool_calls", output="")
    for warehouse in ("north", "south", "east"):
        run.tool_called("stock", {"warehouse": warehouse})
        run.tool_responded("stock", success=True, output="12 units", latency_ms=20)
    run.llm_called("gpt-4o", prompt_tokens=160)
    run.llm_responded(
        completion_tokens=30, latency_ms=400, finish_reason="stop", output="36 units in total.", output_length=18
    )
    run.final_answer()

# The SDK fetches the agent's policies on a background thread started with the run; on a loaded
# machine this short process could exit before that GET is made (the stub test expects it). Wait
# for the fetch to be over, bounded.
engine = dt._policy_engine
deadline = time.monotonic() + 15
while time.monotonic() < deadline and (engine.needs_fetch(AGENT_ID) or AGENT_ID in engine._fetch_in_flight):
    time.sleep(0.05)
emit_result("k_durable", run_id=run.run_id, agent_id=AGENT_ID)
dt.shutdown(timeout=10)
