"""Translation in worker processes (receiver.translation_processes): the same answers as on a
thread, a killed worker costs its exports one retry and loses nothing acknowledged, and the
workers never outlive the daemon."""

from __future__ import annotations

import gc
import json
import os
import signal
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import grpc
import pytest
from opentelemetry.exporter.otlp.proto.http.trace_exporter import OTLPSpanExporter
from opentelemetry.sdk.resources import Resource
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor

from bench.throughput import children
from dunetrace_sidecar.cli import GC_YOUNG_THRESHOLD
from dunetrace_sidecar.config import ConfigError, load
from dunetrace_sidecar.translation import Translator, available_cpus, translation_processes
from receiver.content import Hasher
from tests.daemon.test_sdk_ingest import CAPTURES, KEY, batches, post
from tests.otel_sdk import RecordingExporter
from tests.receiver.test_refusal_logs import metric
from tests.sidecar import FIXTURES, Sidecar, wait_for, with_new_trace_ids

# --- the setting --------------------------------------------------------------------------


@pytest.mark.parametrize(("value", "parsed"), [("auto", None), ("AUTO", None), ("0", 0), ("3", 3), ("16", 16)])
def test_the_setting_reads_auto_or_a_count(value: str, parsed: int | None) -> None:
    assert load(None, {"DUNETRACE_TRANSLATION_PROCESSES": value}).receiver.translation_processes == parsed


@pytest.mark.parametrize("value", ["-1", "17", "two", "1.5", ""])
def test_a_bad_setting_is_refused_by_name(value: str) -> None:
    with pytest.raises(ConfigError, match="DUNETRACE_TRANSLATION_PROCESSES"):
        load(None, {"DUNETRACE_TRANSLATION_PROCESSES": value})


def test_the_default_is_auto() -> None:
    assert load(None, {}).receiver.translation_processes is None


@pytest.mark.parametrize(("cpus", "processes"), [(1, 0), (2, 2), (3, 2), (64, 2)])
def test_auto_is_one_per_cpu_at_most_two_and_none_on_one_cpu(cpus: int, processes: int) -> None:
    assert translation_processes(None, cpus=cpus) == processes


def test_a_number_is_taken_as_it_is() -> None:
    assert translation_processes(0, cpus=8) == 0
    assert translation_processes(5, cpus=1) == 5


@pytest.mark.parametrize(
    ("cpu_max", "limit"),
    [("max 100000\n", None), ("200000 100000\n", 2), ("150000 100000\n", 1), ("50000 100000\n", 1), ("garbage", None)],
)
def test_a_cgroup_quota_lowers_the_cpus(tmp_path: Path, cpu_max: str, limit: int | None) -> None:
    (tmp_path / "cpu.max").write_text(cpu_max)
    affinity = len(os.sched_getaffinity(0))
    assert available_cpus(tmp_path) == (affinity if limit is None else min(affinity, limit))


def test_no_cgroup_file_leaves_the_affinity(tmp_path: Path) -> None:
    assert available_cpus(tmp_path) == len(os.sched_getaffinity(0))


# --- the daemon ---------------------------------------------------------------------------


def workers(daemon: Sidecar) -> list[int]:
    """The daemon's translation workers (its spawned children, not multiprocessing's tracker)."""
    assert daemon.process is not None
    return sorted(pid for pid in children(daemon.process.pid) if _alive(pid) and _is_worker(pid))


def _is_worker(pid: int) -> bool:
    try:
        return b"spawn_main" in Path(f"/proc/{pid}/cmdline").read_bytes()
    except OSError:
        return False  # gone meanwhile


def _alive(pid: int) -> bool:
    try:
        return Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0] != "Z"
    except OSError:
        return False


def test_workers_tune_their_garbage_collector_as_the_daemon_does() -> None:
    """Translation allocates thousands of short-lived objects per export: at the default
    thresholds a worker would traverse and promote them as the daemon once did."""
    translator = Translator(Hasher(), processes=1)
    translator.start()
    try:
        assert translator._pool is not None
        young, _, _ = translator._pool.submit(gc.get_threshold).result(timeout=60)
        frozen = translator._pool.submit(gc.get_freeze_count).result(timeout=60)
    finally:
        translator.close()
    assert young == GC_YOUNG_THRESHOLD
    assert frozen > 10_000  # the worker's imported modules, frozen once it started


def test_the_log_says_how_many(make_sidecar: Callable[..., Sidecar]) -> None:
    daemon = make_sidecar({"DUNETRACE_TRANSLATION_PROCESSES": "2"})
    assert "translation processes=2" in daemon.log_text()
    assert len(wait_for(lambda: len(workers(daemon)) == 2 and workers(daemon), what="two workers")) == 2
    thread = make_sidecar({"DUNETRACE_TRANSLATION_PROCESSES": "0"}, name="thread")
    assert "translation processes=0" in thread.log_text()
    assert workers(thread) == []


def _comparable(run: dict[str, Any]) -> dict[str, Any]:
    """A run as the API answers it, minus what the daemon's clock decides."""
    clock = {"created_at", "updated_at", "received_at", "detected_at", "end_pending"}
    return json.loads(json.dumps(run), object_hook=lambda d: {k: v for k, v in d.items() if k not in clock})


def test_workers_and_a_thread_answer_the_same(make_sidecar: Callable[..., Sidecar]) -> None:
    """Every OTLP capture (traces over HTTP and gRPC, gen_ai log records) and the published SDK's
    ingest batches, sent to a daemon translating in two worker processes and to one translating
    on a thread: the same runs, events and signals, field for field."""
    common = {"DUNETRACE_END_GRACE": "0", "DUNETRACE_API_KEYS": KEY}
    processes = make_sidecar({"DUNETRACE_TRANSLATION_PROCESSES": "2", **common}, name="p")
    thread = make_sidecar({"DUNETRACE_TRANSLATION_PROCESSES": "0", **common}, name="t")
    processes.api_key = thread.api_key = KEY
    run_ids: set[str] = set()
    traces = sorted(p for p in FIXTURES.glob("*.pb") if not p.name.endswith(".logs.pb"))
    assert len(traces) > 20
    for i, path in enumerate(traces):
        body = path.read_bytes()
        run_ids |= set(with_new_trace_ids(body)[1])  # the ids it carries (sent unchanged)
        for daemon in (processes, thread):
            if i % 2:
                daemon.grpc_export(body)
            else:
                assert daemon.post_otlp(body).status == 200
    for path in FIXTURES.glob("*.logs.pb"):
        for daemon in (processes, thread):
            assert daemon.post_otlp(path.read_bytes(), path="/v1/logs").status == 200
    captures = sorted(path.stem for path in CAPTURES.glob("*.jsonl"))
    assert len(captures) >= 3
    for batch in [body for capture in captures for body in batches(capture)]:
        for daemon in (processes, thread):
            answer = post(daemon, batch)
            assert answer.status == 200, answer.body[:300]
        run_ids |= {event["run_id"] for event in batch["events"] if isinstance(event.get("run_id"), str)}

    compared = 0
    for run_id in sorted(run_ids):
        answers = [daemon.api(f"/v1/runs/{run_id}") for daemon in (processes, thread)]
        assert answers[0].status == answers[1].status, run_id
        if answers[0].status != 200:
            continue
        runs = [daemon.judged_run(run_id) for daemon in (processes, thread)]
        assert _comparable(runs[0]) == _comparable(runs[1]), run_id
        compared += 1
    assert compared > 20
    signals = [daemon.api_json("/v1/signals?limit=500")["signals"] for daemon in (processes, thread)]
    assert 0 < len(signals[0]) < 500, "the captures raise signals, all on one page"
    key = lambda s: (s["run_id"], s["failure_type"], s["step_index"])  # noqa: E731
    assert sorted(map(key, signals[0])) == sorted(map(key, signals[1]))


def _kill_a_worker(daemon: Sidecar) -> int:
    pid = wait_for(lambda: workers(daemon), what="a worker")[0]
    os.kill(pid, signal.SIGKILL)
    wait_for(lambda: not _alive(pid), what="the worker to die")
    return pid


def test_a_killed_worker_costs_one_retry_and_nothing_acknowledged(make_sidecar: Callable[..., Sidecar]) -> None:
    daemon = make_sidecar({"DUNETRACE_TRANSLATION_PROCESSES": "1"})
    refused = 'outcome="worker_lost",signal="traces",transport="http"'

    killed = _kill_a_worker(daemon)
    body, ids = with_new_trace_ids((FIXTURES / "openllmetry-openai-toolloop.pb").read_bytes())
    [run_id] = ids.values()
    first = daemon.post_otlp(body)
    assert first.status == 503 and first.headers.get("Retry-After"), first
    assert metric(daemon, refused) == 1
    assert daemon.api(f"/v1/runs/{run_id}").status == 404  # refused: nothing of it was kept
    assert daemon.post_otlp(body).status == 200  # the retry, on new workers
    assert killed not in workers(daemon) and len(workers(daemon)) == 1
    run = daemon.run(run_id)
    assert (run["status"], run["llm_calls"], run["tool_calls"], len(run["events"])) == ("completed", 4, 4, 18)
    assert "translation worker process stopped" in daemon.log_text()

    _kill_a_worker(daemon)  # over gRPC: UNAVAILABLE, then accepted
    body, ids = with_new_trace_ids((FIXTURES / "openinference-anthropic-errors.pb").read_bytes())
    [grpc_run] = ids.values()
    with pytest.raises(grpc.RpcError) as refusal:
        daemon.grpc_export(body)
    assert refusal.value.code() == grpc.StatusCode.UNAVAILABLE
    daemon.grpc_export(body)
    errors = daemon.run(grpc_run)
    assert (errors["status"], errors["llm_calls"], errors["tool_calls"], errors["errors"]) == ("errored", 4, 1, 2)

    # The OpenTelemetry SDK's exporter retries the 503 by itself: the span arrives, once.
    _kill_a_worker(daemon)
    exporter = RecordingExporter(OTLPSpanExporter(endpoint=daemon.http_url + "/v1/traces", timeout=20))
    provider = TracerProvider(resource=Resource.create({"service.name": "worker-kill"}))
    provider.add_span_processor(SimpleSpanProcessor(exporter))
    tracer = provider.get_tracer("worker-kill")
    agent = {"gen_ai.operation.name": "invoke_agent", "gen_ai.agent.name": "kill-test"}
    with tracer.start_as_current_span("invoke_agent kill-test", attributes=agent) as root:
        trace_id = format(root.get_span_context().trace_id, "032x")
        chat = {"gen_ai.operation.name": "chat", "gen_ai.request.model": "gpt-4o", "gen_ai.response.model": "gpt-4o"}
        with tracer.start_as_current_span("chat gpt-4o", attributes=chat):
            pass
    provider.shutdown()
    assert exporter.results == ["SUCCESS", "SUCCESS"]  # the chat span (retried), then the root
    assert metric(daemon, refused) == 2
    sdk_run = daemon.wait_run(trace_id, lambda r: r["status"] == "completed")
    assert (sdk_run["agent_id"], sdk_run["llm_calls"]) == ("kill-test", 1)


def test_workers_leave_with_the_daemon(make_sidecar: Callable[..., Sidecar]) -> None:
    daemon = make_sidecar({"DUNETRACE_TRANSLATION_PROCESSES": "2"})
    pids = wait_for(lambda: len(workers(daemon)) == 2 and workers(daemon), what="two workers")
    assert daemon.stop() == 0
    assert not [pid for pid in pids if _alive(pid)]

    daemon.start()
    pids = wait_for(lambda: len(workers(daemon)) == 2 and workers(daemon), what="two workers again")
    daemon.kill()  # SIGKILL: no shutdown path runs, the workers notice by themselves
    deadline = time.monotonic() + 10
    while [pid for pid in pids if _alive(pid)] and time.monotonic() < deadline:
        time.sleep(0.1)
    assert not [pid for pid in pids if _alive(pid)], "workers outlived a killed daemon"
