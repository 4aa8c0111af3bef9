"""The scenario corpus (tests/testdata/scenarios) through a real daemon.

Each scenario is one agent run as OTLP/JSON. It is sent the way an exporter sends it: every span
but the root first (children end before the root), then the root. Before the root arrives the
run is still ``running`` and exactly the scenario's live signals exist; after it, the run's signals
are exactly those of expected.json (type, severity, confidence, step_index, mode and the evidence
listed there), which was derived by hand from ../shared/spec/detectors.md.

The helpers here (fresh trace ids, cutting a request into several, JSON → protobuf) are shared
with test_signal_delivery.py.
"""

from __future__ import annotations

import base64
import copy
import importlib.util
import json
import sys
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from google.protobuf import json_format
from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import ExportTraceServiceRequest

from tests.sidecar import TESTDATA, Sidecar

SCENARIOS = TESTDATA / "scenarios"
EXPECTED: dict[str, Any] = json.loads((SCENARIOS / "expected.json").read_text())["scenarios"]
# Baseline runs are delivered by the scenario that needs them, in order, right before it.
STANDALONE = [name for name, spec in EXPECTED.items() if "part_of" not in spec]
JSON = "application/json"
MISSING = "<missing>"

FAILURE_TYPES = {
    "TOOL_LOOP",
    "TOOL_THRASHING",
    "RETRY_STORM",
    "CASCADING_TOOL_FAILURE",
    "LLM_TRUNCATION_LOOP",
    "EMPTY_LLM_RESPONSE",
    "FIRST_STEP_FAILURE",
    "CONTEXT_BLOAT",
    "SLOW_STEP",
    "STEP_COUNT_INFLATION",
    "REASONING_STALL",
    "PROMPT_INJECTION_SIGNAL",
    "TOOL_AVOIDANCE",
    "RAG_EMPTY_RETRIEVAL",
    "GOAL_ABANDONMENT",
}


# --- the corpus -----------------------------------------------------------------------------


def load(name: str) -> dict[str, Any]:
    data: dict[str, Any] = json.loads((SCENARIOS / f"{name}.json").read_text())
    return data


def all_spans(doc: dict[str, Any]) -> list[dict[str, Any]]:
    return [span for rs in doc["resourceSpans"] for ss in rs["scopeSpans"] for span in ss["spans"]]


def fresh(doc: dict[str, Any]) -> tuple[dict[str, Any], str]:
    """A copy of the request with a new trace id on every span (one run), and its run id."""
    out = copy.deepcopy(doc)
    trace_id = uuid.uuid4().hex
    for span in all_spans(out):
        span["traceId"] = trace_id
    return out, str(uuid.UUID(trace_id))


def _end(span: dict[str, Any]) -> int:
    return int(span["endTimeUnixNano"])


def in_end_order(doc: dict[str, Any]) -> list[tuple[int, int, dict[str, Any]]]:
    """(resource index, scope index, span) for every span, in end-time order as a batch processor sends them."""
    flat = [
        (r_index, s_index, span)
        for r_index, rs in enumerate(doc["resourceSpans"])
        for s_index, ss in enumerate(rs["scopeSpans"])
        for span in ss["spans"]
    ]
    return sorted(flat, key=lambda item: _end(item[2]))


def request_of(doc: dict[str, Any], members: list[tuple[int, int, dict[str, Any]]]) -> dict[str, Any]:
    """A request holding ``members`` under copies of their own resource and scope."""
    piece: dict[str, Any] = {"resourceSpans": []}
    scopes: dict[tuple[int, int], list[dict[str, Any]]] = {}
    for r_index, s_index, span in members:
        if (r_index, s_index) not in scopes:
            rs_src = doc["resourceSpans"][r_index]
            ss_src = rs_src["scopeSpans"][s_index]
            spans: list[dict[str, Any]] = []
            piece["resourceSpans"].append(
                {
                    "resource": copy.deepcopy(rs_src["resource"]),
                    "scopeSpans": [{"scope": ss_src["scope"], "spans": spans}],
                }
            )
            scopes[(r_index, s_index)] = spans
        scopes[(r_index, s_index)].append(span)
    return piece


def split_sizes(doc: dict[str, Any], sizes: list[int]) -> list[bytes]:
    """Cut one request into several of ``sizes`` spans each, spans in end-time order."""
    flat = in_end_order(doc)
    out: list[bytes] = []
    position = 0
    for size in sizes:
        chunk = flat[position : position + size]
        position += size
        if not chunk:
            break
        out.append(json.dumps(request_of(doc, chunk)).encode())
    assert position >= len(flat), "sizes must cover every span"
    return out


def split_root(doc: dict[str, Any]) -> tuple[bytes, bytes]:
    """(every span but the root, the root alone): how an exporter delivers a run whose root ends last."""
    flat = in_end_order(doc)
    roots = [item for item in flat if not item[2].get("parentSpanId")]
    assert len(roots) == 1 and flat[-1] is roots[0], "one root, ending last"
    return json.dumps(request_of(doc, flat[:-1])).encode(), json.dumps(request_of(doc, flat[-1:])).encode()


def to_protobuf(doc: dict[str, Any]) -> bytes:
    """OTLP/JSON → serialized protobuf (hex ids back to base64 first, as stock json_format expects)."""
    data = copy.deepcopy(doc)
    for span in all_spans(data):
        for key in ("traceId", "spanId", "parentSpanId"):
            if span.get(key):
                span[key] = base64.b64encode(bytes.fromhex(span[key])).decode()
    request = json_format.ParseDict(data, ExportTraceServiceRequest())
    body: bytes = request.SerializeToString()
    return body


# --- talking to the daemon ----------------------------------------------------------------------


def post_json(daemon: Sidecar, body: bytes) -> None:
    result = daemon.post_otlp(body, content_type=JSON)
    assert result.status == 200, (result.status, result.body[:500])
    assert not result.json().get("partialSuccess"), result.body[:500]


def listed_signals(daemon: Sidecar, run_id: str) -> list[dict[str, Any]]:
    body = daemon.api_json(f"/v1/signals?run_id={run_id}&limit=500")
    signals: list[dict[str, Any]] = body["signals"]
    return signals


def _round(value: Any) -> Any:
    if isinstance(value, float):
        return round(value, 3)
    if isinstance(value, list):
        return [_round(v) for v in value]
    return value


def checked_view(signals: list[dict[str, Any]], expected: list[dict[str, Any]]) -> dict[str, Any]:
    """What expected.json pins down of each signal, keyed by type (numbers to 3 decimals)."""
    keys: dict[str, list[str]] = {e["failure_type"]: list(e["evidence"]) for e in expected}
    view: dict[str, Any] = {}
    for signal in signals:
        evidence_keys = keys.get(signal["failure_type"], [])
        view[signal["failure_type"]] = {
            "severity": signal["severity"],
            "confidence": _round(signal["confidence"]),
            "step_index": signal["step_index"],
            "mode": signal["mode"],
            "evidence": {key: _round(signal["evidence"].get(key, MISSING)) for key in evidence_keys},
        }
    return view


def expected_view(expected: list[dict[str, Any]]) -> dict[str, Any]:
    return {
        e["failure_type"]: {
            "severity": e["severity"],
            "confidence": e["confidence"],
            "step_index": e["step_index"],
            "mode": e["mode"],
            "evidence": e["evidence"],
        }
        for e in expected
    }


def assert_signals(signals: list[dict[str, Any]], expected: list[dict[str, Any]]) -> None:
    types = [s["failure_type"] for s in signals]
    assert len(types) == len(set(types)), f"a type fired more than once: {sorted(types)}"
    assert checked_view(signals, expected) == expected_view(expected)


def deliver_and_check(daemon: Sidecar, name: str) -> None:
    """Children first (live signals there, run still running), then the root (all signals, final status)."""
    spec = EXPECTED[name]
    doc, run_id = fresh(load(name))
    children, root = split_root(doc)

    post_json(daemon, children)
    live = [e for e in spec["signals"] if e["mode"] == "live" and not e.get("needs_root")]
    assert_signals(listed_signals(daemon, run_id), live)
    assert daemon.run(run_id)["status"] == "running"

    post_json(daemon, root)
    # The end-of-run detectors are asked once runs.end_grace_seconds have passed.
    run = daemon.judged_run(run_id)
    assert (run["status"], run["agent_id"], run["step_count"]) == (spec["status"], spec["agent"], spec["step_count"])
    assert_signals(run["signals"], spec["signals"])
    listed = listed_signals(daemon, run_id)
    assert sorted(s["signal_id"] for s in listed) == sorted(s["signal_id"] for s in run["signals"])
    assert all(s["run_id"] == run_id and s["agent_id"] == spec["agent"] for s in listed)


# --- tests ------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def scenario_daemon(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Sidecar]:
    sidecar = Sidecar(Path(tmp_path_factory.mktemp("scenarios")), env={"DUNETRACE_END_GRACE": "0.2"}).start()
    yield sidecar
    sidecar.close()


@pytest.mark.parametrize("name", STANDALONE)
def test_scenario_fires_exactly_the_expected_signals(scenario_daemon: Sidecar, name: str) -> None:
    for before in EXPECTED[name].get("after", []):  # STEP_COUNT_INFLATION: its baseline first
        deliver_and_check(scenario_daemon, before)
    deliver_and_check(scenario_daemon, name)


def _generator() -> Any:
    spec = importlib.util.spec_from_file_location("scenario_build", SCENARIOS / "build.py")
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module  # its dataclasses look their module up while being defined
    try:
        spec.loader.exec_module(module)
    finally:
        del sys.modules[spec.name]
    return module


def test_corpus_is_what_the_generator_writes() -> None:
    build = _generator()
    built = build.build_all()
    on_disk = sorted(p.stem for p in SCENARIOS.glob("*.json") if p.name != "expected.json")
    assert sorted(built) == on_disk == sorted(EXPECTED)
    for name, data in built.items():
        assert (SCENARIOS / f"{name}.json").read_text() == build.render(data), f"{name}.json is stale: run build.py"


def test_corpus_is_otlp_json_as_clients_send_it() -> None:
    for name in EXPECTED:
        doc = load(name)
        spans = all_spans(doc)
        assert len({s["traceId"] for s in spans}) == 1, name
        assert all(len(s["traceId"]) == 32 and len(s["spanId"]) == 16 for s in spans), name
        assert all(int(s["traceId"], 16) and int(s["spanId"], 16) for s in spans), name
        assert all(isinstance(s["kind"], int) and isinstance(s["startTimeUnixNano"], str) for s in spans), name
        roots = [s for s in spans if not s.get("parentSpanId")]
        assert len(roots) == 1 and spans[-1] is roots[0], f"{name}: the root comes last in the file"
        assert all(_end(s) <= _end(roots[0]) for s in spans), name
        # The protobuf round trip keeps 16/8-byte ids.
        request = ExportTraceServiceRequest.FromString(to_protobuf(doc))
        pb_spans = [s for rs in request.resource_spans for ss in rs.scope_spans for s in ss.spans]
        assert [len(s.trace_id) for s in pb_spans] == [16] * len(spans), name


def test_expected_covers_every_detector_and_clean_runs() -> None:
    fired = {e["failure_type"] for spec in EXPECTED.values() for e in spec["signals"]}
    assert fired == FAILURE_TYPES
    loops = {e["severity"] for spec in EXPECTED.values() for e in spec["signals"] if e["failure_type"] == "TOOL_LOOP"}
    assert loops == {"HIGH", "MEDIUM"}
    clean = [name for name in STANDALONE if not EXPECTED[name]["signals"]]
    assert len(clean) >= 3, clean
    for spec in EXPECTED.values():
        for e in spec["signals"]:
            assert e["why"] and e["mode"] in ("live", "end"), e
        assert all(after in EXPECTED and EXPECTED[after].get("part_of") for after in spec.get("after", []))
