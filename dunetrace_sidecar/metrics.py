"""Prometheus metrics, declared in one place, on an injected registry (tests use a fresh one).

One name prefix, ``_total`` / ``_seconds`` suffixes, and bounded label values only: transports,
reasons, outcomes, failure types, severities, destinations, actions — never run or agent ids.
"""

from __future__ import annotations

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, disable_created_metrics

disable_created_metrics()  # the *_created series only double the exposition
PREFIX = "dunetrace"

LATENCY_BUCKETS = (0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0)


class Metrics:
    def __init__(self, registry: CollectorRegistry | None = None) -> None:
        self.registry = registry or CollectorRegistry(auto_describe=True)
        r = self.registry
        self.export_requests = Counter(
            f"{PREFIX}_export_requests",
            "Export requests by transport (grpc, http, sdk: the Dunetrace SDK's POST /v1/ingest), signal and"
            " outcome (accepted, partial, refused reason).",
            ["transport", "signal", "outcome"],
            registry=r,
        )
        self.spans_received = Counter(
            f"{PREFIX}_spans_received", "Spans received in accepted exports.", ["transport"], registry=r
        )
        self.spans_refused = Counter(
            f"{PREFIX}_spans_refused",
            "Spans refused inside accepted exports (partial success), by reason.",
            ["transport", "reason"],
            registry=r,
        )
        self.spans_left_out = Counter(
            f"{PREFIX}_spans_left_out",
            "Spans received and deliberately not used, by reason (dunetrace_sdk_mirror: the Dunetrace SDK's OTel"
            " exporter mirrors events that arrive through POST /v1/ingest).",
            ["transport", "reason"],
            registry=r,
        )
        self.sdk_events = Counter(
            f"{PREFIX}_sdk_events",
            "Events of the Dunetrace SDK in accepted batches: accepted, ignored (types the detectors do not use:"
            " memory, approvals, voice, policy evaluation reports) or skipped (unusable: no run or event id).",
            ["outcome"],
            registry=r,
        )
        self.log_records_dropped = Counter(
            f"{PREFIX}_log_records_dropped", "OTLP log records without gen_ai content, dropped.", registry=r
        )
        self.metric_points_dropped = Counter(
            f"{PREFIX}_metric_points_dropped", "OTLP metric data points, accepted and dropped.", registry=r
        )
        self.runs_open = Gauge(f"{PREFIX}_runs_open", "Runs open in memory.", registry=r)
        self.runs_ended = Counter(
            f"{PREFIX}_runs_ended",
            "Runs that ended, by outcome (completed, errored, stalled).",
            ["outcome"],
            registry=r,
        )
        self.runs_shed = Counter(
            f"{PREFIX}_runs_shed", "Open runs forgotten because runs.max_open_runs was reached.", registry=r
        )
        self.events_stored = Counter(f"{PREFIX}_events_stored", "Run events committed to the store.", registry=r)
        self.runs_expired = Counter(
            f"{PREFIX}_runs_expired",
            "Stored runs removed with their events and signals after store.retention_hours without a write.",
            registry=r,
        )
        self.signals = Counter(
            f"{PREFIX}_signals",
            'Signals raised, by failure type, severity and shadow ("true": stored, never alerted).',
            ["failure_type", "severity", "shadow"],
            registry=r,
        )
        self.detection_latency = Histogram(
            f"{PREFIX}_detection_latency_seconds",
            "From the receipt of the export that proves a signal to the signal's commit.",
            buckets=LATENCY_BUCKETS,
            registry=r,
        )
        self.store_write = Histogram(
            f"{PREFIX}_store_write_seconds",
            "Time of one group-committed store transaction.",
            buckets=LATENCY_BUCKETS,
            registry=r,
        )
        self.store_queue = Gauge(f"{PREFIX}_store_queue_events", "Events waiting for the store writer.", registry=r)
        self.store_memory = Gauge(
            f"{PREFIX}_store_memory_bytes",
            "Memory DuckDB holds by its own accounting (buffer cache, indexes), bounded by store.memory_limit.",
            registry=r,
        )
        self.alerts = Counter(
            f"{PREFIX}_alerts",
            "Alert delivery attempts by destination and outcome (sent, failed, retried).",
            ["destination", "outcome"],
            registry=r,
        )
        self.policy_triggers = Counter(f"{PREFIX}_policy_triggers", "Policy matches by action.", ["action"], registry=r)
        self.decision_watches = Gauge(
            f"{PREFIX}_decision_watches", "Runs watched for live decisions (open Watch calls).", registry=r
        )
        self.decisions_sent = Counter(
            f"{PREFIX}_decisions_sent",
            "Live decisions sent to watching SDKs, by kind (policy, signal).",
            ["kind"],
            registry=r,
        )
        self.explain_requests = Counter(
            f"{PREFIX}_explain_requests",
            "Explain, apply-fix and rollback calls by operation and outcome (ok or an error code).",
            ["operation", "outcome"],
            registry=r,
        )
