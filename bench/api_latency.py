"""API read latency with a full store: ``GET /v1/runs`` and ``GET /v1/signals`` over 100,000 runs
and 1,000,000 events (the issue's target: p99 < 50 ms for each).

    python -m bench.api_latency [--runs 100000] [--events-per-run 10] [--json FILE]

1. **The store** is built directly in DuckDB, not through the daemon's ingest (a million events
   are about 500,000 spans: minutes of both cores at the daemon's measured 5,000-8,000 spans/s,
   against seconds in SQL; and the signals are placed, not raised by the detectors): the real
   ``DuckStore`` opens an empty file
   (so its migrations write exactly the schema the daemon opens), closes it, and DuckDB SQL
   fills ``runs``, ``events`` and ``signals`` in bulk (``INSERT ... SELECT ... FROM range(N)``,
   deterministic ids from ``md5``). The rows are shaped like the daemon's own: each run has a
   root span's ``run.started``, then LLM and tool calls (``llm.called``, ``llm.responded``,
   ``tool.called``, ``tool.responded``) and a ``run.completed`` or ``run.errored``; payloads
   are the JSON text ``_payload_json`` writes for such events (sorted keys, hashes, lengths,
   token counts, latencies); 90 % of runs complete, 5 % error (a failed tool call first),
   3 % stall, the newest 20 are still running, 3 % have a failed tool call anyway. Runs are
   spread over 50 agents (skewed: the busiest has ~14 % of the runs, the quietest ~1 %) and
   the last 30 days, rows written in time order as ingest writes them; ~5 % of runs have a
   signal, ~1.5 % a second one (eight failure types, the detectors' evidence shapes, 5 % in
   shadow mode). The file is then opened again with the real ``DuckStore`` (its startup read
   of every table) and read back through its own methods.
2. **The daemon** (``bench.throughput.start``) is started on that file, on 127.0.0.1 without
   API keys (the bench's default; the API is loopback-only).
3. **Reads**: one keep-alive HTTP connection, one request at a time, the routes interleaved in
   shuffled rounds (machine noise hits them alike): a warm-up, then ``--samples`` timed
   requests per route, each from sending the request to having read the whole body
   (``GET /healthz``, which reads no store, is the control: the wait for the daemon's event
   loop and GIL, which its ingest shares). Then the
   same under **ingest load**: a thread sends ``bench.workload`` export requests (512 spans,
   fresh trace ids each time) over OTLP/gRPC at ``--ingest-rate`` spans/s while
   ``--load-samples`` rounds are read.

Printed: p50/p95/p99/max per route in ms and whether p99 < 50 ms; under load, also the
store's reads split by whether an export was in flight meanwhile. Traffic goes only to
127.0.0.1, bounded in count and time.
"""

from __future__ import annotations

import argparse
import bisect
import http.client
import json
import math
import os
import platform
import random
import tempfile
import threading
import time
import urllib.parse
import uuid
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import duckdb
import grpc
from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import ExportTraceServiceRequest

import detectors.library  # noqa: F401  (registers the detectors: the failure types are checked against them)
from bench.throughput import TRACE_METHOD, start
from bench.workload import build_requests
from detectors.base import REGISTRY
from store.duckdb_store import DuckStore, RunFilter, SignalFilter

TARGET_P99_MS = 50.0
DAY_NS = 86_400 * 1_000_000_000
RUNNING_RUNS = 20  # the newest runs are still open
TOOLS = ("lookup_order", "get_weather", "search_kb", "fetch_report")
# (failure type, severity, evidence as _payload_json writes it): the detectors' evidence shapes.
SIGNAL_TYPES = (
    (
        "TOOL_LOOP",
        "HIGH",
        {
            "args_identical": True,
            "count": 3,
            "first_step": 2,
            "last_step": 6,
            "step_indices": [2, 4, 6],
            "tool": "lookup_order",
            "window": 5,
        },
    ),
    (
        "CASCADING_TOOL_FAILURE",
        "HIGH",
        {
            "consecutive_failures": 3,
            "distinct_tools": ["fetch_report", "get_weather", "search_kb"],
            "first_fail_step": 4,
        },
    ),
    (
        "LLM_TRUNCATION_LOOP",
        "HIGH",
        {"first_truncation_step": 5, "last_truncation_step": 7, "total_llm_calls": 4, "truncation_count": 2},
    ),
    (
        "RETRY_STORM",
        "HIGH",
        {
            "args_identical": False,
            "consecutive_fails": 3,
            "error_types": ["error", "error", "error"],
            "step_indices": [2, 4, 6],
            "tool": "search_kb",
        },
    ),
    (
        "CONTEXT_BLOAT",
        "MEDIUM",
        {
            "first_tokens": 200,
            "growth_factor": 3.4,
            "last_tokens": 680,
            "llm_call_count": 4,
            "token_growth_sequence": [200, 360, 520, 680],
        },
    ),
    ("FIRST_STEP_FAILURE", "MEDIUM", {"failed_step": 1, "tool": "search_kb", "trigger": "tool_failure"}),
    (
        "SLOW_STEP",
        "MEDIUM",
        {"duration_ms": 41250.0, "kind": "tool", "ratio": 1.375, "step_index": 3, "threshold_ms": 30000},
    ),
    ("STEP_COUNT_INFLATION", "MEDIUM", {"baseline_p75": 4.0, "current_steps": 13, "inflation_ratio": 3.25}),
)


# --- the store ---------------------------------------------------------------------------------


def _calls(middle: int) -> tuple[int, int]:
    """(LLM calls, tool calls) among ``middle`` events cycling llm.called, llm.responded,
    tool.called, tool.responded."""
    return (middle + 3) // 4, (middle + 1) // 4


def build_store(path: Path, runs: int, events_per_run: int, agents: int, days: int, seed: int, now_ns: int) -> None:
    """Fill the (migrated, empty) store at ``path`` with DuckDB SQL; see the module's docstring."""
    for failure_type, _, _ in SIGNAL_TYPES:
        if failure_type not in REGISTRY:
            raise RuntimeError(f"{failure_type} is no detector's failure type")
    e = int(events_per_run)
    end_ns = now_ns - 60 * 1_000_000_000  # the newest run started a minute ago
    start_ns = end_ns - days * DAY_NS
    spacing = (end_ns - start_ns) / runs
    llm_done, tool_done = _calls(e - 2)  # a run that ended: started, calls, completed/errored
    evidence = [(t, s, json.dumps(ev, sort_keys=True, separators=(",", ":"))) for t, s, ev in SIGNAL_TYPES]

    def u(tag: str) -> str:  # a uniform number in [0, 1) for each run, fixed by the seed
        return f"(hash(i, {seed}, '{tag}') % 1000000) / 1000000.0"

    conn = duckdb.connect(str(path), config={"memory_limit": "2GB", "threads": 2})
    try:
        conn.execute(f"""
            CREATE TEMP TABLE g AS
            SELECT i,
                md5(concat('run:', {seed}, ':', i))::UUID AS run_id,
                concat('agent-', lpad(CAST(floor({agents} * {u("agent")} * {u("agent")}) AS BIGINT)::VARCHAR,
                       2, '0')) AS agent_id,
                CAST({start_ns} + (i + {u("jitter")}) * {spacing} AS BIGINT) AS started_ns,
                CAST(300000000 + {u("gap")} * 2700000000 AS BIGINT) AS gap_ns,
                CASE WHEN i >= {runs - RUNNING_RUNS} THEN 'running'
                     WHEN {u("status")} < 0.05 THEN 'errored'
                     WHEN {u("status")} < 0.08 THEN 'stalled'
                     ELSE 'completed' END AS status,
                {u("fail")} < 0.03 AS early_fail,
                CAST(hash(i, {seed}, 'tool') % 4 AS INTEGER) AS tool_off,
                {u("signal")} AS u_signal,
                CAST(hash(i, {seed}, 'type') % {len(SIGNAL_TYPES)} AS INTEGER) AS type_off,
                substr(md5(concat('root:', {seed}, ':', i)), 1, 16) AS root_span
            FROM range({runs}) AS t(i)
            """)
        conn.execute(f"""
            CREATE TEMP TABLE ev AS
            WITH x AS (
                SELECT g.*, j,
                    CASE WHEN j = 0 THEN 'run.started'
                         WHEN j = {e - 1} AND status = 'completed' THEN 'run.completed'
                         WHEN j = {e - 1} AND status = 'errored' THEN 'run.errored'
                         ELSE ['llm.called', 'llm.responded', 'tool.called', 'tool.responded'][(j - 1) % 4 + 1]
                    END AS kind,
                    (j - 1) // 2 AS c,
                    (j - 1) // 4 AS m,
                    started_ns + j * gap_ns AS ts_ns
                FROM g, range({e}) AS r(j)
            ), y AS (
                SELECT x.*,
                    CASE WHEN kind LIKE 'run.%' THEN root_span
                         ELSE substr(md5(concat('span:', {seed}, ':', i, ':', c)), 1, 16) END AS call_id,
                    {list(TOOLS)}[(tool_off + m) % 4 + 1] AS tool,
                    kind = 'tool.responded' AND ((status = 'errored' AND j = {e - 2}) OR (early_fail AND m = 0))
                        AS failed,
                    'sha256:' || sha256(concat('h:', {seed}, ':', i, ':', j)) AS h,
                    CASE WHEN kind IN ('llm.responded', 'tool.called')
                         THEN 'sha256:' || sha256(concat('args:', {seed}, ':', i, ':', m)) END AS args_hash,
                    CAST(1000 + hash(i, j, {seed}) % 3000 AS INTEGER) AS size,
                    round(gap_ns / 1e6, 3) AS latency_ms
                FROM x
            )
            SELECT run_id, i, kind, ts_ns, call_id, failed, m,
                concat(call_id, ':', kind) AS event_id,
                CASE kind
                    WHEN 'run.started' THEN concat('{{"input_hash":"', h, '","input_length":', size // 10,
                        ',"model":"gpt-4o-mini","tools":[]}}')
                    WHEN 'llm.called' THEN concat('{{"call_id":"', call_id,
                        '","model":"gpt-4o-mini","parent_span_id":"', root_span, '","prompt_hash":"', h,
                        '","prompt_length":', size, ',"prompt_tokens":', 200 + 80 * m, ',"provider":"openai"}}')
                    WHEN 'llm.responded' THEN concat(
                        '{{"completion_tokens":35,"finish_reason":"tool_calls","latency_ms":', latency_ms,
                        ',"output_hash":"', h, '","output_length":', size // 3,
                        ',"response_id":"chatcmpl-', md5(h), '","tool_calls_requested":["', tool,
                        '"],"tool_requests":[{{"args_hash":"', args_hash, '","args_length":14,"call_id":"call_', 2 * m,
                        '","name":"', tool, '"}}]}}')
                    WHEN 'tool.called' THEN concat('{{"args_hash":"', args_hash, '","args_length":14,"call_id":"',
                        call_id, '","tool_call_id":"call_', 2 * m, '","tool_name":"', tool, '"}}')
                    WHEN 'tool.responded' THEN CASE WHEN failed
                        THEN concat('{{"error_type":"error","latency_ms":', latency_ms,
                            ',"success":false,"tool_name":"', tool, '"}}')
                        ELSE concat('{{"latency_ms":', latency_ms, ',"output_hash":"', h, '","output_length":', size,
                            ',"success":true,"tool_name":"', tool, '"}}') END
                    WHEN 'run.completed' THEN concat('{{"exit_reason":"completed","total_steps":',
                        {llm_done + tool_done}, '}}')
                    ELSE concat('{{"error_hash":"', h, '","error_type":"ToolError","total_steps":',
                        {llm_done + tool_done}, '}}')
                END AS payload
            FROM y
            """)
        # Ingest appends events as they come (time order) and inserts a run when it is first seen.
        conn.execute("""
            INSERT INTO events BY NAME
            SELECT run_id, event_id, kind, ts_ns, call_id, payload, ts_ns + 150000000 AS ingested_ns
            FROM ev ORDER BY ts_ns
            """)
        conn.execute("""
            INSERT INTO runs BY NAME
            SELECT g.run_id, agent_id, concat(agent_id, '-svc') AS service_name, status, started_ns,
                CASE WHEN status IN ('completed', 'errored') THEN last_ns END AS ended_ns,
                last_ns AS last_event_ns, llm + tool AS step_count, llm AS llm_calls, tool AS tool_calls,
                0 AS retrievals, errors, prompt_tokens, 35 * llm AS completion_tokens,
                CASE status WHEN 'completed' THEN 'completed' WHEN 'errored' THEN 'error' END AS exit_reason,
                last_ns + 150000000 AS updated_ns, 'otlp' AS source
            FROM g JOIN (
                SELECT i, max(ts_ns) AS last_ns, count_if(kind = 'llm.called') AS llm,
                    count_if(kind = 'tool.called') AS tool, count_if(failed) AS errors,
                    coalesce(sum(200 + 80 * m) FILTER (WHERE kind = 'llm.called'), 0) AS prompt_tokens
                FROM ev GROUP BY i
            ) USING (i)
            ORDER BY started_ns
            """)
        conn.execute("CREATE TEMP TABLE st (k INTEGER, failure_type VARCHAR, severity VARCHAR, evidence VARCHAR)")
        conn.executemany("INSERT INTO st VALUES (?, ?, ?, ?)", [(k, *row) for k, row in enumerate(evidence)])
        conn.execute(f"""
            INSERT INTO signals BY NAME
            SELECT md5(concat(g.run_id, ':', st.failure_type))::UUID::VARCHAR AS signal_id, g.run_id,
                g.agent_id, st.failure_type, st.severity,
                round(0.5 + (hash(i, n, {seed}, 'confidence') % 500) / 1000.0, 3) AS confidence,
                step_index, st.evidence,
                g.started_ns + step_index * g.gap_ns + 2000000 AS detected_ns, 'live' AS mode,
                hash(i, n, {seed}, 'shadow') % 100 < 5 AS shadow
            FROM (
                SELECT g.*, n, CAST(1 + hash(i, n, {seed}, 'step') % greatest(r.step_count, 1) AS INTEGER) AS step_index
                FROM g JOIN runs AS r USING (run_id), range(2) AS s(n)
                WHERE (n = 0 AND u_signal < 0.05) OR (n = 1 AND u_signal < 0.015)
            ) AS g JOIN st ON st.k = (g.type_off + g.n) % {len(SIGNAL_TYPES)}
            ORDER BY detected_ns
            """)
        row = conn.execute("SELECT count(*) FROM events WHERE NOT json_valid(payload)").fetchone()
        if row is None or row[0]:
            raise RuntimeError(f"{row} event payloads are not JSON")
        conn.execute("CHECKPOINT")
    finally:
        conn.close()


@dataclass
class StoreFacts:
    runs: int
    events: int
    signals: int
    agents: list[str]
    failure_types: list[str]
    run_ids: list[str]
    bytes: int


def check_store(path: Path, events_per_run: int, seed: int) -> StoreFacts:
    """Open the file with the real DuckStore (migrations, its full read-back) and read through it."""
    store = DuckStore(str(path))
    store.open()
    try:
        cursor = store._cursor()

        def one(sql: str) -> Any:
            row = cursor.execute(sql).fetchone()
            assert row is not None
            return row[0]

        runs, events, signals = (one(f"SELECT count(*) FROM {t}") for t in ("runs", "events", "signals"))
        agents = [r[0] for r in cursor.execute("SELECT DISTINCT agent_id FROM runs ORDER BY 1").fetchall()]
        types = [r[0] for r in cursor.execute("SELECT DISTINCT failure_type FROM signals ORDER BY 1").fetchall()]
        sample = f"SELECT run_id::VARCHAR FROM runs USING SAMPLE reservoir(1000 ROWS) REPEATABLE ({seed}) ORDER BY 1"
        run_ids = [r[0] for r in cursor.execute(sample).fetchall()]
        # A built run (a reused store also holds the load phase's runs, of another agent).
        newest = store.list_runs(RunFilter(agent_id="agent-00", limit=1))
        if not newest or len(store.run_events(newest[0].run_id)) != events_per_run:
            raise RuntimeError("the store's newest run does not read back with its events")
        if not store.list_signals(SignalFilter(limit=1)):
            raise RuntimeError("the store lists no signal")
    finally:
        store.close()
    size = sum(p.stat().st_size for p in path.parent.glob(path.name + "*"))
    return StoreFacts(runs, events, signals, agents, types, run_ids, size)


# --- reads -------------------------------------------------------------------------------------


class Client:
    """One keep-alive connection; a sample is from sending the request to having read the body."""

    def __init__(self, address: str) -> None:
        host, port = address.rsplit(":", 1)
        self.conn = http.client.HTTPConnection(host, int(port), timeout=60)

    def get(self, path: str) -> tuple[float, Any]:
        t0 = time.perf_counter()
        self.conn.request("GET", path)
        response = self.conn.getresponse()
        body = response.read()
        elapsed = time.perf_counter() - t0
        if response.status != 200:
            raise RuntimeError(f"GET {path}: HTTP {response.status}: {body[:300]!r}")
        return elapsed, body

    def json(self, path: str) -> Any:
        return json.loads(self.get(path)[1])

    def close(self) -> None:
        self.conn.close()


def q(path: str, **params: str) -> str:
    return path + ("?" + urllib.parse.urlencode(params) if params else "")


def cursors(client: Client, path: str, key: str, pages: int) -> list[str]:
    """The next_cursor of the first ``pages`` pages (what a client paging through is handed)."""
    out: list[str] = []
    cursor: str | None = None
    for _ in range(pages):
        page = client.json(q(path, cursor=cursor) if cursor else path)
        cursor = page["next_cursor"]
        if not cursor or not page[key]:
            break
        out.append(cursor)
    if not out:
        raise RuntimeError(f"{path} gave no next_cursor")
    return out


def routes(client: Client, facts: StoreFacts, rng: random.Random, now_s: int) -> dict[str, Callable[[], str]]:
    """Route label → a function giving the next request's path (random agent, type, id, page)."""
    run_pages = cursors(client, "/v1/runs", "runs", 20)
    signal_pages = cursors(client, "/v1/signals", "signals", 20)
    return {
        "GET /v1/runs": lambda: "/v1/runs",
        "GET /v1/runs?agent_id=(random)": lambda: q("/v1/runs", agent_id=rng.choice(facts.agents)),
        "GET /v1/runs?status=errored": lambda: q("/v1/runs", status="errored"),
        "GET /v1/runs?since=(24 h ago)": lambda: q("/v1/runs", since=str(now_s - 86_400)),
        "GET /v1/runs?cursor=(pages 2-21)": lambda: q("/v1/runs", cursor=rng.choice(run_pages)),
        "GET /v1/runs/{id} (random)": lambda: f"/v1/runs/{rng.choice(facts.run_ids)}",
        "GET /v1/signals": lambda: "/v1/signals",
        "GET /v1/signals?failure_type=(random)": lambda: q("/v1/signals", failure_type=rng.choice(facts.failure_types)),
        "GET /v1/signals?agent_id=(random)": lambda: q("/v1/signals", agent_id=rng.choice(facts.agents)),
        "GET /v1/signals?cursor=(pages 2-21)": lambda: q("/v1/signals", cursor=rng.choice(signal_pages)),
        "GET /v1/agents (dashboard overview; not in the target)": lambda: "/v1/agents",
        # No store read, no key: how long a request waits for the daemon's event loop (and GIL).
        "GET /healthz (control: no store read)": lambda: "/healthz",
    }


def read_rounds(
    client: Client,
    table: dict[str, Callable[[], str]],
    rounds: int,
    rng: random.Random,
    keep_going: Callable[[], bool] = lambda: True,
) -> dict[str, list[tuple[float, float]]]:
    """``rounds`` rounds, each route once per round in a shuffled order: per request, when it
    was sent (``time.perf_counter()``) and how long it took in ms."""
    samples: dict[str, list[tuple[float, float]]] = {name: [] for name in table}
    names = list(table)
    for _ in range(rounds):
        if not keep_going():
            break
        rng.shuffle(names)
        for name in names:
            path = table[name]()
            sent = time.perf_counter()
            elapsed, _ = client.get(path)
            samples[name].append((sent, elapsed * 1000))
    return samples


def percentile(values: list[float], p: float) -> float:
    """Nearest rank: the smallest value with at least p % of the samples at or below it."""
    ordered = sorted(values)
    return ordered[max(0, math.ceil(p / 100 * len(ordered)) - 1)]


def summarize(timed: dict[str, list[tuple[float, float]]]) -> dict[str, dict[str, float]]:
    samples = {name: [ms for _, ms in v] for name, v in timed.items()}
    return {
        name: {
            "n": len(v),
            "p50_ms": percentile(v, 50),
            "p95_ms": percentile(v, 95),
            "p99_ms": percentile(v, 99),
            "max_ms": max(v),
            "mean_ms": sum(v) / len(v),
        }
        for name, v in samples.items()
        if v
    }


# --- ingest load ----------------------------------------------------------------------------


@dataclass
class IngestLoad:
    """Export requests at a steady rate over one gRPC channel, fresh trace ids for each send:
    the pool's trace ids are overwritten in place at offsets found once (cheap, so the load
    thread holds the client's GIL only briefly)."""

    target: str
    rate: float  # spans per second
    pool_size: int = 16
    max_seconds: float = 900.0
    spans_sent: int = 0
    refused: int = 0
    seconds: float = 0.0
    calls: list[tuple[float, float]] = field(default_factory=list)  # (sent, answered), perf_counter
    error: BaseException | None = None
    _stop: threading.Event = field(default_factory=threading.Event)
    _thread: threading.Thread | None = None

    def __post_init__(self) -> None:
        requests, spans = build_requests(self.pool_size, t0=time.time_ns())
        self.spans_per_request = spans // len(requests)
        self._pool: list[tuple[bytes, list[list[int]]]] = []
        for body in requests:
            message = ExportTraceServiceRequest.FromString(body)
            ids = {s.trace_id for rs in message.resource_spans for ss in rs.scope_spans for s in ss.spans}
            offsets = []
            for trace_id in ids:
                found, at = [], body.find(trace_id)
                while at >= 0:
                    found.append(at)
                    at = body.find(trace_id, at + 1)
                offsets.append(found)
            self._pool.append((body, offsets))

    def _fresh(self, k: int) -> bytes:
        body, offsets = self._pool[k % len(self._pool)]
        patched = bytearray(body)
        for found in offsets:
            new = uuid.uuid4().bytes
            for at in found:
                patched[at : at + 16] = new
        return bytes(patched)

    def _run(self) -> None:
        interval = self.spans_per_request / self.rate
        options = [("grpc.max_send_message_length", 64 * 1024 * 1024)]
        t0 = time.monotonic()
        try:
            with grpc.insecure_channel(self.target, options=options) as channel:
                call = channel.unary_unary(TRACE_METHOD, request_serializer=None, response_deserializer=None)
                k = 0
                while not self._stop.is_set() and time.monotonic() - t0 < self.max_seconds:
                    body = self._fresh(k)
                    delay = t0 + k * interval - time.monotonic()
                    if delay > 0 and self._stop.wait(delay):
                        break
                    sent = time.perf_counter()
                    try:
                        call(body, timeout=60)
                        self.spans_sent += self.spans_per_request
                    except grpc.RpcError as exc:
                        if exc.code() != grpc.StatusCode.UNAVAILABLE:
                            raise
                        self.refused += 1  # backpressure: the daemon refused it; the next one goes on time
                    finally:
                        self.calls.append((sent, time.perf_counter()))
                    k += 1
        except BaseException as exc:  # surfaced by stop()
            self.error = exc
        finally:
            self.seconds = time.monotonic() - t0

    def overlaps(self, sent: float, ms: float) -> bool:
        """Whether an export was in flight at some point of this read (exports go one at a time)."""
        at = bisect.bisect_left(self.calls, (sent + ms / 1000, 0.0)) - 1
        return at >= 0 and self.calls[at][1] > sent

    def start(self) -> None:
        self._thread = threading.Thread(target=self._run, name="ingest-load", daemon=True)
        self._thread.start()

    @property
    def running(self) -> bool:
        return self._thread is not None and self._thread.is_alive()

    def stop(self) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join()
        if self.error is not None:
            raise RuntimeError(f"ingest load failed: {self.error!r}") from self.error


# --- report --------------------------------------------------------------------------------------


def table(title: str, summary: dict[str, dict[str, float]]) -> list[str]:
    lines = [
        f"**{title}**",
        "",
        "| route | n | p50 ms | p95 ms | p99 ms | max ms | p99 < 50 ms |",
        "|---|---|---|---|---|---|---|",
    ]
    for name, s in summary.items():
        ok = "yes" if s["p99_ms"] < TARGET_P99_MS else "**no**"
        lines.append(
            f"| `{name}` | {s['n']:.0f} | {s['p50_ms']:.1f} | {s['p95_ms']:.1f} | {s['p99_ms']:.1f} | "
            f"{s['max_ms']:.1f} | {ok} |"
        )
    return lines


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--runs", type=int, default=100_000)
    parser.add_argument("--events-per-run", type=int, default=10)
    parser.add_argument("--agents", type=int, default=50)
    parser.add_argument("--days", type=int, default=30, help="the runs' start times spread over these last days")
    parser.add_argument("--samples", type=int, default=300, help="timed requests per route (idle daemon)")
    parser.add_argument("--warmup", type=int, default=20, help="untimed rounds first")
    parser.add_argument("--load-samples", type=int, default=300, help="timed requests per route under ingest load")
    parser.add_argument("--ingest-rate", type=float, default=2000, help="spans/s of the ingest load; 0: no load phase")
    parser.add_argument("--seed", type=int, default=7)
    parser.add_argument(
        "--store",
        metavar="FILE",
        help="keep the store here; an existing file is used as it is (the load phase adds its runs)",
    )
    parser.add_argument("--json", metavar="FILE", help="also write the results as JSON")
    args = parser.parse_args(argv)
    if args.events_per_run < 3 or args.runs < 1000 or not 1 <= args.agents <= 100:
        parser.error("--events-per-run >= 3, --runs >= 1000 and --agents from 1 to 100")

    workdir = tempfile.TemporaryDirectory(prefix="bench-api-latency-")
    path = Path(args.store).resolve() if args.store else Path(workdir.name) / "store.duckdb"
    now_ns = time.time_ns()
    out: dict[str, Any] = {"config": vars(args), "machine": f"{platform.machine()}, {os.cpu_count()} cores"}
    try:
        t0 = time.perf_counter()
        if args.store and path.exists():
            print(f"store: using {path} as it is", flush=True)
            build_s = 0.0
        else:
            print(f"store: building {args.runs} runs x {args.events_per_run} events in {path}", flush=True)
            store = DuckStore(str(path))
            store.open()  # the migrations: exactly the schema the daemon opens
            store.close()
            build_store(path, args.runs, args.events_per_run, args.agents, args.days, args.seed, now_ns)
            build_s = time.perf_counter() - t0
        t1 = time.perf_counter()
        facts = check_store(path, args.events_per_run, args.seed)
        check_s = time.perf_counter() - t1
        print(
            f"store: {facts.runs} runs, {facts.events} events, {facts.signals} signals, {len(facts.agents)} agents, "
            f"{facts.bytes / 1e6:.0f} MB; built in {build_s:.1f} s, opened and read back by DuckStore in "
            f"{check_s:.1f} s",
            flush=True,
        )
        out["store"] = {
            "runs": facts.runs,
            "events": facts.events,
            "signals": facts.signals,
            "agents": len(facts.agents),
            "bytes": facts.bytes,
            "build_seconds": build_s,
            "duckstore_open_seconds": check_s,
        }

        t2 = time.perf_counter()
        # The store spans --days of history: nothing may expire while it is measured.
        server = start("sidecar", {"DUNETRACE_DB_PATH": str(path), "DUNETRACE_STORE_RETENTION_HOURS": "0"})
        out["daemon_start_seconds"] = time.perf_counter() - t2
        print(f"daemon: ready in {out['daemon_start_seconds']:.1f} s, API on {server.addresses['api']}", flush=True)
        client = Client(server.addresses["api"])
        rng = random.Random(args.seed)
        try:
            paths = routes(client, facts, rng, now_ns // 1_000_000_000)
            t3 = time.perf_counter()
            read_rounds(client, paths, args.warmup, rng)
            load_before = os.getloadavg()[0]
            idle = summarize(read_rounds(client, paths, args.samples, rng))
            out["idle"] = idle
            out["idle_seconds"] = time.perf_counter() - t3
            out["idle_loadavg_1min"] = [load_before, os.getloadavg()[0]]
            print(
                f"reads (idle daemon): {out['idle_seconds']:.0f} s; machine load average (1 min) "
                f"{load_before:.2f} before, {os.getloadavg()[0]:.2f} after",
                flush=True,
            )
            print("\n".join(["", *table("idle daemon", idle), ""]), flush=True)

            if args.ingest_rate > 0:
                load = IngestLoad(server.addresses["otlp_grpc"], args.ingest_rate)
                load.start()
                time.sleep(3)  # the load settles
                t4 = time.perf_counter()
                try:
                    timed = read_rounds(client, paths, args.load_samples, rng, lambda: load.running)
                finally:
                    load.stop()
                loaded = summarize(timed)
                # The store's reads split by whether an export was being processed meanwhile.
                reads = [x for name, v in timed.items() if "/healthz" not in name for x in v]
                split = {
                    label: summarize({label: [x for x in reads if load.overlaps(*x) == during]})
                    for label, during in (("during an export", True), ("between exports", False))
                }
                busy = sum(end - sent for sent, end in load.calls) / load.seconds
                out["under_load"] = loaded
                out["ingest"] = {
                    "target_spans_per_s": args.ingest_rate,
                    "acked_spans_per_s": load.spans_sent / load.seconds,
                    "refused_requests": load.refused,
                    "export_in_flight_share": busy,
                    "export_ms_p50": percentile([(end - sent) * 1000 for sent, end in load.calls], 50),
                    "reads_by_overlap": {k: v[k] for k, v in split.items() if k in v},
                    "read_seconds": time.perf_counter() - t4,
                    "loadavg_1min_after": os.getloadavg()[0],
                }
                print(
                    f"reads under load: {out['ingest']['read_seconds']:.0f} s; machine load average (1 min) "
                    f"{os.getloadavg()[0]:.2f} after",
                    flush=True,
                )
                title = (
                    f"under ingest load (OTLP/gRPC, target {args.ingest_rate:.0f} spans/s, acknowledged "
                    f"{out['ingest']['acked_spans_per_s']:.0f} spans/s, {load.refused} requests refused)"
                )
                print("\n".join(["", *table(title, loaded), ""]), flush=True)
                print(
                    f"exports in flight {busy:.0%} of the time ({out['ingest']['export_ms_p50']:.0f} ms each, median); "
                    "the store's reads (all routes but /healthz):",
                    flush=True,
                )
                for label, s in out["ingest"]["reads_by_overlap"].items():
                    print(
                        f"  {label}: n {s['n']:.0f}, p50 {s['p50_ms']:.1f} ms, p99 {s['p99_ms']:.1f} ms, "
                        f"max {s['max_ms']:.1f} ms",
                        flush=True,
                    )
        finally:
            client.close()
            server.stop()
    finally:
        workdir.cleanup()
    print(
        f"machine: {out['machine']}, Python {platform.python_version()}, DuckDB {duckdb.__version__}; "
        f"target: p99 < {TARGET_P99_MS:.0f} ms (GET /v1/runs and /v1/signals)"
    )
    if args.json:
        Path(args.json).write_text(json.dumps(out, indent=2))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
