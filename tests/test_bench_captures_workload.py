"""bench/captures_workload.py: the real stack captures replayed as the throughput bench's workload.

The workload is checked against the fixture files read here on their own (every
``*-traces-*.pb`` of tests/testdata/stacks/<capture>/, not the module's loader): each replayed
trace is matched to the captured trace it copies by a fingerprint that survives a replay (per
span: scope, name, kind, duration, start offset within the trace, attribute keys), so the
test knows which capture every run came from without asking the module. Counts written by hand
come from tests/testdata/stacks/README.md (Overview and Variants tables).
"""

from __future__ import annotations

from collections import Counter, defaultdict
from dataclasses import dataclass
from functools import cache
from pathlib import Path

import pytest
from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import ExportTraceServiceRequest
from opentelemetry.proto.trace.v1.trace_pb2 import Span

from bench.captures_workload import EXCLUDED, build_capture_workload, capture_requests, load_captures
from receiver.content import Hasher
from receiver.spans import SpanRole, translate_request

STACKS = Path(__file__).resolve().parent / "testdata" / "stacks"
T0 = 1_795_000_000_000_000_000
SPANS_PER_REQUEST = 512
N_REQUESTS = 8  # ~4,000 spans, ~390 runs: every capture several times


def stack_name(capture: str) -> str:
    for suffix in ("-clean", "-empty", "-truncate", "-linger"):
        capture = capture.removesuffix(suffix)
    return capture


@dataclass(frozen=True)
class SpanAt:
    scope: str
    span: Span
    resource: bytes


def spans_of(request: ExportTraceServiceRequest) -> list[SpanAt]:
    return [
        SpanAt(ss.scope.name, span, rs.resource.SerializeToString(deterministic=True))
        for rs in request.resource_spans
        for ss in rs.scope_spans
        for span in ss.spans
    ]


def by_trace(spans: list[SpanAt]) -> dict[bytes, list[SpanAt]]:
    traces: dict[bytes, list[SpanAt]] = defaultdict(list)
    for s in spans:
        traces[s.span.trace_id].append(s)
    return traces


def span_key(s: SpanAt, trace_start: int) -> tuple[object, ...]:
    span = s.span
    return (
        s.scope,
        span.name,
        span.kind,
        span.end_time_unix_nano - span.start_time_unix_nano,
        span.start_time_unix_nano - trace_start,
        tuple(kv.key for kv in span.attributes),
        span.status.code,
    )


def fingerprint(trace: list[SpanAt]) -> tuple[tuple[object, ...], ...]:
    start = min(s.span.start_time_unix_nano for s in trace)
    return tuple(sorted(span_key(s, start) for s in trace))


@dataclass(frozen=True)
class Original:
    capture: str
    trace_id: bytes
    spans: list[SpanAt]


@cache
def originals() -> dict[tuple[tuple[object, ...], ...], Original]:
    """Every captured trace, read straight from the .pb files, by fingerprint."""
    out: dict[tuple[tuple[object, ...], ...], Original] = {}
    for folder in sorted(p for p in STACKS.iterdir() if p.is_dir()):
        for path in sorted(folder.glob("*-traces-*.pb")):
            request = ExportTraceServiceRequest.FromString(path.read_bytes())
            for trace_id, trace in by_trace(spans_of(request)).items():
                key = fingerprint(trace)
                assert key not in out, (folder.name, out.get(key))  # a fingerprint names one captured trace
                out[key] = Original(folder.name, trace_id, trace)
    return out


def captured_span_counts() -> dict[str, int]:
    counts: Counter[str] = Counter()
    for original in originals().values():
        counts[original.capture] += len(original.spans)
    return dict(counts)


@dataclass(frozen=True)
class Replayed:
    request: int
    trace: list[SpanAt]
    original: Original


@cache
def workload() -> tuple[list[bytes], int, list[Replayed]]:
    requests, total = capture_requests(N_REQUESTS, SPANS_PER_REQUEST, seed=3, t0=T0)
    index = originals()
    replayed = []
    for number, body in enumerate(requests):
        for trace in by_trace(spans_of(ExportTraceServiceRequest.FromString(body))).values():
            key = fingerprint(trace)
            assert key in index, "a replayed trace that is no captured trace"
            replayed.append(Replayed(number, trace, index[key]))
    return requests, total, replayed


def test_hand_counted_captures() -> None:
    """The README's span and trace counts, as read here and as the module loads them."""
    expected = {  # capture: (traces, spans), from tests/testdata/stacks/README.md
        "openai-v2-none": (1, 6),
        "openai-v2-noroot": (5, 5),
        "openai-v2-noroot-clean": (2, 2),
        "langgraph-openllmetry-openai": (2, 41),
        "langgraph-openllmetry-anthropic": (2, 46),
        "langchain-agent-openllmetry-openai-clean": (2, 9),
        "llamaindex-openinference": (1, 39),
        "crewai-openinference": (1, 11),
        "pydantic-ai-anthropic-empty": (1, 5),
        "agents-sdk-openllmetry-truncate": (1, 3),
        "strands-openai-latest-clean": (1, 6),
    }
    traces = Counter(original.capture for original in originals().values())
    spans = captured_span_counts()
    loaded = {capture.name: capture for capture in load_captures()}
    for name, (n_traces, n_spans) in expected.items():
        assert (traces[name], spans[name]) == (n_traces, n_spans), name
        assert (len(loaded[name].trace_ids), loaded[name].span_count) == (n_traces, n_spans), name
    assert set(loaded) == set(spans) - set(EXCLUDED)


def test_every_request_decodes_and_the_total_is_counted() -> None:
    requests, total, _ = workload()
    assert len(requests) == N_REQUESTS
    counts = [len(spans_of(ExportTraceServiceRequest.FromString(body))) for body in requests]
    assert sum(counts) == total


def test_requests_hold_about_the_target_whole_runs() -> None:
    requests, _, replayed = workload()
    largest_run = max(captured_span_counts().values())  # 46: langgraph-openllmetry-anthropic
    assert largest_run == 46
    for body in requests:
        n = len(spans_of(ExportTraceServiceRequest.FromString(body)))
        assert abs(n - SPANS_PER_REQUEST) <= largest_run // 2, n
    # Each replayed trace is whole (its fingerprint matched) and in one request; a capture of
    # several traces has them all in the same request (as many of each in every request).
    seen: Counter[bytes] = Counter(span.span.trace_id for r in replayed for span in r.trace)
    assert len(seen) == len(replayed)
    per_request: dict[tuple[int, str], Counter[bytes]] = defaultdict(Counter)
    for r in replayed:
        per_request[r.request, r.original.capture][r.original.trace_id] += 1
    for (_, capture), counts in per_request.items():
        n_traces = sum(1 for o in originals().values() if o.capture == capture)
        assert len(counts) == n_traces and len(set(counts.values())) == 1, (capture, counts)


def test_spans_keep_the_captured_order_resource_and_scope() -> None:
    _, _, replayed = workload()
    for r in replayed:
        original = r.original.spans
        assert [(s.scope, s.span.name, s.resource) for s in r.trace] == [
            (s.scope, s.span.name, s.resource) for s in original
        ], r.original.capture
        for new, old in zip(r.trace, original, strict=True):
            assert new.span.attributes == old.span.attributes
            assert len(new.span.events) == len(old.span.events)


def test_fresh_ids_and_consistent_parent_links() -> None:
    _, _, replayed = workload()
    captured_trace_ids = {o.trace_id for o in originals().values()}
    trace_ids = [r.trace[0].span.trace_id for r in replayed]
    assert len(set(trace_ids)) == len(trace_ids)
    assert not captured_trace_ids & set(trace_ids)
    span_ids = [s.span.span_id for r in replayed for s in r.trace]
    assert len(set(span_ids)) == len(span_ids)
    assert all(len(i) == 8 and i != bytes(8) for i in span_ids)
    for r in replayed:
        new_ids = {s.span.span_id: i for i, s in enumerate(r.trace)}
        old_ids = {s.span.span_id: i for i, s in enumerate(r.original.spans)}
        for new, old in zip(r.trace, r.original.spans, strict=True):
            assert len(new.span.trace_id) == 16
            if not old.span.parent_span_id:
                assert not new.span.parent_span_id
            else:  # the same parent, by its place in the trace (no captured parent lies outside its trace)
                assert new_ids[new.span.parent_span_id] == old_ids[old.span.parent_span_id]


def test_each_replay_is_a_new_run_in_time() -> None:
    _, _, replayed = workload()
    starts: dict[str, list[int]] = defaultdict(list)
    for r in replayed:
        start = min(s.span.start_time_unix_nano for s in r.trace)
        assert start >= T0
        for new, old in zip(r.trace, r.original.spans, strict=True):
            shift = new.span.start_time_unix_nano - old.span.start_time_unix_nano
            assert new.span.end_time_unix_nano - old.span.end_time_unix_nano == shift
            for new_event, old_event in zip(new.span.events, old.span.events, strict=True):
                assert new_event.time_unix_nano - old_event.time_unix_nano == shift
        starts[r.original.capture].append(start)
    for capture, values in starts.items():
        assert len(set(values)) == len(values), capture


def test_every_stack_contributes_its_fair_share() -> None:
    _, _, replayed = workload()
    first_trace: dict[str, bytes] = {}
    for o in sorted(originals().values(), key=lambda o: min(s.span.start_time_unix_nano for s in o.spans)):
        first_trace.setdefault(o.capture, o.trace_id)
    runs = Counter(r.original.capture for r in replayed if r.original.trace_id == first_trace[r.original.capture])
    with_traces = {p.name for p in STACKS.iterdir() if p.is_dir() and any(p.glob("*-traces-*.pb"))}
    assert len(with_traces) == 55
    assert set(EXCLUDED) == {"openai-v2-legacy-events-linger"}
    assert set(runs) == with_traces - set(EXCLUDED)
    per_stack: Counter[str] = Counter()
    variants: dict[str, list[int]] = defaultdict(list)
    for capture, n in runs.items():
        per_stack[stack_name(capture)] += n
        variants[stack_name(capture)].append(n)
    assert len(per_stack) == 23
    # whole rounds over the stacks, plus part of one: each stack within one run of the others
    assert max(per_stack.values()) - min(per_stack.values()) <= 1, per_stack
    for stack, counts in variants.items():
        assert max(counts) - min(counts) <= 1, (stack, counts)

    module = build_capture_workload(N_REQUESTS, SPANS_PER_REQUEST, seed=3, t0=T0)
    assert dict(module.runs) == dict(runs)
    assert len(module.stacks) == 23


def test_the_excluded_linger_capture_is_a_duplicate_of_its_base() -> None:
    def shape(capture: str) -> list[tuple[object, ...]]:
        (trace,) = [o.spans for o in originals().values() if o.capture == capture]
        return [(s.scope, s.span.name, s.span.kind, tuple(kv.key for kv in s.span.attributes)) for s in trace]

    assert shape("openai-v2-legacy-events-linger") == shape("openai-v2-legacy-events")


# Tool spans per capture: the README's "tool-marked" column (4 in a base capture, 1 in -clean,
# 0 in -empty/-truncate); openai-v2 (but -toolspans) and OpenLIT have none (the loop runs the
# tool itself). LLM calls: the fake LLM's count (5 / 2 / 1; pydantic-ai retries an empty answer
# once); the anthropic SDK's own span makes two chat spans per call in two stacks.
NO_TOOL_SPANS = (  # prefixes of stack names
    "openai-v2-none",
    "openai-v2-noroot",
    "openai-v2-event-only",
    "openai-v2-span-only",
    "openai-v2-span-and-event",
    "openai-v2-legacy-events",
    "openlit-openai",
)
TWO_CHAT_SPANS_PER_CALL = ("langgraph-openllmetry-anthropic", "pydantic-ai-anthropic")


def expected_calls(capture: str) -> tuple[int, int]:
    """(LLM calls, tool spans) of one run of a capture."""
    stack = stack_name(capture)
    if capture.endswith(("-empty", "-truncate")):
        llm, tools = (2 if capture == "pydantic-ai-anthropic-empty" else 1), 0
    elif capture.endswith("-clean"):
        llm, tools = 2, 1
    else:
        llm, tools = 5, 4
    if stack.startswith(NO_TOOL_SPANS):
        tools = 0
    return llm, tools


def test_the_daemon_recognises_llm_and_tool_spans() -> None:
    requests, total, replayed = workload()
    capture_of = {r.trace[0].span.trace_id.hex(): r.original.capture for r in replayed}
    roles: dict[str, Counter[SpanRole]] = defaultdict(Counter)
    rejected = 0
    hasher = Hasher()
    for body in requests:
        out = translate_request(ExportTraceServiceRequest.FromString(body).resource_spans, hasher)
        rejected += out.rejected
        for fact in out.facts:
            roles[capture_of[fact.run_id.replace("-", "")]][fact.role] += 1
    assert rejected == 0
    assert sum(sum(c.values()) for c in roles.values()) == total
    runs = Counter(r.original.capture for r in replayed)
    traces = Counter(o.capture for o in originals().values())
    totals: Counter[SpanRole] = Counter()
    for capture, counts in roles.items():
        n = runs[capture] // traces[capture]
        llm, tools = expected_calls(capture)
        per_run = {role: count / n for role, count in counts.items()}
        factor = 2 if stack_name(capture) in TWO_CHAT_SPANS_PER_CALL else 1
        assert per_run.get(SpanRole.LLM) == llm * factor, (capture, per_run)
        assert per_run.get(SpanRole.TOOL, 0) == tools, (capture, per_run)
        totals += counts
    assert totals[SpanRole.LLM] > 0 and totals[SpanRole.TOOL] > 0
    assert totals[SpanRole.LLM] > total / 5 and totals[SpanRole.TOOL] > total / 20, totals


@pytest.mark.parametrize("spans_per_request", [64, 512])
def test_other_targets(spans_per_request: int) -> None:
    requests, total = capture_requests(3, spans_per_request, seed=5)
    counts = [len(spans_of(ExportTraceServiceRequest.FromString(body))) for body in requests]
    assert sum(counts) == total and len(counts) == 3
    assert all(abs(n - spans_per_request) <= 23 for n in counts), counts
