"""Run by ``bench/sdk_overhead.py`` with our SDK's venv python (``.oursdkenv``): the time one
tracked call costs the agent's thread, against the same loop doing nothing but the call itself.

Prints one JSON object: per measure, the caller-thread µs per call of each round, plus the
process CPU µs per call (the export thread included). Not a test and not imported by one.
"""

from __future__ import annotations

import json
import os
import socket
import sys
import threading
import time
from collections.abc import Callable, Sequence
from typing import Any

from dunetrace import Dunetrace
from opentelemetry.sdk.trace import ReadableSpan
from opentelemetry.sdk.trace.export import SpanExporter, SpanExportResult

CALLS = int(os.environ.get("PROBE_CALLS", "5000"))
ROUNDS = int(os.environ.get("PROBE_ROUNDS", "5"))
PROMPT = " ".join(["Where is my order A-1042? It should have arrived on Monday."] * 40)  # ~2.4 KB
ANSWER = " ".join(["Your parcel is with the carrier and arrives tomorrow."] * 10)
SYSTEM = "You are the order support agent. Use the tools to look orders up; answer briefly."
TURN = "Where is my order A-1042? It should have arrived on Monday, the tracking page says nothing."
DOCS_POLICIES = (
    ("cap tool calls", {"trigger": "tool_call_count", "operator": "gt", "value": 10**9}, {"type": "stop"}),
    (
        "cost cap",
        {"trigger": "cost_usd", "operator": "gt", "value": 10**9},
        {"type": "switch_model", "params": {"model": "gpt-4o-mini"}},
    ),
    (
        "loop fix",
        {"trigger": "signal", "operator": "eq", "value": "TOOL_LOOP"},
        {"type": "inject_prompt", "params": {"prompt": "Stop repeating tool calls. Answer directly."}},
    ),
)


class Discard(SpanExporter):
    """Accepts every span at once: the export thread's own cost, no network."""

    def export(self, spans: Sequence[ReadableSpan]) -> SpanExportResult:
        return SpanExportResult.SUCCESS

    def shutdown(self) -> None:
        pass


def silent_port() -> tuple[socket.socket, int]:
    """A TCP port on 127.0.0.1 that accepts connections and never answers (a hung collector)."""
    server = socket.socket()
    server.bind(("127.0.0.1", 0))
    server.listen(64)
    held: list[socket.socket] = []

    def accept() -> None:
        while True:
            try:
                conn, _ = server.accept()
            except OSError:
                return
            held.append(conn)

    threading.Thread(target=accept, daemon=True).start()
    return server, server.getsockname()[1]


def bare(i: int) -> None:
    """The baseline: the same loop calling a function that takes the same arguments."""
    _noop("lookup_order", {"order": f"A-{i % 7}"})
    _noop("lookup_order", "shipped")


def _noop(*args: Any) -> None:
    return None


def timed(step: Callable[[int], None]) -> tuple[float, float]:
    """(caller-thread µs per call, process CPU µs per call)."""
    cpu0, wall0 = time.process_time(), time.perf_counter()
    for i in range(CALLS):
        step(i)
    wall, cpu = time.perf_counter() - wall0, time.process_time() - cpu0
    return wall / CALLS * 1e6, cpu / CALLS * 1e6


def measure(dt: Dunetrace, kind: str) -> tuple[float, float]:
    with dt.run(f"probe-{kind}") as run:
        if kind == "tool":

            def step(i: int) -> None:
                run.tool_called("lookup_order", {"order": f"A-{i % 7}"})
                run.tool_responded("lookup_order", output="shipped")

        elif kind == "llm":

            def step(i: int) -> None:
                # a prompt never seen before: nothing is reused from an earlier call
                run.llm_called("gpt-4o-mini", prompt_tokens=600, prompt=f"{PROMPT} (call {i})")
                run.llm_responded(completion_tokens=80, finish_reason="stop", output=ANSWER)

        else:  # an agent's conversation: the history resent with one new message per call

            def step(i: int) -> None:
                history = [{"role": "system", "content": SYSTEM}]
                history += [{"role": "user", "content": f"{TURN} (turn {t})"} for t in range(max(0, i - 10), i + 1)]
                run.llm_called("gpt-4o-mini", prompt_tokens=600, prompt=history)
                run.llm_responded(completion_tokens=80, finish_reason="stop", output=ANSWER)

        result = timed(step)
        run.final_answer()
    return result


def client(exporter: SpanExporter | None, policies: bool) -> Dunetrace:
    dt = Dunetrace(span_exporter=exporter, live_decisions=False)
    if policies:
        for name, condition, action in DOCS_POLICIES:
            dt.add_policy(name=name, condition=condition, action=action)
    return dt


def main() -> int:
    server, port = silent_port()
    os.environ["OTEL_EXPORTER_OTLP_ENDPOINT"] = f"http://127.0.0.1:{port}"  # the hung collector
    os.environ["OTEL_EXPORTER_OTLP_TIMEOUT"] = "2"
    clients = {
        "discard": client(Discard(), False),
        "discard+policies": client(Discard(), True),
        "hung collector": client(None, False),  # the real OTLP/HTTP exporter, to a port that never answers
    }
    out: dict[str, list[list[float]]] = {}
    for _ in range(ROUNDS):  # interleaved: every measure in every round
        out.setdefault("bare", []).append(list(timed(bare)))
        for name, dt in clients.items():
            for kind in ("tool", "llm", "llm history"):
                out.setdefault(f"{kind} / {name}", []).append(list(measure(dt, kind)))
    for dt in clients.values():
        dt.shutdown(timeout=0.5)
    server.close()
    json.dump({"calls": CALLS, "rounds": ROUNDS, "results": out}, sys.stdout)
    return 0


def auto_main() -> int:
    """``PROBE_MODE=auto`` (in the SDK's stacks venv, with ``PROBE_OPENAI_BASE_URL`` a fake OpenAI
    server in another process): an ``openai`` chat call through ``dt.auto_instrument()``, inside
    a run (tracked) and outside one (untracked: the instrumentation's cost alone), interleaved;
    and the same call before ``auto_instrument`` (measured first: instrumenting cannot be undone)."""
    from openai import OpenAI

    calls = int(os.environ.get("PROBE_AUTO_CALLS", "500"))
    openai = OpenAI(base_url=os.environ["PROBE_OPENAI_BASE_URL"], api_key="sk-bench", max_retries=0)

    def call(i: int) -> None:
        messages = [{"role": "system", "content": SYSTEM}, {"role": "user", "content": f"{TURN} ({i})"}]
        openai.chat.completions.create(model="gpt-4o-mini", messages=messages)  # type: ignore[arg-type]

    def timed_calls() -> list[float]:
        cpu0, wall0 = time.process_time(), time.perf_counter()
        for i in range(calls):
            call(i)
        return [(time.perf_counter() - wall0) / calls * 1e6, (time.process_time() - cpu0) / calls * 1e6]

    out: dict[str, list[list[float]]] = {}
    call(0)  # the client's first request (connection setup, imports) is not measured
    for _ in range(ROUNDS):
        out.setdefault("openai / not instrumented", []).append(timed_calls())
    dt = client(Discard(), False)
    dt.auto_instrument(["openai", "httpx"])
    call(0)
    for _ in range(ROUNDS):
        out.setdefault("openai / auto, outside a run", []).append(timed_calls())
        with dt.run("probe-auto"):
            out.setdefault("openai / auto, inside a run", []).append(timed_calls())
    dt.shutdown(timeout=0.5)
    json.dump({"calls": calls, "rounds": ROUNDS, "results": out}, sys.stdout)
    return 0


if __name__ == "__main__":
    sys.exit(auto_main() if os.environ.get("PROBE_MODE") == "auto" else main())
