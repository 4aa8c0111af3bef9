"""The marker (PRIVACY_MARKER) through every content-carrying argument of the API, with
emit_as_json=True: none of it may leave the process except as a hash or a length."""

from __future__ import annotations

import asyncio

from _common import env, result
from dunetrace import Dunetrace, get_current_run

marker = env("PRIVACY_MARKER")
dt = Dunetrace(emit_as_json=True)
run_ids = []

with dt.run("oursdk-privacy", user_input=f"hello {marker}", system_prompt=f"sys {marker}", tools=["lookup"]) as run:
    run.llm_called("gpt-4o", prompt_tokens=10, prompt=[{"role": "user", "content": f"ask {marker}"}])
    run.llm_responded(
        completion_tokens=5,
        finish_reason="tool_calls",
        output=f"thinking {marker}",
        tool_calls=[{"id": "call_1", "name": "lookup", "arguments": {"q": marker}}],
    )
    run.tool_called("lookup", {"q": marker, "nested": [marker]})
    run.tool_responded("lookup", success=False, error=f"failed {marker}", output=f"out {marker}")
    run.retrieval_called("docs", query=f"query {marker}")
    run.retrieval_responded("docs", result_count=1, top_score=0.5, content=f"doc {marker}")
    run.llm_called("gpt-4o", prompt=f"again {marker}")
    run.llm_responded(output=f"answer {marker}", error=f"llm error {marker}")
    run.final_answer()
run_ids.append(run.run_id)

try:
    with dt.run("oursdk-privacy") as errored:
        run_ids.append(errored.run_id)
        errored.tool_called("lookup", marker)
        raise RuntimeError(f"crash {marker}")
except RuntimeError:
    pass


@dt.agent("oursdk-privacy")
async def agent(question: str) -> str:
    current = get_current_run()
    assert current is not None
    run_ids.append(current.run_id)
    current.llm_called("gpt-4o", prompt=question)
    current.llm_responded(output=question)
    return question


asyncio.run(agent(f"question {marker}"))
dt.shutdown(timeout=5)
result("privacy", run_ids=run_ids)
