"""Live decisions (proto/dunetrace/sidecar/v1/decisions.proto) against a real daemon, through a
real gRPC client with the messages generated from the .proto at build time.

The run: openllmetry-openai-toolloop (agent support_agent): LLM calls at steps 1, 3, 5, 7 and
lookup_order calls at steps 2, 4, 6, 8 with identical arguments; TOOL_LOOP fires at step 6. Its
spans arrive without their root first, so the run is still open (as an agent mid-loop). The
policy "cap tools" (tool_call_count gt 2, stop) fires on the third tool call (step 6) and raises
POLICY_VIOLATION there.
"""

from __future__ import annotations

import json
import queue
import threading
from collections.abc import Callable, Iterator
from typing import Any

import grpc
import pytest
from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import ExportTraceServiceRequest

from detectors.events import POLICY_TRIGGERED, RunEvent
from dunetrace_sidecar._pb.decisions_pb2 import Decision, WatchRequest
from dunetrace_sidecar.decisions import MAX_QUEUED, DecisionHub
from tests.sidecar import Sidecar, fixture_bytes, http, trace_ids_in, with_new_trace_ids

WATCH = "/dunetrace.sidecar.v1.Decisions/Watch"
KEY = "decisions-key-0123456789"
CAP_TOOLS = {
    "name": "cap tools",
    "condition": {"trigger": "tool_call_count", "operator": "gt", "value": 2},
    "action": {"type": "stop"},
}
SWITCH = {
    "name": "cheaper model",
    "condition": {"trigger": "step_count", "operator": "gte", "value": 3},
    "action": {"type": "switch_model", "params": {"model": "gpt-4o-mini"}},
}
Sidecars = Callable[..., Sidecar]


def open_run() -> tuple[bytes, bytes, str]:
    """(the tool loop's spans without its root, the root alone, the run id) under a fresh trace id."""
    body, _ = with_new_trace_ids(fixture_bytes("openllmetry-openai-toolloop.pb"))
    children = ExportTraceServiceRequest.FromString(body)
    root = ExportTraceServiceRequest.FromString(body)
    for request, keep_root in ((children, False), (root, True)):
        for rs in request.resource_spans:
            for ss in rs.scope_spans:
                kept = [s for s in ss.spans if (not s.parent_span_id) == keep_root]
                del ss.spans[:]
                ss.spans.extend(kept)
    [run_id] = trace_ids_in(body)
    return children.SerializeToString(), root.SerializeToString(), run_id


def create_policy(daemon: Sidecar, body: dict[str, Any], key: str | None = None) -> None:
    headers = {"Content-Type": "application/json"}
    if key:
        headers["Authorization"] = f"Bearer {key}"
    result = http("POST", daemon.api_url + "/v1/policies", body=json.dumps(body).encode(), headers=headers)
    assert result.status == 201, result.body


class Watch:
    """One Watch call read on a thread; decisions (or the call's end) land on a queue."""

    def __init__(self, daemon: Sidecar, run_id: str, key: str | None = None) -> None:
        self.channel = grpc.insecure_channel(daemon.grpc_target)
        call = self.channel.unary_stream(
            WATCH, request_serializer=WatchRequest.SerializeToString, response_deserializer=Decision.FromString
        )
        metadata = (("authorization", f"Bearer {key}"),) if key else None
        self.stream = call(WatchRequest(run_id=run_id), metadata=metadata, timeout=60)
        self.got: queue.Queue[Decision | grpc.RpcError] = queue.Queue()
        threading.Thread(target=self._read, daemon=True).start()

    def _read(self) -> None:
        try:
            for decision in self.stream:
                self.got.put(decision)
        except grpc.RpcError as exc:
            self.got.put(exc)

    def next(self, timeout: float = 10.0) -> Decision:
        item = self.got.get(timeout=timeout)
        if isinstance(item, grpc.RpcError):
            raise item
        return item

    def error(self, timeout: float = 10.0) -> grpc.RpcError:
        item = self.got.get(timeout=timeout)
        assert isinstance(item, grpc.RpcError), f"expected the call to fail, got {item}"
        return item

    def quiet(self, seconds: float) -> bool:
        try:
            item = self.got.get(timeout=seconds)
        except queue.Empty:
            return True
        raise AssertionError(f"expected nothing more, got {item}")

    def close(self) -> None:
        self.stream.cancel()
        self.channel.close()


@pytest.fixture
def watches() -> Iterator[list[Watch]]:
    opened: list[Watch] = []
    yield opened
    for watch in opened:
        watch.close()


def kinds(decisions: list[Decision]) -> list[tuple[str, str]]:
    out = []
    for d in decisions:
        if d.WhichOneof("kind") == "policy":
            out.append(("policy", d.policy.action))
        else:
            out.append(("signal", d.signal.failure_type))
    return out


def test_a_watch_opened_before_the_run_gets_each_decision_as_it_is_made(
    make_sidecar: Sidecars, watches: list[Watch]
) -> None:
    daemon = make_sidecar()
    create_policy(daemon, CAP_TOOLS)
    create_policy(daemon, SWITCH)
    children, root, run_id = open_run()
    watch = Watch(daemon, run_id.replace("-", ""))  # the 32-hex form names the same run
    watches.append(watch)
    assert watch.quiet(0.5)  # nothing decided yet: the run does not even exist

    assert daemon.post_otlp(children).status == 200
    got = [watch.next() for _ in range(4)]
    # step 3 (third step): switch_model; step 6: the third tool call (stop, then its POLICY_VIOLATION) and TOOL_LOOP
    assert sorted(kinds(got)) == sorted(
        [("policy", "switch_model"), ("policy", "stop"), ("signal", "POLICY_VIOLATION"), ("signal", "TOOL_LOOP")]
    )
    assert all(d.run_id == run_id for d in got)
    switch = next(d for d in got if d.WhichOneof("kind") == "policy" and d.policy.action == "switch_model")
    assert (switch.policy.model, switch.policy.policy_name, switch.policy.trigger) == (
        "gpt-4o-mini",
        "cheaper model",
        "step_count",
    )
    assert json.loads(switch.policy.observed_json) == 3
    stop = next(d for d in got if d.WhichOneof("kind") == "policy" and d.policy.action == "stop")
    assert (stop.policy.policy_name, json.loads(stop.policy.value_json), json.loads(stop.policy.observed_json)) == (
        "cap tools",
        2,
        3,
    )
    loop = next(d for d in got if d.WhichOneof("kind") == "signal" and d.signal.failure_type == "TOOL_LOOP")
    assert (loop.signal.step_index, loop.signal.severity) == (6, "HIGH")
    assert len({d.decision_id for d in got}) == 4

    # The root arrives: the run ends; nothing is decided twice.
    assert daemon.post_otlp(root).status == 200
    daemon.wait_run(run_id, lambda r: r["status"] == "completed")
    assert watch.quiet(1.0)


def test_a_late_watch_gets_the_decisions_already_made_first_and_once(
    make_sidecar: Sidecars, watches: list[Watch]
) -> None:
    daemon = make_sidecar()
    create_policy(daemon, CAP_TOOLS)
    children, _, run_id = open_run()
    assert daemon.post_otlp(children).status == 200
    daemon.wait_run(run_id, lambda r: r["tool_calls"] == 4)
    watch = Watch(daemon, run_id)
    watches.append(watch)
    got = [watch.next() for _ in range(3)]
    assert sorted(kinds(got)) == sorted([("policy", "stop"), ("signal", "POLICY_VIOLATION"), ("signal", "TOOL_LOOP")])
    # in the order they were made: the stop was decided before (or with) its signal
    assert [d.decided_unix_nano for d in got] == sorted(d.decided_unix_nano for d in got)
    assert watch.quiet(1.0)


def test_watches_need_the_apis_key_and_a_run_id(make_sidecar: Sidecars, watches: list[Watch]) -> None:
    daemon = make_sidecar(env={"DUNETRACE_API_KEYS": KEY})
    _, _, run_id = open_run()
    for key in (None, "wrong-key-0123456789"):
        watch = Watch(daemon, run_id, key=key)
        watches.append(watch)
        assert watch.error().code() == grpc.StatusCode.UNAUTHENTICATED
    bad = Watch(daemon, "not-a-run", key=KEY)
    watches.append(bad)
    error = bad.error()
    assert error.code() == grpc.StatusCode.INVALID_ARGUMENT and "run_id" in (error.details() or "")
    good = Watch(daemon, run_id, key=KEY)
    watches.append(good)
    assert good.quiet(0.5)  # accepted, and nothing to say yet
    # OTLP export on the same listener is untouched by the API's keys (receiver.keys is unset)
    children, _, _ = open_run()
    assert daemon.post_otlp(children).status == 200


def test_a_watcher_that_falls_behind_is_cut_off_not_buffered() -> None:
    """The hub on its own: a queue never holds more than MAX_QUEUED decisions."""
    hub = DecisionHub()
    slow, other = hub.watch("run-a"), hub.watch("run-b")
    for i in range(MAX_QUEUED + 10):
        event = RunEvent("run-a", f"policy:1:{i}", POLICY_TRIGGERED, i, "", {"policy_id": 1, "action_type": "log"})
        hub.publish([event], [])
    items = [slow.get_nowait() for _ in range(slow.qsize())]
    assert len(items) == MAX_QUEUED + 1 and items[-1] is None  # the cut-off mark, then nothing more
    assert [d.decision_id for d in items[:3] if d is not None] == ["policy:1:0", "policy:1:1", "policy:1:2"]
    assert hub.watches == 1 and other.empty()  # the other run's watcher is untouched
    # a policy event the SDK reported itself is not echoed back to it
    hub.publish([RunEvent("run-b", "sdk:1", POLICY_TRIGGERED, 1, "", {"policy_id": -1, "source": "sdk"})], [])
    assert other.empty()


def test_the_metrics_count_watches_and_decisions_sent(make_sidecar: Sidecars, watches: list[Watch]) -> None:
    daemon = make_sidecar()
    create_policy(daemon, CAP_TOOLS)
    children, _, run_id = open_run()
    watch = Watch(daemon, run_id)
    watches.append(watch)
    assert daemon.post_otlp(children).status == 200
    got = [watch.next() for _ in range(3)]
    assert sorted(kinds(got)) == sorted([("policy", "stop"), ("signal", "POLICY_VIOLATION"), ("signal", "TOOL_LOOP")])
    metrics = http("GET", daemon.api_url + "/metrics").body.decode()
    assert "dunetrace_decision_watches 1.0" in metrics
    assert 'dunetrace_decisions_sent_total{kind="policy"} 1.0' in metrics
    assert 'dunetrace_decisions_sent_total{kind="signal"} 2.0' in metrics
