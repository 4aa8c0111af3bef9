"""Store trouble is refused where it starts, and readiness says so (issue 11, finding 6)."""

from __future__ import annotations

import random
import sqlite3
import subprocess
import time
from pathlib import Path

import duckdb
import grpc
import pytest
from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import ExportTraceServiceRequest

from store.duckdb_store import RECOVERY_INTERVAL_S
from tests.sidecar import Sidecar, fixture_bytes, wait_for, with_new_trace_ids

LOOP = "openllmetry-openai-toolloop.pb"


def _filled(workdir: Path, exports: int = 150) -> Sidecar:
    daemon = Sidecar(workdir).start()
    for _ in range(exports):
        body, _ = with_new_trace_ids(fixture_bytes(LOOP))
        assert daemon.post_otlp(body).status == 200
    daemon.stop()
    return daemon


def test_a_corrupted_store_is_refused_at_startup(tmp_path: Path) -> None:
    daemon = _filled(tmp_path / "corrupt")
    data = bytearray(daemon.db_path.read_bytes())
    for offset in range(len(data) // 3, len(data) // 3 + 200_000, 997):  # damage blocks in the middle
        data[offset] ^= 0xFF
    daemon.db_path.write_bytes(bytes(data))
    with pytest.raises(AssertionError, match="sidecar exited with 1"):
        daemon.start(timeout=30)
    assert "the store cannot be read back" in daemon.log_text(since_start=True)
    assert "Corrupt database file" in daemon.log_text(since_start=True)


def test_a_foreign_file_never_makes_it_fetch_an_extension(tmp_path: Path) -> None:
    home = tmp_path / "home"
    home.mkdir()
    daemon = Sidecar(tmp_path / "foreign", env={"HOME": str(home)})
    daemon.workdir.mkdir(parents=True, exist_ok=True)
    with sqlite3.connect(daemon.db_path) as conn:  # a SQLite file where the DuckDB file should be
        conn.execute("CREATE TABLE t (x)")
    with pytest.raises(AssertionError, match="sidecar exited with 1"):
        daemon.start(timeout=30)
    assert "startup failed" in daemon.log_text(since_start=True)
    assert not (home / ".duckdb").exists()  # nothing installed, nothing downloaded


def test_a_full_disk_fails_writes_only_until_there_is_room_and_keeps_what_it_acknowledged(tmp_path: Path) -> None:
    """A file-size limit plays a full disk: exports get the retryable answer, /readyz says not
    ready while /healthz stays up, and reads go on (a full disk is no memory failure: the store is
    not reopened). Once there is room again (the running daemon's limit lifted) exports are taken,
    readiness returns, and every run acknowledged before is stored."""
    # Only the soft limit: raising it back needs no privilege.
    daemon = Sidecar(tmp_path / "full", launcher=("prlimit", f"--fsize={1024 * 1024}:unlimited", "--")).start()
    acknowledged: list[str] = []
    try:
        assert daemon.process is not None
        assert daemon.api("/readyz").status == 200
        statuses = []
        for _ in range(1500):
            body, runs = with_new_trace_ids(fixture_bytes(LOOP))
            statuses.append(daemon.post_otlp(body).status)
            if statuses[-1] != 200:
                break
            acknowledged.extend(runs.values())
        assert statuses[-1] == 503, statuses[-5:]
        assert set(statuses) <= {200, 503}
        assert acknowledged
        wait_for(lambda: daemon.api("/readyz").status == 503, what="readiness to drop")
        assert daemon.api("/healthz").status == 200
        # Past two of the writer's recovery intervals with the disk still full.
        deadline = time.monotonic() + 2 * RECOVERY_INTERVAL_S + 1
        while time.monotonic() < deadline:
            body, _ = with_new_trace_ids(fixture_bytes(LOOP))
            assert daemon.post_otlp(body).status == 503
            assert daemon.api(f"/v1/runs/{acknowledged[0]}").status == 200  # reads go on
            time.sleep(0.5)
        subprocess.run(["prlimit", f"--pid={daemon.process.pid}", "--fsize=unlimited"], check=True)
        after, runs = with_new_trace_ids(fixture_bytes(LOOP))
        wait_for(lambda: daemon.post_otlp(after).status == 200, timeout=30, what="an export taken again")
        acknowledged.extend(runs.values())
        wait_for(lambda: daemon.api("/readyz").status == 200, timeout=30, what="readiness back")
        assert daemon.stop() == 0
    finally:
        daemon.close()
    with duckdb.connect(str(daemon.db_path), read_only=True) as conn:
        stored = {r[0] for r in conn.execute("SELECT DISTINCT run_id::VARCHAR FROM events").fetchall()}
    assert set(acknowledged) <= stored


EXPORT = "/opentelemetry.proto.collector.trace.v1.TraceService/Export"


def _many_traces(count: int) -> bytes:
    request = ExportTraceServiceRequest()
    for _ in range(count):
        body, _ = with_new_trace_ids(fixture_bytes("openllmetry-openai-toolloop.pb"))
        request.MergeFromString(body)  # repeated fields append: one more trace
    return request.SerializeToString()


def test_an_export_whose_deadline_passes_while_it_is_written_harms_nothing(tmp_path: Path) -> None:
    """A gRPC deadline cancels the export's handler while its batch waits for the store; the
    cancelled future once killed the store's writer thread, and every later export was refused
    until a restart (found by `make soak`)."""
    daemon = Sidecar(tmp_path).start()
    try:
        rng = random.Random(7)
        bodies = [_many_traces(150) for _ in range(4)]
        expired = 0
        with grpc.insecure_channel(daemon.grpc_target) as channel:
            call = channel.unary_unary(EXPORT, request_serializer=None, response_deserializer=None)
            for i in range(40):
                try:
                    call(bodies[i % len(bodies)], timeout=rng.uniform(0.02, 0.5))
                except grpc.RpcError as exc:
                    expired += exc.code() == grpc.StatusCode.DEADLINE_EXCEEDED
            assert expired > 0  # the case was met
            body, ids = with_new_trace_ids(fixture_bytes("openllmetry-openai-toolloop.pb"))
            call(body, timeout=10)
        assert "Exception in thread" not in daemon.log_text()
        assert daemon.api("/readyz").status == 200
        [run_id] = ids.values()
        assert daemon.run(run_id)["tool_calls"] == 4
    finally:
        daemon.close()
