"""RunView on its own: what one run's view holds (the sidecar keeps one per open run)."""

from __future__ import annotations

from detectors.engine import DetectionEngine
from detectors.run_view import RECENT_LLM_CALLS, FailureTypes, RunView
from tests.detectors.runs import NOW_NS, RunBuilder, loop


def fed(builder: RunBuilder) -> RunView:
    view = RunView(builder.run_id, "agent")
    DetectionEngine().process(view, builder.build(), now_ns=NOW_NS)
    return view


def test_failure_types_are_a_set() -> None:
    fired = FailureTypes()
    assert not fired and len(fired) == 0 and "TOOL_LOOP" not in fired
    fired.add("TOOL_LOOP")
    fired.add("TOOL_LOOP")
    fired.update(["SLOW_STEP", "TOOL_LOOP"])
    assert fired and len(fired) == 2 and "SLOW_STEP" in fired
    assert fired == {"TOOL_LOOP", "SLOW_STEP"} and {"SLOW_STEP", "TOOL_LOOP"} == fired
    assert list(fired) == ["TOOL_LOOP", "SLOW_STEP"]  # in the order they fired
    fired.discard("TOOL_LOOP")
    fired.discard("TOOL_LOOP")
    assert fired == {"SLOW_STEP"}
    assert FailureTypes(["A", "B", "A"]) == {"A", "B"} and len(FailureTypes(["A", "B", "A"])) == 2


def test_fired_types_start_empty_per_view_and_may_be_any_set() -> None:
    """The pipeline puts a restored run's fired types back as a set: the engine asks it the same."""
    b = RunBuilder("run-1")
    for _ in range(4):
        loop(b, "search")
    assert "TOOL_LOOP" in fed(b).fired
    view = RunView("run-1", "agent")
    assert isinstance(view.fired, FailureTypes) and not view.fired
    assert view.fired is not RunView("run-2", "agent").fired
    view.fired = {"TOOL_LOOP"}
    signals = DetectionEngine().process(view, b.build(), now_ns=NOW_NS)
    assert "TOOL_LOOP" not in [s.failure_type for s in signals] and view.fired == {"TOOL_LOOP"}


def test_a_run_without_tools_or_retrievals_holds_no_collection_for_them() -> None:
    b = RunBuilder("run-1")
    for _ in range(3):
        b.llm()
    view = fed(b)
    assert view.llm_calls == 3
    assert (view._tools, view._tool_counts, view._retrieval_log, view._token_tail) == (None, None, None, None)
    assert view.tools == () and dict(view.tool_counts) == {} and view.retrieval_log == ()
    assert view.recent_tools(5) == [] and view.last_tool_call() is None
    assert not view.fired


def test_tools_retrievals_and_the_token_tail_appear_with_their_first_use() -> None:
    b = RunBuilder("run-1")
    for _ in range(12):  # past the token sequence's head
        b.llm(tools=["search"])
        b.tool("search")
    b.retrieval(index_name="docs", result_count=3)
    view = fed(b)
    assert [call.name for call in view.tools] == ["search"] * 12 and view.tool_counts == {"search": 12}
    assert len(view.recent_tools(5)) == 5 and view.recent_tools(5) == list(view.tools)[-5:]
    assert [r.index_name for r in view.retrieval_log] == ["docs"]
    assert view.token_sequence() == [100] * 12 and view._token_tail == [100, 100]


def test_the_recent_llm_calls_keep_the_newest() -> None:
    b = RunBuilder("run-1")
    ids = [f"llm-{i}" for i in range(RECENT_LLM_CALLS + 8)]
    for call_id in ids:
        b.llm(call_id=call_id)
    view = fed(b)
    assert list(view.llm) == ids[-RECENT_LLM_CALLS:]
    assert view.llm_calls == len(ids)


def test_names_many_runs_repeat_are_shared_between_their_views() -> None:
    names = ["".join(["look", "up"]), "".join(["lo", "okup"])]  # equal text, two objects
    assert names[0] is not names[1]
    views = []
    for i, name in enumerate(names):
        b = RunBuilder(f"run-{i}")
        loop(b, name)
        b.retrieval(index_name="".join(["do", "cs"]) if i else "".join(["d", "ocs"]))
        views.append(fed(b))
    assert views[0].tools[0].name == "lookup" and views[0].tools[0].name is views[1].tools[0].name
    assert next(iter(views[0].tool_counts)) is next(iter(views[1].tool_counts))
    assert views[0].retrieval_log[0].index_name is views[1].retrieval_log[0].index_name
