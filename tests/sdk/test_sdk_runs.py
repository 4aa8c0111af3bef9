"""The published Dunetrace SDK (dunetrace==0.5.7, in .sdkenv/) pointed at the daemon, as our users run it:
Dunetrace(api_key=..., endpoint=<the daemon's API>). Each scenario script runs with the SDK's python; every
expectation below is written by hand from the scenario's known shape (see the script's docstring), and checked
through our API: GET /v1/runs/{run_id} (the SDK's run_id is our run id), /v1/signals?run_id=, /v1/agents.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

from tests.fakes.llm_servers import FakeOpenAI, Reply
from tests.sdk.harness import Api, event_counts, run_scenario, signal_types
from tests.sidecar import Sidecar

WEATHER = {"city": "Paris"}


def _loop_script(tool: str = "get_weather", loops: int = 4) -> list[Reply]:
    """``loops`` identical tool calls, then the answer; every call reports 120 prompt and 7 completion tokens."""
    calls = [Reply.tool_call(tool, WEATHER, input_tokens=120, output_tokens=7) for _ in range(loops)]
    return [*calls, Reply.answer("It is sunny in Paris.", input_tokens=120, output_tokens=7)]


def test_run_loop_with_auto_instrumented_openai_raises_tool_loop_live(
    sdk_python: Path, sdk_shared_daemon: Sidecar, fake_openai: Callable[[list[Reply]], FakeOpenAI]
) -> None:
    fake = fake_openai(_loop_script())
    api = Api(sdk_shared_daemon)
    out = run_scenario(sdk_python, "a_tool_loop", sdk_shared_daemon.api_url, fake_openai=fake.base_url)
    assert (out.result["llm_calls"], out.result["tool_calls"]) == (5, 4)
    assert fake.remaining == 0 and fake.errors == []

    run_id = out.result["run_id"]
    run = api.wait_run(run_id)
    assert run["run_id"] == run_id
    assert run["agent_id"] == "weather-agent"
    assert run["source"] == "sdk"
    assert run["status"] == "completed"
    assert run["exit_reason"] == "final_answer"
    assert (run["llm_calls"], run["tool_calls"], run["retrievals"], run["errors"]) == (5, 4, 0, 0)
    assert run["step_count"] == 9  # llm 1, tool 2, ..., llm 9: the SDK's step_index
    # the provider's usage (llm.responded prompt_tokens), not the SDK's chars/4 estimate on llm.called
    assert (run["prompt_tokens"], run["completion_tokens"]) == (600, 35)
    assert event_counts(run) == {
        "run.started": 1,
        "llm.called": 5,
        "llm.responded": 5,
        "tool.called": 4,
        "tool.responded": 4,
        "run.completed": 1,
    }
    [tool_loop] = [s for s in api.signals(run_id) if s["failure_type"] == "TOOL_LOOP"]
    assert tool_loop["mode"] == "live"
    assert tool_loop["severity"] == "HIGH"  # four calls with identical arguments
    assert tool_loop["agent_id"] == "weather-agent"
    assert "TOOL_LOOP" in signal_types(run["signals"])
    agent = api.agents()["weather-agent"]
    assert agent["run_count"] >= 1 and agent["signal_count"] >= 1


def test_langchain_callback_handler_run(
    sdk_python: Path, sdk_shared_daemon: Sidecar, fake_openai: Callable[[list[Reply]], FakeOpenAI]
) -> None:
    fake = fake_openai(_loop_script())
    api = Api(sdk_shared_daemon)
    out = run_scenario(sdk_python, "b_langchain", sdk_shared_daemon.api_url, fake_openai=fake.base_url)
    assert (out.result["llm_calls"], out.result["tool_calls"]) == (5, 4)

    run_id = out.result["run_id"]  # callback.last_run_id: LangChain's root run id, a UUIDv7
    assert run_id and run_id[14] == "7"
    run = api.wait_run(run_id)
    assert run["run_id"] == run_id
    assert run["agent_id"] == "lc-weather-agent"
    assert run["source"] == "sdk"
    assert (run["status"], run["exit_reason"]) == ("completed", "final_answer")
    assert (run["llm_calls"], run["tool_calls"], run["errors"]) == (5, 4, 0)
    assert run["step_count"] == 9
    assert run["completion_tokens"] == 35
    assert event_counts(run) == {
        "run.started": 1,
        "llm.called": 5,
        "llm.responded": 5,
        "tool.called": 4,
        "tool.responded": 4,
        "run.completed": 1,
    }
    # the handler's tool.called args are {"input": "{'city': 'Paris'}"} four times: identical
    [tool_loop] = [s for s in api.signals(run_id) if s["failure_type"] == "TOOL_LOOP"]
    assert (tool_loop["mode"], tool_loop["severity"]) == ("live", "HIGH")
    assert "lc-weather-agent" in api.agents()


def test_fastapi_asgi_middleware_one_run_per_request(
    sdk_python: Path, sdk_shared_daemon: Sidecar, fake_openai: Callable[[list[Reply]], FakeOpenAI]
) -> None:
    fake = fake_openai([Reply.answer("Sunny, 21 C.", input_tokens=30, output_tokens=6)])
    api = Api(sdk_shared_daemon)
    out = run_scenario(sdk_python, "c_fastapi_asgi", sdk_shared_daemon.api_url, fake_openai=fake.base_url)
    assert out.result["statuses"] == {"chat": 200, "items": 200, "boom": 500}
    runs = out.result["runs"]
    assert len(set(runs.values())) == 3

    chat = api.wait_run(runs["chat"])
    assert (chat["agent_id"], chat["source"]) == ("fastapi-agent", "sdk")
    assert (chat["status"], chat["exit_reason"]) == ("completed", "final_answer")
    assert (chat["llm_calls"], chat["tool_calls"]) == (1, 0)  # the openai client's own httpx call is not a tool
    assert (chat["prompt_tokens"], chat["completion_tokens"]) == (30, 6)

    items = api.wait_run(runs["items"])
    assert (items["agent_id"], items["status"], items["exit_reason"]) == ("fastapi-agent", "completed", "final_answer")
    assert (items["llm_calls"], items["tool_calls"]) == (0, 1)
    assert event_counts(items) == {"run.started": 1, "tool.called": 1, "tool.responded": 1, "run.completed": 1}

    boom = api.wait_run(runs["boom"])
    assert (boom["agent_id"], boom["status"]) == ("fastapi-agent", "errored")
    assert boom["exit_reason"] == "error"
    assert boom["tool_calls"] == 1
    assert event_counts(boom)["run.errored"] == 1

    agent = api.agents()["fastapi-agent"]
    assert agent["run_count"] >= 3 and agent["running_runs"] == 0


def test_flask_wsgi_middleware_one_run_per_request(sdk_python: Path, sdk_shared_daemon: Sidecar) -> None:
    api = Api(sdk_shared_daemon)
    out = run_scenario(sdk_python, "d_flask_wsgi", sdk_shared_daemon.api_url)
    assert out.result["statuses"] == {"lookup": 200, "boom": 500}
    runs = out.result["runs"]

    lookup = api.wait_run(runs["lookup"])
    assert (lookup["agent_id"], lookup["source"]) == ("flask-agent", "sdk")
    assert (lookup["status"], lookup["exit_reason"]) == ("completed", "final_answer")
    assert (lookup["llm_calls"], lookup["tool_calls"], lookup["errors"]) == (0, 1, 0)

    # Flask turns the view's exception into a 500 inside app.wsgi_app: the SDK reports run.completed
    boom = api.wait_run(runs["boom"])
    assert (boom["agent_id"], boom["status"], boom["exit_reason"]) == ("flask-agent", "completed", "final_answer")
    assert boom["tool_calls"] == 1
    assert event_counts(boom) == {"run.started": 1, "tool.called": 1, "run.completed": 1}
    assert api.agents()["flask-agent"]["run_count"] >= 2


def test_emit_as_json_ships_over_http_too(sdk_python: Path, sdk_shared_daemon: Sidecar) -> None:
    api = Api(sdk_shared_daemon)
    out = run_scenario(sdk_python, "g_emit_as_json", sdk_shared_daemon.api_url)
    lines = out.ndjson()
    assert len(lines) == 13  # the SDK's stdout feed: one line per event
    assert {line["run_id"] for line in lines} == {out.result["run_id"], out.result["child_run_id"]}

    parent = api.wait_run(out.result["run_id"])
    assert (parent["agent_id"], parent["source"]) == ("json-agent", "sdk")
    assert (parent["status"], parent["exit_reason"]) == ("completed", "final_answer")
    assert (parent["llm_calls"], parent["tool_calls"], parent["retrievals"]) == (2, 1, 1)
    assert (parent["prompt_tokens"], parent["completion_tokens"]) == (320, 80)
    # the last answer "Doc 17 is about X." was sent with output_length 0 (a manual llm_responded without it):
    # an answer with text is not empty
    assert "EMPTY_LLM_RESPONSE" not in signal_types(api.signals(parent["run_id"]))

    child = api.wait_run(out.result["child_run_id"])
    assert (child["agent_id"], child["status"], child["exit_reason"]) == ("json-subagent", "completed", "final_answer")
    assert (child["llm_calls"], child["tool_calls"]) == (0, 0)
    # A run the SDK opened (run.started .. run.completed) is a run even without a step: listed like any other, and
    # its agent seen (an OTLP trace without a step is not a run; the SDK says so explicitly).
    assert "json-agent" in api.agents()
    listed = api.json("/v1/runs?agent_id=json-subagent")["runs"]
    assert [r["run_id"] for r in listed] == [out.result["child_run_id"]]
    assert "json-subagent" in api.agents()
