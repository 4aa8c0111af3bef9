"""Our LangChain ``DunetraceCallbackHandler`` (sdk/python/src/dunetrace/integrations/langchain.py) in
the docs' Langfuse block "3. Run both callbacks together", run verbatim (tests/oursdk/scripts/
lc_docs_langfuse.py): a LangGraph prebuilt ReAct agent on the real ``ChatOpenAI`` against the fake
OpenAI server, with Langfuse's real LangChain handler against the fake Langfuse server, and a
real daemon.

Checked by hand-written expectations: ``dt_cb.last_run_id`` (UUID with dashes) names the run the
sidecar holds and is the Langfuse trace's id (``lf_cb.last_trace_id``, 32 hex) — the one trace
the fake Langfuse received; the run has the agent's 2 LLM calls and 1 tool call, tokens and finish
reasons, once each — also with ``auto_instrument()`` on, whose openai and httpx instrumentations
see the same calls; a marker in the query and the tool's result is in none of our OTLP requests."""

from __future__ import annotations

import uuid
from collections.abc import Iterator, Mapping
from pathlib import Path
from typing import Any

import pytest

from tests.fakes.langfuse_server import FakeLangfuse
from tests.fakes.llm_servers import FakeOpenAI, Reply
from tests.fakes.tee_proxy import TeeProxy
from tests.oursdk.env import SCRIPTS
from tests.oursdk.harness import run_script
from tests.oursdk.test_oursdk_middleware import DOCS, _lines
from tests.sdk.harness import Api
from tests.sidecar import Sidecar


@pytest.fixture
def tee(oursdk_daemon: Sidecar) -> Iterator[TeeProxy]:
    proxy = TeeProxy(oursdk_daemon.http_url)
    yield proxy
    proxy.close()


def _events(run: Mapping[str, Any], event_type: str) -> list[dict[str, Any]]:
    return [e["payload"] for e in run["events"] if e["event_type"] == event_type]


@pytest.mark.parametrize("auto", [False, True], ids=["handler", "handler+auto_instrument"])
def test_the_docs_langfuse_block_names_one_run_in_both_systems(
    auto: bool, oursdk_stacks_python: Path, oursdk_daemon: Sidecar, tee: TeeProxy
) -> None:
    marker = f"zq{uuid.uuid4().hex}"
    script = [
        Reply.tool_call("lookup_weather", {"city": "Paris"}, input_tokens=30, output_tokens=6),
        Reply.answer("It is sunny in Paris.", input_tokens=40, output_tokens=7),
    ]
    with FakeLangfuse() as langfuse, FakeOpenAI(script) as fake:
        env = {
            "FAKE_OPENAI_BASE_URL": fake.base_url,
            "LANGFUSE_PUBLIC_KEY": langfuse.public_key,
            "LANGFUSE_SECRET_KEY": langfuse.secret_key,
            "LANGFUSE_HOST": langfuse.base_url,
            "LC_MARKER": marker,
            "LC_AUTO": "1" if auto else "",
            "OTEL_EXPORTER_OTLP_ENDPOINT": tee.url,
        }
        out = run_script(oursdk_stacks_python, "lc_docs_langfuse", oursdk_daemon, extra_env=env)
        assert fake.remaining == 0 and fake.errors == []
        assert marker in fake.requests[0].body["messages"][-1]["content"]  # the query reached the model
        received = langfuse.received_trace_ids
    r = out.result
    assert (r["answer"], r["tool_calls"]) == ("It is sunny in Paris.", ["Paris"])
    dt_run_id, lf_trace_id = r["dt_run_id"], r["lf_trace_id"]
    assert str(uuid.UUID(dt_run_id)) == dt_run_id  # a UUID with dashes
    assert lf_trace_id == uuid.UUID(dt_run_id).hex  # the same UUID, no dashes
    assert received == [lf_trace_id]  # Langfuse got exactly that trace

    run = Api(oursdk_daemon).wait_run(dt_run_id, lambda x: x["status"] != "running")
    assert (run["agent_id"], run["status"], run["exit_reason"]) == ("my-agent", "completed", "final_answer")
    assert (run["llm_calls"], run["tool_calls"]) == (2, 1)  # once each, with or without auto_instrument
    assert (run["prompt_tokens"], run["completion_tokens"]) == (70, 13)
    assert [p["finish_reason"] for p in _events(run, "llm.responded")] == ["tool_calls", "stop"]
    assert [p["model"] for p in _events(run, "llm.called")] == ["gpt-4o-mini", "gpt-4o-mini"]
    assert [p["tool_name"] for p in _events(run, "tool.called")] == ["lookup_weather"]

    sent = b"".join(tee.bodies)
    assert uuid.UUID(dt_run_id).bytes in sent
    assert [n for n in (marker, marker[2:18], marker[-16:]) if n.encode() in sent] == []


def test_langfuse_listed_first_still_names_the_run(
    oursdk_stacks_python: Path, oursdk_daemon: Sidecar, tee: TeeProxy
) -> None:
    """``callbacks=[lf_cb, dt_cb]``: Langfuse's handler starts its trace before ours runs; the run
    takes that trace's id, so ``last_run_id`` still names the Langfuse trace."""
    turn = [
        Reply.tool_call("lookup_weather", {"city": "Paris"}, input_tokens=30, output_tokens=6),
        Reply.answer("It is sunny in Paris.", input_tokens=40, output_tokens=7),
    ]
    with FakeLangfuse() as langfuse, FakeOpenAI(turn + turn) as fake:
        env = {
            "FAKE_OPENAI_BASE_URL": fake.base_url,
            "LANGFUSE_PUBLIC_KEY": langfuse.public_key,
            "LANGFUSE_SECRET_KEY": langfuse.secret_key,
            "LANGFUSE_HOST": langfuse.base_url,
            "LC_MARKER": f"zq{uuid.uuid4().hex}",
            "LC_REVERSED": "1",
            "OTEL_EXPORTER_OTLP_ENDPOINT": tee.url,
        }
        out = run_script(oursdk_stacks_python, "lc_docs_langfuse", oursdk_daemon, extra_env=env)
        assert fake.remaining == 0 and fake.errors == []
        received = langfuse.received_trace_ids
    first, second = out.result, out.result["reversed"]
    assert first["lf_trace_id"] == uuid.UUID(first["dt_run_id"]).hex
    assert second["lf_trace_id"] == uuid.UUID(second["dt_run_id"]).hex  # the same UUID, no dashes
    assert second["dt_run_id"] != first["dt_run_id"]
    assert sorted(received) == sorted([first["lf_trace_id"], second["lf_trace_id"]])
    run = Api(oursdk_daemon).wait_run(second["dt_run_id"], lambda x: x["status"] != "running")
    assert (run["agent_id"], run["status"], run["exit_reason"]) == ("my-agent", "completed", "final_answer")
    assert (run["llm_calls"], run["tool_calls"]) == (2, 1)


def test_the_langfuse_script_holds_the_docs_block() -> None:
    text = DOCS.read_text().splitlines()
    start = text.index("from dunetrace.integrations.langchain import DunetraceCallbackHandler") - 1
    last = 'lf_trace_id = lf_cb.last_trace_id # e.g. "b5ed23bee4f043bc..." (same UUID, no dashes)'
    block = text[start : text.index(last, start) + 1]
    assert block[0] == "from dunetrace import Dunetrace"
    lines = (SCRIPTS / "lc_docs_langfuse.py").read_text().splitlines()
    ours = lines[lines.index("# --- the docs, verbatim ---") + 1 : lines.index("# --- end of the docs ---")]
    assert _lines("\n".join(ours)) == _lines("\n".join(block))
