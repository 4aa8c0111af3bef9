"""The real stack captures (tests/testdata/stacks/) replayed as a throughput workload.

Each capture directory is one run of a real agent framework under its usual instrumentation
(LangChain, LangGraph, CrewAI, LlamaIndex, the OpenAI Agents SDK, pydantic-ai, Strands, openai-v2,
OpenLIT, OpenLLMetry, OpenInference…), recorded as exported against a scripted fake LLM; see
tests/testdata/stacks/README.md. :func:`capture_requests` replays those runs over and over as
pre-encoded ``ExportTraceServiceRequest`` bodies, the way :func:`bench.workload.build_requests`
does for the bench's own synthetic runs:

- **What is replayed**: the trace requests of each capture (``index.jsonl`` entries with signal
  ``traces``), all their spans with their resource (``service.name``, ``service.instance.id``,
  ``telemetry.sdk.*``…) and instrumentation scope as captured. Log requests are skipped: this
  workload goes over OTLP/gRPC's trace service only. No capture holds only logs (every one has a
  traces request with spans; a directory without trace spans would simply not contribute), but
  four stacks put the message *content* in log records (``openai-v2-event-only``,
  ``openai-v2-legacy-events``, ``openlit-openai-1.45``, and ``openai-v2-span-and-event``, which
  also has it on the spans): for those the daemon sees the spans as exported, without the logs'
  content, so their cost is the spans' part only.
- **A replay** is one capture, whole (a capture is one run, exported as one or more traces: the
  OpenLLMetry LangChain stacks add a one-span ``create_agent`` trace, ``openai-v2-noroot`` has a
  trace per LLM call). Every replay gets fresh trace ids (uuid4) and fresh span ids, with the
  parent links (and span links inside the capture) mapped the same way, so the tree is the
  captured one; its timestamps (span start/end and span events) are shifted together so each
  replay is a new run, starting 1 s after the previous replay ended.
- **The mix**: round-robin over the stacks (a stack = a directory name without its variant
  suffix), and within a stack over its variants, so each stack gets the same number of runs (±1)
  whatever the number of its variants or spans. The variants are kept: ``-clean`` (one tool call,
  then the answer), ``-empty`` (an empty final answer; pydantic-ai retries, then its root span
  fails) and ``-truncate`` (a cut-off answer) are real failure shapes of real frameworks, and
  the base captures themselves are a tool loop (the same call four times): a realistic mix has
  some failures. Excluded (:data:`EXCLUDED`): ``openai-v2-legacy-events-linger``, whose spans are
  those of ``openai-v2-legacy-events``; it differs only in *when* the exporter flushed, which a
  replay does not keep, so it would count that stack's base run twice.
- **Requests**: whole runs packed into requests of about ``spans_per_request`` spans (a run is
  never split; the request is closed when the next run would take it further from the target
  than stopping). Within a request the replays of one capture share their resource and scope
  entries, as an exporter's batch would group them; each run's spans keep the order the capture
  had them in.
"""

from __future__ import annotations

import json
import random
import uuid
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path

from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import ExportTraceServiceRequest
from opentelemetry.proto.common.v1.common_pb2 import InstrumentationScope
from opentelemetry.proto.resource.v1.resource_pb2 import Resource
from opentelemetry.proto.trace.v1.trace_pb2 import ResourceSpans, ScopeSpans, Span

STACKS = Path(__file__).resolve().parent.parent / "tests" / "testdata" / "stacks"
VARIANT_SUFFIXES = ("-clean", "-empty", "-truncate", "-linger")
EXCLUDED = {
    "openai-v2-legacy-events-linger": "the spans of openai-v2-legacy-events, exported 6 s later: a duplicate run",
}
GAP_NS = 1_000_000_000  # between one replay's end and the next one's start


def stack_of(capture: str) -> str:
    """The stack a capture directory belongs to: its name without the variant suffix."""
    for suffix in VARIANT_SUFFIXES:
        if capture.endswith(suffix):
            return capture[: -len(suffix)]
    return capture


@dataclass(frozen=True)
class Block:
    """The spans of one (resource, scope) of a captured request, in the captured order."""

    resource: Resource
    resource_schema_url: str
    scope: InstrumentationScope
    scope_schema_url: str
    spans: list[Span]

    @property
    def key(self) -> tuple[bytes, str, bytes, str]:
        return (
            self.resource.SerializeToString(deterministic=True),
            self.resource_schema_url,
            self.scope.SerializeToString(deterministic=True),
            self.scope_schema_url,
        )


@dataclass(frozen=True)
class Capture:
    name: str
    blocks: list[Block]  # in request, then resource, then scope order

    @property
    def stack(self) -> str:
        return stack_of(self.name)

    def spans(self) -> list[Span]:
        return [span for block in self.blocks for span in block.spans]

    @property
    def span_count(self) -> int:
        return sum(len(block.spans) for block in self.blocks)

    @property
    def trace_ids(self) -> list[bytes]:
        return list(dict.fromkeys(span.trace_id for span in self.spans()))

    @property
    def start_ns(self) -> int:
        return min(span.start_time_unix_nano for span in self.spans())

    @property
    def end_ns(self) -> int:
        return max(max(span.end_time_unix_nano, span.start_time_unix_nano) for span in self.spans())

    @classmethod
    def load(cls, folder: Path) -> Capture:
        blocks = []
        for line in (folder / "index.jsonl").read_text().splitlines():
            entry = json.loads(line)
            if entry["signal"] != "traces":  # logs (and metrics, none stored) are not replayed
                continue
            request = ExportTraceServiceRequest.FromString((folder / entry["file"]).read_bytes())
            for rs in request.resource_spans:
                for ss in rs.scope_spans:
                    if ss.spans:
                        blocks.append(Block(rs.resource, rs.schema_url, ss.scope, ss.schema_url, list(ss.spans)))
        return cls(folder.name, blocks)


def load_captures(root: Path = STACKS) -> list[Capture]:
    """Every capture directory with trace spans, but the excluded ones, by name."""
    captures = []
    for folder in sorted(p for p in root.iterdir() if p.is_dir() and (p / "index.jsonl").exists()):
        if folder.name in EXCLUDED:
            continue
        capture = Capture.load(folder)
        if capture.span_count:
            captures.append(capture)
    return captures


def replay(capture: Capture, rng: random.Random, start_ns: int) -> list[tuple[Block, list[Span]]]:
    """One new run from a capture: fresh trace and span ids (links kept), times shifted to ``start_ns``."""
    delta = start_ns - capture.start_ns
    trace_ids = {old: uuid.uuid4().bytes for old in capture.trace_ids}
    span_ids: dict[bytes, bytes] = {}

    def new_span_id(old: bytes) -> bytes:
        if old not in span_ids:
            fresh = b"\0" * 8
            while fresh == b"\0" * 8 or fresh in span_ids.values():
                fresh = rng.randbytes(8)
            span_ids[old] = fresh
        return span_ids[old]

    out = []
    for block in capture.blocks:
        spans = []
        for original in block.spans:
            span = Span()
            span.CopyFrom(original)
            span.trace_id = trace_ids[original.trace_id]
            span.span_id = new_span_id(original.span_id)
            if original.parent_span_id:
                span.parent_span_id = new_span_id(original.parent_span_id)
            if span.start_time_unix_nano:
                span.start_time_unix_nano += delta
            if span.end_time_unix_nano:
                span.end_time_unix_nano += delta
            for event in span.events:
                if event.time_unix_nano:
                    event.time_unix_nano += delta
            for link in span.links:
                if link.trace_id in trace_ids:
                    link.trace_id = trace_ids[link.trace_id]
                    link.span_id = new_span_id(link.span_id)
            spans.append(span)
        out.append((block, spans))
    return out


@dataclass
class CaptureWorkload:
    requests: list[bytes]
    spans: int
    runs: Counter[str] = field(default_factory=Counter)  # replays per capture directory

    @property
    def stacks(self) -> list[str]:
        return sorted({stack_of(name) for name in self.runs})

    def summary(self) -> str:
        size = sum(map(len, self.requests))
        return (
            f"captures: {len(self.requests)} requests, {self.spans} spans, {size / max(self.spans, 1):.0f} bytes/span; "
            f"{sum(self.runs.values())} runs of {len(self.stacks)} stacks ({len(self.runs)} captures; "
            f"not replayed: {', '.join(sorted(EXCLUDED))})"
        )


def build_capture_workload(
    n_requests: int,
    spans_per_request: int = 512,
    seed: int = 11,
    t0: int = 1_795_000_000_000_000_000,
    root: Path = STACKS,
) -> CaptureWorkload:
    captures = load_captures(root)
    if not captures:
        raise ValueError(f"no trace captures under {root}")
    by_stack: dict[str, list[Capture]] = {}
    for capture in captures:
        by_stack.setdefault(capture.stack, []).append(capture)
    rng = random.Random(seed)
    stacks = sorted(by_stack)
    offset = rng.randrange(len(stacks))
    stacks = stacks[offset:] + stacks[:offset]
    cursors = {stack: rng.randrange(len(by_stack[stack])) for stack in stacks}

    def runs() -> list[Capture]:
        """The next round: one capture of every stack."""
        out = []
        for stack in stacks:
            variants = by_stack[stack]
            out.append(variants[cursors[stack] % len(variants)])
            cursors[stack] += 1
        return out

    workload = CaptureWorkload([], 0)
    pending: list[Capture] = []
    t = t0
    for _ in range(n_requests):
        request = ExportTraceServiceRequest()
        # (capture, resource) → its ResourceSpans and (scope → ScopeSpans): replays of one capture share
        # them, as one process's batch would; two captures never do (some have the same resource, but
        # their scopes in another order, which would reorder a run's spans).
        resources: dict[tuple[str, bytes, str], tuple[ResourceSpans, dict[tuple[bytes, str], ScopeSpans]]] = {}
        count = 0
        while True:
            if not pending:
                pending = runs()
            capture = pending[0]
            if count and abs(count + capture.span_count - spans_per_request) > abs(count - spans_per_request):
                break
            pending.pop(0)
            for block, spans in replay(capture, rng, t):
                rkey, skey = (capture.name, *block.key[:2]), block.key[2:]
                if rkey not in resources:
                    rs = request.resource_spans.add(schema_url=block.resource_schema_url)
                    rs.resource.CopyFrom(block.resource)
                    resources[rkey] = (rs, {})
                rs, scopes = resources[rkey]
                if skey not in scopes:
                    ss = rs.scope_spans.add(schema_url=block.scope_schema_url)
                    ss.scope.CopyFrom(block.scope)
                    scopes[skey] = ss
                scopes[skey].spans.extend(spans)
            t += capture.end_ns - capture.start_ns + GAP_NS
            count += capture.span_count
            workload.runs[capture.name] += 1
            if count >= spans_per_request:
                break
        workload.spans += count
        workload.requests.append(request.SerializeToString())
    return workload


def capture_requests(
    n_requests: int, spans_per_request: int = 512, seed: int = 11, t0: int = 1_795_000_000_000_000_000
) -> tuple[list[bytes], int]:
    """(encoded requests, total spans), as :func:`bench.workload.build_requests` gives them."""
    workload = build_capture_workload(n_requests, spans_per_request, seed, t0)
    return workload.requests, workload.spans
