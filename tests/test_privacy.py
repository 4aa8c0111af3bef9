"""Privacy is an invariant: content sent in is found nowhere the daemon writes or answers.

The content strings are collected here, independently of the translator: every string value
under a content-bearing attribute (and every log-record body), opened up when it is JSON,
keeping the pieces long enough to be unmistakable.
"""

from __future__ import annotations

import json
import re
from collections.abc import Callable, Iterable, Iterator
from typing import Any

import duckdb
from opentelemetry.proto.collector.logs.v1.logs_service_pb2 import ExportLogsServiceRequest
from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import ExportTraceServiceRequest
from opentelemetry.proto.common.v1.common_pb2 import AnyValue

from tests.sidecar import FIXTURES, Sidecar, trace_ids_in

# Attribute keys (or key patterns) that carry prompts, completions, arguments, results,
# documents or error messages in the three conventions.
CONTENT_KEYS = re.compile(
    r"^(gen_ai\.(input|output)\.messages|gen_ai\.system_instructions|gen_ai\.prompt\.\d+\..*content"
    r"|gen_ai\.completion\.\d+\..*(content|arguments)|gen_ai\.prompt\.\d+\.tool_calls\.\d+\.arguments"
    r"|gen_ai\.tool\.call\.(arguments|result)|gen_ai\.retrieval\.(query\.text|documents)"
    r"|llm\.(input|output)_messages\..*(content|text|arguments)|retrieval\.documents\.\d+\.document\.content"
    r"|input\.value|output\.value|traceloop\.entity\.(input|output)|exception\.message)$"
)
# Values that are identifiers rather than content even when under a content key.
NOT_CONTENT = {"", "{}", "[]", "null", "true", "false"}
# Keys inside message JSON that name structure, not content: ids, roles, types, tool names.
STRUCTURE_KEYS = {"id", "tool_call_id", "tool_use_id", "type", "role", "name", "finish_reason", "model"}


def _any(value: AnyValue) -> Any:
    kind = value.WhichOneof("value")
    if kind == "array_value":
        return [_any(v) for v in value.array_value.values]
    if kind == "kvlist_value":
        return {kv.key: _any(kv.value) for kv in value.kvlist_value.values}
    return getattr(value, kind) if kind else None


def _leaves(value: Any) -> Iterator[str]:
    if isinstance(value, str):
        yield value
        try:
            parsed = json.loads(value)
        except ValueError:
            return
        if not isinstance(parsed, str):
            yield from _leaves(parsed)
    elif isinstance(value, dict):
        for key, item in value.items():
            if key not in STRUCTURE_KEYS:
                yield from _leaves(item)
    elif isinstance(value, list):
        for item in value:
            yield from _leaves(item)


def _keep(text: str) -> bool:
    # Long enough to be unmistakable; a few short argument values are checked explicitly.
    return text.strip() not in NOT_CONTENT and len(text) >= 12


def content_strings() -> set[str]:
    found: set[str] = set()
    for path in FIXTURES.glob("*.pb"):
        if path.name.endswith(".logs.pb"):
            logs = ExportLogsServiceRequest.FromString(path.read_bytes())
            for rl in logs.resource_logs:
                for sl in rl.scope_logs:
                    for record in sl.log_records:
                        found.update(t for t in _leaves(_any(record.body)) if _keep(t))
            continue
        request = ExportTraceServiceRequest.FromString(path.read_bytes())
        for rs in request.resource_spans:
            for ss in rs.scope_spans:
                for span in ss.spans:
                    if span.status.message and _keep(span.status.message):
                        found.add(span.status.message)
                    attributes = list(span.attributes) + [a for e in span.events for a in e.attributes]
                    for kv in attributes:
                        if CONTENT_KEYS.match(kv.key):
                            found.update(t for t in _leaves(_any(kv.value)) if _keep(t))
    # Short but distinctive argument values from the scenarios.
    found.update({"A-1042", "q3-2025", "Paris"})
    return found


def _hits(haystack: str, needles: Iterable[str]) -> list[str]:
    return sorted(n for n in needles if n in haystack)


def test_no_content_reaches_store_logs_or_api(make_sidecar: Callable[..., Sidecar]) -> None:
    needles = content_strings()
    assert len(needles) > 100  # the collector itself works: it found the captures' content
    assert "Where is my order A-1042? Keep checking until it ships." in needles

    daemon = make_sidecar(env={"DUNETRACE_LOG_LEVEL": "debug"})
    run_ids: set[str] = set()
    for path in sorted(FIXTURES.glob("*.pb")):
        kind = "/v1/logs" if path.name.endswith(".logs.pb") else "/v1/traces"
        assert daemon.post_otlp(path.read_bytes(), path=kind).status == 200
        if kind == "/v1/traces":
            run_ids.update(trace_ids_in(path.read_bytes()))
    for path in sorted(FIXTURES.glob("*.json")):
        if path.name == "manifest.json":
            continue
        kind = "/v1/logs" if ".logs." in path.name else "/v1/traces"
        assert daemon.post_otlp(path.read_bytes(), path=kind, content_type="application/json").status == 200

    # Every API answer.
    answers = [daemon.api("/v1/runs?limit=500").body, daemon.api("/v1/agents").body]
    answers += [daemon.api(f"/v1/runs/{run_id}").body for run_id in sorted(run_ids)]
    api_text = b"\n".join(answers).decode()
    assert len(run_ids) == 22 and all(run_id in api_text for run_id in run_ids)
    assert _hits(api_text, needles) == []

    # Every stored value, read back through SQL (the file itself may be compressed).
    daemon.stop()
    with duckdb.connect(str(daemon.db_path), read_only=True) as conn:
        tables = [r[0] for r in conn.execute("SELECT table_name FROM information_schema.tables").fetchall()]
        dump = "\n".join(str(conn.execute(f'SELECT * FROM "{table}"').fetchall()) for table in tables)
    assert "llm.called" in dump
    assert _hits(dump, needles) == []
    # And the raw bytes of the database file and its write-ahead log, for good measure.
    raw = daemon.db_path.read_bytes().decode("latin-1")
    wal = daemon.db_path.with_name(daemon.db_path.name + ".wal")
    if wal.exists():
        raw += wal.read_bytes().decode("latin-1")
    assert _hits(raw, needles) == []

    # The daemon's own log, at debug level.
    log_text = daemon.log_text()
    assert "listening" in log_text
    assert _hits(log_text, needles) == []


def test_hash_key_switches_to_hmac(make_sidecar: Callable[..., Sidecar]) -> None:
    plain = make_sidecar(name="plain")
    keyed = make_sidecar(env={"DUNETRACE_HASH_KEY": "operator-secret-key"}, name="keyed")
    body = (FIXTURES / "otelgenai-openai-toolloop.pb").read_bytes()
    [run_id] = trace_ids_in(body)
    for daemon in (plain, keyed):
        assert daemon.post_otlp(body).status == 200

    def args_hashes(daemon: Sidecar) -> list[str]:
        run = daemon.run(run_id)
        return [e["payload"]["args_hash"] for e in run["events"] if e["event_type"] == "tool.called"]

    plain_hashes, keyed_hashes = args_hashes(plain), args_hashes(keyed)
    assert all(h.startswith("sha256:") for h in plain_hashes)
    assert all(h.startswith("hmac-sha256:") for h in keyed_hashes)
    # The same arguments give the same keyed hash (loops stay detectable) but not the plain one.
    assert len(set(keyed_hashes)) == 1
    assert keyed_hashes[0].split(":")[1] != plain_hashes[0].split(":")[1]
    import hashlib
    import hmac

    arguments = '{"order_id":"A-1042"}'  # canonical JSON of what the tool received
    assert plain_hashes[0] == "sha256:" + hashlib.sha256(arguments.encode()).hexdigest()
    expected = hmac.new(b"operator-secret-key", arguments.encode(), hashlib.sha256).hexdigest()
    assert keyed_hashes[0] == "hmac-sha256:" + expected
