"""Prometheus metrics on GET /metrics after a known workload, against a real daemon.

A fresh daemon (with API keys, to show /metrics needs none) receives exactly:
1. openllmetry-openai-toolloop over OTLP/HTTP (protobuf): 10 spans, one run, completed;
   TOOL_LOOP (HIGH) at step 6, and the one stop policy (tool_call_count gte 4) fires at step 8;
2. openllmetry-openai-errors over OTLP/gRPC: 9 spans, one run, errored; FIRST_STEP_FAILURE
   (MEDIUM, shadow in this daemon's config) at step 2; one tool call only, so the policy does not fire;
3. one garbage protobuf body over HTTP: 400;
4. a copy of openllmetry-openai-toolcall (10 spans, fresh trace id, completed, no signal) with
   2 extra spans whose span ids are bad (4 bytes; all zero): 200 with partial success, 2 rejected;
5. one empty /v1/metrics request over HTTP.

Events per run, counted by hand: toolloop 1 run.started + 4x2 LLM + 4x2 tool + 1 run.completed
+ 1 policy.triggered = 19; errors 1 + 4x2 LLM + 1x2 tool + 1 run.errored = 12; toolcall
1 + 4x2 LLM + 1x2 tool + 1 run.completed = 12 (its retrieve_documents task is not a retrieval).
"""

from __future__ import annotations

import json
import re
import subprocess
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

import pytest
from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import (
    ExportTraceServiceRequest,
    ExportTraceServiceResponse,
)
from prometheus_client.parser import text_string_to_metric_families

from tests.sidecar import HttpResult, Sidecar, fixture_bytes, http, trace_ids_in, with_new_trace_ids

KEY = "metrics-test-key-0123456789"
AUTH = {"Authorization": f"Bearer {KEY}"}
PROMTOOL = "/usr/bin/promtool"
UUID_RE = re.compile(r"[0-9a-fA-F]{8}-?[0-9a-fA-F]{4}-?[0-9a-fA-F]{4}-?[0-9a-fA-F]{4}-?[0-9a-fA-F]{12}")

Labels = tuple[tuple[str, str], ...]


@dataclass
class Workload:
    daemon: Sidecar
    run_ids: dict[str, str]  # fixture → run id
    runs: dict[str, dict[str, Any]]  # fixture → the run as GET /v1/runs/{id} answers
    text: str  # the exposition right after the workload

    def samples(self) -> dict[str, dict[Labels, float]]:
        return parse(self.text)


def api(daemon: Sidecar, method: str, path: str, body: Any = None) -> HttpResult:
    data = json.dumps(body).encode() if body is not None else None
    headers = {**AUTH, "Content-Type": "application/json"} if data is not None else AUTH
    return http(method, daemon.api_url + path, body=data, headers=headers)


def parse(text: str) -> dict[str, dict[Labels, float]]:
    """Sample name → (sorted label pairs → value)."""
    out: dict[str, dict[Labels, float]] = {}
    for family in text_string_to_metric_families(text):
        for sample in family.samples:
            out.setdefault(sample.name, {})[tuple(sorted(sample.labels.items()))] = sample.value
    return out


def scrape(daemon: Sidecar, headers: dict[str, str] | None = None) -> HttpResult:
    return http("GET", daemon.api_url + "/metrics", headers=headers)


@pytest.fixture(scope="module")
def workload(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Workload]:
    workdir = tmp_path_factory.mktemp("metrics-sidecar")
    config = workdir / "config.yaml"
    config.write_text("detectors:\n  first_step_failure: {shadow: true}\n")
    daemon = Sidecar(workdir, env={"DUNETRACE_API_KEYS": KEY}, config_file=config).start()
    try:
        created = api(
            daemon,
            "POST",
            "/v1/policies",
            {
                "name": "four tool calls",
                "agent_id": "*",
                "condition": {"trigger": "tool_call_count", "operator": "gte", "value": 4},
                "action": {"type": "stop"},
            },
        )
        assert created.status == 201, created.body

        toolloop = fixture_bytes("openllmetry-openai-toolloop.pb")
        assert daemon.post_otlp(toolloop).status == 200

        errors = fixture_bytes("openllmetry-openai-errors.pb")
        assert daemon.grpc_export(errors) == b""  # an empty ExportTraceServiceResponse: all accepted

        garbage = daemon.post_otlp(b"\xff\xff\xff not protobuf")
        assert garbage.status == 400, garbage.body

        toolcall, mapping = with_new_trace_ids(fixture_bytes("openllmetry-openai-toolcall.pb"))
        request = ExportTraceServiceRequest.FromString(toolcall)
        spans = request.resource_spans[0].scope_spans[0].spans
        assert len(spans) == 6  # the traceloop scope; the 4 LLM spans are in a second scope
        short = spans.add()
        short.CopyFrom(spans[1])
        short.span_id = b"\x01\x02\x03\x04"
        zero = spans.add()
        zero.CopyFrom(spans[2])
        zero.span_id = bytes(8)
        partial = daemon.post_otlp(request.SerializeToString())
        assert partial.status == 200, partial.body
        assert ExportTraceServiceResponse.FromString(partial.body).partial_success.rejected_spans == 2

        assert daemon.post_otlp(b"", path="/v1/metrics").status == 200

        run_ids = {
            "toolloop": trace_ids_in(toolloop)[0],
            "errors": trace_ids_in(errors)[0],
            "toolcall": next(iter(mapping.values())),
        }
        runs = {}
        for name, run_id in run_ids.items():
            result = api(daemon, "GET", f"/v1/runs/{run_id}")
            assert result.status == 200, result.body
            runs[name] = result.json()
        text = scrape(daemon).body.decode()
        yield Workload(daemon, run_ids, runs, text)
    finally:
        daemon.close()


# --- the runs the workload made (the basis of the expectations) -------------------------------


def test_the_workload_made_the_expected_runs(workload: Workload) -> None:
    runs = workload.runs
    assert {name: run["status"] for name, run in runs.items()} == {
        "toolloop": "completed",
        "errors": "errored",
        "toolcall": "completed",
    }
    assert {name: len(run["events"]) for name, run in runs.items()} == {"toolloop": 19, "errors": 12, "toolcall": 12}
    assert {name: sorted((s["failure_type"], s["severity"]) for s in run["signals"]) for name, run in runs.items()} == {
        "toolloop": [("POLICY_VIOLATION", "HIGH"), ("TOOL_LOOP", "HIGH")],
        "errors": [("FIRST_STEP_FAILURE", "MEDIUM")],
        "toolcall": [],
    }


# --- counters ---------------------------------------------------------------------------------


def test_export_requests_by_transport_signal_and_outcome(workload: Workload) -> None:
    assert workload.samples()["dunetrace_export_requests_total"] == {
        (("outcome", "accepted"), ("signal", "traces"), ("transport", "http")): 1.0,
        (("outcome", "accepted"), ("signal", "traces"), ("transport", "grpc")): 1.0,
        (("outcome", "bad_data"), ("signal", "traces"), ("transport", "http")): 1.0,
        (("outcome", "partial"), ("signal", "traces"), ("transport", "http")): 1.0,
        (("outcome", "accepted"), ("signal", "metrics"), ("transport", "http")): 1.0,
    }


def test_spans_received_and_refused(workload: Workload) -> None:
    samples = workload.samples()
    # http: 10 (toolloop) + 10 + 2 (toolcall with the 2 bad spans); grpc: 9 (errors); the garbage body has none
    assert samples["dunetrace_spans_received_total"] == {
        (("transport", "http"),): 22.0,
        (("transport", "grpc"),): 9.0,
    }
    assert samples["dunetrace_spans_refused_total"] == {(("reason", "invalid_id"), ("transport", "http")): 2.0}
    assert samples["dunetrace_metric_points_dropped_total"] == {(): 0.0}
    assert samples["dunetrace_log_records_dropped_total"] == {(): 0.0}


def test_events_stored_equals_the_events_of_the_runs(workload: Workload) -> None:
    stored = sum(len(run["events"]) for run in workload.runs.values())
    assert stored == 19 + 12 + 12
    assert workload.samples()["dunetrace_events_stored_total"] == {(): float(stored)}


def test_signals_runs_ended_and_policy_triggers(workload: Workload) -> None:
    samples = workload.samples()
    assert samples["dunetrace_signals_total"] == {
        (("failure_type", "TOOL_LOOP"), ("severity", "HIGH"), ("shadow", "false")): 1.0,
        (("failure_type", "POLICY_VIOLATION"), ("severity", "HIGH"), ("shadow", "false")): 1.0,
        # shadow in this daemon's config: counted, and an alert rule can exclude it
        (("failure_type", "FIRST_STEP_FAILURE"), ("severity", "MEDIUM"), ("shadow", "true")): 1.0,
    }
    assert samples["dunetrace_runs_ended_total"] == {
        (("outcome", "completed"),): 2.0,
        (("outcome", "errored"),): 1.0,
    }
    assert samples["dunetrace_policy_triggers_total"] == {(("action", "stop"),): 1.0}
    assert samples["dunetrace_runs_shed_total"] == {(): 0.0}


def test_histograms(workload: Workload) -> None:
    samples = workload.samples()
    # one observation per signal: 3
    assert samples["dunetrace_detection_latency_seconds_count"] == {(): 3.0}
    assert samples["dunetrace_detection_latency_seconds_bucket"][(("le", "+Inf"),)] == 3.0
    assert samples["dunetrace_detection_latency_seconds_sum"][()] > 0
    assert samples["dunetrace_store_write_seconds_count"][()] > 0
    assert samples["dunetrace_store_write_seconds_sum"][()] > 0


def test_gauges(workload: Workload) -> None:
    samples = workload.samples()
    # ended runs stay in memory until idle past the stall timeout (90 s by default)
    assert samples["dunetrace_runs_open"] == {(): 3.0}
    # every export was answered after its commit: nothing waits for the writer
    assert samples["dunetrace_store_queue_events"] == {(): 0.0}
    # the store holds the committed runs' blocks in its buffer cache, under its limit (256MB)
    assert 0 < samples["dunetrace_store_memory_bytes"][()] <= 256 * 2**20


def test_names_and_label_values(workload: Workload) -> None:
    forbidden = {*workload.run_ids.values()} | {r.replace("-", "") for r in workload.run_ids.values()}
    families = list(text_string_to_metric_families(workload.text))
    assert families
    for family in families:
        assert family.name.startswith("dunetrace_"), family.name
        for sample in family.samples:
            for key, value in sample.labels.items():
                assert not UUID_RE.search(value), (sample.name, key, value)
                assert "support_session" not in value, (sample.name, key, value)
                assert value not in forbidden, (sample.name, key, value)


# --- the endpoint -----------------------------------------------------------------------------


def test_metrics_need_no_key_but_the_api_does(workload: Workload) -> None:
    open_scrape = scrape(workload.daemon)
    assert open_scrape.status == 200
    assert open_scrape.headers["Content-Type"].startswith("text/plain")
    assert b"dunetrace_export_requests_total" in open_scrape.body
    refused = http("GET", workload.daemon.api_url + "/v1/policies")
    assert refused.status == 401
    assert refused.json()["error"]["code"] == "unauthorized"


def test_openmetrics_on_request(workload: Workload) -> None:
    result = scrape(workload.daemon, {"Accept": "application/openmetrics-text"})
    assert result.status == 200
    assert result.headers["Content-Type"].startswith("application/openmetrics-text")
    text = result.body.decode()
    assert text.endswith("# EOF\n")
    assert 'dunetrace_export_requests_total{outcome="partial",signal="traces",transport="http"} 1.0' in text
    assert "dunetrace_spans_refused_total" in text
    # the plain text format has no EOF marker
    assert "# EOF" not in workload.text


def test_promtool_accepts_the_exposition(workload: Workload) -> None:
    checked = subprocess.run(
        [PROMTOOL, "check", "metrics"], input=workload.text.encode(), capture_output=True, timeout=30
    )
    assert checked.returncode == 0, (checked.stdout, checked.stderr)


def test_metric_data_points_are_counted_as_data_points(make_sidecar: Any) -> None:
    """/v1/metrics is accepted and dropped; what is counted is the data points it carried."""
    from opentelemetry.proto.collector.metrics.v1.metrics_service_pb2 import ExportMetricsServiceRequest

    request = ExportMetricsServiceRequest()
    scope = request.resource_metrics.add().scope_metrics.add()
    usage = scope.metrics.add()
    usage.name = "gen_ai.client.token.usage"
    for value in (10, 20, 30, 40, 50):  # five points of a histogram
        usage.histogram.data_points.add().sum = value
    duration = scope.metrics.add()
    duration.name = "gen_ai.client.operation.duration"
    duration.gauge.data_points.add().as_double = 1.5  # and one of a gauge
    daemon = make_sidecar()
    assert daemon.post_otlp(request.SerializeToString(), path="/v1/metrics").status == 200
    assert parse(daemon.api("/metrics").body.decode())["dunetrace_metric_points_dropped_total"] == {(): 6.0}
