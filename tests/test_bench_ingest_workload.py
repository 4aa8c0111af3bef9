"""bench/ingest_workload.py: the throughput workload's runs as the published SDK's ``POST /v1/ingest``.

The posts have the SDK's wire format (held to its real capture, tests/testdata/dunetrace-sdk), the
sidecar and the null receiver take them through the bench's own sender, and the sidecar builds
runs of the workload's shape from them. Last, the real SDK (dunetrace==0.5.7, .sdkenv/) replays the
same runs through its own hooks and ships the same events. Counts are written from the
workload's shape (bench/workload.py): 15 steps a run (LLM at 0, 2, …, 14: 8 calls; tools at 1, 3,
…, 13: 7 calls), a failing run fails its tools at steps 9, 11 and 13, a run is 16 spans.
"""

from __future__ import annotations

import json
import subprocess
from pathlib import Path
from typing import Any

import pytest
from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import ExportTraceServiceRequest

from bench import throughput
from bench.ingest_workload import API_KEY, IngestPost, _llm, _runs, ingest_groups
from bench.workload import build_requests
from tests.sdk.env import SdkEnvError, ensure_sdk_env
from tests.sidecar import ROOT, Sidecar

CAPTURE = ROOT / "tests" / "testdata" / "dunetrace-sdk" / "a_run_loop.jsonl"
RUN_TYPES = ["run.started"] + ["llm.called", "llm.responded", "tool.called", "tool.responded"] * 7
RUN_TYPES += ["llm.called", "llm.responded", "run.completed"]
RUN_STEPS = [0] + [step for step in range(1, 16) for _ in (0, 1)] + [15]


def events_of(groups: list[list[IngestPost]]) -> list[dict[str, Any]]:
    return [event for group in groups for post in group for event in json.loads(post.body)["events"]]


def by_run(events: list[dict[str, Any]]) -> dict[str, list[dict[str, Any]]]:
    runs: dict[str, list[dict[str, Any]]] = {}
    for event in events:
        runs.setdefault(event["run_id"], []).append(event)
    return runs


def test_posts_have_the_sdks_wire_format() -> None:
    requests, spans = build_requests(2, spans_per_request=64)
    groups = ingest_groups(requests)
    assert spans == 128
    # 4 runs of 16 spans per request, 2 events a span: 128 events, in batches of at most 100
    assert [[post.events for post in group] for group in groups] == [[100, 28], [100, 28]]

    records = [json.loads(line) for line in CAPTURE.read_text().splitlines()]
    sent = [r for r in records if r["path"] == "/v1/ingest"]
    seen: dict[str, dict[str, Any]] = {}
    for record in sent:
        for event in record["body_json"]["events"]:
            if event["run_id"] == sent[0]["body_json"]["events"][0]["run_id"]:  # the openai + tools run
                seen.setdefault(event["event_type"], event)
    added_by_http_client = {"Accept-Encoding", "Content-Length", "Host"}
    sdk_headers = [name for name, _ in sent[0]["headers"] if name not in added_by_http_client]

    for group in groups:
        for post in group:
            assert list(post.headers) == sdk_headers
            assert post.headers["User-Agent"] == dict(sent[0]["headers"])["User-Agent"]
            assert post.headers["Authorization"] == f"Bearer {API_KEY}"
            # json.dumps' defaults, as the SDK writes it: ASCII, ", " and ": " separators
            assert post.body.isascii() and json.dumps(json.loads(post.body)).encode() == post.body
            document = json.loads(post.body)
            assert list(document) == ["api_key", "agent_id", "events"]
            assert document["api_key"] == API_KEY and document["agent_id"] == post.headers["X-Dunetrace-Agent"]

    events = events_of(groups)
    for event in events:
        real = seen[event["event_type"]]
        assert list(event) == list(real)
        payload = [key for key in event["payload"] if key != "error"]  # a failed tool's error: no capture has one
        assert payload == list(real["payload"]), event["event_type"]
    runs = by_run(events)
    assert len(runs) == 8
    for run in runs.values():
        assert [e["event_type"] for e in run] == RUN_TYPES
        assert [e["step_index"] for e in run] == RUN_STEPS
        assert run[-1]["payload"] == {"total_steps": 15, "exit_reason": "completed", "tool_call_count": 7}
        assert [e["payload"]["call_id"] for e in run if e["event_type"] == "llm.called"] == list(range(8))


def test_the_sidecar_builds_the_workloads_runs(tmp_path: Path) -> None:
    requests, _ = build_requests(6, spans_per_request=64)
    groups = ingest_groups(requests)
    daemon = Sidecar(tmp_path / "sidecar", env={"DUNETRACE_API_KEYS": API_KEY, "DUNETRACE_END_GRACE": "0.2"})
    daemon.api_key = API_KEY
    daemon.start()
    try:
        # the bench's sender: it checks each answer's accepted + ignored against the post's events
        throughput.send_ingest(daemon.addresses["api"], groups, 2)
        runs = {}
        for run_id in by_run(events_of(groups)):
            run = daemon.wait_run(run_id, lambda r: not r["end_pending"] and r["status"] != "running")
            runs[run_id] = {k: run[k] for k in ("status", "llm_calls", "tool_calls", "step_count", "errors", "source")}
            runs[run_id]["events"] = len(run["events"])
    finally:
        daemon.close()
    assert len(runs) == 24  # 4 runs of 16 spans in each of 6 requests
    shape = {"status": "completed", "llm_calls": 8, "tool_calls": 7, "step_count": 15, "source": "sdk", "events": 32}
    for run in runs.values():
        assert {k: v for k, v in run.items() if k != "errors"} == shape
        assert run["errors"] in (0, 3)
    assert sum(run["errors"] == 3 for run in runs.values()) >= 1  # this sample has failing runs


def test_the_null_receiver_answers_like_the_sidecar() -> None:
    requests, _ = build_requests(2, spans_per_request=64)
    server = throughput.start("null")
    try:
        throughput.send_ingest(server.addresses["api"], ingest_groups(requests), 2)  # raises on a wrong count
    finally:
        server.stop()


# The real SDK replays the runs: `with dt.run(...)`, auto_instrument(["openai"]) around a real openai
# client (the fake below answers each call with the workload's completion, finish reason and usage),
# tools through run.tool_called / run.tool_responded, and ships to a capture server.
REPLAY = r"""
import json, sys, threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

runs = json.load(open(sys.argv[1]))
answers = [step for run in runs for step in run["steps"] if "model" in step]
posts = []

class Handler(BaseHTTPRequestHandler):
    def log_message(self, *args):
        pass

    def reply(self, document):
        body = json.dumps(document).encode()
        self.send_response(200)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def do_GET(self):  # policies, detector config
        self.reply({"policies": []} if self.path.startswith("/v1/policies") else {"schema_version": 1})

    def do_POST(self):
        raw = self.rfile.read(int(self.headers["Content-Length"]))
        if self.path == "/v1/ingest":
            posts.append({"headers": list(self.headers.items()), "body": raw.decode()})
            return self.reply({"accepted": 1})
        a = answers.pop(0)
        call = {"id": "call_1", "type": "function", "function": {"name": "lookup_order", "arguments": "{}"}}
        message = {"role": "assistant", "content": a["output"], "tool_calls": [call]}
        self.reply({
            "id": "chatcmpl-1", "object": "chat.completion", "created": 1, "model": a["model"],
            "choices": [{"index": 0, "message": message, "finish_reason": a["finish"]}],
            "usage": {"prompt_tokens": a["in"], "completion_tokens": a["out"], "total_tokens": a["in"] + a["out"]},
        })

server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
threading.Thread(target=server.serve_forever, daemon=True).start()
url = f"http://127.0.0.1:{server.server_address[1]}"

from openai import OpenAI
from dunetrace import Dunetrace

dt = Dunetrace(api_key=sys.argv[2], endpoint=url)
dt.auto_instrument(["openai"])
client = OpenAI(api_key="sk-test", base_url=url + "/v1", max_retries=0)
for run in runs:
    first = next(step for step in run["steps"] if "model" in step)
    with dt.run(run["agent"], user_input=run["input"], system_prompt=first["system"], model=first["model"],
                tools=run["tools"]) as ctx:
        for step in run["steps"]:
            if "model" in step:
                messages = [{"role": "system", "content": step["system"]}, {"role": "user", "content": step["prompt"]}]
                client.chat.completions.create(model=step["model"], messages=messages)
            else:
                ctx.tool_called(step["tool"], step["kwargs"])
                if step["error"]:
                    ctx.tool_responded(step["tool"], success=False, error=step["error"])
                else:
                    ctx.tool_responded(step["tool"], success=True, output=step["output"])
dt.shutdown(timeout=10)
json.dump(posts, sys.stdout)
"""


def test_the_real_sdk_ships_the_same_events(tmp_path: Path) -> None:
    try:
        python = ensure_sdk_env().python
    except SdkEnvError as exc:
        pytest.fail(f"could not build the SDK environment (.sdkenv/):\n{exc}", pytrace=False)
    requests, _ = build_requests(6, spans_per_request=64)
    ours = by_run(events_of(ingest_groups(requests)))
    # The runs' inputs, read from the OTLP spans (the SDK builds its events from them on its own)
    inputs = []
    for body in requests:
        for spans in _runs(ExportTraceServiceRequest.FromString(body)):
            root = next(s for s in spans if s.root)
            steps = []
            for s in sorted((s for s in spans if not s.root), key=lambda s: s.span.start_time_unix_nano):
                if s.tool:
                    failed = "traceloop.entity.output" not in s.attrs
                    steps.append(
                        {
                            "tool": s.attrs["gen_ai.tool.name"],
                            "kwargs": json.loads(s.attrs["traceloop.entity.input"])["kwargs"],
                            "output": s.attrs.get("traceloop.entity.output", ""),
                            "error": "TimeoutError: the tool did not answer" if failed else None,
                        }
                    )
                else:
                    call = _llm(s.attrs)
                    steps.append(
                        {
                            "model": call.model,
                            "system": call.system_prompt,
                            "prompt": call.contents[-1],
                            "output": call.output,
                            "finish": call.finish_reason,
                            "in": call.prompt_tokens,
                            "out": call.completion_tokens,
                        }
                    )
            inputs.append(
                {
                    "agent": root.attrs["traceloop.workflow.name"],
                    "input": json.loads(root.attrs["traceloop.entity.input"])["args"][0],
                    "tools": ["fetch_report", "get_weather", "lookup_order", "search_kb"],
                    "steps": steps,
                }
            )
    (tmp_path / "runs.json").write_text(json.dumps(inputs))
    done = subprocess.run(
        [str(python), "-c", REPLAY, str(tmp_path / "runs.json"), API_KEY],
        capture_output=True,
        text=True,
        timeout=180,
        cwd=tmp_path,
    )
    assert done.returncode == 0, done.stderr[-2000:]
    posts = json.loads(done.stdout)
    theirs = [event for post in posts for event in json.loads(post["body"])["events"]]
    assert len(theirs) == sum(map(len, ours.values())) == 24 * 32
    real_headers = [(k, v) for k, v in posts[0]["headers"] if k not in ("Accept-Encoding", "Content-Length", "Host")]
    assert real_headers == list(ingest_groups(requests[:1])[0][0].headers.items())
    # Run by run in order (run ids, event ids and timestamps are the SDK's own); latencies are the
    # replay's, and run.started's source_file is the replay script.
    volatile = {"run_id", "event_id", "timestamp"}
    for real_run, our_run in zip(by_run(theirs).values(), ours.values(), strict=True):
        for real, our in zip(real_run, our_run, strict=True):
            assert list(real) == list(our)
            assert {k: v for k, v in real.items() if k not in volatile | {"payload"}} == {
                k: v for k, v in our.items() if k not in volatile | {"payload"}
            }
            assert list(real["payload"]) == list(our["payload"]), real["event_type"]
            skip = {"latency_ms", "source_file", "instrumented"}
            assert {k: v for k, v in real["payload"].items() if k not in skip} == {
                k: v for k, v in our["payload"].items() if k not in skip
            }, real["event_type"]
