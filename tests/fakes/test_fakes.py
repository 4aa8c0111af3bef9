"""The fakes speak the real APIs: every check goes through the real langfuse / anthropic / openai SDKs."""

from __future__ import annotations

import asyncio
import base64
import gzip
import json
import time
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from typing import Any

import anthropic
import httpx
import openai
import pydantic
import pytest
from langfuse import Langfuse
from langfuse.api import (
    AsyncLangfuseAPI,
    ChatMessage,
    CreateChatPromptRequest,
    CreateChatPromptType,
    CreateTextPromptRequest,
    Error,
    LangfuseAPI,
    NotFoundError,
    UnauthorizedError,
)
from langfuse.api.core.api_error import ApiError

from tests.fakes.explainer_llm import DEFAULT_ANSWER, MALFORMED_TOOL_INPUT, FakeExplainerLLM
from tests.fakes.langfuse_server import FakeLangfuse

pytestmark = pytest.mark.timeout(60)

TRACE_ID = "4bf92f3577b34da6a3ce929d0e0e4736"
T0 = datetime(2026, 1, 5, 12, 0, 0, tzinfo=UTC)
DIAGNOSIS_SCHEMA: dict[str, Any] = {
    "type": "object",
    "properties": {"root_cause": {"type": "string"}, "fix_content": {"type": "string"}},
    "required": ["root_cause", "fix_content"],
    "additionalProperties": False,
}


class Diagnosis(pydantic.BaseModel):
    root_cause: str
    fix_content: str


@pytest.fixture
def lf() -> Iterator[FakeLangfuse]:
    with FakeLangfuse() as server:
        yield server
    assert server.errors == []


@pytest.fixture
def llm() -> Iterator[FakeExplainerLLM]:
    with FakeExplainerLLM() as server:
        yield server
    assert server.errors == []


def api_for(fake: FakeLangfuse, **kwargs: Any) -> LangfuseAPI:
    options: dict[str, Any] = {"timeout": 10, **kwargs}
    return LangfuseAPI(
        base_url=fake.base_url,
        username=fake.public_key,
        password=fake.secret_key,
        x_langfuse_public_key=fake.public_key,
        **options,
    )


def async_api_for(fake: FakeLangfuse) -> AsyncLangfuseAPI:
    return AsyncLangfuseAPI(
        base_url=fake.base_url,
        username=fake.public_key,
        password=fake.secret_key,
        x_langfuse_public_key=fake.public_key,
        timeout=10,
    )


@pytest.fixture
def client(lf: FakeLangfuse) -> Iterator[Langfuse]:
    langfuse = Langfuse(public_key=lf.public_key, secret_key=lf.secret_key, base_url=lf.base_url, tracing_enabled=False)
    yield langfuse
    langfuse.shutdown()


def text_of(message: anthropic.types.Message) -> str:
    block = message.content[0]
    assert isinstance(block, anthropic.types.TextBlock), block
    return block.text


def seed_failing_run(fake: FakeLangfuse, trace_id: str = TRACE_ID) -> None:
    fake.add_trace(
        trace_id,
        [
            {"id": "a000000000000001", "type": "AGENT", "name": "agent-run", "startTime": T0},
            {
                "id": "a000000000000002",
                "parentObservationId": "a000000000000001",
                "type": "GENERATION",
                "name": "plan",
                "startTime": T0 + timedelta(seconds=1),
                "endTime": T0 + timedelta(seconds=3, milliseconds=500),
                "level": "ERROR",
                "statusMessage": "tool search failed 3 times",
                "input": {"messages": [{"role": "user", "content": "find flights"}]},
                "output": "I will search again.",
                "model": "gpt-4o-mini",
                "usageDetails": {"input": 120, "output": 30},
                "promptName": "agent-system",
                "promptVersion": 3,
            },
            {
                "id": "a000000000000003",
                "parentObservationId": "a000000000000001",
                "type": "TOOL",
                "name": "search",
                "startTime": T0 + timedelta(seconds=4),
                "level": "WARNING",
            },
        ],
        name="book-trip",
        timestamp=T0,
        tags=["prod"],
    )


# ============================================================== Langfuse: auth, projects, health


def test_auth_projects_and_health(lf: FakeLangfuse, client: Langfuse) -> None:
    api = api_for(lf)
    projects = api.projects.get()
    assert [p.id for p in projects.data] == [lf.project_id]
    assert client.auth_check() is True

    wrong = LangfuseAPI(base_url=lf.base_url, username=lf.public_key, password="nope", timeout=10)
    assert wrong.health.health().status == "OK"  # health needs no auth
    with pytest.raises(UnauthorizedError) as caught:
        wrong.projects.get()
    assert "message" in caught.value.body
    raw = httpx.get(f"{lf.base_url}/api/public/projects")
    assert raw.status_code == 401 and raw.headers["content-type"].startswith("application/json")

    sent = lf.requests_to("GET", "/api/public/projects")[0]
    assert sent.headers["Authorization"].startswith("Basic ")
    assert sent.headers["X-Langfuse-Public-Key"] == lf.public_key


# ============================================================== Langfuse: reading traces


def test_v2_observations_field_groups_and_filters(lf: FakeLangfuse) -> None:
    seed_failing_run(lf)
    seed_failing_run(lf, "f" * 32)  # another trace, must not leak into the results
    api = api_for(lf)

    page = api.observations.get_many(trace_id=TRACE_ID, fields="core,basic,io,prompt")
    assert page.meta.cursor is None
    by_id = {o.id: o for o in page.data}
    assert set(by_id) == {"a000000000000001", "a000000000000002", "a000000000000003"}
    gen = by_id["a000000000000002"]
    assert (gen.trace_id, gen.project_id, gen.type, gen.name) == (TRACE_ID, lf.project_id, "GENERATION", "plan")
    assert gen.parent_observation_id == "a000000000000001"
    assert gen.level == "ERROR" and gen.status_message == "tool search failed 3 times"
    assert isinstance(gen.input, str) and json.loads(gen.input)["messages"][0]["content"] == "find flights"
    assert gen.output == "I will search again."
    assert (gen.prompt_name, gen.prompt_version) == ("agent-system", 3)
    assert gen.start_time == T0 + timedelta(seconds=1)
    assert gen.model is None and gen.usage_details is None and gen.latency is None  # groups not asked for

    full = api.observations.get_many(trace_id=TRACE_ID, fields="core,model,usage,metrics", type="GENERATION")
    [gen] = full.data
    assert gen.model == "gpt-4o-mini"
    assert gen.usage_details == {"input": 120, "output": 30, "total": 150}
    assert gen.latency == pytest.approx(2.5)
    assert gen.name is None  # basic not asked for

    core_only = api.observations.get_many(trace_id=TRACE_ID, fields="core")
    assert all(o.name is None and o.level is None for o in core_only.data)
    default = api.observations.get_many(trace_id=TRACE_ID)  # core,basic
    assert {o.level for o in default.data} == {"DEFAULT", "ERROR", "WARNING"}

    assert [o.id for o in api.observations.get_many(trace_id=TRACE_ID, level="ERROR").data] == ["a000000000000002"]
    assert [o.id for o in api.observations.get_many(trace_id=TRACE_ID, name="search").data] == ["a000000000000003"]
    assert len(api.observations.get_many(level="WARNING").data) == 2  # both traces

    adopted = json.dumps(
        [
            {"type": "string", "column": "promptName", "operator": "=", "value": "agent-system"},
            {"type": "number", "column": "promptVersion", "operator": "=", "value": 3},
        ]
    )
    assert len(api.observations.get_many(filter=adopted, fields="core,prompt").data) == 2
    newer = adopted.replace('"value": 3', '"value": 4')
    assert api.observations.get_many(filter=newer).data == []
    assert api.observations.get_many(trace_id="0" * 31 + "1").data == []  # unknown trace: empty, not 404

    with pytest.raises(Error):
        api.observations.get_many(fields="core,nonsense")
    with pytest.raises(Error):
        api.observations.get_many(limit=1001)


def test_v2_observations_cursor_paging(lf: FakeLangfuse) -> None:
    lf.add_trace(TRACE_ID, [{"id": f"b{i:015d}", "startTime": T0 + timedelta(seconds=i)} for i in range(7)])
    api = api_for(lf)
    seen: list[str] = []
    cursor: str | None = None
    pages = 0
    while True:
        page = api.observations.get_many(trace_id=TRACE_ID, limit=3, cursor=cursor)
        pages += 1
        seen.extend(o.id for o in page.data)
        cursor = page.meta.cursor
        if cursor is None:
            break
    assert pages == 3
    assert seen == [f"b{i:015d}" for i in reversed(range(7))]  # newest first, like the server


def test_async_observations_and_legacy_trace_through_the_sdk_http_client(lf: FakeLangfuse) -> None:
    seed_failing_run(lf)

    async def read() -> tuple[Any, httpx.Response, httpx.Response]:
        api = async_api_for(lf)
        page = await api.observations.get_many(trace_id=TRACE_ID, fields="core,basic,io,prompt")
        http = api.trace._raw_client._client_wrapper.httpx_client
        legacy = await http.request(f"api/public/traces/{TRACE_ID}", method="GET")
        missing = await http.request(f"api/public/traces/{'e' * 32}", method="GET")
        return page, legacy, missing

    page, legacy, missing = asyncio.run(read())
    assert len(page.data) == 3
    assert legacy.status_code == 200
    trace = legacy.json()
    for key in ("id", "timestamp", "tags", "public", "environment", "htmlPath", "observations", "scores"):
        assert key in trace
    assert trace["_deprecation"]["replacement"] == "GET /api/public/v2/observations"
    assert trace["name"] == "book-trip" and trace["tags"] == ["prod"]
    gen = next(o for o in trace["observations"] if o["id"] == "a000000000000002")
    sdk4_required = ["id", "type", "startTime", "modelParameters", "input", "output", "usage", "level"]
    sdk4_required += ["usageDetails", "costDetails", "environment"]
    assert all(key in gen for key in sdk4_required)
    assert gen["input"]["messages"][0]["content"] == "find flights"  # legacy: parsed JSON, not a raw string
    assert (gen["level"], gen["promptName"], gen["promptVersion"]) == ("ERROR", "agent-system", 3)
    assert missing.status_code == 404 and "message" in missing.json()


def test_older_server_without_v2_observations_falls_back_to_legacy(lf: FakeLangfuse) -> None:
    seed_failing_run(lf)
    lf.observations_v2_enabled = False
    api = api_for(lf)

    def fetch(trace_id: str) -> list[dict[str, Any]]:  # the strategy the sidecar is meant to use
        try:
            page = api.observations.get_many(trace_id=trace_id, fields="core,basic,io,prompt")
            return [o.dict(by_alias=True) for o in page.data]
        except NotFoundError:
            http = api.trace._raw_client._client_wrapper.httpx_client
            response = http.request(f"api/public/traces/{trace_id}", method="GET")
            response.raise_for_status()
            return response.json()["observations"]

    with pytest.raises(NotFoundError) as caught:
        api.observations.get_many(trace_id=TRACE_ID)
    assert "v4" in caught.value.body["message"]
    assert {o["id"] for o in fetch(TRACE_ID)} == {"a000000000000001", "a000000000000002", "a000000000000003"}

    lf.observations_v2_enabled = True
    lf.legacy_traces_enabled = False  # a v4 server after the sunset
    assert len(fetch(TRACE_ID)) == 3
    raw = api.trace._raw_client._client_wrapper.httpx_client.request(f"api/public/traces/{TRACE_ID}", method="GET")
    assert raw.status_code == 404


def test_ingestion_lag_hides_a_trace_for_a_while(lf: FakeLangfuse) -> None:
    lf.add_trace(TRACE_ID, [{"name": "late"}], visible_after=0.3)
    api = api_for(lf)
    assert api.observations.get_many(trace_id=TRACE_ID).data == []
    time.sleep(0.35)
    assert [o.name for o in api.observations.get_many(trace_id=TRACE_ID).data] == ["late"]


# ============================================================== Langfuse: prompts, raw API


def test_prompt_get_by_label_version_and_latest(lf: FakeLangfuse) -> None:
    lf.seed_prompt("agent-system", "You are a travel agent. v1", labels=["production"], config={"model": "m"})
    lf.seed_prompt("agent-system", "You are a travel agent. v2", labels=["staging"])
    api = api_for(lf)

    production = api.prompts.get("agent-system")  # no label: the server uses production
    assert (production.type, production.version, production.prompt) == ("text", 1, "You are a travel agent. v1")
    assert production.labels == ["production"] and production.config == {"model": "m"}
    assert api.prompts.get("agent-system", label="production").version == 1
    assert api.prompts.get("agent-system", label="latest").version == 2
    assert api.prompts.get("agent-system", label="staging").version == 2
    assert api.prompts.get("agent-system", version=1).labels == ["production"]
    with pytest.raises(NotFoundError):
        api.prompts.get("agent-system", label="canary")
    with pytest.raises(NotFoundError):
        api.prompts.get("no-such-prompt")
    assert lf.label_version("agent-system", "latest") == 2
    assert [p.name for p in api.prompts.list().data] == ["agent-system"]


def test_prompt_create_and_label_update_raw_api(lf: FakeLangfuse) -> None:
    lf.seed_prompt("agent-system", "v1", labels=["production"], tags=["travel"], config={"temperature": 0})
    api = api_for(lf)

    created = api.prompts.create(
        request=CreateTextPromptRequest(
            name="agent-system",
            prompt="v1\nIf a tool fails twice, stop.",
            labels=["production"],
            config={"temperature": 0},
            commit_message="agent-sidecar: fix for signal s-1",
        )
    )
    assert created.version == 2 and created.labels == ["production", "latest"]
    assert created.tags == ["travel"]  # tags null in the request: inherited
    assert created.commit_message == "agent-sidecar: fix for signal s-1"
    [publish] = lf.publishes("agent-system")
    assert "type" not in publish.body  # text prompts omit it
    assert publish.body["labels"] == ["production"]
    assert [v["labels"] for v in lf.versions("agent-system")] == [[], ["production", "latest"]]

    rolled_back = api.prompt_version.update("agent-system", 1, new_labels=["production"])
    assert rolled_back.version == 1 and rolled_back.labels == ["production"]
    assert lf.label_version("agent-system", "production") == 1
    assert lf.label_version("agent-system", "latest") == 2
    with pytest.raises(Error):  # latest is reserved
        api.prompt_version.update("agent-system", 2, new_labels=["latest"])
    with pytest.raises(NotFoundError):
        api.prompt_version.update("agent-system", 9, new_labels=["production"])

    chat = api.prompts.create(
        request=CreateChatPromptRequest(
            name="team/planner",
            type=CreateChatPromptType.CHAT,
            prompt=[ChatMessage(role="system", content="Plan the trip."), ChatMessage(role="user", content="{{q}}")],
            labels=["production"],
            tags=["planning"],
        )
    )
    assert chat.type == "chat" and chat.version == 1 and chat.labels == ["production", "latest"]
    assert lf.publishes("team/planner")[0].body["type"] == "chat"
    assert api.prompts.get("team%2Fplanner").prompt[0].content == "Plan the trip."  # folder name, URL-encoded
    assert api.prompts.get("team/planner").version == 1  # plain slash: the server's catch-all route takes it too
    assert api.prompt_version.update("team%2Fplanner", 1, new_labels=["staging"]).labels[0] == "staging"
    assert api.prompt_version.update("team/planner", 1, new_labels=["qa"]).labels[:2] == ["qa", "staging"]

    with pytest.raises(Error) as caught:  # type change is a 400
        api.prompts.create(request=CreateTextPromptRequest(name="team/planner", prompt="text now"))
    assert "different prompt type" in caught.value.body["message"]
    assert lf.latest_version("team/planner") == 1
    assert len(lf.publishes()) == 2  # failed publishes are not counted


# ============================================================== Langfuse: the high-level client


def test_langfuse_client_prompt_workflow(lf: FakeLangfuse, client: Langfuse) -> None:
    lf.seed_prompt("agent-system", "You are {{role}}.", config={"model": "gpt-4o-mini"}, tags=["travel"])

    current = client.get_prompt("agent-system", cache_ttl_seconds=0)
    assert current.version == 1 and current.compile(role="a travel agent") == "You are a travel agent."
    assert current.config == {"model": "gpt-4o-mini"}
    assert client.get_prompt("agent-system", version=1, cache_ttl_seconds=0).version == 1
    assert client.get_prompt("agent-system", label="latest", cache_ttl_seconds=0).version == 1

    cached = client.get_prompt("agent-system", label="production", cache_ttl_seconds=60)  # into the cache
    lf.seed_prompt("agent-system", "Someone else published v2.", labels=["production"])
    assert client.get_prompt("agent-system", label="production", cache_ttl_seconds=60).version == cached.version == 1
    assert client.get_prompt("agent-system", cache_ttl_seconds=0).version == 2

    fixed = client.create_prompt(
        name="agent-system",
        prompt=current.prompt + " Stop after two failed tool calls.",
        labels=["production"],
        config=current.config,
        commit_message="agent-sidecar: fix for signal s-42",
    )
    assert fixed.version == 3 and set(fixed.labels) == {"production", "latest"}
    assert fixed.tags == ["travel"]
    assert client.get_prompt("agent-system", cache_ttl_seconds=0).version == 3
    assert client.get_prompt("agent-system", label="production").version == 3  # the write invalidated the cache

    client.update_prompt(name="agent-system", version=1, new_labels=["production"])  # roll back
    assert client.get_prompt("agent-system", cache_ttl_seconds=0).version == 1
    assert lf.label_version("agent-system", "production") == 1
    assert lf.label_version("agent-system", "latest") == 3

    with pytest.raises(Error):  # chat on a text prompt: 400
        client.create_prompt(name="agent-system", type="chat", prompt=[{"role": "system", "content": "x"}])
    with pytest.raises(NotFoundError):
        client.get_prompt("missing", cache_ttl_seconds=0, max_retries=0)

    chat = client.create_prompt(
        name="folder/chat-agent",
        type="chat",
        prompt=[{"role": "system", "content": "Be brief."}, {"role": "user", "content": "{{q}}"}],
        labels=["production"],
    )
    assert chat.version == 1
    fetched = client.get_prompt("folder/chat-agent", type="chat", cache_ttl_seconds=0)
    assert fetched.compile(q="hi")[1] == {"role": "user", "content": "hi"}
    last_get = lf.requests_to("GET", "/api/public/v2/prompts/folder/chat-agent")[-1]
    assert last_get.raw_path.endswith("folder%2Fchat-agent")
    assert len(lf.publishes("agent-system")) == 1 and len(lf.label_updates("agent-system")) == 1


# ============================================================== Langfuse: failure knobs


def test_fail_next_statuses_map_to_sdk_errors(lf: FakeLangfuse) -> None:
    lf.seed_prompt("p", "text")
    api = api_for(lf)
    no_retry: Any = {"max_retries": 0}

    lf.fail_next(1, 503, path="/api/public/v2/prompts")
    with pytest.raises(ApiError) as caught:
        api.prompts.get("p", request_options=no_retry)
    assert caught.value.status_code == 503 and "message" in caught.value.body
    assert api.prompts.get("p", request_options=no_retry).version == 1  # only the next one failed

    lf.fail_next(1, 401)
    with pytest.raises(UnauthorizedError):
        api.projects.get()
    lf.fail_next(1, 404, path="/api/public/v2/observations")
    with pytest.raises(NotFoundError):
        api.observations.get_many(trace_id=TRACE_ID)
    lf.fail_next(1, 429, retry_after=7, path="/api/public/projects")
    with pytest.raises(ApiError) as caught:
        api.projects.get(request_options=no_retry)
    assert caught.value.status_code == 429 and (caught.value.headers or {})["retry-after"] == "7"

    lf.fail_next(1, 500, retry_after=1, method="POST")  # the SDK's own retry gets through after 1 s
    started = time.monotonic()
    created = api.prompts.create(request=CreateTextPromptRequest(name="p", prompt="v2", labels=["production"]))
    assert created.version == 2 and 0.9 < time.monotonic() - started < 5
    statuses = [r.status for r in lf.requests_to("POST", "/api/public/v2/prompts")]
    assert statuses == [500, 200] and len(lf.publishes("p")) == 1


def test_slow_then_unreachable_then_back(lf: FakeLangfuse) -> None:
    lf.seed_prompt("p", "text")
    slow = api_for(lf, timeout=0.3)
    lf.delay_seconds = 1.0
    with pytest.raises(httpx.TimeoutException):
        slow.prompts.get("p")
    lf.delay_seconds = 0
    assert slow.prompts.get("p").version == 1

    port = lf.port
    lf.stop()
    with pytest.raises(httpx.ConnectError):
        api_for(lf).prompts.get("p")
    lf.start()
    assert lf.port == port and api_for(lf).prompts.get("p").version == 1  # state kept


# ============================================================== Langfuse: OTLP ingestion


def test_otlp_ingestion_protobuf_gzip_from_the_otel_exporter(lf: FakeLangfuse) -> None:
    from opentelemetry.exporter.otlp.proto.http import Compression
    from opentelemetry.exporter.otlp.proto.http.trace_exporter import OTLPSpanExporter
    from opentelemetry.sdk.trace import TracerProvider
    from opentelemetry.sdk.trace.export import SimpleSpanProcessor
    from opentelemetry.trace import Status, StatusCode

    token = base64.b64encode(f"{lf.public_key}:{lf.secret_key}".encode()).decode()
    exporter = OTLPSpanExporter(
        endpoint=f"{lf.base_url}/api/public/otel/v1/traces",
        headers={"Authorization": f"Basic {token}", "x-langfuse-ingestion-version": "4"},
        compression=Compression.Gzip,
        timeout=5,
    )
    provider = TracerProvider()  # private: never the global provider
    provider.add_span_processor(SimpleSpanProcessor(exporter))
    tracer = provider.get_tracer("test")
    with tracer.start_as_current_span("agent-run") as root:
        with tracer.start_as_current_span("llm") as span:
            span.set_attribute("langfuse.observation.type", "generation")
            span.set_attribute("langfuse.observation.prompt.name", "agent-system")
            span.set_attribute("langfuse.observation.prompt.version", 3)
            span.set_attribute("gen_ai.request.model", "gpt-4o-mini")
            span.set_status(Status(StatusCode.ERROR, "rate limited"))
        trace_id = format(root.get_span_context().trace_id, "032x")
    provider.shutdown()

    assert lf.received_trace_ids == [trace_id]
    exports = lf.otlp_exports
    assert {e.ingestion_version for e in exports} == {"4"} and {e.content_encoding for e in exports} == {"gzip"}
    observations = api_for(lf).observations.get_many(trace_id=trace_id, fields="core,basic,prompt,model").data
    llm_obs = next(o for o in observations if o.name == "llm")
    assert (llm_obs.type, llm_obs.level, llm_obs.status_message) == ("GENERATION", "ERROR", "rate limited")
    assert (llm_obs.prompt_name, llm_obs.prompt_version, llm_obs.model) == ("agent-system", 3, "gpt-4o-mini")


def test_otlp_ingestion_json_and_bad_batches(lf: FakeLangfuse) -> None:
    auth = (lf.public_key, lf.secret_key)
    url = f"{lf.base_url}/api/public/otel/v1/traces"

    def batch(trace_id: str, span_id: str) -> bytes:
        span = {
            "traceId": trace_id,
            "spanId": span_id,
            "name": "json-span",
            "startTimeUnixNano": "1767614400000000000",
            "endTimeUnixNano": "1767614401000000000",
            "attributes": [{"key": "langfuse.trace.name", "value": {"stringValue": "json-run"}}],
            "status": {"code": 2, "message": "boom"},
        }
        return json.dumps({"resourceSpans": [{"scopeSpans": [{"spans": [span]}]}]}).encode()

    headers = {"Content-Type": "application/json", "x-langfuse-ingestion-version": "4"}
    plain = httpx.post(url, content=batch("1" * 32, "2" * 16), headers=headers, auth=auth)
    assert plain.status_code == 200 and plain.json() == {}
    double = gzip.compress(gzip.compress(batch("3" * 32, "4" * 16)))  # one layer inflated by aiohttp, one by us
    encoded = httpx.post(url, content=double, headers={**headers, "Content-Encoding": "gzip"}, auth=auth)
    assert encoded.status_code == 200
    assert lf.received_trace_ids == ["1" * 32, "3" * 32]
    assert lf.trace("1" * 32)["name"] == "json-run"  # type: ignore[index]

    bad = httpx.post(url, content=batch("not-hex", "2" * 16), headers=headers, auth=auth)
    assert bad.status_code == 400 and "message" in bad.json()
    assert httpx.post(url, content=b"", headers=headers, auth=auth).json() == {}
    assert httpx.post(url, content=batch("5" * 32, "6" * 16), headers=headers).status_code == 401
    assert lf.received_trace_ids == ["1" * 32, "3" * 32]


def test_langfuse_sdk_exporter_with_a_private_tracer_provider(lf: FakeLangfuse) -> None:
    from opentelemetry.sdk.trace import TracerProvider

    client = Langfuse(
        public_key=lf.public_key,
        secret_key=lf.secret_key,
        base_url=lf.base_url,
        tracer_provider=TracerProvider(),  # so the global OTel provider stays untouched
    )
    try:
        with client.start_as_current_observation(name="sdk-run"):
            trace_id = client.get_current_trace_id()
        client.flush()
    finally:
        client.shutdown()
    assert trace_id is not None and trace_id in lf.received_trace_ids
    assert {e.ingestion_version for e in lf.otlp_exports} == {"4"}


# ============================================================== Explainer LLM: Anthropic


def test_anthropic_forced_tool_use_returns_the_configured_object(llm: FakeExplainerLLM) -> None:
    client = anthropic.Anthropic(base_url=llm.anthropic_base_url, api_key="k", max_retries=0)
    message = client.messages.create(
        model="claude-haiku-4-5",
        max_tokens=512,
        system="You diagnose agent failures.",
        messages=[{"role": "user", "content": "Signal: tool_loop on trace abc. Spans: ..."}],
        tools=[{"name": "report_diagnosis", "input_schema": DIAGNOSIS_SCHEMA}],
        tool_choice={"type": "tool", "name": "report_diagnosis"},
    )
    assert message.stop_reason == "tool_use"
    [block] = message.content
    assert block.type == "tool_use" and block.name == "report_diagnosis"
    assert block.input == DEFAULT_ANSWER
    assert message.usage.input_tokens > 0

    sent = llm.last_request
    assert sent.api == "anthropic" and sent.api_key == "k"
    assert "anthropic-version" in {k.lower() for k in sent.headers}
    assert "tool_loop on trace abc" in sent.prompt_text and "You diagnose" in sent.prompt_text
    assert sent.size == int(sent.headers["Content-Length"]) > 100

    llm.answer = {"root_cause": "loop", "fix_content": "stop looping"}
    x_api_key = httpx.post(
        f"{llm.base_url}/v1/messages",
        headers={"x-api-key": "k2", "anthropic-version": "2023-06-01"},
        json={
            "model": "m",
            "max_tokens": 10,
            "messages": [{"role": "user", "content": "x"}],
            "tools": [{"name": "a", "input_schema": {}}, {"name": "b", "input_schema": {}}],
            "tool_choice": {"type": "tool", "name": "b"},
        },
    )
    assert x_api_key.status_code == 200
    assert x_api_key.json()["content"][0]["name"] == "b"
    assert x_api_key.json()["content"][0]["input"] == llm.answer


def test_anthropic_structured_outputs_and_async(llm: FakeExplainerLLM) -> None:
    client = anthropic.Anthropic(base_url=llm.anthropic_base_url, api_key="k", max_retries=0)
    message = client.messages.create(
        model="claude-haiku-4-5",
        max_tokens=512,
        messages=[{"role": "user", "content": "diagnose"}],
        output_config={"format": {"type": "json_schema", "schema": DIAGNOSIS_SCHEMA}},
    )
    assert json.loads(text_of(message)) == DEFAULT_ANSWER
    parsed = client.messages.parse(
        model="claude-haiku-4-5",
        max_tokens=512,
        messages=[{"role": "user", "content": "diagnose"}],
        output_format=Diagnosis,
    )
    assert parsed.parsed_output == Diagnosis(**DEFAULT_ANSWER)

    async def call() -> Any:
        async_client = anthropic.AsyncAnthropic(base_url=llm.anthropic_base_url, api_key="k", max_retries=0)
        return await async_client.messages.create(
            model="claude-haiku-4-5",
            max_tokens=512,
            messages=[{"role": "user", "content": "diagnose"}],
            tools=[{"name": "report_diagnosis", "input_schema": DIAGNOSIS_SCHEMA}],
            tool_choice={"type": "tool", "name": "report_diagnosis"},
        )

    assert asyncio.run(call()).content[0].input == DEFAULT_ANSWER


def _ask_anthropic(client: anthropic.Anthropic) -> Any:
    return client.messages.create(
        model="claude-haiku-4-5",
        max_tokens=256,
        messages=[{"role": "user", "content": "diagnose"}],
        tools=[{"name": "report_diagnosis", "input_schema": DIAGNOSIS_SCHEMA}],
        tool_choice={"type": "tool", "name": "report_diagnosis"},
    )


def test_anthropic_overloaded_retries_and_errors(llm: FakeExplainerLLM) -> None:
    llm.fail_next(2, 529, retry_after=0.01)
    retrying = anthropic.Anthropic(base_url=llm.anthropic_base_url, api_key="k", max_retries=2)
    assert _ask_anthropic(retrying).content[0].input == DEFAULT_ANSWER
    attempts = llm.requests_for("anthropic")
    assert [r.status for r in attempts] == [529, 529, 200]
    assert [r.headers.get("x-stainless-retry-count") for r in attempts] == ["0", "1", "2"]

    no_retry = anthropic.Anthropic(base_url=llm.anthropic_base_url, api_key="k", max_retries=0)
    llm.fail_next(1, 529)
    with pytest.raises(anthropic.OverloadedError):
        _ask_anthropic(no_retry)
    llm.fail_next(1, 429, retry_after=30)
    with pytest.raises(anthropic.RateLimitError) as rate_limited:
        _ask_anthropic(no_retry)
    assert rate_limited.value.response.headers["retry-after"] == "30"
    llm.fail_next(1, 500, path="/v1/messages")
    with pytest.raises(anthropic.InternalServerError):
        _ask_anthropic(no_retry)

    strict = FakeExplainerLLM(api_key="right").start()
    try:
        with pytest.raises(anthropic.AuthenticationError):
            _ask_anthropic(anthropic.Anthropic(base_url=strict.base_url, api_key="wrong", max_retries=0))
    finally:
        strict.stop()
    assert httpx.post(f"{llm.base_url}/v1/messages", json={}).status_code == 401  # no key at all


def test_anthropic_malformed_delay_and_unreachable(llm: FakeExplainerLLM) -> None:
    client = anthropic.Anthropic(base_url=llm.anthropic_base_url, api_key="k", max_retries=0)
    llm.malformed = True
    assert _ask_anthropic(client).content[0].input == MALFORMED_TOOL_INPUT
    text = client.messages.create(model="m", max_tokens=10, messages=[{"role": "user", "content": "x"}])
    with pytest.raises(json.JSONDecodeError):
        json.loads(text_of(text))
    llm.malformed = False

    llm.delay_seconds = 1.0
    impatient = anthropic.Anthropic(base_url=llm.anthropic_base_url, api_key="k", max_retries=0, timeout=0.2)
    started = time.monotonic()
    with pytest.raises(anthropic.APITimeoutError):
        _ask_anthropic(impatient)
    assert time.monotonic() - started < 0.9
    llm.delay_seconds = 0
    assert _ask_anthropic(impatient).content[0].input == DEFAULT_ANSWER

    llm.stop()
    with pytest.raises(anthropic.APIConnectionError):
        _ask_anthropic(client)


# ============================================================== Explainer LLM: OpenAI


def test_openai_json_schema_parse_and_responses(llm: FakeExplainerLLM) -> None:
    client = openai.OpenAI(base_url=llm.openai_base_url, api_key="k", max_retries=0)
    response_format: Any = {
        "type": "json_schema",
        "json_schema": {"name": "diagnosis", "strict": True, "schema": DIAGNOSIS_SCHEMA},
    }
    completion = client.chat.completions.create(
        model="gpt-4o-mini",
        messages=[{"role": "system", "content": "Diagnose."}, {"role": "user", "content": "trace xyz failed"}],
        response_format=response_format,
    )
    choice = completion.choices[0]
    assert choice.finish_reason == "stop" and json.loads(choice.message.content or "") == DEFAULT_ANSWER
    assert completion.usage is not None and completion.usage.total_tokens > 0
    sent = llm.last_request
    assert sent.api == "openai" and sent.headers["Authorization"] == "Bearer k"
    assert sent.body["response_format"]["type"] == "json_schema" and "trace xyz failed" in sent.prompt_text

    parsed = client.chat.completions.parse(
        model="gpt-4o-mini", messages=[{"role": "user", "content": "x"}], response_format=Diagnosis
    )
    assert parsed.choices[0].message.parsed == Diagnosis(**DEFAULT_ANSWER)

    text_format: Any = {"format": {"type": "json_schema", "name": "d", "strict": True, "schema": DIAGNOSIS_SCHEMA}}
    response = client.responses.create(model="m", input="diagnose", instructions="Be brief.", text=text_format)
    assert json.loads(response.output_text) == DEFAULT_ANSWER
    assert "Be brief." in llm.last_request.prompt_text

    async def call() -> Any:
        async_client = openai.AsyncOpenAI(base_url=llm.openai_base_url, api_key="k", max_retries=0)
        return await async_client.chat.completions.create(
            model="gpt-4o-mini", messages=[{"role": "user", "content": "x"}], response_format=response_format
        )

    assert json.loads(asyncio.run(call()).choices[0].message.content or "") == DEFAULT_ANSWER


def test_openai_failures_malformed_and_timeout(llm: FakeExplainerLLM) -> None:
    messages: Any = [{"role": "user", "content": "x"}]
    llm.fail_next(2, 500, retry_after=0.01, path="/v1/chat/completions")
    retrying = openai.OpenAI(base_url=llm.openai_base_url, api_key="k", max_retries=2)
    assert json.loads(retrying.chat.completions.create(model="m", messages=messages).choices[0].message.content or "")
    assert [r.status for r in llm.requests_for("openai")] == [500, 500, 200]

    client = openai.OpenAI(base_url=llm.openai_base_url, api_key="k", max_retries=0)
    llm.fail_next(1, 429, retry_after=20)
    with pytest.raises(openai.RateLimitError) as caught:
        client.chat.completions.create(model="m", messages=messages)
    assert caught.value.code == "rate_limit_exceeded"

    llm.malformed = True
    content = client.chat.completions.create(model="m", messages=messages).choices[0].message.content or ""
    with pytest.raises(json.JSONDecodeError):
        json.loads(content)
    with pytest.raises(pydantic.ValidationError):
        client.chat.completions.parse(model="m", messages=messages, response_format=Diagnosis)
    llm.malformed = False

    llm.delay_seconds = 1.0
    with pytest.raises(openai.APITimeoutError):
        openai.OpenAI(base_url=llm.openai_base_url, api_key="k", max_retries=0, timeout=0.2).chat.completions.create(
            model="m", messages=messages
        )
    llm.delay_seconds = 0
