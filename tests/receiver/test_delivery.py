"""However a run's spans are grouped into export requests, the daemon builds the same run.

Exporters send spans as they end, batched by time: one request may hold a whole trace, one
span, or any slice, and retries repeat requests. These tests cut each capture into requests
(keeping end-time order, as a BatchSpanProcessor would) and compare the runs built.
"""

from __future__ import annotations

import random
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import ExportTraceServiceRequest

from tests.sidecar import FIXTURES, Sidecar, with_new_trace_ids

TRACE_FIXTURES = sorted(
    p.name for p in FIXTURES.glob("*.pb") if not p.name.endswith(".logs.pb") and "-grpc-" not in p.name
)


@pytest.fixture(scope="module")
def daemon(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Sidecar]:
    sidecar = Sidecar(Path(tmp_path_factory.mktemp("delivery"))).start()
    yield sidecar
    sidecar.close()


def split_requests(body: bytes, sizes: list[int]) -> list[bytes]:
    """Cut one export request into several, spans in end-time order, `sizes` spans each."""
    request = ExportTraceServiceRequest.FromString(body)
    flat = [
        (span.end_time_unix_nano, r_index, s_index, span)
        for r_index, rs in enumerate(request.resource_spans)
        for s_index, ss in enumerate(rs.scope_spans)
        for span in ss.spans
    ]
    flat.sort(key=lambda item: item[0])
    out: list[bytes] = []
    position = 0
    for size in sizes:
        chunk = flat[position : position + size]
        position += size
        if not chunk:
            break
        piece = ExportTraceServiceRequest()
        scopes: dict[tuple[int, int], Any] = {}
        for _, r_index, s_index, span in chunk:
            if (r_index, s_index) not in scopes:
                rs_src = request.resource_spans[r_index]
                rs = piece.resource_spans.add()
                rs.resource.CopyFrom(rs_src.resource)
                ss = rs.scope_spans.add()
                ss.scope.CopyFrom(rs_src.scope_spans[s_index].scope)
                scopes[(r_index, s_index)] = ss
            scopes[(r_index, s_index)].spans.append(span)
        out.append(piece.SerializeToString())
    assert position >= len(flat), "sizes must cover every span"
    return out


def span_count(body: bytes) -> int:
    request = ExportTraceServiceRequest.FromString(body)
    return sum(len(ss.spans) for rs in request.resource_spans for ss in rs.scope_spans)


def deliver(daemon: Sidecar, requests: list[bytes]) -> None:
    for body in requests:
        result = daemon.post_otlp(body)
        assert result.status == 200, result.body


def folded(run: dict[str, Any]) -> dict[str, Any]:
    """What a run says, with content amendments folded into the LLM calls they amend."""
    amendments: dict[str, dict[str, Any]] = {}
    for event in run["events"]:
        if event["event_type"] == "llm.content":
            amendments.setdefault(event["call_id"], {}).update(event["payload"])
    finish = []
    for event in run["events"]:
        if event["event_type"] == "llm.responded":
            payload = {**event["payload"], **amendments.get(event["call_id"], {})}
            finish.append(payload.get("finish_reason"))
    return {
        "summary": {
            k: run[k]
            for k in (
                "status",
                "exit_reason",
                "step_count",
                "llm_calls",
                "tool_calls",
                "retrievals",
                "errors",
                "agent_id",
            )
        },
        "steps": [(e["event_type"], e["step_index"]) for e in run["events"] if e["event_type"] != "llm.content"],
        "finish_reasons": finish,
        "tool_args": [e["payload"].get("args_hash") for e in run["events"] if e["event_type"] == "tool.called"],
        "tool_names": [e["payload"]["tool_name"] for e in run["events"] if e["event_type"] == "tool.called"],
    }


def _fresh(name: str) -> tuple[bytes, str]:
    body, mapping = with_new_trace_ids((FIXTURES / name).read_bytes())
    [run_id] = mapping.values()
    return body, run_id


@pytest.mark.parametrize("name", TRACE_FIXTURES)
def test_grouping_does_not_change_the_run(daemon: Sidecar, name: str) -> None:
    whole, whole_id = _fresh(name)
    deliver(daemon, [whole])
    reference = folded(daemon.wait_run(whole_id, lambda r: r["status"] != "running"))

    one_by_one, one_id = _fresh(name)
    n = span_count(one_by_one)
    deliver(daemon, split_requests(one_by_one, [1] * n))
    assert folded(daemon.wait_run(one_id, lambda r: r["status"] != "running")) == reference

    rng = random.Random(name)  # seeded: a failure reproduces
    grouped, grouped_id = _fresh(name)
    sizes = [rng.randint(1, 4) for _ in range(n)]
    deliver(daemon, split_requests(grouped, sizes))
    assert folded(daemon.wait_run(grouped_id, lambda r: r["status"] != "running")) == reference


@pytest.mark.parametrize("name", ["openllmetry-openai-toolloop.pb", "openllmetry-anthropic-errors.pb"])
def test_redelivery_adds_nothing(daemon: Sidecar, name: str) -> None:
    body, run_id = _fresh(name)
    deliver(daemon, [body])
    first = daemon.wait_run(run_id, lambda r: r["status"] != "running")
    deliver(daemon, [body])  # a retry of the whole request
    n = span_count(body)
    deliver(daemon, split_requests(body, [1] * n))  # and again span by span
    again = daemon.run(run_id)
    assert again["events"] == first["events"]
    assert again["step_count"] == first["step_count"]


def test_root_first_then_children_still_counts_every_call(daemon: Sidecar) -> None:
    """Out of end-time order: the root arrives in an earlier request than its children."""
    body, run_id = _fresh("otelgenai-openai-toolloop.pb")
    pieces = split_requests(body, [1] * span_count(body))
    deliver(daemon, [pieces[-1], *pieces[:-1]])
    run = daemon.wait_run(run_id, lambda r: r["llm_calls"] == 4 and r["tool_calls"] == 4)
    assert run["status"] == "completed"
    assert run["step_count"] == 8


def test_run_without_root_stalls_and_revives(make_sidecar: Any) -> None:
    daemon = make_sidecar(env={"DUNETRACE_STALL_TIMEOUT": "0.5"})
    body, run_id = _fresh("openllmetry-openai-toolloop.pb")
    pieces = split_requests(body, [1] * span_count(body))
    deliver(daemon, pieces[:-1])  # everything but the root (which ends last)
    stalled = daemon.wait_run(run_id, lambda r: r["status"] == "stalled", timeout=15)
    assert stalled["llm_calls"] == 4 and stalled["tool_calls"] == 4
    assert stalled["ended_at"] is None
    deliver(daemon, pieces[-1:])  # the root finally comes: the run is rebuilt and completed
    done = daemon.wait_run(run_id, lambda r: r["status"] == "completed", timeout=15)
    assert done["llm_calls"] == 4 and done["tool_calls"] == 4 and done["step_count"] == 8
    kinds = [e["event_type"] for e in done["events"]]
    assert kinds.count("tool.called") == 4 and kinds[0] == "run.started" and kinds[-1] == "run.completed"
