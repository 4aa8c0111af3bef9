"""``dt.auto_instrument()`` (sdk/python/src/dunetrace/auto.py) with the real openai, anthropic, httpx
and requests clients against the fake OpenAI and Anthropic servers on 127.0.0.1, run by scripts in
the stacks venv (tests/oursdk/scripts/auto_*.py) against a real daemon.

What is checked, by hand-written expectations: each call made inside the run is one LLM call in the
sidecar — with the openai and anthropic instrumentations and the httpx one all seeing the SDKs'
calls, and whichever list form is used — with its model, tokens and finish reason; the call made
before the run is not recorded; raw HTTP to LLM paths counts as LLM calls, other HTTP as a tool
call named after the host; calling it twice changes nothing; a marker in every prompt and
completion is in none of the OTLP requests and not in the DuckDB file; a ``stop`` raises out of the
next instrumented call and ``switch_model`` reaches the agent."""

from __future__ import annotations

import uuid
from collections import Counter
from collections.abc import Callable, Iterator, Mapping
from pathlib import Path
from typing import Any

import duckdb
import pytest

from tests.fakes.llm_servers import FakeAnthropic, FakeOpenAI, Reply
from tests.fakes.tee_proxy import TeeProxy
from tests.oursdk.harness import run_script
from tests.sdk.harness import API_KEY, Api
from tests.sidecar import Sidecar


def _script(marker: str) -> tuple[list[Reply], list[Reply]]:
    """The fakes' answers, in the order the script asks: openai (outside, tool call, answer,
    stream, raw httpx) and anthropic (tool use, answer, raw requests)."""
    openai = [
        Reply.answer(f"outside {marker}"),
        Reply.tool_call("lookup", {"city": marker}, input_tokens=11, output_tokens=3),
        Reply.answer(f"sunny {marker}", input_tokens=12, output_tokens=4),
        Reply.answer(f"streamed {marker}", input_tokens=13, output_tokens=5),
        Reply.answer(f"raw {marker}", input_tokens=14, output_tokens=6),
    ]
    anthropic = [
        Reply.tool_call("lookup", {"city": marker}, input_tokens=21, output_tokens=7),
        Reply.answer(f"warm {marker}", input_tokens=22, output_tokens=8),
        Reply.answer(f"raw claude {marker}", input_tokens=23, output_tokens=9),
    ]
    return openai, anthropic


# What the sidecar must hold for the run, whichever way the calls were instrumented.
EXPECTED_MODELS = Counter(
    {"gpt-4o": 2, "gpt-4o-stream": 1, "claude-sonnet": 2, "raw-httpx-model": 1, "raw-requests-model": 1}
)
EXPECTED_FINISH = Counter({"tool_calls": 2, "stop": 5})  # anthropic's tool_use / end_turn normalised
SDK_MODELS = Counter({"gpt-4o": 2, "gpt-4o-stream": 1, "claude-sonnet": 2})


def _events(run: Mapping[str, Any], event_type: str) -> list[dict[str, Any]]:
    return [e["payload"] for e in run["events"] if e["event_type"] == event_type]


def _run_auto(python: Path, daemon: Sidecar, mode: str, extra: dict[str, str] | None = None) -> tuple[Any, Any, Any]:
    marker = f"zq{uuid.uuid4().hex}"
    openai_script, anthropic_script = _script(marker)
    with FakeOpenAI(openai_script) as fake_openai, FakeAnthropic(anthropic_script) as fake_anthropic:
        env = {
            "AUTO_MODE": mode,
            "AUTO_AGENT": f"auto-{mode}-{uuid.uuid4().hex[:8]}",
            "AUTO_MARKER": marker,
            "FAKE_OPENAI_BASE_URL": fake_openai.base_url,
            "FAKE_ANTHROPIC_BASE_URL": fake_anthropic.base_url,
            **(extra or {}),
        }
        out = run_script(python, "auto_clients", daemon, extra_env=env)
        # every scripted answer was asked for once: nothing retried, nothing skipped
        assert (fake_openai.remaining, fake_anthropic.remaining) == (0, 0)
        assert fake_openai.errors == [] and fake_anthropic.errors == []
    assert out.result["answers"] == [
        f"outside {marker}",
        "tool_calls",
        f"sunny {marker}",
        f"streamed {marker}",
        "tool_use",
        f"warm {marker}",
        f"raw {marker}",
        f"raw claude {marker}",
        "501",  # the fake answers POSTs only
    ]
    run = Api(daemon).wait_run(out.result["run_id"], lambda r: r["status"] != "running")
    return out, run, env


def _check_llm_calls(
    run: Mapping[str, Any], models: Counter[str], finish: Counter[str], tokens: tuple[int, int]
) -> None:
    called = _events(run, "llm.called")
    responded = _events(run, "llm.responded")
    assert Counter(p["model"] for p in called) == models
    assert run["llm_calls"] == sum(models.values()) == len(responded)
    assert Counter(p["finish_reason"] for p in responded) == finish
    assert (run["prompt_tokens"], run["completion_tokens"]) == tokens
    assert "gpt-outside" not in {p["model"] for p in called}  # the call before the run is not recorded


@pytest.fixture
def own_daemon(make_sidecar: Callable[..., Sidecar]) -> Sidecar:
    return make_sidecar(env={"DUNETRACE_API_KEYS": API_KEY}, name="oursdk-auto")


@pytest.fixture
def tee(own_daemon: Sidecar) -> Iterator[TeeProxy]:
    proxy = TeeProxy(own_daemon.http_url)
    yield proxy
    proxy.close()


def test_auto_instrument_all_counts_each_call_once_and_nothing_leaves(
    oursdk_stacks_python: Path, own_daemon: Sidecar, tee: TeeProxy
) -> None:
    out, run, env = _run_auto(oursdk_stacks_python, own_daemon, "all", {"OTEL_EXPORTER_OTLP_ENDPOINT": tee.url})
    assert (run["agent_id"], run["status"]) == (env["AUTO_AGENT"], "completed")
    # 5 SDK calls (openai ×3 with the httpx instrumentation under them, anthropic ×2) + raw httpx + raw requests
    _check_llm_calls(
        run, EXPECTED_MODELS, EXPECTED_FINISH, (11 + 12 + 13 + 14 + 21 + 22 + 23, 3 + 4 + 5 + 6 + 7 + 8 + 9)
    )
    # the GET of a non-LLM URL is a tool call named after the host; the two tools the models asked for
    # (answered by no tool span) are counted by the sidecar as requested tool calls
    tools = _events(run, "tool.called")
    assert Counter(p.get("tool_name") for p in tools) == Counter({"127.0.0.1": 1, "lookup": 2})
    assert run["tool_calls"] == 3
    [http] = [p for p in _events(run, "tool.responded") if p.get("tool_name") == "127.0.0.1"]
    assert http.get("success") is False  # a 501

    marker = env["AUTO_MARKER"]
    needles = [marker, marker[2:18], marker[-16:]]
    sent = b"".join(tee.bodies)
    assert uuid.UUID(run["run_id"]).bytes in sent  # the run went through the tee
    assert [n for n in needles if n.encode() in sent] == []
    assert [n for n in needles if n in out.stdout.replace(marker, "")] == []  # (the answers printed hold it)
    own_daemon.stop()
    with duckdb.connect(str(own_daemon.db_path), read_only=True) as conn:
        tables = [r[0] for r in conn.execute("SELECT table_name FROM information_schema.tables").fetchall()]
        dump = "\n".join(str(conn.execute(f'SELECT * FROM "{table}"').fetchall()) for table in tables)
    assert run["run_id"] in dump or run["run_id"].replace("-", "") in dump
    assert [n for n in needles if n in dump] == []
    raw = own_daemon.db_path.read_bytes()
    wal = own_daemon.db_path.with_name(own_daemon.db_path.name + ".wal")
    raw += wal.read_bytes() if wal.exists() else b""
    assert [n for n in needles if n.encode() in raw] == []


def test_auto_instrument_llm_clients_only(oursdk_stacks_python: Path, oursdk_daemon: Sidecar) -> None:
    """``["openai", "anthropic"]``: the SDKs' calls only — raw HTTP is not theirs, the GET no tool."""
    _, run, _ = _run_auto(oursdk_stacks_python, oursdk_daemon, "llm")
    _check_llm_calls(
        run, SDK_MODELS, Counter({"tool_calls": 2, "stop": 3}), (11 + 12 + 13 + 21 + 22, 3 + 4 + 5 + 7 + 8)
    )
    assert Counter(p.get("tool_name") for p in _events(run, "tool.called")) == Counter({"lookup": 2})


def test_auto_instrument_http_clients_only(oursdk_stacks_python: Path, oursdk_daemon: Sidecar) -> None:
    """``["httpx", "requests"]``: the openai and anthropic SDKs' calls are read off httpx — the same
    calls, models, tokens (the stream's too) and finish reasons as with their instrumentations."""
    _, run, _ = _run_auto(oursdk_stacks_python, oursdk_daemon, "http")
    _check_llm_calls(
        run, EXPECTED_MODELS, EXPECTED_FINISH, (11 + 12 + 13 + 14 + 21 + 22 + 23, 3 + 4 + 5 + 6 + 7 + 8 + 9)
    )
    assert Counter(p.get("tool_name") for p in _events(run, "tool.called")) == Counter({"127.0.0.1": 1, "lookup": 2})


@pytest.mark.parametrize("frameworks", ["openai", "httpx"])
def test_policies_act_on_auto_instrumented_calls(
    frameworks: str, oursdk_stacks_python: Path, oursdk_daemon: Sidecar
) -> None:
    agent = f"auto-policy-{uuid.uuid4().hex[:8]}"
    with FakeOpenAI([Reply.answer(f"step {n}") for n in range(6)]) as fake:
        env = {"FAKE_OPENAI_BASE_URL": fake.base_url, "AUTO_AGENT": agent, "AUTO_FRAMEWORKS": frameworks}
        out = run_script(oursdk_stacks_python, "auto_policy", oursdk_daemon, extra_env=env)
        sent = len(fake.requests)
    r = out.result
    # switch_model after the first call (it cost something); the stop decided on the 3rd call's
    # answer is raised out of the 4th call before it was sent
    assert r["models"] == ["gpt-4o", "gpt-4o-mini", "gpt-4o-mini", "gpt-4o-mini"]
    # (with httpx only, it is raised at the HTTP request under the openai client, which lets it through)
    assert r["stopped"] == {"policy": "three steps", "attempted": 4}
    assert sent == 3
    run = Api(oursdk_daemon).wait_run(r["run_id"], lambda x: x["status"] != "running")
    assert (run["status"], run["exit_reason"], run["llm_calls"]) == ("errored", "policy_violation", 3)
    fired = [(p["policy_name"], p["action_type"]) for p in _events(run, "policy.triggered")]
    assert fired == [("cost cap", "switch_model"), ("three steps", "stop")]
    assert [p["model"] for p in _events(run, "llm.called")] == ["gpt-4o", "gpt-4o-mini", "gpt-4o-mini"]


@pytest.mark.parametrize("mode", ["llm", "http"])
def test_streamed_anthropic_calls_are_counted_with_their_tokens(
    mode: str, oursdk_stacks_python: Path, oursdk_daemon: Sidecar
) -> None:
    """``stream=True`` on the real anthropic client, through OpenLLMetry's instrumentation (``llm``)
    or read from the wire (``http``): each call counted once, with its tokens and finish reason."""
    marker = f"zq{uuid.uuid4().hex}"
    script = [
        Reply.tool_call("lookup_weather", {"city": "Paris"}, input_tokens=31, output_tokens=9),
        Reply.answer(f"It is sunny in Paris. {marker}", input_tokens=42, output_tokens=11),
    ]
    with FakeAnthropic(script) as fake:
        env = {
            "AUTO_MODE": mode,
            "AUTO_AGENT": f"auto-stream-{mode}-{uuid.uuid4().hex[:8]}",
            "AUTO_MARKER": marker,
            "FAKE_ANTHROPIC_BASE_URL": fake.base_url,
        }
        out = run_script(oursdk_stacks_python, "auto_anthropic_stream", oursdk_daemon, extra_env=env)
        assert fake.remaining == 0 and fake.errors == []
        assert [r.body.get("stream") for r in fake.requests] == [True, True]
    assert out.result["read"] == ["tool_use", "tool_use", f"It is sunny in Paris. {marker}"]
    run = Api(oursdk_daemon).wait_run(out.result["run_id"], lambda r: r["status"] != "running")
    assert (run["status"], run["exit_reason"]) == ("completed", "final_answer")
    assert run["llm_calls"] == 2
    # message_delta's output_tokens is the call's running total (the Messages API's streaming docs);
    # OpenLLMetry's anthropic instrumentation adds message_start's count (1) to it, once per call
    quirk = 2 if mode == "llm" else 0
    assert (run["prompt_tokens"], run["completion_tokens"]) == (31 + 42, 9 + 11 + quirk)
    assert [p["finish_reason"] for p in _events(run, "llm.responded")] == ["tool_calls", "stop"]
    assert [p.get("tool_calls_requested") or [] for p in _events(run, "llm.responded")] == [["lookup_weather"], []]
    assert all(p.get("output_length") for p in _events(run, "llm.responded")[1:])  # the streamed answer was read


def test_a_streamed_raw_requests_call_is_counted_with_its_tokens(
    oursdk_stacks_python: Path, oursdk_daemon: Sidecar
) -> None:
    """``requests.post(..., stream=True)`` to an LLM path: the body is read as the agent reads it,
    so the call has the tokens and finish reason its server-sent events carry."""
    marker = f"zq{uuid.uuid4().hex}"
    with FakeOpenAI([Reply.answer(f"It is sunny. {marker}", input_tokens=17, output_tokens=6)]) as fake:
        env = {
            "AUTO_AGENT": f"auto-requests-stream-{uuid.uuid4().hex[:8]}",
            "AUTO_MARKER": marker,
            "FAKE_OPENAI_BASE_URL": fake.base_url,
        }
        out = run_script(oursdk_stacks_python, "auto_requests_stream", oursdk_daemon, extra_env=env)
        assert fake.remaining == 0 and fake.errors == []
    assert out.result["text"] == f"It is sunny. {marker}"
    run = Api(oursdk_daemon).wait_run(out.result["run_id"], lambda r: r["status"] != "running")
    assert (run["status"], run["llm_calls"], run["tool_calls"]) == ("completed", 1, 0)
    assert (run["prompt_tokens"], run["completion_tokens"]) == (17, 6)
    [responded] = _events(run, "llm.responded")
    assert responded["finish_reason"] == "stop"
    assert responded.get("output_length") == len(f"It is sunny. {marker}")
