"""RETRY_STORM (spec §3), live, on tool.responded.

≥ `retry_storm.threshold` (3) consecutive tool calls of the same tool all failed (a call still
waiting for its result breaks the run). HIGH, confidence scale(n / threshold). Evidence: tool,
consecutive_fails, step_indices, args_identical, error_types. Ours: it fires when the storm
happens, even if the tool later succeeds.

A sequential turn is an LLM call (odd step) then the tool call (even step).
"""

from __future__ import annotations

from detectors.events import TOOL_RESPONDED
from tests.detectors.runs import RunBuilder, conf, index_of, loop, replay

TYPE = "RETRY_STORM"


def failing(b: RunBuilder, name: str = "search", error: str = "Timeout", args: str = "sha256:aa") -> str:
    return loop(b, name, args_hash=args, success=False, error_type=error)


def test_third_consecutive_failure_fires_while_the_run_is_going() -> None:
    b = RunBuilder()
    ids = [failing(b) for _ in range(3)]
    loop(b, "search")  # it succeeds afterwards: the storm still happened (ours)
    events = b.llm().end().build()

    r = replay(events)

    hit = r.hit(TYPE)
    assert hit.index == index_of(events, TOOL_RESPONDED, ids[2])
    assert hit.outcome is None
    assert hit.signal.severity == "HIGH"
    assert hit.signal.confidence == conf(0.5)  # scale(3/3) = 0.5
    assert hit.signal.step_index == 6
    assert hit.signal.mode == "live"
    assert hit.signal.evidence == {
        "tool": "search",
        "consecutive_fails": 3,
        "step_indices": [2, 4, 6],
        "args_identical": True,
        "error_types": ["Timeout", "Timeout", "Timeout"],
    }


def test_two_consecutive_failures_do_not_fire() -> None:
    b = RunBuilder()
    failing(b)
    failing(b)
    assert replay(b.end().build()).of(TYPE) == []


def test_a_success_or_another_tool_in_between_breaks_the_run() -> None:
    b = RunBuilder()
    failing(b)
    failing(b)
    loop(b, "search")
    failing(b)
    assert replay(b.end().build()).of(TYPE) == []

    b = RunBuilder()
    failing(b)
    failing(b)
    loop(b, "fetch")
    failing(b)
    assert replay(b.end().build()).of(TYPE) == []


def test_varying_arguments_and_errors_in_evidence() -> None:
    b = RunBuilder()
    failing(b, error="Timeout", args="sha256:aa")
    failing(b, error="HTTPError", args="sha256:bb")
    failing(b, error="Timeout", args="sha256:aa")

    hit = replay(b.build()).hit(TYPE)

    assert hit.signal.evidence["args_identical"] is False
    assert hit.signal.evidence["error_types"] == ["Timeout", "HTTPError", "Timeout"]


def test_a_call_still_waiting_breaks_the_run_until_it_answers() -> None:
    # steps: 1 llm, 2 search failed, 3 llm, 4 search failed, 5 llm requesting two searches,
    # 6 and 7 the two searches in parallel; 7 fails while 6 is still waiting.
    b = RunBuilder()
    failing(b)
    failing(b)
    b.llm(tools=["search", "search"])
    b.tool_called("search", args_hash="sha256:aa")
    waiting = b.last_call_id
    b.tool_called("search", args_hash="sha256:aa")
    b.tool_responded(b.last_call_id, success=False, error_type="Timeout")
    r = replay(b.build())
    assert r.of(TYPE) == []  # 2 and 4 failed, 6 is waiting, 7 failed: no run of three

    b.tool_responded(waiting, success=False, error_type="Timeout")
    r.feed(b.events[-1:])

    hit = r.hit(TYPE)
    assert hit.event is not None and hit.event.call_id == waiting
    assert hit.signal.confidence == conf(0.633)  # scale(4/3) = 0.5 + (4/3 - 1) * 0.4 = 0.633
    assert hit.signal.step_index == 6  # the answer shares its call's step
    assert hit.signal.evidence["consecutive_fails"] == 4
    assert hit.signal.evidence["step_indices"] == [2, 4, 6, 7]


def test_confidence_further_past_the_threshold() -> None:
    # 2 and 4 failed; three parallel searches at 6, 7, 8; 7 and 8 fail while 6 waits; then 6 fails
    b = RunBuilder()
    failing(b)
    failing(b)
    b.llm(tools=["search"] * 3)
    parallel = []
    for _ in range(3):
        b.tool_called("search", args_hash="sha256:aa")
        parallel.append(b.last_call_id)
    b.tool_responded(parallel[1], success=False, error_type="Timeout")
    b.tool_responded(parallel[2], success=False, error_type="Timeout")
    b.tool_responded(parallel[0], success=False, error_type="Timeout")
    events = b.build()

    hit = replay(events).hit(TYPE)

    assert hit.index == index_of(events, TOOL_RESPONDED, parallel[0])
    assert hit.signal.confidence == conf(0.767)  # scale(5/3) = 0.5 + (5/3 - 1) * 0.4 = 0.767
    assert hit.signal.evidence["consecutive_fails"] == 5
    assert hit.signal.evidence["step_indices"] == [2, 4, 6, 7, 8]


def test_a_storm_followed_by_a_waiting_call_of_another_tool() -> None:
    # Spec §3: "≥ 3 consecutive tool calls of the same tool all failed". Three parallel `search`
    # calls (steps 2, 3, 4) all fail while a later `fetch` call (step 5) is still running: the
    # storm is among the calls, not only at the latest one (parallel calls interleave in run
    # events replayed from JSON Lines or an SDK stream).
    b = RunBuilder()
    b.llm(tools=["search", "search", "search", "fetch"])
    searches = []
    for _ in range(3):
        b.tool_called("search", args_hash="sha256:aa")
        searches.append(b.last_call_id)
    b.tool_called("fetch")
    fetch = b.last_call_id
    for call_id in searches:
        b.tool_responded(call_id, success=False, error_type="Timeout")
    b.tool_responded(fetch, success=True)
    events = b.llm().end().build()

    r = replay(events)

    hit = r.hit(TYPE)
    assert hit.index == index_of(events, TOOL_RESPONDED, searches[2])
    assert hit.signal.step_index == 4
    assert hit.signal.confidence == conf(0.5)  # scale(3/3)
    assert hit.signal.evidence["consecutive_fails"] == 3
    assert hit.signal.evidence["step_indices"] == [2, 3, 4]


def test_threshold_from_settings() -> None:
    config = {"retry_storm": {"threshold": 4}}
    b = RunBuilder()
    for _ in range(3):
        failing(b)
    assert replay(b.end().build(), config).of(TYPE) == []

    b = RunBuilder()
    ids = [failing(b) for _ in range(4)]
    events = b.build()
    hit = replay(events, config).hit(TYPE)
    assert hit.index == index_of(events, TOOL_RESPONDED, ids[3])
    assert hit.signal.confidence == conf(0.5)  # scale(4/4)
    assert hit.signal.evidence["step_indices"] == [2, 4, 6, 8]
