"""TOOL_LOOP (spec §3), live, on tool.called.

Among the last `tool_loop.window` (5) tool calls — all of them while there are fewer — one tool
appears ≥ `tool_loop.threshold` (3) times (ours: no five-call minimum). HIGH when those calls'
argument hashes are identical, else MEDIUM. Confidence scale(count_in_run / threshold).
Evidence: tool, count, window, first_step, last_step, step_indices, args_identical.

Each turn below is an LLM call (odd step) then the tool call (even step): tool call k is step 2k.
"""

from __future__ import annotations

from detectors.events import TOOL_CALLED
from tests.detectors.runs import RunBuilder, conf, index_of, loop, replay

TYPE = "TOOL_LOOP"


def turns(names: list[str], args: list[str] | None = None) -> tuple[RunBuilder, list[str]]:
    b = RunBuilder()
    args = args or [f"sha256:{name}-args" for name in names]
    ids = [loop(b, name, args_hash=a) for name, a in zip(names, args, strict=True)]
    return b, ids


def test_third_identical_call_fires_high_while_the_run_is_going() -> None:
    b, ids = turns(["search"] * 3, ["sha256:aa"] * 3)
    events = b.end().build()

    r = replay(events)

    hit = r.hit(TYPE)
    assert hit.index == index_of(events, TOOL_CALLED, ids[2])  # the third call proves it
    assert hit.outcome is None  # no run.completed applied yet
    signal = hit.signal
    assert signal.severity == "HIGH"
    assert signal.confidence == conf(0.5)  # scale(3/3) = 0.5
    assert signal.step_index == 6
    assert signal.mode == "live"
    assert signal.evidence == {
        "tool": "search",
        "count": 3,
        "window": 5,
        "first_step": 2,
        "last_step": 6,
        "step_indices": [2, 4, 6],
        "args_identical": True,
    }


def test_two_identical_calls_do_not_fire() -> None:
    b, _ = turns(["search"] * 2, ["sha256:aa"] * 2)
    assert replay(b.end().build()).of(TYPE) == []


def test_varying_arguments_make_it_medium() -> None:
    b, ids = turns(["search"] * 3, ["sha256:aa", "sha256:bb", "sha256:aa"])
    events = b.build()

    hit = replay(events).hit(TYPE)

    assert hit.index == index_of(events, TOOL_CALLED, ids[2])
    assert hit.signal.severity == "MEDIUM"
    assert hit.signal.confidence == conf(0.5)  # scale(3/3)
    assert hit.signal.evidence["args_identical"] is False
    assert hit.signal.evidence["count"] == 3


def test_calls_spread_beyond_the_window_do_not_fire() -> None:
    # search at calls 1, 5, 9: never three among any five consecutive calls
    b, _ = turns(["search", "a", "b", "c", "search", "d", "e", "f", "search"])
    assert replay(b.end().build()).of(TYPE) == []
    # search at calls 1, 5, 7: the window at call 7 (calls 3-7) holds two
    b, _ = turns(["search", "a", "b", "c", "search", "d", "search"])
    assert replay(b.end().build()).of(TYPE) == []


def test_confidence_counts_the_tool_across_the_whole_run() -> None:
    # search at calls 1, 5, 7, 8: the window at call 8 (calls 4-8) holds 5, 7, 8; four in the run
    b, ids = turns(["search", "a", "b", "c", "search", "d", "search", "search"])
    events = b.build()

    hit = replay(events).hit(TYPE)

    assert hit.index == index_of(events, TOOL_CALLED, ids[7])
    assert hit.signal.confidence == conf(0.633)  # scale(4/3) = 0.5 + (4/3 - 1) * 0.4 = 0.633
    assert hit.signal.step_index == 16
    assert hit.signal.evidence["count"] == 3
    assert hit.signal.evidence["step_indices"] == [10, 14, 16]
    assert hit.signal.evidence["first_step"] == 10
    assert hit.signal.evidence["last_step"] == 16


def test_confidence_further_past_the_threshold() -> None:
    # search at calls 1, 6, 10, 11, 12: first three in a window at call 12 (calls 8-12); five in the run
    b, ids = turns(["search", "a", "b", "c", "d", "search", "x", "y", "z", "search", "search", "search"])
    events = b.build()

    hit = replay(events).hit(TYPE)

    assert hit.index == index_of(events, TOOL_CALLED, ids[11])
    assert hit.signal.confidence == conf(0.767)  # scale(5/3) = 0.5 + (5/3 - 1) * 0.4 = 0.767
    assert hit.signal.step_index == 24
    assert hit.signal.evidence["step_indices"] == [20, 22, 24]
    assert hit.signal.evidence["count"] == 3


def test_threshold_from_settings() -> None:
    config = {"tool_loop": {"threshold": 4}}
    b, _ = turns(["search"] * 3, ["sha256:aa"] * 3)
    assert replay(b.end().build(), config).of(TYPE) == []

    b, ids = turns(["search"] * 4, ["sha256:aa"] * 4)
    events = b.build()
    hit = replay(events, config).hit(TYPE)
    assert hit.index == index_of(events, TOOL_CALLED, ids[3])
    assert hit.signal.confidence == conf(0.5)  # scale(4/4) = 0.5
    assert hit.signal.step_index == 8
    assert hit.signal.evidence["count"] == 4
    assert hit.signal.evidence["step_indices"] == [2, 4, 6, 8]


def test_window_from_settings() -> None:
    names = ["search", "a", "search", "b", "search"]  # three of five, but never three of three
    b, ids = turns(names)
    events = b.build()
    hit = replay(events).hit(TYPE)
    assert hit.index == index_of(events, TOOL_CALLED, ids[4])
    assert hit.signal.evidence["step_indices"] == [2, 6, 10]
    assert replay(events, {"tool_loop": {"window": 3}}).of(TYPE) == []

    b, _ = turns(["a", "search", "search", "search"])
    hit = replay(b.build(), {"tool_loop": {"window": 3}}).hit(TYPE)
    assert hit.signal.evidence["window"] == 3
    assert hit.signal.evidence["step_indices"] == [4, 6, 8]


def test_fires_once_however_long_the_loop() -> None:
    b, ids = turns(["search"] * 6, ["sha256:aa"] * 6)
    events = b.end().build()
    r = replay(events)
    assert len(r.of(TYPE)) == 1
    assert r.hit(TYPE).index == index_of(events, TOOL_CALLED, ids[2])
