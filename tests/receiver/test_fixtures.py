"""Every captured fixture family, sent to the daemon over its real transport, becomes the run we
expect. The expected numbers are written down here from the scenarios the captures recorded
(tests/testdata/otlp/README.md), not derived from the translator:

- toolcall: a retrieval, a plain RAG answer, then get_weather requested → run → answered;
  OpenAI files add a third, streamed answer. OpenLLMetry's retrieval is a plain task span
  (no retrieval kind without a vector-DB instrumentation), so it counts no retrieval.
- toolloop: lookup_order requested and run four times with identical arguments; the agent
  stops at max_steps with no error anywhere, the last response still asking for the tool.
- errors: fetch_report raises (tool failure), the model apologises; a max_tokens=16 answer
  is truncated; a provider 429 propagates to the root. Legacy OpenLLMetry's Anthropic
  instrumentation emitted no span at all for the 429 call.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from tests.sidecar import Sidecar, event_kinds, fixture_bytes, trace_ids_in


@dataclass(frozen=True)
class Expected:
    agent_id: str
    llm_calls: int
    tool_calls: int
    retrievals: int
    errors: int
    finish_reasons: tuple[str | None, ...]
    status: str
    exit_reason: str


# The openllmetry / otelgenai captures run @agent "support_agent" inside per-scenario workflows
# (support_session_*): an agent name beats a workflow name (README, "What makes a run").
OI = "fixture-agent-openinference"  # OpenInference: no agent name, no AGENT root: service.name decides
TOOLCALL_OPENAI = ("stop", "tool_calls", "stop", "stop")
TOOLCALL_ANTHROPIC = ("stop", "tool_calls", "stop")
LOOP = ("tool_calls",) * 4
ERRORS = ("tool_calls", "stop", "length", None)

EXPECTED: dict[str, Expected] = {
    "openllmetry-openai-toolcall": Expected("support_agent", 4, 1, 0, 0, TOOLCALL_OPENAI, "completed", "final_answer"),
    "openllmetry-legacy-openai-toolcall": Expected(
        "support_agent", 4, 1, 0, 0, TOOLCALL_OPENAI, "completed", "final_answer"
    ),
    "openllmetry-events-openai-toolcall.traces": Expected(
        "support_agent", 4, 1, 0, 0, TOOLCALL_OPENAI, "completed", "final_answer"
    ),
    "otelgenai-openai-toolcall": Expected("support_agent", 4, 1, 1, 0, TOOLCALL_OPENAI, "completed", "final_answer"),
    "openinference-openai-toolcall": Expected(OI, 4, 1, 1, 0, TOOLCALL_OPENAI, "completed", "final_answer"),
    "openllmetry-anthropic-toolcall": Expected(
        "support_agent", 3, 1, 0, 0, TOOLCALL_ANTHROPIC, "completed", "final_answer"
    ),
    "openllmetry-legacy-anthropic-toolcall": Expected(
        "support_agent", 3, 1, 0, 0, TOOLCALL_ANTHROPIC, "completed", "final_answer"
    ),
    "otelgenai-anthropic-toolcall": Expected(
        "support_agent", 3, 1, 1, 0, TOOLCALL_ANTHROPIC, "completed", "final_answer"
    ),
    "openinference-anthropic-toolcall": Expected(OI, 3, 1, 1, 0, TOOLCALL_ANTHROPIC, "completed", "final_answer"),
    "openllmetry-openai-toolloop": Expected("support_agent", 4, 4, 0, 0, LOOP, "completed", "completed"),
    "openllmetry-legacy-openai-toolloop": Expected("support_agent", 4, 4, 0, 0, LOOP, "completed", "completed"),
    "otelgenai-openai-toolloop": Expected("support_agent", 4, 4, 0, 0, LOOP, "completed", "completed"),
    "openinference-openai-toolloop": Expected(OI, 4, 4, 0, 0, LOOP, "completed", "completed"),
    "openllmetry-openai-errors": Expected("support_agent", 4, 1, 0, 2, ERRORS, "errored", "error"),
    "openllmetry-legacy-openai-errors": Expected("support_agent", 4, 1, 0, 2, ERRORS, "errored", "error"),
    "otelgenai-openai-errors": Expected("support_agent", 4, 1, 0, 2, ERRORS, "errored", "error"),
    "openinference-openai-errors": Expected(OI, 4, 1, 0, 2, ERRORS, "errored", "error"),
    "openllmetry-anthropic-errors": Expected("support_agent", 4, 1, 0, 2, ERRORS, "errored", "error"),
    "otelgenai-anthropic-errors": Expected("support_agent", 4, 1, 0, 2, ERRORS, "errored", "error"),
    "openinference-anthropic-errors": Expected(OI, 4, 1, 0, 2, ERRORS, "errored", "error"),
    "openllmetry-legacy-anthropic-errors": Expected(
        "support_agent", 3, 1, 0, 1, ("tool_calls", "stop", "length"), "errored", "error"
    ),
}
# Transport variants of one capture: same run, other wire.
VARIANTS = {
    "openllmetry-grpc-openai-toolloop": "openllmetry-openai-toolloop",
    "openllmetry-gzip-openai-toolloop": "openllmetry-openai-toolloop",
}


@pytest.fixture(scope="module")
def daemons(tmp_path_factory: pytest.TempPathFactory) -> Iterator[dict[str, Sidecar]]:
    """One daemon per encoding, so the JSON copy of a capture is never deduplicated against
    its protobuf twin (both carry the same trace id)."""
    started: dict[str, Sidecar] = {}

    class Lazy(dict):  # type: ignore[type-arg]
        def __missing__(self, key: str) -> Sidecar:
            started[key] = self[key] = Sidecar(Path(tmp_path_factory.mktemp(f"fixtures-{key}"))).start()
            return started[key]

    yield Lazy()
    for sidecar in started.values():
        sidecar.close()


@pytest.fixture(scope="module")
def daemon(daemons: dict[str, Sidecar]) -> Sidecar:
    return daemons["protobuf"]


def _send(daemon: Sidecar, name: str, encoding: str) -> str:
    """Send one capture as its producer did (or as OTLP/JSON); returns its run id."""
    if name == "openllmetry-gzip-openai-toolloop":
        raw = fixture_bytes(name + ".pb.gz")
        result = daemon.post_otlp(raw, extra_headers={"Content-Encoding": "gzip"})
        assert result.status == 200, result.body
        import gzip

        return trace_ids_in(gzip.decompress(raw))[0]
    pb = fixture_bytes(name + ".pb")
    [run_id] = trace_ids_in(pb)
    if name.startswith("openllmetry-grpc-"):
        daemon.grpc_export(pb)
    elif encoding == "json":
        result = daemon.post_otlp(fixture_bytes(name + ".json"), content_type="application/json")
        assert result.status == 200, result.body
        assert result.headers["Content-Type"].startswith("application/json")
    else:
        result = daemon.post_otlp(pb)
        assert result.status == 200, result.body
        assert result.headers["Content-Type"].startswith("application/x-protobuf")
    return run_id


def _check(run: dict, expected: Expected) -> None:
    assert run["agent_id"] == expected.agent_id
    assert run["status"] == expected.status
    assert run["exit_reason"] == expected.exit_reason
    assert run["llm_calls"] == expected.llm_calls
    assert run["tool_calls"] == expected.tool_calls
    assert run["retrievals"] == expected.retrievals
    assert run["errors"] == expected.errors
    kinds = Counter(event_kinds(run))
    assert kinds["llm.called"] == kinds["llm.responded"] == expected.llm_calls
    assert kinds["tool.called"] == expected.tool_calls
    assert kinds["retrieval.called"] == expected.retrievals
    assert kinds["run.started"] == 1
    assert kinds["run.completed" if expected.status == "completed" else "run.errored"] == 1
    finish = tuple(e["payload"].get("finish_reason") for e in run["events"] if e["event_type"] == "llm.responded")
    assert finish == expected.finish_reasons
    # Steps: run.started is 0, each call opens the next step, the end carries the last.
    steps = [e["step_index"] for e in run["events"]]
    assert steps[0] == 0 and run["events"][0]["event_type"] == "run.started"
    assert max(steps) == run["step_count"] == expected.llm_calls + expected.tool_calls + expected.retrievals
    assert run["events"][-1]["event_type"] in ("run.completed", "run.errored")
    assert run["events"][-1]["payload"]["total_steps"] == run["step_count"]


@pytest.mark.parametrize("name", sorted(EXPECTED))
@pytest.mark.parametrize("encoding", ["protobuf", "json"])
def test_fixture_translates_to_expected_run(daemons: dict[str, Sidecar], name: str, encoding: str) -> None:
    daemon = daemons[encoding]
    run_id = _send(daemon, name, encoding)
    _check(daemon.wait_run(run_id), EXPECTED[name])


@pytest.mark.parametrize("name", sorted(VARIANTS))
def test_transport_variants(daemons: dict[str, Sidecar], name: str) -> None:
    daemon = daemons[name]  # its own daemon: the variants share the trace id of their twin
    run_id = _send(daemon, name, "protobuf")
    _check(daemon.wait_run(run_id), EXPECTED[VARIANTS[name]])


def test_toolloop_calls_carry_identical_argument_hashes(daemon: Sidecar) -> None:
    run = daemon.wait_run(_send(daemon, "otelgenai-openai-toolloop", "protobuf"))
    called = [e["payload"] for e in run["events"] if e["event_type"] == "tool.called"]
    assert [c["tool_name"] for c in called] == ["lookup_order"] * 4
    assert len({c["args_hash"] for c in called}) == 1
    assert called[0]["args_hash"].startswith("sha256:") and len(called[0]["args_hash"]) == 7 + 64


def test_failed_tool_is_a_failed_tool_response(daemon: Sidecar) -> None:
    run = daemon.wait_run(_send(daemon, "openllmetry-legacy-anthropic-errors", "protobuf"))
    [failed] = [e["payload"] for e in run["events"] if e["event_type"] == "tool.responded"]
    assert failed["tool_name"] == "fetch_report"
    assert failed["success"] is False
    assert failed["error_type"] == "ConnectionError"
    assert failed["error_hash"].startswith("sha256:")
    errored = run["events"][-1]["payload"]
    assert errored["error_type"] == "anthropic.RateLimitError"
