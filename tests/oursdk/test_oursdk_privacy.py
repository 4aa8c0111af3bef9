"""Privacy through our SDK: a marker sent through every content-carrying argument is found in
none of the OTLP requests that left the process (captured by a pass-through proxy in front of
the daemon), none of the NDJSON lines, and nowhere in the daemon's DuckDB file, its WAL, or its
API's answers — while the runs themselves arrive whole."""

from __future__ import annotations

import json
import re
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path

import duckdb
import pytest

from tests.fakes.tee_proxy import TeeProxy
from tests.oursdk.harness import run_script
from tests.sdk.harness import API_KEY, Api
from tests.sidecar import Sidecar


@pytest.fixture
def daemon(make_sidecar: Callable[..., Sidecar]) -> Sidecar:
    return make_sidecar(env={"DUNETRACE_API_KEYS": API_KEY}, name="oursdk-privacy")


@pytest.fixture
def tee(daemon: Sidecar) -> Iterator[TeeProxy]:
    proxy = TeeProxy(daemon.http_url)
    yield proxy
    proxy.close()


def test_content_leaves_the_process_only_hashed(oursdk_python: Path, daemon: Sidecar, tee: TeeProxy) -> None:
    marker = f"zq{uuid.uuid4().hex}"
    needles = [marker, marker[2:18], marker[-16:]]
    out = run_script(
        oursdk_python,
        "privacy",
        daemon,
        extra_env={"PRIVACY_MARKER": marker, "OTEL_EXPORTER_OTLP_ENDPOINT": tee.url},
    )
    api = Api(daemon)
    run_id, errored_id, decorated_id = out.result["run_ids"]
    run = api.wait_run(run_id)
    errored = api.wait_run(errored_id)
    decorated = api.wait_run(decorated_id)
    # the runs arrived whole, so the marker's absence means reduced, not dropped
    assert (run["llm_calls"], run["tool_calls"], run["retrievals"], run["errors"]) == (2, 1, 1, 2)
    assert (errored["status"], errored["tool_calls"]) == ("errored", 1)
    assert (decorated["status"], decorated["exit_reason"], decorated["llm_calls"]) == ("completed", "final_answer", 1)

    # the spans that left the process (OTLP protobuf, as sent)
    sent = b"".join(tee.bodies)
    assert uuid.UUID(run_id).bytes in sent
    assert [n for n in needles if n.encode() in sent] == []

    # the NDJSON lines: one per event, each parseable, none with the marker
    lines = [json.loads(line) for line in out.stdout.splitlines() if line.startswith('{"ts"')]
    assert {line["run_id"] for line in lines} == {run_id, errored_id, decorated_id}
    assert [line["event_type"] for line in lines if line["run_id"] == run_id] == [
        "run.started",
        "llm.called",
        "llm.responded",
        "tool.called",
        "tool.responded",
        "retrieval.called",
        "retrieval.responded",
        "llm.called",
        "llm.responded",
        "run.completed",
    ]
    for line in lines:  # the docs' fields; ts as Promtail's RFC3339Nano stage reads it
        assert set(line) == {"ts", "level", "logger", "event_type", "agent_id", "run_id", "step_index", "payload"}
        assert re.fullmatch(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{9}Z", line["ts"]), line["ts"]
        assert (line["logger"], line["agent_id"]) == ("dunetrace", "oursdk-privacy")
    assert [line["level"] for line in lines if line["run_id"] == errored_id][-1] == "error"
    assert [n for n in needles if n in out.stdout + out.stderr] == []

    # the daemon: its answers, every stored value, and the raw file and WAL
    answers = b"".join(api.get(path).body for path in ("/v1/runs?limit=500", f"/v1/runs/{run_id}", "/v1/signals"))
    assert [n for n in needles if n.encode() in answers] == []
    daemon.stop()
    with duckdb.connect(str(daemon.db_path), read_only=True) as conn:
        tables = [r[0] for r in conn.execute("SELECT table_name FROM information_schema.tables").fetchall()]
        dump = "\n".join(str(conn.execute(f'SELECT * FROM "{table}"').fetchall()) for table in tables)
    assert run_id in dump or run_id.replace("-", "") in dump
    assert [n for n in needles if n in dump] == []
    raw = daemon.db_path.read_bytes()
    wal = daemon.db_path.with_name(daemon.db_path.name + ".wal")
    raw += wal.read_bytes() if wal.exists() else b""
    assert [n for n in needles if n.encode() in raw] == []
