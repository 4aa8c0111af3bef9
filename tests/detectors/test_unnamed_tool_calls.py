"""Tool calls known only from a ``tool_calls`` finish reason (the instrumentation sent no content).

The receiver counts them without a name (``tool.called`` with no ``tool_name``); when content
arrives later, a ``tool.content`` amendment names them. Detectors that compare names cannot see
an unnamed call; detectors that count tool calls count it; a named-late call is judged as the
call it always was.
"""

from __future__ import annotations

from detectors.events import TOOL_CONTENT
from tests.detectors.runs import RunBuilder, index_of, replay


def loop_without_content(calls: int = 4) -> RunBuilder:
    b = RunBuilder().start()
    for _ in range(calls):
        b.llm(finish="tool_calls", output_length=0)
        b.unnamed_tool_call()
    return b.llm(finish="stop", output_length=48)


def test_unnamed_calls_count_as_acting_no_reasoning_stall() -> None:
    # 5 LLM calls, 4 tool calls: ratio 1.25 < 4. Without counting them it would be 5/1 = 5 ≥ 4.
    assert replay(loop_without_content().end().build()).signals == []


def test_unnamed_calls_make_no_loop_thrashing_or_abandonment() -> None:
    b = loop_without_content(6)
    events = b.end(final_answer=False).build()
    assert [s.failure_type for s in replay(events).signals] == []


def test_naming_them_late_finds_the_loop_at_the_third_call() -> None:
    b = loop_without_content()
    b.end()
    unnamed = [e.call_id for e in b.events if e.kind == "tool.called"]
    for call_id in unnamed:
        b.name_tool_call(call_id, "lookup_order")
    events = b.build()

    hit = replay(events).hit("TOOL_LOOP")

    # Fired on the amendment naming the third call, at that call's step, as if seen in order.
    assert hit.index == index_of(events, TOOL_CONTENT, unnamed[2])
    assert hit.signal.severity == "HIGH"
    assert hit.signal.step_index == 6
    assert hit.signal.evidence == {
        "tool": "lookup_order",
        "count": 3,
        "window": 5,
        "first_step": 2,
        "last_step": 6,
        "step_indices": [2, 4, 6],
        "args_identical": True,
    }


def test_a_named_call_is_not_named_again() -> None:
    b = loop_without_content(1)
    [call_id] = [e.call_id for e in b.events if e.kind == "tool.called"]
    b.name_tool_call(call_id, "lookup_order").name_tool_call(call_id, "other_tool")
    run = replay(b.build())
    assert run.view.tool_counts == {"lookup_order": 1}
