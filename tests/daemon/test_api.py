"""The HTTP API against a real daemon: listing, filters, paging, run-id forms, agents, the one
error shape, bearer auth, health, the OpenAPI document and the non-loopback rule at startup.

Runs are made by POSTing captured fixtures (tests/testdata/otlp/). The expected start times,
agents and statuses are written down from the captures (root span start, workflow name, error
status), not read back from the daemon.
"""

from __future__ import annotations

import base64
import json
import os
import re
import subprocess
import sys
import time
from collections.abc import Callable, Mapping
from http.client import HTTPConnection
from pathlib import Path
from typing import Any
from urllib.parse import quote

import pytest
from jsonschema import Draft202012Validator
from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import ExportTraceServiceRequest

from dunetrace_sidecar.api import ROUTES, build_api_app
from store.duckdb_store import DuckStore
from tests.sidecar import HttpResult, Sidecar, fixture_bytes, http, trace_ids_in, wait_for, with_new_trace_ids

KEY1 = "k1-aaaaaaaaaaaaaaaa"
KEY2 = "k2-bbbbbbbbbbbbbbbb"
JSON = {"Content-Type": "application/json"}

TOOLCALL = "openllmetry-openai-toolcall"
ERRORS = "openllmetry-openai-errors"
TOOLLOOP = "otelgenai-openai-toolloop"
OPENINFERENCE = "openinference-openai-toolcall"

# name → (agent_id, status, started_at) of the run each capture makes.
RUNS: dict[str, tuple[str, str, str]] = {
    TOOLCALL: ("support_session_toolcall", "completed", "2026-11-27T06:02:15.898902Z"),
    ERRORS: ("support_session_errors", "errored", "2026-11-27T06:02:32.013268Z"),
    TOOLLOOP: ("support_session_toolloop", "completed", "2026-11-27T06:09:18.921494Z"),
    OPENINFERENCE: ("fixture-agent-openinference", "completed", "2026-11-27T06:09:43.014973Z"),
}
NEWEST_FIRST = [OPENINFERENCE, TOOLLOOP, ERRORS, TOOLCALL]
SEND_ORDER = [ERRORS, OPENINFERENCE, TOOLCALL, TOOLLOOP]  # not the start order, on purpose
NAMED_UP_FRONT = (TOOLCALL, ERRORS, TOOLLOOP)

Sidecars = Callable[..., Sidecar]


# --- helpers ---------------------------------------------------------------------------------------


def settled(daemon: Sidecar, run_id: str) -> dict[str, Any]:
    run: dict[str, Any] = daemon.wait_run(run_id, lambda r: r["status"] != "running")
    return run


def named_up_front(body: bytes, agent_name: str) -> bytes:
    """The request with its agent named by a ``gen_ai.agent.name`` resource attribute. The
    captures' workflows share one agent name (support_agent); these tests need three agents."""
    request = ExportTraceServiceRequest.FromString(body)
    for rs in request.resource_spans:
        attribute = rs.resource.attributes.add()
        attribute.key = "gen_ai.agent.name"
        attribute.value.string_value = agent_name
    return request.SerializeToString()


def send(daemon: Sidecar, name: str, copy: bool = False) -> str:
    """POST one capture (or a copy with fresh trace ids), its agent named as EXPECTED says;
    returns the run id once stored."""
    body = fixture_bytes(name + ".pb")
    if name in NAMED_UP_FRONT:
        body = named_up_front(body, RUNS[name][0])
    if copy:
        body, _ = with_new_trace_ids(body)
    [run_id] = trace_ids_in(body)
    result = daemon.post_otlp(body)
    assert result.status == 200, result.body
    settled(daemon, run_id)
    return run_id


def send_keyed(daemon: Sidecar, name: str, key: str) -> str:
    """As send(), for a daemon whose API needs a key (the OTLP receiver never does)."""
    body = fixture_bytes(name + ".pb")
    [run_id] = trace_ids_in(body)
    assert daemon.post_otlp(body).status == 200

    def stored() -> bool:
        return daemon.api(f"/v1/runs/{run_id}", headers={"Authorization": f"Bearer {key}"}).status == 200

    wait_for(stored, what=f"run {run_id}")
    return run_id


def send_all(daemon: Sidecar) -> dict[str, str]:
    return {name: send(daemon, name) for name in SEND_ORDER}


def ids(body: Mapping[str, Any]) -> list[str]:
    return [run["run_id"] for run in body["runs"]]


def assert_error(result: HttpResult, status: int, code: str) -> dict[str, str]:
    """The one error shape: {"error": {"code": str, "message": str}}, as JSON."""
    assert result.status == status, (result.status, result.body[:300])
    assert result.headers["Content-Type"].split(";")[0].strip() == "application/json"
    body = result.json()
    assert isinstance(body, dict) and set(body) == {"error"}, body
    error = body["error"]
    assert isinstance(error, dict) and set(error) == {"code", "message"}, body
    assert isinstance(error["code"], str) and isinstance(error["message"], str)
    assert error["message"].strip() != ""
    assert error["code"] == code, body
    return error


def daemon_env(**overrides: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("DUNETRACE_", "OTEL_", "TRACELOOP_"))}
    env.update(
        {
            "DUNETRACE_OTLP_GRPC_ENDPOINT": "127.0.0.1:0",
            "DUNETRACE_OTLP_HTTP_ENDPOINT": "127.0.0.1:0",
            "DUNETRACE_API_ENDPOINT": "127.0.0.1:0",
            "DUNETRACE_DB_PATH": ":memory:",
            "PYTHONUNBUFFERED": "1",
        }
    )
    env.update(overrides)
    return env


def raw_get(daemon: Sidecar, path: str, authorization: bytes) -> tuple[int, bytes]:
    """A GET whose Authorization header carries exactly these bytes."""
    host, port = daemon.addresses["api"].rsplit(":", 1)
    connection = HTTPConnection(host, int(port), timeout=30)
    try:
        connection.putrequest("GET", path)
        connection.putheader("Authorization", authorization)
        connection.endheaders()
        response = connection.getresponse()
        return response.status, response.read()
    finally:
        connection.close()


# --- GET /v1/runs: order and filters ------------------------------------------------------------------


def test_runs_are_listed_newest_first(make_sidecar: Sidecars) -> None:
    daemon = make_sidecar()
    assert daemon.api_json("/v1/runs") == {"runs": [], "next_cursor": None}
    run_ids = send_all(daemon)
    body = daemon.api_json("/v1/runs")
    assert ids(body) == [run_ids[name] for name in NEWEST_FIRST]
    assert [r["started_at"] for r in body["runs"]] == [RUNS[name][2] for name in NEWEST_FIRST]
    assert [r["agent_id"] for r in body["runs"]] == [RUNS[name][0] for name in NEWEST_FIRST]
    assert [r["status"] for r in body["runs"]] == [RUNS[name][1] for name in NEWEST_FIRST]
    assert body["next_cursor"] is None
    for run in body["runs"]:
        assert run["trace_id"] == run["run_id"].replace("-", "")
        assert "events" not in run


def test_run_filters(make_sidecar: Sidecars) -> None:
    daemon = make_sidecar()
    run_ids = send_all(daemon)

    def listed(query: str) -> list[str]:
        return ids(daemon.api_json("/v1/runs?" + query))

    def expect(*names: str) -> list[str]:
        return [run_ids[name] for name in names]

    assert listed("agent_id=support_session_errors") == expect(ERRORS)
    assert listed("agent_id=fixture-agent-openinference") == expect(OPENINFERENCE)
    assert listed("agent_id=no-such-agent") == []
    assert listed("status=errored") == expect(ERRORS)
    assert listed("status=completed") == expect(OPENINFERENCE, TOOLLOOP, TOOLCALL)
    assert listed("status=running") == []
    assert listed("status=completed&agent_id=support_session_errors") == []

    # 1795759700 is 2026-11-27T06:08:20Z: between the two OpenLLMetry runs and the two later ones.
    assert listed("since=1795759700") == expect(OPENINFERENCE, TOOLLOOP)
    assert listed("until=1795759700") == expect(ERRORS, TOOLCALL)
    assert listed("since=2026-11-27T06:08:20Z") == expect(OPENINFERENCE, TOOLLOOP)
    assert listed("until=2026-11-27T06:08:20Z") == expect(ERRORS, TOOLCALL)
    assert listed("since=" + quote("2026-11-27T07:08:20+01:00")) == expect(OPENINFERENCE, TOOLLOOP)
    assert listed("until=" + quote("2026-11-27T06:08:20.000+00:00")) == expect(ERRORS, TOOLCALL)
    assert listed("since=1795759700.5") == expect(OPENINFERENCE, TOOLLOOP)
    # A window: 06:02:20 to 06:09:30.
    assert listed("since=2026-11-27T06:02:20Z&until=2026-11-27T06:09:30Z") == expect(TOOLLOOP, ERRORS)
    assert listed("since=1795759340&until=1795759770") == expect(TOOLLOOP, ERRORS)
    assert listed("since=1795759340&until=1795759770&status=errored") == expect(ERRORS)
    # since is inclusive and until exclusive, with the started_at the API itself reports.
    started = RUNS[ERRORS][2]
    assert run_ids[ERRORS] in listed("since=" + started)
    assert run_ids[ERRORS] not in listed("until=" + started)
    assert listed(f"since={started}&until=2026-11-27T06:02:33Z") == expect(ERRORS)
    assert listed("since=2026-11-28T00:00:00Z") == []
    assert listed("until=2026-11-27T00:00:00Z") == []


def test_lowercase_rfc3339_times_are_accepted(make_sidecar: Sidecars) -> None:
    daemon = make_sidecar()
    run_ids = send_all(daemon)
    # Was a bug (api.parse_time_ns): RFC 3339 §5.6 allows "t" and "z" in lower case; only "Z" is
    # translated before datetime.fromisoformat, so these get 400 invalid_parameter.
    result = daemon.api("/v1/runs?since=2026-11-27t06:08:20z")
    assert result.status == 200, result.body
    assert ids(result.json()) == [run_ids[OPENINFERENCE], run_ids[TOOLLOOP]]


@pytest.mark.parametrize(
    "query",
    ["status=bogus", "status=", "since=abc", "until=yesterday", "since=2026-13-01T00:00:00Z", "since=nan"],
)
def test_bad_filter_is_400(make_sidecar: Sidecars, query: str) -> None:
    daemon = make_sidecar()
    assert_error(daemon.api("/v1/runs?" + query), 400, "invalid_parameter")


@pytest.mark.parametrize("query", ["since=inf", "until=-inf", "since=1e30"])
def test_out_of_range_time_is_400(make_sidecar: Sidecars, query: str) -> None:
    daemon = make_sidecar()
    # Was a bug (api.parse_time_ns): Unix seconds are not range-checked: "inf" raises OverflowError and
    # 1e30 overflows DuckDB's BIGINT comparison, so these answer 500 "internal" instead of 400.
    assert_error(daemon.api("/v1/runs?" + query), 400, "invalid_parameter")


# --- limit and paging ---------------------------------------------------------------------------------


@pytest.mark.parametrize("limit", ["0", "501", "x", "-1", "", "2.5", "1e2"])
def test_limit_out_of_bounds_is_400(make_sidecar: Sidecars, limit: str) -> None:
    daemon = make_sidecar()
    error = assert_error(daemon.api(f"/v1/runs?limit={limit}"), 400, "invalid_parameter")
    assert "limit" in error["message"]


def test_limit_bounds_are_inclusive(make_sidecar: Sidecars) -> None:
    daemon = make_sidecar()
    run_ids = send_all(daemon)
    one = daemon.api_json("/v1/runs?limit=1")
    assert ids(one) == [run_ids[OPENINFERENCE]]
    assert isinstance(one["next_cursor"], str) and one["next_cursor"]
    assert ids(daemon.api_json("/v1/runs?limit=500")) == [run_ids[name] for name in NEWEST_FIRST]
    assert ids(daemon.api_json("/v1/runs?limit=3")) == [run_ids[name] for name in NEWEST_FIRST[:3]]


def test_paging_walks_every_run_exactly_once(make_sidecar: Sidecars) -> None:
    daemon = make_sidecar()
    run_ids = send_all(daemon)
    # Three copies of one capture: four runs with the same start time, so the cursor must break ties.
    copies = [send(daemon, TOOLCALL, copy=True) for _ in range(3)]
    everything = ids(daemon.api_json("/v1/runs?limit=500"))
    assert len(everything) == 7
    assert everything[:3] == [run_ids[OPENINFERENCE], run_ids[TOOLLOOP], run_ids[ERRORS]]
    assert set(everything[3:]) == {run_ids[TOOLCALL], *copies}

    pages: list[list[str]] = []
    cursors: list[str | None] = []
    query = "/v1/runs?limit=2"
    while True:
        body = daemon.api_json(query)
        pages.append(ids(body))
        cursors.append(body["next_cursor"])
        if body["next_cursor"] is None:
            break
        assert len(pages) < 10, "paging does not end"
        query = "/v1/runs?limit=2&cursor=" + quote(body["next_cursor"])
    walked = [run_id for page in pages for run_id in page]
    assert [len(page) for page in pages] == [2, 2, 2, 1]
    assert cursors[-1] is None
    assert all(isinstance(c, str) and c for c in cursors[:-1])
    assert len(walked) == len(set(walked)) == 7
    assert walked == everything


def test_paging_with_a_filter(make_sidecar: Sidecars) -> None:
    daemon = make_sidecar()
    run_ids = send_all(daemon)
    copies = [send(daemon, TOOLCALL, copy=True) for _ in range(2)]
    walked: list[str] = []
    query = "/v1/runs?agent_id=support_session_toolcall&limit=2"
    for _ in range(10):
        body = daemon.api_json(query)
        walked += ids(body)
        if body["next_cursor"] is None:
            break
        query = "/v1/runs?agent_id=support_session_toolcall&limit=2&cursor=" + quote(body["next_cursor"])
    else:
        raise AssertionError("paging does not end")
    assert len(walked) == len(set(walked)) == 3
    assert set(walked) == {run_ids[TOOLCALL], *copies}


def _b64(text: str) -> str:
    return base64.urlsafe_b64encode(text.encode()).decode().rstrip("=")


@pytest.mark.parametrize(
    "cursor",
    [
        "garbage",
        "!!!",
        "",
        _b64("abc:def"),
        _b64("123:not-a-uuid"),
        _b64("1795759335898902085"),
        _b64("x:c948936f-ab6b-60ef-fe13-376fabe2e8e6"),
    ],
)
def test_garbage_cursor_is_400(make_sidecar: Sidecars, cursor: str) -> None:
    daemon = make_sidecar()
    assert_error(daemon.api("/v1/runs?cursor=" + quote(cursor)), 400, "invalid_cursor")


def test_cursor_with_out_of_range_time_is_400(make_sidecar: Sidecars) -> None:
    daemon = make_sidecar()
    send(daemon, TOOLCALL)
    cursor = _b64("1" + "0" * 40 + ":c948936f-ab6b-60ef-fe13-376fabe2e8e6")
    # Was a bug (api.decode_cursor): the time part is any int; one beyond 128 bits makes DuckDB raise
    # InvalidInputException, answered 500 "internal" instead of 400 invalid_cursor.
    assert_error(daemon.api("/v1/runs?cursor=" + cursor), 400, "invalid_cursor")


# --- GET /v1/runs/{run_id} ----------------------------------------------------------------------------


def test_run_by_uuid_and_by_trace_id(make_sidecar: Sidecars) -> None:
    daemon = make_sidecar()
    run_id = send(daemon, TOOLCALL)
    assert run_id == "c948936f-ab6b-60ef-fe13-376fabe2e8e6"
    by_uuid = daemon.api_json("/v1/runs/c948936f-ab6b-60ef-fe13-376fabe2e8e6")
    by_hex = daemon.api_json("/v1/runs/c948936fab6b60effe13376fabe2e8e6")
    by_upper_hex = daemon.api_json("/v1/runs/C948936FAB6B60EFFE13376FABE2E8E6")
    assert by_uuid == by_hex == by_upper_hex
    assert by_uuid["run_id"] == "c948936f-ab6b-60ef-fe13-376fabe2e8e6"
    assert by_uuid["trace_id"] == "c948936fab6b60effe13376fabe2e8e6"
    assert by_uuid["agent_id"] == "support_session_toolcall"
    assert by_uuid["started_at"] == "2026-11-27T06:02:15.898902Z"
    assert by_uuid["events"][0]["event_type"] == "run.started"
    assert by_uuid["events"][-1]["event_type"] == "run.completed"
    assert by_uuid["signals"] == []
    listed = daemon.api_json("/v1/runs")["runs"][0]
    assert {
        k: v
        for k, v in by_uuid.items()
        if k not in ("events", "events_next_cursor", "signals", "not_seen", "end_pending")
    } == listed
    assert by_uuid["not_seen"] == []  # content, tool names and the root were all sent


def test_unknown_run_is_404(make_sidecar: Sidecars) -> None:
    daemon = make_sidecar()
    send(daemon, TOOLCALL)
    assert_error(daemon.api("/v1/runs/00000000-0000-4000-8000-000000000000"), 404, "run_not_found")
    assert_error(daemon.api("/v1/runs/00000000000040008000000000000000"), 404, "run_not_found")


@pytest.mark.parametrize(
    "run_id",
    [
        "xyz",
        "c948936fab6b60effe13376fabe2e8e",  # 31 hex
        "c948936fab6b60effe13376fabe2e8e6a",  # 33 hex
        "g948936f-ab6b-60ef-fe13-376fabe2e8e6",
        "c948936f-ab6b60ef-fe13-376fabe2e8e6",
        "urn:uuid:c948936f-ab6b-60ef-fe13-376fabe2e8e6",
    ],
)
def test_malformed_run_id_is_400(make_sidecar: Sidecars, run_id: str) -> None:
    daemon = make_sidecar()
    assert_error(daemon.api("/v1/runs/" + quote(run_id)), 400, "invalid_run_id")


# --- GET /v1/agents -------------------------------------------------------------------------------------


def test_agents_with_run_count_and_last_seen(make_sidecar: Sidecars) -> None:
    daemon = make_sidecar()
    assert daemon.api_json("/v1/agents") == {"agents": []}
    send_all(daemon)
    send(daemon, TOOLCALL, copy=True)
    send(daemon, TOOLCALL, copy=True)
    send(daemon, ERRORS, copy=True)
    # last_seen: the end of each agent's latest run (its root span's end in the capture).
    # signal_count: each errors run fails a tool at step 2 (FIRST_STEP_FAILURE); the tool loop
    # repeats lookup_order (TOOL_LOOP); the tool-call captures are clean. failed_runs: runs with a
    # signal or an error — both errors runs, the loop, none of the clean ones.
    assert daemon.api_json("/v1/agents") == {
        "agents": [
            {
                "agent_id": "fixture-agent-openinference",
                "signal_count": 0,
                "run_count": 1,
                "failed_runs": 0,
                "running_runs": 0,
                "last_seen": "2026-11-27T06:09:43.114320Z",
                "last_deploy": None,
            },
            {
                "agent_id": "support_session_errors",
                "signal_count": 2,
                "run_count": 2,
                "failed_runs": 2,
                "running_runs": 0,
                "last_seen": "2026-11-27T06:02:32.104701Z",
                "last_deploy": None,
            },
            {
                "agent_id": "support_session_toolcall",
                "signal_count": 0,
                "run_count": 3,
                "failed_runs": 0,
                "running_runs": 0,
                "last_seen": "2026-11-27T06:02:16.002614Z",
                "last_deploy": None,
            },
            {
                "agent_id": "support_session_toolloop",
                "signal_count": 1,
                "run_count": 1,
                "failed_runs": 1,
                "running_runs": 0,
                "last_seen": "2026-11-27T06:09:18.992319Z",
                "last_deploy": None,
            },
        ]
    }


def test_agents_over_a_window(make_sidecar: Sidecars) -> None:
    """since counts runs started and signals detected at or after it; every agent stays listed."""
    daemon = make_sidecar()
    send_all(daemon)
    send(daemon, ERRORS, copy=True)

    def counts(since: str) -> dict[str, tuple[int, int, int, str | None]]:
        agents = daemon.api_json("/v1/agents?since=" + since)["agents"]
        return {a["agent_id"]: (a["run_count"], a["failed_runs"], a["signal_count"], a["last_seen"]) for a in agents}

    # Runs are placed by their spans' start (the captures ran on 2026-11-27, between 06:02 and
    # 06:10); signals by when the sidecar detected them (during this test). From 06:05 on: the
    # tool loop and the OpenInference run started; the two errors runs did not, but their two
    # signals were detected now.
    assert counts("2026-11-27T06:05:00Z") == {
        "fixture-agent-openinference": (1, 0, 0, "2026-11-27T06:09:43.114320Z"),
        "support_session_errors": (0, 0, 2, "2026-11-27T06:02:32.104701Z"),
        "support_session_toolcall": (0, 0, 0, "2026-11-27T06:02:16.002614Z"),
        "support_session_toolloop": (1, 1, 1, "2026-11-27T06:09:18.992319Z"),
    }
    # A window that starts in an hour: nothing in it, every agent still listed with its last_seen.
    later = str(int(time.time()) + 3600)
    assert counts(later) == {
        "fixture-agent-openinference": (0, 0, 0, "2026-11-27T06:09:43.114320Z"),
        "support_session_errors": (0, 0, 0, "2026-11-27T06:02:32.104701Z"),
        "support_session_toolcall": (0, 0, 0, "2026-11-27T06:02:16.002614Z"),
        "support_session_toolloop": (0, 0, 0, "2026-11-27T06:09:18.992319Z"),
    }
    assert_error(daemon.api("/v1/agents?since=yesterday"), 400, "invalid_parameter")


# --- one error shape ------------------------------------------------------------------------------------


def test_every_error_has_the_one_shape(make_sidecar: Sidecars) -> None:
    daemon = make_sidecar()
    run_id = send(daemon, TOOLCALL)
    api = daemon.api_url
    cases: list[tuple[str, str, bytes | None, int, str]] = [
        ("GET", "/nope", None, 404, "not_found"),
        ("GET", "/v1/nope", None, 404, "not_found"),
        ("GET", "/v1/runs/", None, 404, "not_found"),
        ("GET", f"/v1/runs/{run_id}/steps", None, 404, "not_found"),
        ("POST", "/v1/runs", b"{}", 405, "method_not_allowed"),
        ("PUT", "/v1/agents", b"{}", 405, "method_not_allowed"),
        ("DELETE", f"/v1/runs/{run_id}", None, 405, "method_not_allowed"),
        ("POST", "/healthz", None, 405, "method_not_allowed"),
        ("GET", "/v1/runs?limit=0", None, 400, "invalid_parameter"),
        ("GET", "/v1/runs?status=bogus", None, 400, "invalid_parameter"),
        ("GET", "/v1/runs?since=abc", None, 400, "invalid_parameter"),
        ("GET", "/v1/runs?cursor=garbage", None, 400, "invalid_cursor"),
        ("GET", "/v1/runs/xyz", None, 400, "invalid_run_id"),
        ("GET", "/v1/runs/00000000-0000-4000-8000-000000000000", None, 404, "run_not_found"),
        ("GET", "/v1/signals?failure_type=TOOL_LOPP", None, 400, "invalid_parameter"),
        ("GET", "/v1/signals?failure_type=tool_loop", None, 400, "invalid_parameter"),
        ("GET", "/v1/signals?severity=urgent", None, 400, "invalid_parameter"),
    ]
    for method, path, body, status, code in cases:
        result = http(method, api + path, body=body)
        assert_error(result, status, code)
        if status == 405:
            assert result.headers["Allow"] == "GET", (method, path)


def test_unknown_signal_filters_name_the_valid_values(make_sidecar: Sidecars) -> None:
    daemon = make_sidecar()
    typo = assert_error(daemon.api("/v1/signals?failure_type=TOOL_LOPP"), 400, "invalid_parameter")
    for valid in ("TOOL_LOOP", "REASONING_STALL", "GOAL_ABANDONMENT", "POLICY_VIOLATION"):
        assert valid in typo["message"], typo
    severity = assert_error(daemon.api("/v1/signals?severity=urgent"), 400, "invalid_parameter")
    assert "CRITICAL" in severity["message"] and "LOW" in severity["message"], severity
    assert daemon.api("/v1/signals?failure_type=POLICY_VIOLATION&severity=high").status == 200


# --- auth -------------------------------------------------------------------------------------------------


def test_bearer_keys(make_sidecar: Sidecars) -> None:
    daemon = make_sidecar(env={"DUNETRACE_API_KEYS": f"{KEY1},{KEY2}"})
    refused: list[dict[str, str]] = [
        {},
        {"Authorization": "Bearer wrong-key-cccccccccc"},
        {"Authorization": f"Bearer {KEY1}x"},
        {"Authorization": f"Bearer {KEY1[:-1]}"},
        {"Authorization": f"Basic {KEY1}"},
        {"Authorization": KEY1},
        {"Authorization": "Bearer "},
    ]
    for headers in refused:
        for path in ("/v1/runs", "/v1/agents", "/v1/runs/c948936fab6b60effe13376fabe2e8e6", "/openapi.json", "/nope"):
            result = daemon.api(path, headers=headers)
            assert_error(result, 401, "unauthorized")
            assert result.headers["WWW-Authenticate"].startswith("Bearer"), (path, headers)
    for key in (KEY1, KEY2):
        for path in ("/v1/runs", "/v1/agents", "/openapi.json"):
            assert daemon.api(path, headers={"Authorization": f"Bearer {key}"}).status == 200, (path, key)
    assert daemon.api("/v1/runs", headers={"Authorization": f"bearer {KEY2}"}).status == 200  # scheme: any case
    healthz = daemon.api("/healthz")
    assert (healthz.status, healthz.json()) == (200, {"status": "ok"})
    assert daemon.api("/readyz").status == 200
    log = daemon.log_text()
    assert KEY1 not in log and KEY2 not in log


def test_keys_guard_real_data(make_sidecar: Sidecars) -> None:
    daemon = make_sidecar(env={"DUNETRACE_API_KEYS": KEY1})
    run_id = send_keyed(daemon, TOOLCALL, KEY1)
    assert_error(daemon.api(f"/v1/runs/{run_id}"), 401, "unauthorized")
    result = daemon.api(f"/v1/runs/{run_id}", headers={"Authorization": f"Bearer {KEY1}"})
    assert result.status == 200
    assert result.json()["run_id"] == run_id


def test_non_ascii_authorization_is_401(make_sidecar: Sidecars) -> None:
    daemon = make_sidecar(env={"DUNETRACE_API_KEYS": KEY1})
    # Was a bug (api.auth_middleware): hmac.compare_digest raises TypeError on a non-ASCII str, so a
    # header with a byte such as 0xE9 is answered 500 "internal" (with a traceback logged)
    # instead of 401.
    status, body = raw_get(daemon, "/v1/runs", "Bearer caf\xe9-aaaaaaaaaaaaaaaa".encode("latin-1"))
    assert status == 401, body


def test_documented_security_matches_what_needs_a_key(make_sidecar: Sidecars) -> None:
    """Operations the OpenAPI document marks security: [] answer without a key; the rest need one."""
    daemon = make_sidecar(env={"DUNETRACE_API_KEYS": KEY1})
    document = daemon.api("/openapi.json", headers={"Authorization": f"Bearer {KEY1}"}).json()
    assert document["security"] == [{"bearer": []}]
    open_paths = []
    for path, operations in document["paths"].items():
        for method, operation in operations.items():
            assert method in ("get", "post", "put", "delete", "patch")
            concrete = path.replace("{run_id}", "c948936fab6b60effe13376fabe2e8e6").replace(
                "{signal_id}", "40d8586b-2229-5bae-844f-ce52e9ce3f3a"
            )
            concrete = concrete.replace("{policy_id}", "1").replace("{name}", "app.js")
            body = b"{}" if method in ("post", "put") else None
            result = http(method.upper(), daemon.api_url + concrete, body=body)
            if operation.get("security") == []:
                open_paths.append(path)
                assert result.status == 200, path
            else:
                assert_error(result, 401, "unauthorized")
    # the dashboard's page and files hold no data: its script asks the API with the key
    assert sorted(open_paths) == ["/", "/healthz", "/metrics", "/readyz", "/runs/{run_id}", "/ui/{name}"]


# --- health -------------------------------------------------------------------------------------------------


def test_healthz_and_readyz(make_sidecar: Sidecars) -> None:
    daemon = make_sidecar()
    healthz = daemon.api("/healthz")
    assert healthz.status == 200
    assert healthz.headers["Content-Type"].startswith("application/json")
    assert healthz.json() == {"status": "ok"}
    readyz = daemon.api("/readyz")
    assert readyz.status == 200
    assert readyz.json() == {"status": "ready"}


# --- the OpenAPI document -----------------------------------------------------------------------------------

HTTP_METHODS = {"get", "put", "post", "delete", "patch", "head", "options", "trace"}


def documented_operations(document: Mapping[str, Any]) -> set[tuple[str, str]]:
    return {
        (method.upper(), path) for path, item in document["paths"].items() for method in item if method in HTTP_METHODS
    }


def test_openapi_document_matches_the_routes(make_sidecar: Sidecars) -> None:
    daemon = make_sidecar()
    run_id = send(daemon, TOOLCALL)
    send(daemon, TOOLLOOP)  # its tool loop gives a real signal id
    [signal] = daemon.api_json("/v1/signals")["signals"]
    signal_id = signal["signal_id"]
    document = daemon.api_json("/openapi.json")
    assert document["openapi"] == "3.1.0"
    assert set(document["info"]) >= {"title", "version"}
    operations = documented_operations(document)
    assert operations == {(route.method, route.path) for route in ROUTES}
    assert operations == {
        ("GET", "/"),
        ("GET", "/ui/{name}"),
        ("GET", "/runs/{run_id}"),
        ("GET", "/healthz"),
        ("GET", "/readyz"),
        ("GET", "/openapi.json"),
        ("GET", "/metrics"),
        ("GET", "/v1/agents"),
        ("GET", "/v1/runs"),
        ("GET", "/v1/runs/{run_id}"),
        ("GET", "/v1/runs/{run_id}/events"),
        ("GET", "/v1/signals"),
        ("GET", "/v1/signals/{signal_id}"),
        ("POST", "/v1/signals/{signal_id}/explain"),
        ("POST", "/v1/signals/{signal_id}/apply-fix"),
        ("POST", "/v1/signals/{signal_id}/rollback-fix"),
        ("GET", "/v1/signals/{signal_id}/fix-status"),
        ("GET", "/v1/policies"),
        ("POST", "/v1/policies"),
        ("GET", "/v1/policies/{policy_id}"),
        ("PUT", "/v1/policies/{policy_id}"),
        ("DELETE", "/v1/policies/{policy_id}"),
        ("PATCH", "/v1/policies/{policy_id}/toggle"),
        ("POST", "/v1/ingest"),
        ("GET", "/v1/detector-config"),
        ("POST", "/v1/deploy"),
    }
    # ROUTES is what the app is built from: its router holds exactly these operations.
    app = build_api_app(DuckStore(":memory:"), ())
    served = {(route.method, route.resource.canonical) for route in app.router.routes() if route.resource is not None}
    assert served == operations
    # Every documented operation answers on the live daemon.
    policy = {
        "name": "p",
        "condition": {"trigger": "step_count", "operator": "gt", "value": 50},
        "action": {"type": "log"},
    }
    created = http("POST", daemon.api_url + "/v1/policies", body=json.dumps(policy).encode(), headers=JSON)
    policy_id = str(created.json()["id"])
    for method, path in sorted(operations):
        concrete = path.replace("{run_id}", run_id).replace("{signal_id}", signal_id).replace("{name}", "app.js")
        concrete = concrete.replace("{policy_id}", "999999" if method == "DELETE" else policy_id)
        body = b"{}" if method in ("POST", "PUT") else None
        result = http(method, daemon.api_url + concrete, body=body, headers=JSON if body else None)
        responses = document["paths"][path][method.lower()]["responses"]
        if method == "GET" or path.endswith("/explain"):
            assert result.status == 200, (method, path, result.body[:300])
            # (a redirect's target answers 200: the client followed it)
            schema = responses.get("200", {}).get("content", {}).get("application/json", {}).get("schema")
            if schema is not None:  # the answer is what the document says it is
                validator = Draft202012Validator({**schema, "components": document["components"]})
                errors = [f"{list(e.absolute_path)}: {e.message}" for e in validator.iter_errors(result.json())]
                assert not errors, (method, path, errors[:3])
        else:  # empty bodies, nothing configured, an unknown id: a documented answer, never the router's 404/405
            documented = document["paths"][path][method.lower()]["responses"]
            assert str(result.status) in documented, (method, path, result.status)
            if result.status >= 400:
                assert result.json()["error"]["code"] not in ("not_found", "method_not_allowed"), result.body
    # Every path parameter is declared.
    for path, item in document["paths"].items():
        for operation in (item[m] for m in item if m in HTTP_METHODS):
            declared = {p["name"] for p in operation.get("parameters", []) if p["in"] == "path"}
            assert declared == set(re.findall(r"{(\w+)}", path)), path
    # Every $ref points at a defined schema.
    refs = set(re.findall(r'"\$ref":\s*"#/components/schemas/(\w+)"', daemon.api("/openapi.json").body.decode()))
    assert refs and refs <= set(document["components"]["schemas"])


# --- the API on a non-loopback address ---------------------------------------------------------------------


def test_non_loopback_api_without_keys_refuses_to_start(tmp_path: Path) -> None:
    result = subprocess.run(
        [sys.executable, "-m", "dunetrace_sidecar"],
        cwd=tmp_path,
        env=daemon_env(DUNETRACE_API_ENDPOINT="0.0.0.0:0"),
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert result.returncode == 2
    assert "api.endpoint" in result.stderr
    assert "listening" not in result.stderr


def test_non_loopback_api_with_allow_insecure_starts_loudly(make_sidecar: Sidecars) -> None:
    daemon = make_sidecar(env={"DUNETRACE_API_ENDPOINT": "0.0.0.0:0", "DUNETRACE_API_ALLOW_INSECURE": "true"})
    insecure = [line for line in daemon.log_text().splitlines() if "INSECURE" in line]
    assert len(insecure) == 1
    assert "WARNING" in insecure[0]
    host, port = daemon.addresses["api"].rsplit(":", 1)
    assert host == "0.0.0.0"
    result = http("GET", f"http://127.0.0.1:{port}/v1/runs")  # no key needed: that is the accepted risk
    assert result.status == 200
    assert result.json() == {"runs": [], "next_cursor": None}


def test_non_loopback_api_with_keys_starts_quietly(make_sidecar: Sidecars) -> None:
    daemon = make_sidecar(env={"DUNETRACE_API_ENDPOINT": "0.0.0.0:0", "DUNETRACE_API_KEYS": KEY1})
    assert "INSECURE" not in daemon.log_text()
    port = daemon.addresses["api"].rsplit(":", 1)[1]
    assert_error(http("GET", f"http://127.0.0.1:{port}/v1/runs"), 401, "unauthorized")
    assert http("GET", f"http://127.0.0.1:{port}/v1/runs", headers={"Authorization": f"Bearer {KEY1}"}).status == 200


def test_alert_links_land_on_the_dashboard(make_sidecar: Sidecars) -> None:
    """alerts.dashboard_url set to this API: <url>/runs/<run_id> (the alerts' link) redirects to the
    run's page in the dashboard; no key is needed for the redirect, the page asks for one."""
    daemon = make_sidecar(env={"DUNETRACE_API_KEYS": KEY1})
    host, port = daemon.addresses["api"].rsplit(":", 1)
    connection = HTTPConnection(host, int(port), timeout=10)
    connection.request("GET", "/runs/C948936FAB6B60EFFE13376FABE2E8E6")
    answer = connection.getresponse()
    assert answer.status == 302
    assert answer.getheader("Location") == "/#/runs/c948936f-ab6b-60ef-fe13-376fabe2e8e6"
    connection.close()
    assert_error(http("GET", daemon.api_url + "/runs/not-a-run"), 400, "invalid_run_id")
