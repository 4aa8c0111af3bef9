"""Runs every way the docs open one: dt.run(), @dt.agent() (sync and async), async with dt.run()
in asyncio tasks, and threads each running its own run; get_current_run() is checked in each."""

from __future__ import annotations

import asyncio
import threading

from _common import result
from dunetrace import Dunetrace, get_current_run

dt = Dunetrace()
seen: dict[str, bool] = {"outside": get_current_run() is None}

with dt.run("oursdk-steps", user_input="plan a trip", model="gpt-4o", tools=["weather", "search"]) as run:
    seen["dt.run"] = get_current_run() is run
    run.llm_called("gpt-4o", prompt_tokens=120, prompt="plan a trip to Paris")
    run.llm_responded(
        completion_tokens=30,
        finish_reason="tool_calls",
        output="",
        tool_calls=[{"id": "call_1", "name": "weather", "arguments": '{"city": "Paris"}'}],
    )
    run.tool_called("weather", {"city": "Paris"}, tool_call_id="call_1")
    run.tool_responded("weather", success=True, output="sunny, 21C")
    run.retrieval_called("guides", query="paris museums")
    run.retrieval_responded("guides", result_count=3, top_score=0.82, content="Louvre; Orsay; Pompidou")
    run.llm_called("gpt-4o", prompt_tokens=200)
    run.llm_responded(completion_tokens=80, finish_reason="stop", output="Take an umbrella-free walk to the Louvre.")
    run.final_answer()
steps_run = run.run_id
seen["after"] = get_current_run() is None


@dt.agent("oursdk-decorated")
def answer(question: str) -> str:
    current = get_current_run()
    assert current is not None
    current.llm_called("gpt-4o-mini", prompt_tokens=10)
    current.llm_responded(completion_tokens=5, output="42")
    seen["agent"] = current.agent_id == "oursdk-decorated"
    decorated.append(current.run_id)
    return "42"


decorated: list[str] = []
answer("what is six times seven?")


@dt.agent("oursdk-async-decorated")
async def answer_async(question: str) -> str:
    current = get_current_run()
    assert current is not None
    await asyncio.sleep(0)
    current.tool_called("lookup", {"q": question})
    current.tool_responded("lookup", output="found")
    decorated.append(current.run_id)
    return "ok"


async def task_run(i: int) -> tuple[str, bool]:
    async with dt.run("oursdk-async") as r:
        await asyncio.sleep(0.01 * (3 - i))
        same = get_current_run() is r
        r.tool_called("fetch", {"page": i})
        await asyncio.sleep(0)
        r.tool_responded("fetch", output=f"page {i}")
        return r.run_id, same and get_current_run() is r


async def main() -> list[tuple[str, bool]]:
    await answer_async("where?")
    return await asyncio.gather(*(task_run(i) for i in range(3)))


tasks = asyncio.run(main())
seen["tasks"] = all(ok for _, ok in tasks)

threads_ok: list[bool] = []
thread_runs: list[str] = []


def in_thread(i: int) -> None:
    ok = get_current_run() is None
    with dt.run("oursdk-threads") as r:
        ok = ok and get_current_run() is r
        r.tool_called("compute", {"n": i})
        r.tool_responded("compute", output=str(i * i))
        ok = ok and get_current_run() is r
        thread_runs.append(r.run_id)
    threads_ok.append(ok and get_current_run() is None)


workers = [threading.Thread(target=in_thread, args=(i,)) for i in range(3)]
for w in workers:
    w.start()
for w in workers:
    w.join(10)
seen["threads"] = len(threads_ok) == 3 and all(threads_ok)

dt.shutdown(timeout=5)
result(
    "runs",
    seen=seen,
    steps_run=steps_run,
    decorated=decorated,
    async_runs=[run_id for run_id, _ in tasks],
    thread_runs=thread_runs,
)
