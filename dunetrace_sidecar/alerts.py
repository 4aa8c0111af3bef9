"""Alerts: signals to Slack (Block Kit) and to a generic, signed webhook — at least once.

A delivery row per (signal, destination) is written in the same transaction as the signal, so
a signal that exists will be delivered, across restarts. A dispatcher task sends pending
deliveries as soon as they are committed, retries failures with exponential backoff and jitter
(never sooner than a ``Retry-After``), and gives up after ``max_attempts``. Shadow signals are
never queued. Sends happen off the ingestion path: a destination that is down slows nothing.

Webhook signing follows Standard Webhooks: ``webhook-id`` (the delivery id, stable: receivers
dedupe on it), ``webhook-timestamp`` (Unix seconds) and ``webhook-signature: v1,<base64
HMAC-SHA256(secret, "{id}.{timestamp}.{body}")>``; a secret starting ``whsec_`` is base64, any
other is used as UTF-8 bytes. Receivers reject stale timestamps to stop replays.
"""

from __future__ import annotations

import asyncio
import base64
import contextlib
import hashlib
import hmac
import json
import logging
import random
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from email.utils import parsedate_to_datetime
from typing import Any

import aiohttp

from detectors.base import SEVERITIES, Signal
from dunetrace_sidecar.metrics import Metrics
from dunetrace_sidecar.views import iso, signal_view
from explain.templates import explain
from store.duckdb_store import Delivery, DeliveryUpdate, DuckStore, StoreUnavailable, WriteBatch

log = logging.getLogger("dunetrace.alerts")

SLACK = "slack"
WEBHOOK = "webhook"
BASE_DELAY_SECONDS = 1.0
MAX_DELAY_SECONDS = 300.0
MAX_RETRY_AFTER_SECONDS = 3600.0
POLL_SECONDS = 1.0
BATCH = 50
_EMOJI = {
    "CRITICAL": ":red_circle:",
    "HIGH": ":large_orange_circle:",
    "MEDIUM": ":large_yellow_circle:",
    "LOW": ":white_circle:",
}


def severity_at_least(severity: str, minimum: str) -> bool:
    return SEVERITIES.index(severity) <= SEVERITIES.index(minimum)


@dataclass(frozen=True, slots=True)
class Destination:
    name: str  # slack | webhook
    url: str
    min_severity: str
    secret: str = ""


def deliveries_for(signals: list[Signal], destinations: Mapping[str, Destination], now_ns: int) -> list[Delivery]:
    """The deliveries new signals owe (none for shadow signals or below a destination's minimum)."""
    out = []
    for signal in signals:
        if signal.shadow:
            continue
        for destination in destinations.values():
            if severity_at_least(signal.severity, destination.min_severity):
                out.append(
                    Delivery(
                        delivery_id=f"{signal.signal_id}:{destination.name}",
                        signal_id=signal.signal_id,
                        destination=destination.name,
                        status="pending",
                        attempts=0,
                        next_attempt_ns=now_ns,
                        last_error=None,
                        created_ns=now_ns,
                        sent_ns=None,
                    )
                )
    return out


# --- payloads -----------------------------------------------------------------------------


def slack_payload(signal: Signal, dashboard_url: str) -> dict[str, Any]:
    explanation = explain(signal.failure_type, signal.evidence, signal.confidence)
    fix = explanation.suggested_fixes[0] if explanation.suggested_fixes else None
    fix_text = (
        fix.description + (f"\n```{fix.code}```" if fix and fix.code and len(fix.code) < 800 else "") if fix else ""
    )
    blocks: list[dict[str, Any]] = [
        {
            "type": "header",
            "text": {"type": "plain_text", "text": f"{signal.severity}: {explanation.title}"[:150]},
        },
        {
            "type": "context",
            "elements": [
                {
                    "type": "mrkdwn",
                    "text": (
                        f"{_EMOJI.get(signal.severity, '')} *{signal.severity}* · agent `{signal.agent_id}` · "
                        f"run `{signal.run_id}` · step {signal.step_index} · "
                        f"confidence {round(signal.confidence * 100)}%"
                    ),
                }
            ],
        },
        {"type": "section", "text": {"type": "mrkdwn", "text": f"*What happened*\n{explanation.what}"}},
        {"type": "section", "text": {"type": "mrkdwn", "text": f"*Why it matters*\n{explanation.why_it_matters}"}},
    ]
    if fix_text:
        blocks += [
            {"type": "divider"},
            {"type": "section", "text": {"type": "mrkdwn", "text": f"*Suggested fix*\n{fix_text}"}},
        ]
    if dashboard_url:
        blocks.append(
            {
                "type": "actions",
                "elements": [
                    {
                        "type": "button",
                        "text": {"type": "plain_text", "text": "View run"},
                        "url": f"{dashboard_url.rstrip('/')}/runs/{signal.run_id}",
                    }
                ],
            }
        )
    return {"text": f"{signal.severity} {signal.failure_type}: {explanation.title}", "blocks": blocks}


def webhook_payload(signal: Signal, delivery_id: str, sent_ns: int) -> dict[str, Any]:
    return {
        "schema_version": "1.0",
        "event": "failure_signal",
        "delivery_id": delivery_id,
        "sent_at": iso(sent_ns),
        "signal": signal_view(signal),
    }


def _secret_bytes(secret: str) -> bytes:
    if secret.startswith("whsec_"):
        return base64.b64decode(secret[len("whsec_") :])
    return secret.encode()


def sign(secret: str, message_id: str, timestamp: int, body: bytes) -> str:
    """Standard Webhooks: v1,<base64 HMAC-SHA256(secret, "{id}.{timestamp}.{body}")>."""
    signed = f"{message_id}.{timestamp}.".encode() + body
    digest = hmac.new(_secret_bytes(secret), signed, hashlib.sha256).digest()
    return "v1," + base64.b64encode(digest).decode()


def _retry_after_seconds(value: str | None) -> float | None:
    if not value:
        return None
    try:
        return min(max(float(value), 0.0), MAX_RETRY_AFTER_SECONDS)
    except ValueError:
        pass
    try:
        return min(max(parsedate_to_datetime(value).timestamp() - time.time(), 0.0), MAX_RETRY_AFTER_SECONDS)
    except (TypeError, ValueError):
        return None


def backoff_seconds(attempts: int, retry_after: float | None, rng: Callable[[], float] = random.random) -> float:
    """Exponential from 1 s, capped at 5 min, jittered ±50 %; never sooner than Retry-After."""
    delay = min(BASE_DELAY_SECONDS * 2 ** max(attempts - 1, 0), MAX_DELAY_SECONDS) * (0.5 + rng())
    return max(delay, retry_after or 0.0)


# --- the dispatcher -------------------------------------------------------------------------


class AlertDispatcher:
    def __init__(
        self,
        store: DuckStore,
        destinations: Mapping[str, Destination],
        metrics: Metrics,
        *,
        dashboard_url: str,
        max_attempts: int,
        timeout_seconds: float,
    ) -> None:
        self._store = store
        self.destinations = dict(destinations)
        self._metrics = metrics
        self._dashboard_url = dashboard_url
        self._max_attempts = max_attempts
        self._timeout = timeout_seconds
        self._wake = asyncio.Event()
        self._in_flight: set[str] = set()
        self._sending: set[asyncio.Task[None]] = set()
        self._bookkeeping = asyncio.Lock()
        self._session: aiohttp.ClientSession | None = None

    def wake(self) -> None:
        """New deliveries were committed: send them now rather than at the next poll."""
        self._wake.set()

    async def run(self) -> None:
        self._session = aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=self._timeout))
        try:
            while True:
                try:
                    await self._pass()
                except Exception:  # keep delivering whatever one pass hit
                    log.exception("alert dispatch pass failed")
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(self._wake.wait(), POLL_SECONDS)
                self._wake.clear()
        finally:
            for task in list(self._sending):  # unsent ones stay pending: sent after a restart
                task.cancel()
            await asyncio.gather(*self._sending, return_exceptions=True)
            await self._session.close()

    async def _pass(self) -> None:
        """Start a send for each due delivery not already on its way; never wait for them here,
        so a hung destination cannot hold up the others (each send is bounded by the timeout)."""
        loop = asyncio.get_running_loop()
        # Held while reading: a send that finishes meanwhile records its outcome after the read,
        # so a row read as pending is never one that has just been sent.
        async with self._bookkeeping:
            try:
                due = await loop.run_in_executor(None, self._store.due_deliveries, time.time_ns(), BATCH)
            except StoreUnavailable:
                return
            for delivery in due:
                if delivery.delivery_id in self._in_flight or delivery.destination not in self.destinations:
                    continue
                self._in_flight.add(delivery.delivery_id)
                task = asyncio.create_task(self._send_and_record(delivery))
                self._sending.add(task)
                task.add_done_callback(self._sending.discard)

    async def _send_and_record(self, delivery: Delivery) -> None:
        try:
            update = await self._deliver(delivery)
            async with self._bookkeeping:
                try:
                    await asyncio.wrap_future(self._store.submit(WriteBatch(delivery_updates=[update])))
                except StoreUnavailable:
                    log.warning("could not record alert delivery %s; it will be tried again", delivery.delivery_id)
        finally:
            self._in_flight.discard(delivery.delivery_id)
            self._wake.set()  # its next attempt may already be due

    async def _deliver(self, delivery: Delivery) -> DeliveryUpdate:
        destination = self.destinations[delivery.destination]
        signal = await asyncio.get_running_loop().run_in_executor(None, self._store.get_signal, delivery.signal_id)
        attempts = delivery.attempts + 1
        if signal is None:
            return DeliveryUpdate(
                delivery.delivery_id, "failed", attempts, delivery.next_attempt_ns, "signal gone", None
            )
        now_ns = time.time_ns()
        headers = {"Content-Type": "application/json", "Idempotency-Key": delivery.delivery_id}
        if destination.name == SLACK:
            body = json.dumps(slack_payload(signal, self._dashboard_url)).encode()
        else:
            body = json.dumps(webhook_payload(signal, delivery.delivery_id, now_ns), separators=(",", ":")).encode()
            timestamp = now_ns // 1_000_000_000
            headers.update({"webhook-id": delivery.delivery_id, "webhook-timestamp": str(timestamp)})
            if destination.secret:
                headers["webhook-signature"] = sign(destination.secret, delivery.delivery_id, timestamp, body)
        error: str
        retry_after: float | None = None
        assert self._session is not None
        try:
            # Only the configured URL: redirects are not followed (they could lead anywhere).
            async with self._session.post(destination.url, data=body, headers=headers, allow_redirects=False) as reply:
                await reply.read()
                if 200 <= reply.status < 300:
                    self._metrics.alerts.labels(destination.name, "sent").inc()
                    return DeliveryUpdate(delivery.delivery_id, "sent", attempts, now_ns, None, time.time_ns())
                error = f"HTTP {reply.status}"
                retry_after = _retry_after_seconds(reply.headers.get("Retry-After"))
        except (aiohttp.ClientError, TimeoutError) as exc:
            error = type(exc).__name__
        if attempts >= self._max_attempts:
            self._metrics.alerts.labels(destination.name, "failed").inc()
            log.warning(
                "alert %s to %s failed after %d attempts: %s", signal.signal_id, destination.name, attempts, error
            )
            return DeliveryUpdate(delivery.delivery_id, "failed", attempts, now_ns, error, None)
        self._metrics.alerts.labels(destination.name, "retried").inc()
        next_ns = now_ns + int(backoff_seconds(attempts, retry_after) * 1e9)
        return DeliveryUpdate(delivery.delivery_id, "pending", attempts, next_ns, error, None)
