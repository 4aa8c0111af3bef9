"""Scenario (r): delivery through retries. The test puts a proxy of its own (tests/fakes/ingest_proxy.py) between
the SDK and the daemon that answers 503 + Retry-After: 1 to the first ingest POSTs; the SDK re-sends the same
batch (same event ids) after its backoff. dt.shutdown() drops retries not yet due, so before it the script waits
(DT_WAIT_STORED_S at most) until the daemon has the run.

One run, manual hooks: an LLM call, two tool calls with different arguments, a final LLM call, run.final_answer().
Prints: {"scenario": "r_retry", "run_id", "agent_id", "stored": {run_id: last HTTP status seen}}.
"""

from _common import client_kwargs, emit_result, setup_logging, wait_stored
from dunetrace import Dunetrace

setup_logging()
AGENT_ID = "retry-agent"
dt = Dunetrace(**client_kwargs())
with dt.run(AGENT_ID, user_input="find two flights", model="gpt-4o", tools=["search_flights"]) as run:
    run.llm_called("gpt-4o", prompt_tokens=100)
    run.llm_responded(completion_tokens=20, latency_ms=300, finish_reason="tool_calls", output="")
    for day in ("monday", "tuesday"):
        run.tool_called("search_flights", {"day": day})
        run.tool_responded("search_flights", success=True, output="2 flights", latency_ms=30)
    run.llm_called("gpt-4o", prompt_tokens=180)
    run.llm_responded(
        completion_tokens=40, latency_ms=500, finish_reason="stop", output="Two flights found.", output_length=18
    )
    run.final_answer()

stored = wait_stored([run.run_id])
emit_result("r_retry", run_id=run.run_id, agent_id=AGENT_ID, stored=stored)
dt.shutdown(timeout=10)
