"""Two parentless spans in one trace build one run, the same in any order (issue 11, finding 8).

The rule (README, "Runs"): the run begins at the earliest parentless span's start; its end,
status and exit reason are those of the parentless span that ended last (an error wins a tie);
every span's LLM, tool and retrieval role counts as usual.
"""

from __future__ import annotations

import random
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest
from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import ExportTraceServiceRequest
from opentelemetry.proto.trace.v1.trace_pb2 import Status

from tests.receiver.test_splits import request_of, shuffled_pieces
from tests.sidecar import FIXTURES, Sidecar

TOOLLOOP = "openllmetry-openai-toolloop.pb"
WORKFLOW_START = 1795759344288833639  # the capture's root: support_session_toolloop.workflow
WORKFLOW_END = 1795759344358103910
MS = 1_000_000


def iso(ns: int) -> str:
    seconds, rest = divmod(ns, 1_000_000_000)
    return datetime.fromtimestamp(seconds, tz=UTC).strftime("%Y-%m-%dT%H:%M:%S") + f".{rest // 1000:06d}Z"


def with_second_root(start_ns: int, end_ns: int, error: bool) -> bytes:
    """The capture plus another parentless span in its trace (a hook the app runs on its own).

    A trace's first span to reach the sidecar must be a GenAI one (README, "Runs"): the hook
    is an OpenLLMetry workflow span, as the capture's root is."""
    request = ExportTraceServiceRequest.FromString((FIXTURES / TOOLLOOP).read_bytes())
    [(scope, root)] = [
        (ss, span)
        for rs in request.resource_spans
        for ss in rs.scope_spans
        for span in ss.spans
        if not span.parent_span_id
    ]
    second = scope.spans.add()
    second.attributes.extend(root.attributes)  # an OpenLLMetry workflow span, as the root is
    second.trace_id = root.trace_id
    second.span_id = bytes.fromhex("5ec0d5ec0d5ec0d5")
    second.name = "post_session.workflow"
    second.kind = 1
    second.start_time_unix_nano, second.end_time_unix_nano = start_ns, end_ns
    if error:
        second.status.code = Status.STATUS_CODE_ERROR
    return request.SerializeToString()


def summary(daemon: Sidecar, run_id: str) -> dict[str, Any]:
    run: dict[str, Any] = daemon.judged_run(run_id)
    keys = ("status", "exit_reason", "started_at", "ended_at", "llm_calls", "tool_calls", "errors", "step_count")
    return {k: run[k] for k in keys} | {"signals": sorted(s["failure_type"] for s in run["signals"])}


def deliveries(body: bytes, seed: int) -> list[list[bytes]]:
    """One request; the second root first, then the rest; the rest, then it; shuffled pieces."""
    request = ExportTraceServiceRequest.FromString(body)
    flat = [(rs, ss, span) for rs in request.resource_spans for ss in rs.scope_spans for span in ss.spans]
    second = [t for t in flat if t[2].name == "post_session.workflow"]
    rest = [t for t in flat if t[2].name != "post_session.workflow"]
    rng = random.Random(seed)
    return [
        [body],
        [request_of(second), request_of(rest)],
        [request_of(rest), request_of(second)],
        *(shuffled_pieces(body, rng) for _ in range(3)),
    ]


@pytest.fixture(scope="module")
def daemon(tmp_path_factory: pytest.TempPathFactory) -> Any:
    sidecar = Sidecar(Path(tmp_path_factory.mktemp("two-roots")), env={"DUNETRACE_END_GRACE": "0.2"}).start()
    yield sidecar
    sidecar.close()


CASES = {
    # after the session, a hook fails: it ended last, so the run errored, and ended with it
    "later root errors": (
        (WORKFLOW_END + 1 * MS, WORKFLOW_END + 2 * MS, True),
        {"status": "errored", "exit_reason": "error", "started_at": iso(WORKFLOW_START)},
        WORKFLOW_END + 2 * MS,
    ),
    # a hook inside the session fails, but the session ended after it
    "earlier root errors": (
        (WORKFLOW_START + 1 * MS, WORKFLOW_START + 2 * MS, True),
        {"status": "completed", "exit_reason": "completed", "started_at": iso(WORKFLOW_START)},
        WORKFLOW_END,
    ),
    # a span that began before the session: the run began with it
    "root that starts first": (
        (WORKFLOW_START - 5 * MS, WORKFLOW_START - 4 * MS, False),
        {"status": "completed", "exit_reason": "completed", "started_at": iso(WORKFLOW_START - 5 * MS)},
        WORKFLOW_END,
    ),
}


@pytest.mark.parametrize("case", list(CASES))
def test_two_roots_build_one_run_in_any_order(daemon: Sidecar, case: str) -> None:
    (start, end, error), expected, ended_ns = CASES[case]
    body = with_second_root(start, end, error)
    seen = []
    for seed, pieces in enumerate(deliveries(body, seed=len(case))):
        new_id = random.Random(f"{case}:{seed}").randbytes(16)  # a fresh run per delivery
        renamed = []
        for piece in pieces:
            request = ExportTraceServiceRequest.FromString(piece)
            for span in (s for rs in request.resource_spans for ss in rs.scope_spans for s in ss.spans):
                span.trace_id = new_id
            renamed.append(request.SerializeToString())
        run_id = new_id.hex()
        for piece in renamed:
            assert daemon.post_otlp(piece).status == 200
        got = summary(daemon, run_id)
        assert {k: got[k] for k in expected} == expected, (case, seed)
        assert got["ended_at"] == iso(ended_ns), (case, seed)
        assert got["tool_calls"] == 4 and got["llm_calls"] == 4, (case, seed)  # the hook is no call
        seen.append(got)
    assert all(s == seen[0] for s in seen), [{k: (s[k], seen[0][k]) for k in s if s[k] != seen[0][k]} for s in seen]
