"""Captured agent stacks (tests/testdata/stacks/<name>/) replayed into a daemon in several orders.

A capture is the OTLP requests one real agent framework exported, in arrival order
(``index.jsonl``): traces and logs, as received. A delivery sends them again with fresh trace
ids (so one daemon can take many deliveries), rearranged as real exporters may:

- ``as_captured``: every request, in the captured order;
- ``one_request``: all spans in one request (logs in one request after it);
- ``logs_first`` / ``logs_last``: every log request before / after every trace request;
- ``children_first``: every span but the roots, then the roots (logs last).
"""

from __future__ import annotations

import json
import uuid
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from pathlib import Path

from opentelemetry.proto.collector.logs.v1.logs_service_pb2 import ExportLogsServiceRequest
from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import ExportTraceServiceRequest
from opentelemetry.proto.trace.v1 import trace_pb2

from tests.sidecar import TESTDATA, Sidecar, new_trace_id

STACKS = TESTDATA / "stacks"
ORDERS = ("as_captured", "one_request", "logs_first", "logs_last", "children_first")


@dataclass(frozen=True)
class Capture:
    name: str
    traces: list[ExportTraceServiceRequest]  # in arrival order
    logs: list[ExportLogsServiceRequest]
    order: list[str]  # "traces" / "logs", the signal of each request in arrival order

    @classmethod
    def load(cls, name: str, root: Path = STACKS) -> Capture:
        folder = root / name
        traces, logs, order = [], [], []
        for line in (folder / "index.jsonl").read_text().splitlines():
            entry = json.loads(line)
            body = (folder / entry["file"]).read_bytes()
            if entry["signal"] == "traces":
                traces.append(ExportTraceServiceRequest.FromString(body))
            elif entry["signal"] == "logs":
                logs.append(ExportLogsServiceRequest.FromString(body))
            else:
                continue
            order.append(entry["signal"])
        return cls(name, traces, logs, order)

    def trace_ids(self) -> list[bytes]:
        seen: dict[bytes, None] = {}
        for request in self.traces:
            for span in _spans(request):
                seen[span.trace_id] = None
        return list(seen)


def _spans(request: ExportTraceServiceRequest) -> Iterable[trace_pb2.Span]:
    for rs in request.resource_spans:
        for ss in rs.scope_spans:
            yield from ss.spans


def _renamed(
    capture: Capture,
) -> tuple[list[ExportTraceServiceRequest], list[ExportLogsServiceRequest], dict[str, str]]:
    """Copies with fresh trace ids: captured run id → the run id of this delivery."""
    mapping: dict[bytes, bytes] = {}
    traces = []
    for request in capture.traces:
        copy = ExportTraceServiceRequest()
        copy.CopyFrom(request)
        for span in _spans(copy):
            span.trace_id = mapping.setdefault(span.trace_id, new_trace_id())
        traces.append(copy)
    logs = []
    for request in capture.logs:
        copy_logs = ExportLogsServiceRequest()
        copy_logs.CopyFrom(request)
        for rl in copy_logs.resource_logs:
            for sl in rl.scope_logs:
                for record in sl.log_records:
                    if len(record.trace_id) == 16:
                        record.trace_id = mapping.setdefault(record.trace_id, new_trace_id())
        logs.append(copy_logs)
    return traces, logs, {str(uuid.UUID(bytes=k)): str(uuid.UUID(bytes=v)) for k, v in mapping.items()}


def _merged(
    requests: list[ExportTraceServiceRequest], keep: Callable[[trace_pb2.Span], bool]
) -> ExportTraceServiceRequest:
    """One request with the chosen spans of all requests (resource and scope kept per span)."""
    out = ExportTraceServiceRequest()
    for request in requests:
        for rs in request.resource_spans:
            new_rs = out.resource_spans.add()
            new_rs.resource.CopyFrom(rs.resource)
            for ss in rs.scope_spans:
                new_ss = new_rs.scope_spans.add()
                new_ss.scope.CopyFrom(ss.scope)
                new_ss.spans.extend(span for span in ss.spans if keep(span))
    return out


def _merged_logs(requests: list[ExportLogsServiceRequest]) -> ExportLogsServiceRequest:
    out = ExportLogsServiceRequest()
    for request in requests:
        out.resource_logs.extend(request.resource_logs)
    return out


def plan(capture: Capture, order: str) -> tuple[list[tuple[str, bytes]], dict[str, str]]:
    """The requests of one delivery, as (signal, protobuf body), and the run id mapping."""
    traces, logs, mapping = _renamed(capture)
    sent: list[tuple[str, bytes]] = []
    if order == "as_captured":
        trace_iter, log_iter = iter(traces), iter(logs)
        for signal in capture.order:
            request = next(trace_iter) if signal == "traces" else next(log_iter)
            sent.append((signal, request.SerializeToString()))
        return sent, mapping
    all_traces = [("traces", r.SerializeToString()) for r in traces]
    all_logs = [("logs", r.SerializeToString()) for r in logs]
    if order == "one_request":
        sent = [("traces", _merged(traces, lambda s: True).SerializeToString())]
        if logs:
            sent.append(("logs", _merged_logs(logs).SerializeToString()))
    elif order == "logs_first":
        sent = all_logs + all_traces
    elif order == "logs_last":
        sent = all_traces + all_logs
    elif order == "children_first":
        sent = [
            ("traces", _merged(traces, lambda s: bool(s.parent_span_id)).SerializeToString()),
            ("traces", _merged(traces, lambda s: not s.parent_span_id).SerializeToString()),
            *all_logs,
        ]
    else:
        raise ValueError(order)
    return sent, mapping


_SERVICES = {
    "traces": "opentelemetry.proto.collector.trace.v1.TraceService",
    "logs": "opentelemetry.proto.collector.logs.v1.LogsService",
}


def deliver(daemon: Sidecar, capture: Capture, order: str, transport: str = "http") -> dict[str, str]:
    """Send one delivery and return captured run id → delivered run id."""
    sent, mapping = plan(capture, order)
    for signal, body in sent:
        if transport == "grpc":
            daemon.grpc_export(body, service=_SERVICES[signal])
        else:
            result = daemon.post_otlp(body, path=f"/v1/{signal}")
            assert result.status == 200, (capture.name, order, signal, result.status, result.body[:300])
    return mapping
