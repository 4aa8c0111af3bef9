"""The soak tool (``make soak``, bench/soak.py) checks what it claims to check.

The verifier is held to a store written by hand: a planted loss, a duplicated event and an
over-counted run are each reported. Then one short real soak (about 30 s: mixed load on every
transport, one SIGKILL and restart) passes.
"""

from __future__ import annotations

import random
from pathlib import Path

import duckdb

from bench import soak
from bench.loadgen import LLM_ROLE, ROOT_ROLE, TOOL_ROLE, Ledger, Trace, build_trace, verify
from store.migrations import MIGRATIONS


def _store_with(path: Path, trace: Trace, extra_events: int = 0, tool_calls: int | None = None) -> None:
    """A store holding ``trace`` as the daemon would: its run row and each span's events."""
    conn = duckdb.connect(str(path))
    for _, statements in MIGRATIONS:
        for sql in statements:
            conn.execute(sql)
    kinds = {ROOT_ROLE: ("run.started", "run.completed"), LLM_ROLE: ("llm.called", "llm.responded")}
    rows = []
    for span in trace.spans:
        for kind in kinds.get(span.role, ("tool.called", "tool.responded")):
            rows.append((trace.run_id, f"{span.span_hex}:{kind}", kind, span.end_ns, span.span_hex, "{}", 0))
    rows += rows[-1:] * extra_events
    conn.executemany("INSERT INTO events VALUES (?, ?, ?, ?, ?, ?, ?)", rows)
    tools = trace.count(TOOL_ROLE) if tool_calls is None else tool_calls
    conn.execute(
        "INSERT INTO runs (run_id, agent_id, service_name, status, started_ns, ended_ns, last_event_ns, step_count,"
        " llm_calls, tool_calls, retrievals, errors, prompt_tokens, completion_tokens, exit_reason, updated_ns)"
        " VALUES (?, 'soak-agent', NULL, 'completed', 0, 1, 1, 1, ?, ?, 0, ?, 0, 0, NULL, 0)",
        [trace.run_id, trace.count(LLM_ROLE), tools, trace.errors],
    )
    conn.close()


def _acked(trace: Trace) -> Ledger:
    ledger = Ledger()
    ledger.plan(trace)
    for span in trace.spans:
        ledger.acked[(span.run_id, span.span_hex)] = span.role
    return ledger


def _trace() -> Trace:
    return build_trace(random.Random(3), 1_795_000_000_000_000_000, tool_calls=2, loop=False, fail_one=False)


def test_the_verifier_passes_a_faithful_store(tmp_path: Path) -> None:
    trace = _trace()
    _store_with(tmp_path / "db.duckdb", trace)
    result = verify(tmp_path / "db.duckdb", _acked(trace))
    assert result.ok, result.summary()
    assert result.complete_runs == 1 and result.acked_spans == len(trace.spans)


def test_the_verifier_reports_an_acknowledged_span_never_stored(tmp_path: Path) -> None:
    trace = _trace()
    _store_with(tmp_path / "db.duckdb", trace)
    ledger = _acked(trace)
    ledger.acked[(trace.run_id, "00000000deadbeef")] = TOOL_ROLE  # acknowledged, never sent
    result = verify(tmp_path / "db.duckdb", ledger)
    assert not result.ok
    assert len(result.lost) == 1 and "00000000deadbeef" in result.lost[0], result.lost
    assert not result.duplicated


def test_the_verifier_reports_a_span_stored_twice_and_a_call_counted_twice(tmp_path: Path) -> None:
    trace = _trace()
    _store_with(tmp_path / "db.duckdb", trace, extra_events=1, tool_calls=trace.count(TOOL_ROLE) + 1)
    result = verify(tmp_path / "db.duckdb", _acked(trace))
    assert len(result.duplicated) == 1 and "stored 2 times" in result.duplicated[0], result.duplicated
    assert len(result.miscounted) == 1 and "tool_calls" in result.miscounted[0], result.miscounted
    assert not result.lost


def test_a_short_soak_with_one_kill_passes(tmp_path: Path) -> None:
    settings = soak.Settings(
        minutes=0.35,  # 21 s of load, killed once at 10 s
        kill_every=10,
        clients=("http-protobuf", "http-json", "http-gzip", "grpc", "sdk-grpc"),
        readers=1,
        drain=20,
        json_path=tmp_path / "soak.json",
    )
    results = soak.run(settings)
    print(soak.table(results))
    assert results["passed"], soak.table(results)
    assert results["kills"] == 1 and results["restarts"] == 1
    verification = results["verification"]
    assert verification["acked_runs"] > 20 and verification["complete_runs"] > 20
    assert results["exports"]["exports acknowledged"] > 50
