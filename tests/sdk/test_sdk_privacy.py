"""Privacy through the published SDK (dunetrace==0.5.7): the SDK sends content in clear (user input, system prompt,
tool arguments and output, LLM output, errors, external-signal meta, retrieval query and content, memory values).
A unique marker put in every one of those fields is found nowhere the daemon writes or answers: the DuckDB file and
its write-ahead log (raw bytes, and every table through SQL), the daemon's debug log, and the API's answers. The
SDK's API key (it is also sent in every ingest body) is not kept either.
"""

from __future__ import annotations

import uuid
from collections.abc import Callable
from pathlib import Path

import duckdb

from tests.fakes.llm_servers import FakeOpenAI, Reply
from tests.sdk.harness import API_KEY, Api, run_scenario
from tests.sidecar import Sidecar


def _needles(marker: str) -> list[str]:
    # the whole marker, and its distinctive half (a store that kept a prefix or a suffix is caught too)
    return [marker, marker[2:18], marker[-16:], API_KEY]


def _hits(haystack: str, needles: list[str]) -> list[str]:
    return [n for n in needles if n in haystack]


def test_sdk_content_reaches_no_store_log_or_answer(
    sdk_python: Path, sdk_daemon: Callable[..., Sidecar], fake_openai: Callable[[list[Reply]], FakeOpenAI]
) -> None:
    marker = f"zq{uuid.uuid4().hex}"
    needles = _needles(marker)
    fake = fake_openai([Reply.tool_call("lookup", {"q": marker}), Reply.answer(f"answer {marker}")])
    daemon = sdk_daemon(env={"DUNETRACE_LOG_LEVEL": "debug"})
    api = Api(daemon)
    out = run_scenario(
        sdk_python, "p_privacy", daemon.api_url, fake_openai=fake.base_url, extra_env={"PRIVACY_MARKER": marker}
    )
    assert fake.remaining == 0
    run = api.wait_run(out.result["run_id"])
    errored = api.wait_run(out.result["errored_run_id"])
    # the runs were stored with their shape (so the marker's absence means reduced, not dropped)
    assert (run["status"], run["llm_calls"], run["tool_calls"], run["retrievals"]) == ("completed", 3, 1, 1)
    assert (errored["status"], errored["tool_calls"]) == ("errored", 1)
    assert run["source"] == "sdk"

    # Every API answer that can carry a run's data.
    answers = [
        api.get("/v1/runs?limit=500").body,
        api.get("/v1/agents").body,
        api.get("/v1/signals?limit=500").body,
    ]
    for run_id in (out.result["run_id"], out.result["errored_run_id"]):
        answers += [
            api.get(f"/v1/runs/{run_id}").body,
            api.get(f"/v1/runs/{run_id}/events").body,
            api.get(f"/v1/signals?run_id={run_id}").body,
        ]
    api_text = b"\n".join(answers).decode(errors="replace")
    assert out.result["run_id"] in api_text
    assert _hits(api_text, needles) == []

    daemon.stop()
    # Every stored value, through SQL (the file itself may be compressed) ...
    with duckdb.connect(str(daemon.db_path), read_only=True) as conn:
        tables = [r[0] for r in conn.execute("SELECT table_name FROM information_schema.tables").fetchall()]
        dump = "\n".join(str(conn.execute(f'SELECT * FROM "{table}"').fetchall()) for table in tables)
    assert out.result["run_id"] in dump or out.result["run_id"].replace("-", "") in dump
    assert _hits(dump, needles) == []
    # ... and the raw bytes of the database file and its write-ahead log.
    raw = daemon.db_path.read_bytes().decode("latin-1")
    wal = daemon.db_path.with_name(daemon.db_path.name + ".wal")
    if wal.exists():
        raw += wal.read_bytes().decode("latin-1")
    assert _hits(raw, needles) == []

    # The daemon's own log, at debug level.
    log_text = daemon.log_text()
    assert "listening" in log_text
    assert _hits(log_text, needles) == []
