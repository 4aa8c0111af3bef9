"""Alert delivery through the real daemon: Slack (Block Kit) and a signed generic webhook, at least once.

Every test runs the daemon as a subprocess with its alert destinations pointed at fake receivers on
127.0.0.1 (``tests/fakes/receivers.py``) and feeds it real OTLP fixtures, each as a new run:
``openllmetry-openai-toolloop.pb`` gives TOOL_LOOP (HIGH), ``openllmetry-openai-errors.pb`` gives
FIRST_STEP_FAILURE (MEDIUM). Webhook signatures are checked with an independent verifier (the ``openai``
SDK's Standard Webhooks check) and recomputed by hand; the Slack blocks are parsed with ``slack_sdk``'s models.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import itertools
import re
import time
import types
from collections.abc import Callable, Iterator
from datetime import UTC, datetime
from email.utils import formatdate
from pathlib import Path
from typing import Any

import openai
import openai.lib._webhooks as openai_webhooks
import pytest
from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import ExportTraceServiceRequest
from prometheus_client.parser import text_string_to_metric_families
from slack_sdk.models.blocks import Block

from dunetrace_sidecar.daemon import free_port
from tests.fakes.receivers import Blackhole, Received, Recorder
from tests.sidecar import FIXTURES, Sidecar, wait_for, with_new_trace_ids

LOOP = "openllmetry-openai-toolloop.pb"  # TOOL_LOOP, HIGH, agent support_agent (its @agent span)
ERRORS = "openllmetry-openai-errors.pb"  # FIRST_STEP_FAILURE, MEDIUM, agent support_agent

LOOP_TITLE = "Tool loop: `lookup_order` called 3× in the last 5 tool calls"
LOOP_WHAT = "The agent called `lookup_order` 3 times between steps 2 and 6 with identical arguments each time."
LOOP_WHY = "A looping agent burns tokens and time without progress, and usually never answers."
LOOP_EVIDENCE = {
    "args_identical": True,
    "count": 3,
    "first_step": 2,
    "last_step": 6,
    "step_indices": [2, 4, 6],
    "tool": "lookup_order",
    "window": 5,
}
ERRORS_TITLE = "Failed at step 2: tool failure (`fetch_report`)"

WHSEC = "whsec_" + base64.b64encode(b"dunetrace-alerts-test-key-32byte").decode()
PLAIN_SECRET = "plain secret, not base64: s3cr3t!"
DASHBOARD = "http://127.0.0.1:3000/dashboard/"

Verifier = Callable[..., None]


# --- helpers ----------------------------------------------------------------------------------


def send_new_run(daemon: Sidecar, fixture: str) -> tuple[str, bytes, float]:
    """Send a fixture as a new run: (run id, the request body as sent, monotonic time the export returned)."""
    body, mapping = with_new_trace_ids((FIXTURES / fixture).read_bytes())
    result = daemon.post_otlp(body)
    returned = time.monotonic()
    assert result.status == 200, result.body[:300]
    [run_id] = mapping.values()
    return run_id, body, returned


def signals_of(daemon: Sidecar, run_id: str, include_shadow: bool = False) -> list[dict[str, Any]]:
    shadow = "&include_shadow=true" if include_shadow else ""
    signals: list[dict[str, Any]] = daemon.api_json(f"/v1/signals?run_id={run_id}{shadow}")["signals"]
    return signals


def the_signal(daemon: Sidecar, run_id: str, include_shadow: bool = False) -> dict[str, Any]:
    [signal] = wait_for(
        lambda: signals_of(daemon, run_id, include_shadow), timeout=10, what=f"the signal of run {run_id}"
    )
    return signal


def posts_for(receiver: Recorder, needle: str, count: int = 1, timeout: float = 10.0) -> list[Received]:
    """Wait until at least ``count`` POSTs mention ``needle`` (a run or signal id); return them all."""

    def enough() -> list[Received]:
        found = receiver.posts_mentioning(needle)
        return found if len(found) >= count else []  # empty: not yet

    return wait_for(enough, timeout=timeout, what=f"{count} POST(s) mentioning {needle} at {receiver.url}")


def alert_counter(daemon: Sidecar, destination: str, outcome: str) -> float:
    text = daemon.api("/metrics").body.decode()
    for family in text_string_to_metric_families(text):
        for sample in family.samples:
            if (
                sample.name == "dunetrace_alerts_total"
                and sample.labels.get("destination") == destination
                and sample.labels.get("outcome") == outcome
            ):
                return float(sample.value)
    return 0.0


def verify(body: str, headers: dict[str, str], secret: str, tolerance: int = 300) -> None:
    """The independent verifier: the openai SDK's Standard Webhooks check (raises when it fails)."""
    openai.OpenAI(api_key="x").webhooks.verify_signature(body, headers, secret=secret, tolerance=tolerance)


def verify_at(body: str, headers: dict[str, str], secret: str, now: float, monkeypatch: pytest.MonkeyPatch) -> None:
    """The same check, as if run at Unix time ``now`` (a replay): only the verifier's own clock moves."""
    with monkeypatch.context() as patch:
        patch.setattr(openai_webhooks, "time", types.SimpleNamespace(time=lambda: now))
        verify(body, headers, secret)


def blocks_of(payload: dict[str, Any], block_type: str) -> list[dict[str, Any]]:
    return [b for b in payload["blocks"] if b["type"] == block_type]


def section_texts(payload: dict[str, Any]) -> list[str]:
    return [b["text"]["text"] for b in blocks_of(payload, "section")]


# --- fixtures ---------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def slack() -> Iterator[Recorder]:
    with Recorder() as receiver:
        yield receiver


@pytest.fixture(scope="module")
def hook() -> Iterator[Recorder]:
    with Recorder(ok_body="") as receiver:
        yield receiver


@pytest.fixture(scope="module")
def alerting(tmp_path_factory: pytest.TempPathFactory, slack: Recorder, hook: Recorder) -> Iterator[Sidecar]:
    """Both destinations, default minimum severities (Slack HIGH, webhook LOW), a whsec_ secret, a dashboard."""
    daemon = Sidecar(
        tmp_path_factory.mktemp("alerting"),
        env={
            "SLACK_WEBHOOK_URL": slack.url,
            "WEBHOOK_URL": hook.url,
            "WEBHOOK_SECRET": WHSEC,
            "DASHBOARD_URL": DASHBOARD,
        },
    ).start()
    yield daemon
    daemon.close()


# --- payloads ---------------------------------------------------------------------------------


def test_slack_alert_is_block_kit_with_header_context_sections_fix_and_dashboard_button(
    alerting: Sidecar, slack: Recorder
) -> None:
    run_id, _, _ = send_new_run(alerting, LOOP)
    signal = the_signal(alerting, run_id)
    [post] = posts_for(slack, run_id)
    assert post.path == "/hooks/alerts"
    assert post.headers["content-type"].startswith("application/json")
    payload = post.json()
    assert set(payload) == {"text", "blocks"}
    # The fallback text (notifications) names the severity and the title.
    assert "HIGH" in payload["text"] and LOOP_TITLE in payload["text"]

    header = payload["blocks"][0]
    assert header["type"] == "header" and header["text"]["type"] == "plain_text"
    assert header["text"]["text"] == f"HIGH: {LOOP_TITLE}"

    [context] = blocks_of(payload, "context")
    context_text = " ".join(e["text"] for e in context["elements"])
    for part in ("support_agent", run_id, "step 6", "confidence 50%"):
        assert part in context_text, (part, context_text)

    sections = section_texts(payload)
    assert f"*What happened*\n{LOOP_WHAT}" in sections
    assert f"*Why it matters*\n{LOOP_WHY}" in sections
    [fix] = [s for s in sections if s.startswith("*Suggested fix*\n")]
    assert "Cap calls per tool in the agent loop" in fix
    assert "if calls_by_tool['lookup_order'] >= 3:" in fix
    # The explanation is the one the API shows for the signal.
    assert signal["explanation"]["what"] == LOOP_WHAT and signal["explanation"]["title"] == LOOP_TITLE

    [actions] = blocks_of(payload, "actions")
    [button] = actions["elements"]
    assert button["type"] == "button"
    assert button["url"] == f"http://127.0.0.1:3000/dashboard/runs/{run_id}"

    # Every block is one slack_sdk's models know, passes their validation (length limits, required
    # fields) and survives a round trip unchanged (no unknown keys).
    for raw in payload["blocks"]:
        parsed = Block.parse(raw)
        assert parsed is not None, raw
        assert parsed.to_dict() == raw  # to_dict() runs validate_json()


def test_webhook_payload_and_headers_verify_with_openai_standard_webhooks_verifier(
    alerting: Sidecar, hook: Recorder, monkeypatch: pytest.MonkeyPatch
) -> None:
    run_id, _, _ = send_new_run(alerting, LOOP)
    signal = the_signal(alerting, run_id)
    [post] = posts_for(hook, run_id)
    payload = post.json()
    delivery_id = f"{signal['signal_id']}:webhook"

    assert post.headers["content-type"].startswith("application/json")
    assert post.headers["webhook-id"] == delivery_id
    assert payload["delivery_id"] == delivery_id
    assert payload["schema_version"] == "1.0"
    assert payload["event"] == "failure_signal"
    timestamp = int(post.headers["webhook-timestamp"])
    assert abs(timestamp - post.received_at) <= 5
    assert re.fullmatch(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d(\.\d+)?Z", payload["sent_at"]), payload["sent_at"]
    sent_at = datetime.strptime(payload["sent_at"], "%Y-%m-%dT%H:%M:%S.%fZ").replace(tzinfo=UTC).timestamp()
    assert abs(sent_at - post.received_at) <= 5

    sent = payload["signal"]
    assert sent["signal_id"] == signal["signal_id"]
    assert sent["run_id"] == run_id
    assert sent["agent_id"] == "support_agent"
    assert sent["failure_type"] == "TOOL_LOOP"
    assert sent["severity"] == "HIGH"
    assert sent["confidence"] == 0.5
    assert sent["step_index"] == 6
    assert sent["evidence"] == LOOP_EVIDENCE
    explanation = sent["explanation"]
    assert explanation["title"] == LOOP_TITLE
    assert explanation["what"] == LOOP_WHAT
    assert explanation["why_it_matters"] == LOOP_WHY
    assert explanation["suggested_fixes"][0]["description"] == "Cap calls per tool in the agent loop"
    assert len(explanation["suggested_fixes"]) == 3
    for key in ("signal_id", "run_id", "agent_id", "failure_type", "severity", "confidence", "step_index"):
        assert sent[key] == signal[key], key  # what the API shows for the same signal
    assert sent["explanation"] == signal["explanation"]

    # The signature verifies with an independent implementation of Standard Webhooks.
    body = post.text
    headers = post.headers  # lowercased names
    assert headers["webhook-signature"].startswith("v1,")
    verify(body, headers, WHSEC)
    verify(post.body.decode(), {k.title(): v for k, v in headers.items()}, WHSEC)  # any header case

    # A tampered body, another id or another secret fails.
    tampered = body.replace('"severity":"HIGH"', '"severity":"LOW"')
    assert tampered != body
    with pytest.raises(openai.InvalidWebhookSignatureError):
        verify(tampered, headers, WHSEC)
    with pytest.raises(openai.InvalidWebhookSignatureError):
        verify(body, {**headers, "webhook-id": f"{signal['signal_id']}:slack"}, WHSEC)
    with pytest.raises(openai.InvalidWebhookSignatureError):
        verify(body, headers, "whsec_" + base64.b64encode(b"another-key-of-thirty-two-bytes!").decode())
    with pytest.raises(openai.InvalidWebhookSignatureError):
        verify(body, {**headers, "webhook-timestamp": str(timestamp + 1)}, WHSEC)  # the timestamp is signed

    # Replayed more than 5 minutes later, the same request is refused (it passes just inside the window).
    verify_at(body, headers, WHSEC, timestamp + 299, monkeypatch)
    with pytest.raises(openai.InvalidWebhookSignatureError, match="too old"):
        verify_at(body, headers, WHSEC, timestamp + 301, monkeypatch)
    # The same with the verifier's own tolerance on the real clock: a 1 s window, 2 s later.
    wait_for(lambda: time.time() >= timestamp + 2, timeout=4, what="two seconds to pass")
    with pytest.raises(openai.InvalidWebhookSignatureError, match="too old"):
        verify(body, headers, WHSEC, tolerance=1)


def test_default_minimum_severity_sends_medium_to_the_webhook_but_not_to_slack(
    alerting: Sidecar, slack: Recorder, hook: Recorder
) -> None:
    run_id, _, _ = send_new_run(alerting, ERRORS)
    signal = the_signal(alerting, run_id)
    assert (signal["failure_type"], signal["severity"]) == ("FIRST_STEP_FAILURE", "MEDIUM")
    [post] = posts_for(hook, run_id)
    assert post.json()["signal"]["explanation"]["title"] == ERRORS_TITLE
    # Both destinations are tried in the same pass: 2 s is ample for a Slack alert that was owed.
    time.sleep(2.0)
    assert slack.posts_mentioning(run_id) == []
    assert len(hook.posts_mentioning(run_id)) == 1


def test_webhook_alert_arrives_within_a_second_of_the_export(
    alerting: Sidecar, hook: Recorder, record_property: Callable[[str, object], None]
) -> None:
    latencies = []
    for fixture in (LOOP, ERRORS, LOOP):
        run_id, _, returned = send_new_run(alerting, fixture)
        [post] = posts_for(hook, run_id, timeout=5)
        latencies.append(round(post.received_monotonic - returned, 4))  # may be < 0: sent before the reply
    record_property("webhook_latency_seconds", latencies)
    print(f"webhook alert latency after the export returned (s): {latencies}")
    # The requirement is 1 s. Sends are woken by the commit (measured: under 10 ms); a dispatcher that
    # only polled would take up to its 1 s poll, so 0.8 s tells the two apart with a wide margin.
    assert max(latencies) <= 0.8, latencies


# --- minimum severity and a plain secret --------------------------------------------------------


def test_slack_min_severity_medium_sends_first_step_failure_to_both_and_plain_secret_signs_by_the_definition(
    make_sidecar: Callable[..., Sidecar],
) -> None:
    with Recorder() as slack, Recorder(ok_body="") as hook:
        daemon = make_sidecar(
            env={
                "SLACK_WEBHOOK_URL": slack.url,
                "SLACK_MIN_SEVERITY": "MEDIUM",
                "WEBHOOK_URL": hook.url,
                "WEBHOOK_SECRET": PLAIN_SECRET,
            }
        )
        run_id, _, _ = send_new_run(daemon, ERRORS)
        signal = the_signal(daemon, run_id)
        assert (signal["failure_type"], signal["severity"]) == ("FIRST_STEP_FAILURE", "MEDIUM")
        [to_slack] = posts_for(slack, run_id)
        [to_hook] = posts_for(hook, run_id)
        assert to_slack.json()["blocks"][0]["text"]["text"] == f"MEDIUM: {ERRORS_TITLE}"
        assert to_hook.json()["signal"]["severity"] == "MEDIUM"
        assert "webhook-signature" not in to_slack.headers  # only the generic webhook is signed

        # Standard Webhooks by hand: v1,base64(HMAC-SHA256(key, "{id}.{timestamp}.{body}")); a secret
        # without the whsec_ prefix is the key as UTF-8 bytes.
        webhook_id = to_hook.headers["webhook-id"]
        timestamp = to_hook.headers["webhook-timestamp"]
        assert webhook_id == f"{signal['signal_id']}:webhook"
        signed = webhook_id.encode() + b"." + timestamp.encode() + b"." + to_hook.body
        expected = base64.b64encode(hmac.new(PLAIN_SECRET.encode(), signed, hashlib.sha256).digest()).decode()
        signatures = to_hook.headers["webhook-signature"].split(" ")
        assert signatures == [f"v1,{expected}"]
        verify(to_hook.text, to_hook.headers, PLAIN_SECRET)  # and the independent verifier agrees
        with pytest.raises(openai.InvalidWebhookSignatureError):
            verify(to_hook.text + " ", to_hook.headers, PLAIN_SECRET)


# --- shadow -------------------------------------------------------------------------------------


def test_shadow_signals_are_never_sent(make_sidecar: Callable[..., Sidecar], tmp_path: Path) -> None:
    config = tmp_path / "sidecar.yaml"
    config.write_text("detectors:\n  tool_loop: {shadow: true}\n")
    with Recorder() as slack, Recorder(ok_body="") as hook:
        daemon = make_sidecar(
            env={"SLACK_WEBHOOK_URL": slack.url, "SLACK_MIN_SEVERITY": "LOW", "WEBHOOK_URL": hook.url},
            config_file=config,
        )
        shadow_run, _, _ = send_new_run(daemon, LOOP)
        shadowed = the_signal(daemon, shadow_run, include_shadow=True)
        exists_since = time.monotonic()
        assert (shadowed["failure_type"], shadowed["shadow"]) == ("TOOL_LOOP", True)

        # A live signal from the same daemon does arrive (the dispatcher is working) ...
        live_run, _, _ = send_new_run(daemon, ERRORS)
        posts_for(hook, live_run)
        posts_for(slack, live_run)
        # ... while nothing ever arrives for the shadow one.
        time.sleep(max(0.0, exists_since + 3.0 - time.monotonic()))
        assert slack.posts_mentioning(shadow_run) == []
        assert hook.posts_mentioning(shadow_run) == []
        assert slack.posts_mentioning(shadowed["signal_id"]) == []
        assert hook.posts_mentioning(shadowed["signal_id"]) == []


# --- retries ------------------------------------------------------------------------------------


def test_retries_after_5xx_and_honours_retry_after(make_sidecar: Callable[..., Sidecar]) -> None:
    with Recorder(ok_body="") as hook:
        daemon = make_sidecar(env={"WEBHOOK_URL": hook.url, "WEBHOOK_SECRET": WHSEC})

        # 500 twice, then 200: three POSTs of the same delivery, then no more.
        hook.fail(500, times=2)
        run_id, _, _ = send_new_run(daemon, LOOP)
        signal = the_signal(daemon, run_id)
        posts = posts_for(hook, run_id, count=3, timeout=12)
        time.sleep(2.0)
        posts = hook.posts_mentioning(run_id)
        assert [p.status for p in posts] == [500, 500, 200]
        assert {p.headers["webhook-id"] for p in posts} == {f"{signal['signal_id']}:webhook"}
        assert {p.json()["delivery_id"] for p in posts} == {f"{signal['signal_id']}:webhook"}
        for post in posts:
            verify(post.text, post.headers, WHSEC)  # each attempt is signed afresh
        gaps = [b.received_monotonic - a.received_monotonic for a, b in itertools.pairwise(posts)]
        assert gaps[0] >= 0.4 and gaps[1] >= 0.9, gaps  # backoff from 1 s (±50 %), doubling

        # 429 with Retry-After: 2: the next attempt comes no sooner than 2 s later.
        hook.fail(429, times=1, retry_after=2)
        run_id, _, _ = send_new_run(daemon, ERRORS)
        first, second = posts_for(hook, run_id, count=2, timeout=10)
        gap = second.received_monotonic - first.received_monotonic
        print(f"gap after 429 Retry-After: 2 = {gap:.3f} s")
        assert (first.status, second.status) == (429, 200)
        assert 1.9 <= gap <= 4.5, gap
        assert first.headers["webhook-id"] == second.headers["webhook-id"]

        # 2 s is within what backoff (0.5-1.5 s) plus the 1 s poll can give anyway; a later Retry-After, as an
        # HTTP date (4-5 s ahead: dates have whole seconds), tells honouring it from not.
        hook.fail(503, times=1, retry_after=formatdate(time.time() + 5, usegmt=True))
        run_id, _, _ = send_new_run(daemon, LOOP)
        first, second = posts_for(hook, run_id, count=2, timeout=12)
        gap = second.received_monotonic - first.received_monotonic
        print(f"gap after 503 Retry-After: <date 4-5 s ahead> = {gap:.3f} s")
        assert (first.status, second.status) == (503, 200)
        assert 3.5 <= gap <= 7.0, gap


def test_gives_up_after_max_attempts(make_sidecar: Callable[..., Sidecar]) -> None:
    with Recorder(ok_body="") as hook:
        hook.fail(500, times=None)  # always
        daemon = make_sidecar(env={"WEBHOOK_URL": hook.url, "DUNETRACE_ALERT_MAX_ATTEMPTS": "2"})
        run_id, _, _ = send_new_run(daemon, LOOP)
        posts_for(hook, run_id, count=2, timeout=8)
        wait_for(lambda: alert_counter(daemon, "webhook", "failed") == 1.0, timeout=5, what="the delivery to fail")
        time.sleep(4.0)  # longer than the next backoff (2 s ± 50 %) plus a poll: a third attempt would show
        assert [p.status for p in hook.posts_mentioning(run_id)] == [500, 500]
        assert alert_counter(daemon, "webhook", "retried") == 1.0
        assert alert_counter(daemon, "webhook", "sent") == 0.0


# --- durability ---------------------------------------------------------------------------------


def test_pending_delivery_survives_kill_9_and_is_sent_once_after_restart(
    make_sidecar: Callable[..., Sidecar],
) -> None:
    hook = Recorder(ok_body="").start()
    try:
        url = hook.url
        hook.stop()  # connection refused on its port until it is started again
        daemon = make_sidecar(env={"WEBHOOK_URL": url})
        run_id, _, _ = send_new_run(daemon, LOOP)
        signal = the_signal(daemon, run_id)
        wait_for(lambda: alert_counter(daemon, "webhook", "retried") >= 1, timeout=5, what="a refused attempt")
        daemon.kill()

        hook.start()
        assert hook.url == url
        restarted_at = time.monotonic()
        daemon.start()
        [post] = posts_for(hook, run_id, timeout=15)
        assert post.received_monotonic > restarted_at
        assert post.headers["webhook-id"] == f"{signal['signal_id']}:webhook"
        assert post.json()["signal"]["run_id"] == run_id
        time.sleep(2.0)
        assert len(hook.posts_mentioning(run_id)) == 1
    finally:
        hook.stop()


def test_redelivered_run_and_reevaluated_signals_alert_once_per_destination(
    make_sidecar: Callable[..., Sidecar],
) -> None:
    with Recorder() as slack, Recorder(ok_body="") as hook:
        daemon = make_sidecar(env={"SLACK_WEBHOOK_URL": slack.url, "WEBHOOK_URL": hook.url})
        run_id, body, _ = send_new_run(daemon, LOOP)
        signal = the_signal(daemon, run_id)
        posts_for(slack, run_id)
        posts_for(hook, run_id)

        # The exporter retries the same request (twice), then the spans come again one per request.
        assert daemon.post_otlp(body).status == 200
        assert daemon.post_otlp(body).status == 200
        request = ExportTraceServiceRequest.FromString(body)
        for rs in request.resource_spans:
            for ss in rs.scope_spans:
                for span in ss.spans:
                    one = ExportTraceServiceRequest()
                    scope_spans = one.resource_spans.add(resource=rs.resource).scope_spans.add(scope=ss.scope)
                    scope_spans.spans.append(span)
                    assert daemon.post_otlp(one.SerializeToString()).status == 200
        # The daemon restarts (the run is rebuilt from the store) and the exporter sends it all again.
        daemon.stop()
        daemon.start()
        assert daemon.post_otlp(body).status == 200

        time.sleep(3.0)
        assert [s["signal_id"] for s in signals_of(daemon, run_id)] == [signal["signal_id"]]
        assert len(slack.posts_mentioning(run_id)) == 1
        assert len(hook.posts_mentioning(run_id)) == 1


# --- a destination that is down -------------------------------------------------------------------


def test_a_destination_that_is_down_never_blocks_ingestion_or_detection(
    make_sidecar: Callable[..., Sidecar],
) -> None:
    closed = f"http://127.0.0.1:{free_port()}/hooks/alerts"  # nothing listens: connection refused
    with Blackhole() as hung:  # accepts connections, never answers: each attempt waits for the timeout
        daemon = make_sidecar(
            env={
                "WEBHOOK_URL": closed,
                "SLACK_WEBHOOK_URL": hung.url,
                "SLACK_MIN_SEVERITY": "LOW",
                "DUNETRACE_ALERT_TIMEOUT": "5",
            }
        )
        durations = []
        for i in range(6):
            fixture = LOOP if i % 2 == 0 else ERRORS
            started = time.monotonic()
            run_id, _, returned = send_new_run(daemon, fixture)
            durations.append(round(returned - started, 3))
            signal = the_signal(daemon, run_id)
            assert signal["failure_type"] == ("TOOL_LOOP" if fixture == LOOP else "FIRST_STEP_FAILURE")
            time.sleep(1.0)  # spread the exports over the hung attempts' 5 s timeout
        print(f"export durations with both destinations down (s): {durations}")
        assert max(durations) < 2.0, durations
        # Both destinations were really being tried, and failing, meanwhile.
        wait_for(lambda: alert_counter(daemon, "webhook", "retried") >= 1, timeout=5, what="a refused attempt")
        wait_for(lambda: alert_counter(daemon, "slack", "retried") >= 1, timeout=8, what="a timed-out attempt")
        assert alert_counter(daemon, "slack", "sent") == 0.0
        assert alert_counter(daemon, "webhook", "sent") == 0.0


# --- redirects ----------------------------------------------------------------------------------


def test_redirects_are_not_followed(make_sidecar: Callable[..., Sidecar]) -> None:
    with Recorder() as elsewhere, Recorder() as slack, Recorder(ok_body="") as hook:
        slack.redirect(elsewhere.url, status=302)
        hook.redirect(elsewhere.url, status=307)  # 307 would even keep the POST and its body
        daemon = make_sidecar(env={"SLACK_WEBHOOK_URL": slack.url, "WEBHOOK_URL": hook.url})
        run_id, _, _ = send_new_run(daemon, LOOP)
        signal = the_signal(daemon, run_id)
        posts_for(slack, run_id)
        posts_for(hook, run_id)
        time.sleep(3.0)  # time for retries (of the same, configured URL)
        assert elsewhere.received == []
        assert {p.status for p in slack.posts_mentioning(run_id)} == {302}
        assert {p.status for p in hook.posts_mentioning(run_id)} == {307}
        assert {p.headers["webhook-id"] for p in hook.posts_mentioning(run_id)} == {f"{signal['signal_id']}:webhook"}
        assert alert_counter(daemon, "webhook", "sent") == 0.0  # a redirect is not a delivery


def test_a_hung_destination_does_not_delay_the_other(make_sidecar: Callable[..., Sidecar]) -> None:
    """Slack never answers (a socket that accepts and stays silent); webhook alerts still arrive at once."""
    with Blackhole() as hung, Recorder() as hook:
        daemon = make_sidecar(
            env={
                "SLACK_WEBHOOK_URL": hung.url,
                "SLACK_MIN_SEVERITY": "MEDIUM",
                "WEBHOOK_URL": hook.url,
                "DUNETRACE_ALERT_TIMEOUT": "5",
            }
        )
        latencies = []
        for _ in range(4):
            run_id, _, returned = send_new_run(daemon, ERRORS)
            [post] = posts_for(hook, run_id, timeout=10)
            latencies.append(round(post.received_monotonic - returned, 4))
            time.sleep(0.5)
        # Before sends were independent tasks, a hung Slack attempt held new webhook alerts up to the
        # 5 s timeout (measured 4.8-5.5 s); now each arrives as if Slack were fine.
        assert max(latencies) <= 0.8, latencies
