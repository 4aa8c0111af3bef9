"""A long run's events are served in pages: GET /v1/runs/{id} carries the first 1,000 and a
cursor, GET /v1/runs/{id}/events the rest — one answer never holds a 100k-span run."""

from __future__ import annotations

from typing import Any

import pytest
from opentelemetry.exporter.otlp.proto.http.trace_exporter import OTLPSpanExporter
from opentelemetry.sdk.resources import Resource
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import BatchSpanProcessor

from tests.sidecar import Sidecar, wait_for

TOOL_SPANS = 700
# run.started and run.completed from the root, tool.called and tool.responded per tool span.
EVENTS = 2 + 2 * TOOL_SPANS


@pytest.fixture(scope="module")
def long_run(sidecar: Sidecar) -> tuple[Sidecar, str]:
    daemon = sidecar
    provider = TracerProvider(resource=Resource.create({"service.name": "paging-test"}))
    provider.add_span_processor(
        BatchSpanProcessor(
            OTLPSpanExporter(endpoint=daemon.http_url + "/v1/traces", timeout=10), max_export_batch_size=256
        )
    )
    tracer = provider.get_tracer("paging-test")
    with tracer.start_as_current_span(
        "invoke_agent pager", attributes={"gen_ai.operation.name": "invoke_agent"}
    ) as root:
        root.set_attribute("gen_ai.agent.name", "pager")
        trace_id = format(root.get_span_context().trace_id, "032x")
        for i in range(TOOL_SPANS):
            name = f"lookup_{i % 7}"
            attributes = {"gen_ai.operation.name": "execute_tool", "gen_ai.tool.name": name}
            with tracer.start_as_current_span(f"execute_tool {name}", attributes=attributes):
                pass
    provider.shutdown()
    wait_for(lambda: daemon.api(f"/v1/runs/{trace_id}").status == 200, what="the run")
    daemon.wait_run(trace_id, lambda r: r["tool_calls"] == TOOL_SPANS and r["status"] == "completed", timeout=30)
    return daemon, trace_id


def pages(daemon: Sidecar, trace_id: str, limit: int) -> list[dict[str, Any]]:
    events: list[dict[str, Any]] = []
    cursor: str | None = None
    for _ in range(EVENTS):  # bounded: one event per page at worst
        query = f"?limit={limit}" + (f"&cursor={cursor}" if cursor else "")
        page = daemon.api_json(f"/v1/runs/{trace_id}/events{query}")
        assert 0 < len(page["events"]) <= limit
        events += page["events"]
        cursor = page["next_cursor"]
        if cursor is None:
            return events
    raise AssertionError("the pages never ended")


def test_run_detail_carries_the_first_thousand_and_a_cursor(long_run: tuple[Sidecar, str]) -> None:
    daemon, trace_id = long_run
    detail = daemon.api_json(f"/v1/runs/{trace_id}")
    assert detail["tool_calls"] == TOOL_SPANS
    assert len(detail["events"]) == 1000
    assert detail["events"][0]["event_type"] == "run.started"
    assert detail["events_next_cursor"]
    rest = daemon.api_json(f"/v1/runs/{trace_id}/events?cursor={detail['events_next_cursor']}")
    assert rest["next_cursor"] is None
    assert len(rest["events"]) == EVENTS - 1000
    assert rest["events"][-1]["event_type"] == "run.completed"
    everything = detail["events"] + rest["events"]
    assert len({e["event_id"] for e in everything}) == EVENTS


@pytest.mark.parametrize("limit", [1000, 333, 7])
def test_pages_cover_every_event_once_in_step_order(long_run: tuple[Sidecar, str], limit: int) -> None:
    daemon, trace_id = long_run
    events = pages(daemon, trace_id, limit)
    assert len(events) == EVENTS
    assert len({e["event_id"] for e in events}) == EVENTS
    steps = [e["step_index"] for e in events]
    assert steps == sorted(steps)
    assert steps[0] == 0 and steps[-1] == TOOL_SPANS
    # each tool call is its own step: called then responded, in that order
    kinds = [e["event_type"] for e in events[1:-1]]
    assert kinds == ["tool.called", "tool.responded"] * TOOL_SPANS
    # the same order as the run detail's first page
    assert [e["event_id"] for e in events[:1000]] == [
        e["event_id"] for e in daemon.api_json(f"/v1/runs/{trace_id}")["events"]
    ]


def test_a_short_run_has_no_cursor(sidecar: Sidecar) -> None:
    daemon = sidecar
    provider = TracerProvider()
    provider.add_span_processor(BatchSpanProcessor(OTLPSpanExporter(endpoint=daemon.http_url + "/v1/traces")))
    tracer = provider.get_tracer("paging-test")
    with tracer.start_as_current_span(
        "invoke_agent short", attributes={"gen_ai.operation.name": "invoke_agent"}
    ) as root:
        trace_id = format(root.get_span_context().trace_id, "032x")
        with tracer.start_as_current_span("execute_tool t", attributes={"gen_ai.operation.name": "execute_tool"}):
            pass
    provider.shutdown()
    run = daemon.wait_run(trace_id, lambda r: r["status"] == "completed")
    assert len(run["events"]) == 4
    assert run["events_next_cursor"] is None
    page = daemon.api_json(f"/v1/runs/{trace_id}/events")
    assert [e["event_id"] for e in page["events"]] == [e["event_id"] for e in run["events"]]
    assert page["next_cursor"] is None


@pytest.mark.parametrize(
    ("query", "status", "code"),
    [
        ("?limit=0", 400, "invalid_parameter"),
        ("?limit=1001", 400, "invalid_parameter"),
        ("?limit=%C2%B2", 400, "invalid_parameter"),  # "²" is no number
        ("?cursor=not-a-cursor", 400, "invalid_cursor"),
        ("?cursor=WzEsImEiXQ", 400, "invalid_cursor"),  # [1, "a"]: a runs-list shape, not an event position
        ("?cursor=WyJhIiwxLCJiIl0", 400, "invalid_cursor"),  # ["a", 1, "b"]
    ],
)
def test_bad_page_requests_get_400(long_run: tuple[Sidecar, str], query: str, status: int, code: str) -> None:
    daemon, trace_id = long_run
    result = daemon.api(f"/v1/runs/{trace_id}/events{query}")
    assert result.status == status, result.body[:200]
    assert result.json()["error"]["code"] == code
    assert result.json()["error"]["message"].split(":")[0] in ("limit", "cursor")


def test_unknown_run_is_404(long_run: tuple[Sidecar, str]) -> None:
    daemon, _ = long_run
    result = daemon.api("/v1/runs/0123456789abcdef0123456789abcdef/events")
    assert result.status == 404
    assert result.json()["error"]["code"] == "run_not_found"
