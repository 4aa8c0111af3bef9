"""However a run's spans are grouped into export requests, the same signals come out, once.

Exporters send spans as they end, batched by time, and retry whole requests. Each scenario is
delivered as a new run (fresh trace id) in one request, children then root, one span per request,
seeded random groups of 1-4 spans (all in end-time order), twice in full, and over OTLP/gRPC.
Every delivery must give the signals of the one-request delivery (type, severity, confidence,
step_index, evidence, mode), which are those of expected.json; a repeated delivery must not add
a signal row (same signal ids).
"""

from __future__ import annotations

import json
import random
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import ExportTraceServiceResponse

from tests.detectors.test_scenarios import (
    EXPECTED,
    all_spans,
    assert_signals,
    fresh,
    listed_signals,
    load,
    post_json,
    split_root,
    split_sizes,
    to_protobuf,
)
from tests.sidecar import Sidecar, wait_for

# Every standalone scenario but two: step_count_inflation depends on the agent's baseline, which
# each delivery of it would change; prompt_injection_user_input legitimately depends on whether the
# root arrives with its children (test_user_input_injection_is_named_at_the_first_event_that_carries_it).
#
# first_step_failure_parallel_tools: the LLM requests fetch_orders and fetch_profile; they run
# concurrently, fetch_orders starts first (step 2 by timestamp, spec §1) and fails after 4 s,
# fetch_profile starts 2 ms later (step 3) and ends first. One span per request (end-time order)
# delivers fetch_profile first; steps still follow start times, so FIRST_STEP_FAILURE fires at 2.
DELIVERY_SCENARIOS = [
    name
    for name, spec in EXPECTED.items()
    if "part_of" not in spec and name not in ("step_count_inflation", "prompt_injection_user_input")
]


@pytest.fixture(scope="module")
def delivery_daemon(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Sidecar]:
    # A short end grace: each delivery waits for its end judgement (see ended()).
    sidecar = Sidecar(Path(tmp_path_factory.mktemp("signal-delivery")), env={"DUNETRACE_END_GRACE": "0.2"}).start()
    yield sidecar
    sidecar.close()


def comparable(signals: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """What a delivery must not change: everything but ids and detection times."""
    keys = ("failure_type", "severity", "confidence", "step_index", "evidence", "mode", "shadow")
    return sorted(({k: s[k] for k in keys} for s in signals), key=lambda s: s["failure_type"])


def ended(daemon: Sidecar, run_id: str) -> dict[str, Any]:
    """The run once it has ended and its end-of-run detectors have been asked."""
    run: dict[str, Any] = daemon.judged_run(run_id)
    assert run["status"] in ("completed", "errored"), run["status"]
    return run


def one_request(daemon: Sidecar, doc: dict[str, Any]) -> None:
    post_json(daemon, json.dumps(doc).encode())  # the file as it is: children first, the root last


def span_by_span(daemon: Sidecar, doc: dict[str, Any]) -> None:
    for body in split_sizes(doc, [1] * len(all_spans(doc))):
        post_json(daemon, body)


def random_groups(seed: str) -> Callable[[Sidecar, dict[str, Any]], None]:
    def deliver(daemon: Sidecar, doc: dict[str, Any]) -> None:
        rng = random.Random(seed)  # seeded: a failure reproduces
        sizes = [rng.randint(1, 4) for _ in all_spans(doc)]
        for body in split_sizes(doc, sizes):
            post_json(daemon, body)

    return deliver


def children_then_root(daemon: Sidecar, doc: dict[str, Any]) -> None:
    for body in split_root(doc):
        post_json(daemon, body)


def whole_run_twice(daemon: Sidecar, doc: dict[str, Any]) -> None:
    one_request(daemon, doc)
    one_request(daemon, doc)  # the exporter retries a request that had been applied


@pytest.mark.parametrize("name", DELIVERY_SCENARIOS)
def test_every_grouping_gives_the_same_signals(delivery_daemon: Sidecar, name: str) -> None:
    doc = load(name)
    first, first_id = fresh(doc)
    one_request(delivery_daemon, first)
    reference = ended(delivery_daemon, first_id)["signals"]
    assert_signals(reference, EXPECTED[name]["signals"])

    deliveries: dict[str, Callable[[Sidecar, dict[str, Any]], None]] = {
        "children then root": children_then_root,
        "one span per request": span_by_span,
        "random groups of 1-4": random_groups(name),
        "whole run twice": whole_run_twice,
    }
    got: dict[str, Any] = {}
    for label, deliver in deliveries.items():
        again, run_id = fresh(doc)
        deliver(delivery_daemon, again)
        run = ended(delivery_daemon, run_id)
        got[label] = (run["step_count"], comparable(run["signals"]))
    want = (EXPECTED[name]["step_count"], comparable(reference))
    assert got == dict.fromkeys(deliveries, want)


@pytest.mark.parametrize("name", DELIVERY_SCENARIOS)
def test_redelivery_never_duplicates_a_signal(delivery_daemon: Sidecar, name: str) -> None:
    doc, run_id = fresh(load(name))
    one_request(delivery_daemon, doc)
    ended(delivery_daemon, run_id)
    first = listed_signals(delivery_daemon, run_id)
    assert_signals(first, EXPECTED[name]["signals"])

    one_request(delivery_daemon, doc)  # the exporter retries the whole request
    span_by_span(delivery_daemon, doc)  # and a second exporter path repeats every span
    again = listed_signals(delivery_daemon, run_id)
    assert sorted(s["signal_id"] for s in again) == sorted(s["signal_id"] for s in first)
    assert comparable(again) == comparable(first)
    run = ended(delivery_daemon, run_id)
    assert sorted(s["signal_id"] for s in run["signals"]) == sorted(s["signal_id"] for s in first)
    assert run["step_count"] == EXPECTED[name]["step_count"]


@pytest.mark.parametrize("name", ["retry_storm", "goal_abandonment", "clean_weather_lookup"])
def test_grpc_gives_the_same_signals_as_json(delivery_daemon: Sidecar, name: str) -> None:
    doc = load(name)
    over_json, json_id = fresh(doc)
    one_request(delivery_daemon, over_json)
    over_grpc, grpc_id = fresh(doc)
    response = ExportTraceServiceResponse.FromString(delivery_daemon.grpc_export(to_protobuf(over_grpc)))
    assert not response.HasField("partial_success")
    json_run, grpc_run = ended(delivery_daemon, json_id), ended(delivery_daemon, grpc_id)
    assert comparable(grpc_run["signals"]) == comparable(json_run["signals"])
    assert_signals(grpc_run["signals"], EXPECTED[name]["signals"])


def test_user_input_injection_is_named_at_the_first_event_that_carries_it(delivery_daemon: Sidecar) -> None:
    """The user's injected text is in the root's input (run.started, step 0) and in the first LLM
    request (step 1). Delivered together, run.started proves it; when the root comes last (as
    exporters send it), the LLM call does, live. Either way: one CRITICAL signal, source input."""
    doc = load("prompt_injection_user_input")
    together, together_id = fresh(doc)
    one_request(delivery_daemon, together)
    root_last, root_last_id = fresh(doc)
    children_then_root(delivery_daemon, root_last)
    seen: dict[str, tuple[Any, ...]] = {}
    for label, run_id in (("together", together_id), ("root last", root_last_id)):
        [signal] = ended(delivery_daemon, run_id)["signals"]
        evidence = signal["evidence"]
        seen[label] = (signal["failure_type"], signal["severity"], signal["step_index"], evidence["source"])
        assert evidence["matched_patterns"] == ["ignore_instructions", "you_are_now"], label
    assert seen == {
        "together": ("PROMPT_INJECTION_SIGNAL", "CRITICAL", 0, "input"),
        "root last": ("PROMPT_INJECTION_SIGNAL", "CRITICAL", 1, "input"),
    }


def test_a_run_whose_root_never_comes_is_abandoned_when_it_stalls(make_sidecar: Callable[..., Sidecar]) -> None:
    """GOAL_ABANDONMENT (spec: 'the run stalled or ended without a final answer'): the same run
    as goal_abandonment, but the root span never arrives; after stall_timeout it is evaluated."""
    daemon = make_sidecar(env={"DUNETRACE_STALL_TIMEOUT": "2"}, name="stalling")
    doc, run_id = fresh(load("goal_abandonment"))
    children, _root = split_root(doc)
    post_json(daemon, children)
    assert listed_signals(daemon, run_id) == []
    run = daemon.wait_run(run_id, lambda r: r["status"] == "stalled", timeout=15)
    assert run["step_count"] == 7 and run["ended_at"] is None
    signals = wait_for(lambda: listed_signals(daemon, run_id), timeout=5, what="the stalled run's signals")
    assert_signals(
        signals,
        [
            {
                "failure_type": "GOAL_ABANDONMENT",
                "severity": "MEDIUM",
                "confidence": 0.5,
                "step_index": 7,
                "mode": "end",
                "evidence": {"last_tool_used": "search_code", "last_tool_step": 3, "llm_calls_since_tool": 4},
            }
        ],
    )
