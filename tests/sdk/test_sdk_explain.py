"""The Dunetrace docs' Langfuse walk-through, through the real published SDKs: dunetrace==0.5.7's LangChain handler
and Langfuse's (langfuse 5.x) on the same agent run, the daemon as the Dunetrace backend, Langfuse played by the
fake of tests/fakes/langfuse_server.py (OTLP ingestion from the Langfuse SDK, the public API the daemon's explain
reads). Scenario j_langfuse_explain (see its docstring) does the doc's step 3; this test does step 4:
POST /v1/signals/{signal_id}/explain with {"langfuse_trace_id": lf_cb.last_trace_id}.

Expectations are written by hand from the scenario's script (four identical get_weather calls, then an answer).
"""

from __future__ import annotations

import re
import uuid
from collections import Counter
from collections.abc import Callable
from pathlib import Path

from tests.fakes.langfuse_server import FakeLangfuse
from tests.fakes.llm_servers import FakeOpenAI, Reply
from tests.sdk.harness import Api, event_counts, run_scenario
from tests.sidecar import Sidecar

WEATHER = {"city": "Paris"}
AGENT_ID = "lf-weather-agent"


def test_doc_walkthrough_both_callbacks_then_explain_with_the_langfuse_trace(
    sdk_python: Path,
    sdk_daemon: Callable[..., Sidecar],
    fake_openai: Callable[[list[Reply]], FakeOpenAI],
) -> None:
    with FakeLangfuse() as langfuse:
        daemon = sdk_daemon(
            env={
                "LANGFUSE_BASE_URL": langfuse.base_url,
                "LANGFUSE_PUBLIC_KEY": langfuse.public_key,
                "LANGFUSE_SECRET_KEY": langfuse.secret_key,
            }
        )
        api = Api(daemon)
        script = [Reply.tool_call("get_weather", WEATHER, input_tokens=120, output_tokens=7) for _ in range(4)]
        fake = fake_openai([*script, Reply.answer("It is sunny in Paris.", input_tokens=120, output_tokens=7)])
        out = run_scenario(
            sdk_python,
            "j_langfuse_explain",
            daemon.api_url,
            fake_openai=fake.base_url,
            extra_env={  # the doc's .env: the Langfuse SDK reads these
                "LANGFUSE_PUBLIC_KEY": langfuse.public_key,
                "LANGFUSE_SECRET_KEY": langfuse.secret_key,
                "LANGFUSE_HOST": langfuse.base_url,
            },
        )
        assert (out.result["llm_calls"], out.result["tool_calls"]) == (5, 4)
        assert out.result["answer"] == "It is sunny in Paris."
        assert fake.remaining == 0 and fake.errors == []
        dt_run_id, lf_trace_id = out.result["dt_run_id"], out.result["lf_trace_id"]

        # The Langfuse SDK shipped the trace to the fake over OTLP (flush() before the script printed).
        assert re.fullmatch(r"[0-9a-f]{32}", lf_trace_id), lf_trace_id
        assert langfuse.received_trace_ids == [lf_trace_id]
        exports = langfuse.otlp_exports
        assert exports and all("protobuf" in e.content_type for e in exports)
        trace = langfuse.trace(lf_trace_id)
        assert trace is not None
        observations = trace["observations"]
        # the root run (Langfuse's handler types a chain named *agent* as AGENT), 5 ChatOpenAI generations and
        # 4 get_weather tool runs under it
        [root] = [o for o in observations if o["parentObservationId"] is None]
        assert (root["type"], root["name"], trace["name"]) == ("AGENT", "weather_agent", "weather_agent")
        children = Counter((o["type"], o["name"]) for o in observations if o is not root)
        assert children == {("GENERATION", "ChatOpenAI"): 5, ("TOOL", "get_weather"): 4}
        assert {o["parentObservationId"] for o in observations if o is not root} == {root["id"]}

        # The Dunetrace run, through our API.
        run = api.wait_run(dt_run_id)
        assert run["run_id"] == dt_run_id
        assert (run["agent_id"], run["source"]) == (AGENT_ID, "sdk")
        assert (run["status"], run["exit_reason"]) == ("completed", "final_answer")
        assert (run["llm_calls"], run["tool_calls"], run["errors"]) == (5, 4, 0)
        assert event_counts(run) == {
            "run.started": 1,
            "llm.called": 5,
            "llm.responded": 5,
            "tool.called": 4,
            "tool.responded": 4,
            "run.completed": 1,
        }
        [tool_loop] = [s for s in api.signals(dt_run_id) if s["failure_type"] == "TOOL_LOOP"]
        assert (tool_loop["mode"], tool_loop["severity"]) == ("live", "HIGH")

        # The doc's claim "dt_run_id and lf_trace_id represent the same run even though their formats differ"
        # ("same UUID, no dashes") does not hold with these libraries: dt_cb.last_run_id is LangChain's root run id
        # (a UUIDv7), while Langfuse's handler starts its root observation without a trace context, so the trace
        # id is a fresh random OTel trace id. Nothing joins them but passing lf_trace_id to explain, as step 4 does.
        assert dt_run_id == out.result["langchain_root_run_id"]
        assert uuid.UUID(dt_run_id).version == 7
        assert lf_trace_id != uuid.UUID(dt_run_id).hex

        # Step 4: explain the TOOL_LOOP with the Langfuse trace id.
        langfuse.clear_requests()
        result = api.post(f"/v1/signals/{tool_loop['signal_id']}/explain", {"langfuse_trace_id": lf_trace_id})
        assert result.status == 200, (result.status, result.body[:800])
        answer = result.json()
        assert answer["signal_id"] == tool_loop["signal_id"]
        assert answer["run_id"] == dt_run_id
        assert answer["failure_type"] == "TOOL_LOOP"
        assert answer["langfuse_trace_id"] == lf_trace_id
        assert answer["source"] == "langfuse"
        assert "langfuse_error" not in answer
        assert answer["explainer"] == "template"  # no LLM configured for the analysis
        assert (answer["fix_type"], answer["apply_blocked"]) == ("prompt_addition", False)
        assert answer["root_cause"] and answer["fix_content"]
        # ... and the daemon fetched that trace from the fake Langfuse (v2 observations, with our keys).
        fetches = langfuse.requests_to("GET", "/api/public/v2/observations")
        assert [r.query.get("traceId") for r in fetches] == [lf_trace_id]
        assert fetches[0].status == 200
        assert langfuse.requests_to("GET", "/api/public/traces/") == []  # no fallback to the legacy endpoint

        # Without the trace id, explain looks for the Dunetrace run id in Langfuse: not there (see the claim above).
        langfuse.clear_requests()
        result = api.post(f"/v1/signals/{tool_loop['signal_id']}/explain", {})
        assert result.status == 200, (result.status, result.body[:800])
        fallback = result.json()
        assert fallback["langfuse_trace_id"] == uuid.UUID(dt_run_id).hex
        assert fallback["langfuse_error"] == "trace_not_found"
        assert fallback["source"] == "sidecar_spans"
        fetches = langfuse.requests_to("GET", "/api/public/v2/observations")
        assert [r.query.get("traceId") for r in fetches] == [uuid.UUID(dt_run_id).hex]
        assert langfuse.errors == []
