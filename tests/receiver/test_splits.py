"""Any split of a trace builds the same run (issue 11, finding 7).

Every capture is delivered once in one request (the reference), then again under fresh trace
ids with its spans shuffled and cut into 1-5 requests (seeded), the root anywhere among them;
and again in end order (as exporters send) cut at a random point, with a restart or an idle
eviction between the halves; and shuffled, cut in two, with a restart between the halves.
The run's counts, status, exit reason, errors and signal types must equal the reference's.
"""

from __future__ import annotations

import random
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import ExportTraceServiceRequest

from tests.sidecar import FIXTURES, Sidecar, wait_for, with_new_trace_ids

CAPTURES = sorted(p.name for p in FIXTURES.glob("*.pb") if "events" not in p.name)
TRIALS = 3
GRACE = {"DUNETRACE_END_GRACE": "0.2"}


def shuffled_pieces(body: bytes, rng: random.Random, pieces: int | None = None) -> list[bytes]:
    request = ExportTraceServiceRequest.FromString(body)
    flat = [(rs, ss, span) for rs in request.resource_spans for ss in rs.scope_spans for span in ss.spans]
    rng.shuffle(flat)
    count = pieces or rng.randint(1, min(5, len(flat)))
    cuts = sorted(rng.sample(range(1, len(flat)), count - 1)) if count > 1 else []
    return [request_of(flat[start:end]) for start, end in zip([0, *cuts], [*cuts, len(flat)], strict=True)]


def request_of(spans: list[tuple[Any, Any, Any]]) -> bytes:
    """One request with these (resource spans, scope spans, span) triples."""
    piece = ExportTraceServiceRequest()
    for rs, ss, span in spans:
        new_rs = piece.resource_spans.add()
        new_rs.resource.CopyFrom(rs.resource)
        new_ss = new_rs.scope_spans.add()
        new_ss.scope.CopyFrom(ss.scope)
        new_ss.spans.append(span)
    return piece.SerializeToString()


def summary(daemon: Sidecar, run_id: str) -> dict[str, Any]:
    run: dict[str, Any] = daemon.judged_run(run_id)
    keys = ("status", "llm_calls", "tool_calls", "retrievals", "errors", "exit_reason", "step_count", "prompt_tokens")
    return {k: run[k] for k in keys} | {"signals": sorted(s["failure_type"] for s in run["signals"])}


def reference(daemon: Sidecar, name: str) -> dict[str, dict[str, Any]]:
    body, mapping = with_new_trace_ids((FIXTURES / name).read_bytes())
    assert daemon.post_otlp(body).status == 200
    return {old: summary(daemon, new) for old, new in mapping.items()}


@pytest.fixture(scope="module")
def daemon(tmp_path_factory: pytest.TempPathFactory) -> Sidecar:
    sidecar = Sidecar(Path(tmp_path_factory.mktemp("splits")), env=GRACE).start()
    yield sidecar  # type: ignore[misc]
    sidecar.close()


@pytest.mark.parametrize("name", CAPTURES)
def test_any_split_in_any_order_builds_the_same_run(daemon: Sidecar, name: str) -> None:
    want = reference(daemon, name)
    rng = random.Random(name)  # seeded: a failure reproduces
    for trial in range(TRIALS):
        body, mapping = with_new_trace_ids((FIXTURES / name).read_bytes())
        for piece in shuffled_pieces(body, rng):
            assert daemon.post_otlp(piece).status == 200
        for old, new in mapping.items():
            assert summary(daemon, new) == want[old], (name, trial)


def end_order_halves(body: bytes, rng: random.Random) -> tuple[bytes, bytes]:
    """The spans in end order (as exporters send them), cut at a random point."""
    request = ExportTraceServiceRequest.FromString(body)
    flat = sorted(
        ((rs, ss, span) for rs in request.resource_spans for ss in rs.scope_spans for span in ss.spans),
        key=lambda item: item[2].end_time_unix_nano,
    )
    cut = rng.randint(1, len(flat) - 1)
    return request_of(flat[:cut]), request_of(flat[cut:])


def _halves(name: str, between: Callable[[Sidecar], None], daemon: Sidecar) -> None:
    want = reference(daemon, name)
    body, mapping = with_new_trace_ids((FIXTURES / name).read_bytes())
    first, second = end_order_halves(body, random.Random(name))
    assert daemon.post_otlp(first).status == 200
    between(daemon)
    assert daemon.post_otlp(second).status == 200
    for old, new in mapping.items():
        assert summary(daemon, new) == want[old], name


@pytest.mark.parametrize("name", CAPTURES)
def test_a_restart_between_the_halves_changes_nothing(make_sidecar: Callable[..., Sidecar], name: str) -> None:
    def restart(daemon: Sidecar) -> None:
        daemon.stop()
        daemon.start()

    _halves(name, restart, make_sidecar(env=GRACE))


@pytest.mark.parametrize("name", CAPTURES[::3])
def test_a_restart_between_the_halves_once_the_stored_run_ids_are_read(
    make_sidecar: Callable[..., Sidecar], name: str
) -> None:
    """After a restart, new traces skip the store read once the stored run ids are read
    (store/run_ids.py): the second half must still find its run through them."""

    def restart(daemon: Sidecar) -> None:
        daemon.stop()
        daemon.start()
        wait_for(lambda: "stored run ids read" in daemon.log_text(since_start=True), what="the stored run ids read")

    _halves(name, restart, make_sidecar(env=GRACE))


@pytest.mark.parametrize("name", CAPTURES[::3])
def test_an_idle_eviction_between_the_halves_changes_nothing(make_sidecar: Callable[..., Sidecar], name: str) -> None:
    def evict(_daemon: Sidecar) -> None:
        time.sleep(2.5)  # past the stall timeout: the run is judged stalled and forgotten

    _halves(name, evict, make_sidecar(env={**GRACE, "DUNETRACE_STALL_TIMEOUT": "1"}))


def test_shuffled_halves_across_a_restart_change_nothing(make_sidecar: Callable[..., Sidecar]) -> None:
    """Every capture, shuffled and cut in two, first halves sent, one restart, second halves.
    A tool span whose call id names a request not seen yet must not take another request of
    the same tool (it did: one call fewer or one more, depending on the cut)."""
    daemon = make_sidecar(env=GRACE)
    want: dict[str, dict[str, Any]] = {}
    second_halves: list[tuple[bytes, str, str]] = []
    for name in CAPTURES:
        want |= {f"{name}:{old}": run for old, run in reference(daemon, name).items()}
        for trial in range(TRIALS):
            rng = random.Random(f"{name}:{trial}")
            body, mapping = with_new_trace_ids((FIXTURES / name).read_bytes())
            request = ExportTraceServiceRequest.FromString(body)
            flat = [(rs, ss, span) for rs in request.resource_spans for ss in rs.scope_spans for span in ss.spans]
            rng.shuffle(flat)
            cut = rng.randint(1, len(flat) - 1)
            assert daemon.post_otlp(request_of(flat[:cut])).status == 200
            second_halves += [(request_of(flat[cut:]), f"{name}:{old}", new) for old, new in mapping.items()]
    deliver_after_a_restart(daemon, second_halves, want)
    # Re-delivered after another restart (a client whose answers a kill cut off): nothing may
    # change. Taken again before: an LLM span stored only as its twin's content amendment (one
    # more LLM call), and a tool span that came after its call was counted from the request.
    stored = {new: event_ids(daemon, new) for _, _, new in second_halves}
    deliver_after_a_restart(daemon, second_halves, want)
    for _, key, new in second_halves:
        assert event_ids(daemon, new) == stored[new], key


def deliver_after_a_restart(
    daemon: Sidecar, pieces: list[tuple[bytes, str, str]], want: dict[str, dict[str, Any]]
) -> None:
    """Restart, send every piece, and hold each run to its reference."""
    daemon.stop()
    daemon.start()
    for piece, _, _ in pieces:
        assert daemon.post_otlp(piece).status == 200
    for _, key, new in pieces:
        assert summary(daemon, new) == want[key], key


def event_ids(daemon: Sidecar, run_id: str) -> list[str]:
    return sorted(e["event_id"] for e in daemon.judged_run(run_id)["events"])


def test_a_tool_span_ahead_of_its_request_keeps_to_its_call_id(make_sidecar: Callable[..., Sidecar]) -> None:
    """The cut that showed it: the 4th tool span (call id ..343) arrives with the first three
    LLM calls and the root, before the LLM response that asked for it; the other tool spans and
    that response come after a restart. It took the 1st request (..334) by tool name, so the
    run had three tool calls instead of four."""
    daemon = make_sidecar(env=GRACE)
    name = "otelgenai-openai-toolloop.pb"
    body, mapping = with_new_trace_ids((FIXTURES / name).read_bytes())
    request = ExportTraceServiceRequest.FromString(body)
    flat = [(rs, ss, span) for rs in request.resource_spans for ss in rs.scope_spans for span in ss.spans]
    first_ids = {"c7a7835e739a9d2a", "8ed60a17cb9fde71", "678fa0baf3222b70", "8354e4712cec2620", "f0b6d6a99539b4eb"}
    first = [item for item in flat if item[2].span_id.hex() in first_ids]
    second = [item for item in flat if item[2].span_id.hex() not in first_ids]
    assert len(first) == 5 and len(second) == 5
    assert daemon.post_otlp(request_of(first)).status == 200
    daemon.stop()
    daemon.start()
    assert daemon.post_otlp(request_of(second)).status == 200
    [run_id] = mapping.values()
    run = daemon.judged_run(run_id)
    assert (run["status"], run["llm_calls"], run["tool_calls"], run["errors"]) == ("completed", 4, 4, 0)
    assert sorted(s["failure_type"] for s in run["signals"]) == ["TOOL_LOOP"]
