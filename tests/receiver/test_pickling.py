"""Facts cross from the translation worker processes to the daemon pickled as (class, field
values) (receiver/pickling.py): every fact of every capture comes back equal, field for field."""

from __future__ import annotations

import json
import pickle
from dataclasses import dataclass
from pathlib import Path

import pytest
from opentelemetry.proto.collector.logs.v1.logs_service_pb2 import ExportLogsServiceRequest
from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import ExportTraceServiceRequest

from receiver.content import Hasher
from receiver.pickling import pickled_by_fields
from receiver.sdk_ingest import parse_batch
from receiver.spans import translate_logs, translate_request
from tests.sidecar import FIXTURES, TESTDATA

TRACE_FILES = sorted(
    [p for p in FIXTURES.glob("*.pb") if not p.name.endswith(".logs.pb")]
    + list((TESTDATA / "stacks").glob("*/*-traces-*.pb"))
)
LOG_FILES = sorted([*FIXTURES.glob("*.logs.pb"), *(TESTDATA / "stacks").glob("*/*-logs-*.pb")])
SDK_FILES = sorted((TESTDATA / "dunetrace-sdk").glob("*.jsonl"))


def _round_trip(value: object) -> object:
    return pickle.loads(pickle.dumps(value, protocol=pickle.HIGHEST_PROTOCOL))


def test_the_captures_are_there() -> None:
    assert len(TRACE_FILES) > 60 and len(LOG_FILES) >= 5 and len(SDK_FILES) >= 3


@pytest.mark.parametrize("path", TRACE_FILES, ids=lambda p: f"{p.parent.name}/{p.name}")
def test_span_facts_come_back_equal(path: Path) -> None:
    request = ExportTraceServiceRequest.FromString(path.read_bytes())
    translated = translate_request(request.resource_spans, Hasher("a key of sixteen chars"))
    assert translated.facts
    back = _round_trip(translated)
    assert back == translated
    for before, after in zip(translated.facts, back.facts, strict=True):  # type: ignore[attr-defined]
        assert type(after) is type(before)
        for name in before.__slots__:
            assert getattr(after, name) == getattr(before, name), name


@pytest.mark.parametrize("path", LOG_FILES, ids=lambda p: f"{p.parent.name}/{p.name}")
def test_log_content_comes_back_equal(path: Path) -> None:
    request = ExportLogsServiceRequest.FromString(path.read_bytes())
    contents, dropped = translate_logs(request.resource_logs, Hasher())
    assert contents
    assert _round_trip((contents, dropped)) == (contents, dropped)


@pytest.mark.parametrize("path", SDK_FILES, ids=lambda p: p.name)
def test_sdk_batches_come_back_equal(path: Path) -> None:
    batches = 0
    for line in path.read_text().splitlines():
        record = json.loads(line)
        if record["path"] == "/v1/ingest" and record.get("body_json"):
            batch = parse_batch(json.dumps(record["body_json"]).encode(), Hasher())
            assert _round_trip(batch) == batch
            batches += 1
    assert batches


def test_a_field_left_out_of_init_is_refused() -> None:
    from dataclasses import field

    with pytest.raises(TypeError, match="__init__"):

        @pickled_by_fields
        @dataclass(frozen=True, slots=True)
        class Computed:
            a: int
            b: int = field(init=False, default=0)


@pickled_by_fields
@dataclass(frozen=True, slots=True)
class One:
    value: tuple[int, ...]


def test_one_field_classes_round_trip() -> None:
    assert _round_trip(One((1, 2))) == One((1, 2))


def test_a_refusal_crosses_processes_with_its_kind_and_cause() -> None:
    """A translation worker's ReceiverError reaches the daemon with the very ErrorKind object
    (compared with ``is``), its cause, and the cause's traceback as text for the debug line."""
    import pickle

    from google.protobuf.message import DecodeError

    from receiver import errors

    kinds = [value for value in vars(errors).values() if isinstance(value, errors.ErrorKind)]
    assert len(kinds) == 13
    for kind in kinds:
        try:
            raise DecodeError("Error parsing message")
        except DecodeError as exc:
            refusal = errors.ReceiverError(kind, "the message is not valid", cause=exc)
        back = pickle.loads(pickle.dumps(refusal))
        assert back.kind is kind and back.message == "the message is not valid"
        assert isinstance(back.cause, DecodeError)
        assert "Traceback (most recent call last)" in str(back.cause.__cause__)
