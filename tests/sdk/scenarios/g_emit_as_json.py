"""Scenario (g): Dunetrace(emit_as_json=True) next to HTTP shipping. Every event is written as an NDJSON line to
stdout by the SDK AND shipped to the daemon. One run with manual hooks (two LLM calls, a tool call, a retrieval,
a memory write) and a nested run (parent_run_id set by the SDK).

stdout: the SDK's 13 NDJSON lines (keys ts, level, logger, event_type, agent_id, run_id, ...), then
{"scenario": "g_emit_as_json", "run_id", "child_run_id", "agent_id", "child_agent_id"}.
"""

from _common import client_kwargs, emit_result, setup_logging
from dunetrace import Dunetrace

setup_logging()
dt = Dunetrace(**client_kwargs(), emit_as_json=True)
with dt.run(
    "json-agent",
    user_input="summarise the doc",
    system_prompt="Be brief.",
    model="gpt-4o",
    tools=["fetch_doc"],
    conversation_id="conv-1",
) as run:
    run.llm_called("gpt-4o", prompt_tokens=120)
    run.llm_responded(completion_tokens=30, latency_ms=800, finish_reason="tool_calls", output="")
    run.tool_called("fetch_doc", {"doc_id": 17})
    run.tool_responded("fetch_doc", success=True, output="doc text", latency_ms=40)
    run.retrieval_called("docs-index", query="doc 17 summary")
    run.retrieval_responded("docs-index", result_count=3, top_score=0.82, latency_ms=15, content="chunk")
    run.memory_written("summary", "doc 17 is about X", source="llm_output")
    run.llm_called("gpt-4o", prompt_tokens=200)
    run.llm_responded(completion_tokens=50, latency_ms=900, finish_reason="stop", output="Doc 17 is about X.")
    run.final_answer()
    with dt.run("json-subagent", user_input="nested", model="gpt-4o") as child:
        child.final_answer()

dt.shutdown(timeout=10)
emit_result(
    "g_emit_as_json",
    run_id=run.run_id,
    child_run_id=child.run_id,
    agent_id="json-agent",
    child_agent_id="json-subagent",
)
