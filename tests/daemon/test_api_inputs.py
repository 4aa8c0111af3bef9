"""Odd API inputs get a 400 in the one error shape, never a 500 (issue 11, finding 8)."""

from __future__ import annotations

import json
from urllib.parse import quote

import pytest

from tests.sidecar import Sidecar, http

JSON = {"Content-Type": "application/json"}


@pytest.fixture(scope="module")
def daemon(tmp_path_factory: pytest.TempPathFactory) -> Sidecar:
    sidecar = Sidecar(tmp_path_factory.mktemp("api-inputs")).start()
    yield sidecar  # type: ignore[misc]
    sidecar.close()


@pytest.mark.parametrize(
    "path",
    [
        "/v1/runs?limit=²",
        "/v1/runs?limit=" + "9" * 401,
        "/v1/runs?limit=١٢",  # Arabic-Indic digits
        "/v1/signals?since=١٧٠٠٠٠٠٠٠٠",
        "/v1/runs?until=" + "9" * 5000,
        "/v1/runs?since=nan",
        "/v1/policies/²",
        "/v1/policies/" + "9" * 401,
        "/v1/runs?cursor=" + "x" * 5000,
    ],
)
def test_odd_query_values_are_400(daemon: Sidecar, path: str) -> None:
    result = daemon.api(quote(path, safe="/?=&"))  # as a browser or curl sends it: percent-encoded
    assert result.status == 400, (path[:60], result.status, result.body[:200])
    assert set(result.json()) == {"error"}


BODIES: dict[str, bytes] = {
    "nested 5000 deep": b"[" * 5000 + b"]" * 5000,
    "object nested 5000 deep": b'{"a":' * 5000 + b"1" + b"}" * 5000,
    "NaN": b'{"name": "p", "agent_id": "*", "condition": {"trigger": "cost_usd", "operator": "gt", "value": NaN}}',
    "Infinity": b'{"name": "p", "condition": {"trigger": "cost_usd", "operator": "gt", "value": Infinity}}',
    "401-digit integer": b'{"name": "p", "condition": {"trigger": "step_count", "operator": "gt", "value": '
    + b"9" * 401
    + b'}, "action": {"type": "log"}}',
    "not UTF-8": b"\xff\xfe{",
}


@pytest.mark.parametrize("case", sorted(BODIES))
def test_odd_bodies_are_400(daemon: Sidecar, case: str) -> None:
    result = http("POST", daemon.api_url + "/v1/policies", body=BODIES[case], headers=JSON)
    assert result.status == 400, (case, result.status, result.body[:200])
    assert b"Traceback" not in result.body and b"Error:" not in result.body


def _no_constant(name: str) -> None:
    raise AssertionError(f"{name} in an answer: not JSON")


@pytest.mark.parametrize("path", ["/v1/runs", "/v1/agents", "/v1/signals", "/v1/policies", "/openapi.json"])
def test_answers_are_strict_json(daemon: Sidecar, path: str) -> None:
    json.loads(daemon.api(path).body.decode(), parse_constant=_no_constant)
