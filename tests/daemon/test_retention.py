"""store.retention_hours through the daemon: a run no longer written is removed from the API with
its signals once the retention has passed, while a run still being written keeps every event."""

from __future__ import annotations

import time
from collections.abc import Callable

from opentelemetry.exporter.otlp.proto.http.trace_exporter import OTLPSpanExporter
from opentelemetry.sdk.resources import Resource
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from prometheus_client.parser import text_string_to_metric_families

from tests.daemon.test_alerts import LOOP, send_new_run, signals_of, the_signal
from tests.sidecar import Sidecar


def expired_runs(daemon: Sidecar) -> float:
    for family in text_string_to_metric_families(daemon.api("/metrics").body.decode()):
        for sample in family.samples:
            if sample.name == "dunetrace_runs_expired_total":
                return float(sample.value)
    raise AssertionError("dunetrace_runs_expired_total is not exported")


def test_a_quiet_run_leaves_the_api_and_a_live_one_keeps_its_events(make_sidecar: Callable[..., Sidecar]) -> None:
    daemon = make_sidecar(env={"DUNETRACE_STORE_RETENTION_HOURS": "0.0005"})  # 1.8 s
    assert expired_runs(daemon) == 0
    provider = TracerProvider(resource=Resource.create({"service.name": "retention-test"}))
    provider.add_span_processor(SimpleSpanProcessor(OTLPSpanExporter(endpoint=daemon.http_url + "/v1/traces")))
    tracer = provider.get_tracer("retention-test")
    try:
        root_attributes = {"gen_ai.operation.name": "invoke_agent", "gen_ai.agent.name": "keeper"}
        with tracer.start_as_current_span("invoke_agent keeper", attributes=root_attributes) as root:
            live = format(root.get_span_context().trace_id, "032x")
            quiet, _, _ = send_new_run(daemon, LOOP)  # a real capture, ended at once: TOOL_LOOP
            assert the_signal(daemon, quiet)["failure_type"] == "TOOL_LOOP"
            # The live run gets a tool span every 0.3 s (each its own export) until the quiet
            # run is gone; its first events are soon older than the retention.
            tools = 0
            deadline = time.monotonic() + 30
            while daemon.api(f"/v1/runs/{quiet}").status != 404:
                assert time.monotonic() < deadline, "the quiet run was never removed"
                name = f"lookup_{tools % 4}"
                attributes = {"gen_ai.operation.name": "execute_tool", "gen_ai.tool.name": name}
                with tracer.start_as_current_span(f"execute_tool {name}", attributes=attributes):
                    pass
                tools += 1
                time.sleep(0.3)
            assert tools >= 6  # the live run outlived the retention by a margin

            assert signals_of(daemon, quiet) == []
            assert quiet not in {run["run_id"] for run in daemon.api_json("/v1/runs?limit=100")["runs"]}
            assert expired_runs(daemon) >= 1
            run = daemon.api_json(f"/v1/runs/{live}")
            assert run["tool_calls"] == tools
            assert [e["event_type"] for e in run["events"]].count("tool.called") == tools
    finally:
        provider.shutdown()
