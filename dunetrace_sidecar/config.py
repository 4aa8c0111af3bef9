"""Configuration: one table of settings → validated, frozen dataclasses.

``SETTINGS`` is the single source: the YAML key path, the environment variable that
overrides it, the default, the parser and the help text. It drives loading, ``--help``,
the README's configuration reference and the test that keeps them in step.

Precedence: defaults < the YAML file (``--config`` or ``DUNETRACE_CONFIG``) < environment.
"""

from __future__ import annotations

import ipaddress
import math
import os
import re
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from detectors.prices import DEFAULT_MODEL_PRICES
from detectors.settings import DetectorSettings
from dunetrace_sidecar.tls import TlsError, TlsFiles
from dunetrace_sidecar.tls import load as load_tls


class ConfigError(ValueError):
    """A bad setting; the message names the key path (or environment variable)."""


@dataclass(frozen=True, slots=True)
class Endpoint:
    host: str
    port: int

    def __str__(self) -> str:
        return f"[{self.host}]:{self.port}" if ":" in self.host else f"{self.host}:{self.port}"

    @property
    def is_loopback(self) -> bool:
        """Only literal loopback addresses and ``localhost``: a name like 127.example.com may
        resolve anywhere."""
        if self.host == "localhost":
            return True
        try:
            return ipaddress.ip_address(self.host).is_loopback
        except ValueError:
            return False


# --- parsers (each raises ValueError with a human reason) -------------------------------


def parse_endpoint(value: Any) -> Endpoint:
    if not isinstance(value, str) or not value.strip():
        raise ValueError("expected host:port")
    text = value.strip()
    if text.startswith("["):
        host, sep, port = text[1:].partition("]:")
    else:
        host, sep, port = text.rpartition(":")
    if not sep or not host or not port.isdigit():
        raise ValueError(f"expected host:port, got {value!r}")
    number = int(port)
    if not 0 <= number <= 65535:
        raise ValueError(f"port {number} is out of range 0-65535")
    return Endpoint(host, number)


def parse_positive_int(value: Any) -> int:
    if isinstance(value, bool):
        raise ValueError("expected a positive integer")
    try:
        number = int(value)
    except (TypeError, ValueError):
        raise ValueError(f"expected a positive integer, got {value!r}") from None
    if number <= 0 or (isinstance(value, float) and value != number):
        raise ValueError(f"expected a positive integer, got {value!r}")
    return number


def _seconds_or_number(value: Any, allow_zero: bool) -> float:
    what = "a number, 0 or more" if allow_zero else "a positive number"
    if isinstance(value, bool):
        raise ValueError(f"expected {what}")
    try:
        number = float(value)
    except (TypeError, ValueError):
        raise ValueError(f"expected {what}, got {value!r}") from None
    if not math.isfinite(number) or number < 0 or (number == 0 and not allow_zero):
        raise ValueError(f"expected {what}, got {value!r}")
    return number


def parse_positive_float(value: Any) -> float:
    return _seconds_or_number(value, allow_zero=False)


def parse_non_negative_float(value: Any) -> float:
    return _seconds_or_number(value, allow_zero=True)


def parse_bool(value: Any) -> bool:
    if isinstance(value, bool):
        return value
    if isinstance(value, str) and value.strip().lower() in ("1", "true", "yes", "on"):
        return True
    if isinstance(value, str) and value.strip().lower() in ("0", "false", "no", "off", ""):
        return False
    raise ValueError(f"expected true or false, got {value!r}")


def parse_key_list(value: Any) -> tuple[str, ...]:
    if isinstance(value, str):
        items = [v.strip() for v in value.split(",")]
    elif isinstance(value, list) and all(isinstance(v, str) for v in value):
        items = [v.strip() for v in value]
    else:
        raise ValueError("expected a list of strings (or a comma-separated string)")
    keys = tuple(v for v in items if v)
    for key in keys:
        if len(key) < 16:
            raise ValueError("API keys must be at least 16 characters")
    return keys


def parse_non_negative_int(value: Any) -> int:
    if isinstance(value, bool):
        raise ValueError("expected a whole number")
    try:
        number = int(value)
    except (TypeError, ValueError):
        raise ValueError(f"expected a whole number, got {value!r}") from None
    if number < 0 or (isinstance(value, float) and value != number):
        raise ValueError(f"expected a whole number >= 0, got {value!r}")
    return number


MAX_TRANSLATION_PROCESSES = 16


def parse_translation_processes(value: Any) -> int | None:
    """``auto`` (None: decided at start from the CPUs available) or 0 to MAX_TRANSLATION_PROCESSES."""
    if isinstance(value, str) and value.strip().lower() == "auto":
        return None
    number = parse_non_negative_int(value)
    if number > MAX_TRANSLATION_PROCESSES:
        raise ValueError(f"expected auto or 0 to {MAX_TRANSLATION_PROCESSES}, got {value!r}")
    return number


def parse_url(value: Any) -> str:
    """An http(s) base URL, or empty for "not configured"."""
    if not isinstance(value, str):
        raise ValueError(f"expected a URL, got {type(value).__name__}")
    text = value.strip().rstrip("/")
    if text and not re.fullmatch(r"https?://[^\s/?#]+(/[^\s?#]*)?", text):
        raise ValueError(f"expected an http(s) URL, got {value!r}")
    return text


SEVERITY_NAMES = ("CRITICAL", "HIGH", "MEDIUM", "LOW")


def parse_severity(value: Any) -> str:
    text = str(value).strip().upper()
    if text not in SEVERITY_NAMES:
        raise ValueError(f"expected one of {', '.join(SEVERITY_NAMES)}, got {value!r}")
    return text


def parse_memory_limit(value: Any) -> str:
    text = str(value).strip().upper().replace(" ", "")
    if not re.fullmatch(r"\d+(\.\d+)?(KB|MB|GB|TB|KIB|MIB|GIB|TIB)", text):
        raise ValueError(f"expected a size such as 256MB or 1GB, got {value!r}")
    return text


def parse_text(value: Any) -> str:
    if not isinstance(value, str):
        raise ValueError(f"expected a string, got {type(value).__name__}")
    return value


def parse_file_path(value: Any) -> str:
    """A file path, or empty for "not configured" (whether it can be read is checked in validate())."""
    return parse_text(value).strip()


def parse_db_path(value: Any) -> str:
    text = parse_text(value).strip()
    if not text:
        raise ValueError("expected a file path or :memory:")
    return text


def parse_agent_id(value: Any) -> str:
    text = parse_text(value).strip()
    if not text:
        raise ValueError("must not be empty")
    return text


LOG_LEVELS = ("debug", "info", "warning", "error")


def parse_log_level(value: Any) -> str:
    text = parse_text(value).strip().lower()
    if text not in LOG_LEVELS:
        raise ValueError(f"expected one of {', '.join(LOG_LEVELS)}, got {value!r}")
    return text


@dataclass(frozen=True, slots=True)
class Setting:
    path: str  # YAML key path, dotted
    env: str | None
    default: Any  # in the form a YAML file would hold
    parse: Callable[[Any], Any]
    help: str
    secret: bool = False


SETTINGS: tuple[Setting, ...] = (
    Setting(
        "receiver.grpc_endpoint",
        "DUNETRACE_OTLP_GRPC_ENDPOINT",
        "127.0.0.1:4317",
        parse_endpoint,
        "OTLP/gRPC listen address (host:port; port 0 picks a free port and logs it).",
    ),
    Setting(
        "receiver.http_endpoint",
        "DUNETRACE_OTLP_HTTP_ENDPOINT",
        "127.0.0.1:4318",
        parse_endpoint,
        "OTLP/HTTP listen address (POST /v1/traces, /v1/logs, /v1/metrics).",
    ),
    Setting(
        "receiver.max_http_body_bytes",
        "DUNETRACE_MAX_HTTP_BODY_BYTES",
        20 * 1024 * 1024,
        parse_positive_int,
        "Largest OTLP/HTTP body accepted, on the wire and after decompression; larger gets 413.",
    ),
    Setting(
        "receiver.max_grpc_message_bytes",
        "DUNETRACE_MAX_GRPC_MESSAGE_BYTES",
        4 * 1024 * 1024,
        parse_positive_int,
        "Largest OTLP/gRPC message accepted; larger gets RESOURCE_EXHAUSTED.",
    ),
    Setting(
        "receiver.max_queued_events",
        "DUNETRACE_MAX_QUEUED_EVENTS",
        200_000,
        parse_positive_int,
        "Events waiting for the store before exports are refused with 503 / UNAVAILABLE (retryable).",
    ),
    Setting(
        "receiver.max_inflight_requests",
        "DUNETRACE_MAX_INFLIGHT_REQUESTS",
        64,
        parse_positive_int,
        "Export requests processed at once (both transports); more are refused at once with the retryable "
        "answer (503 + Retry-After / UNAVAILABLE + RetryInfo).",
    ),
    Setting(
        "receiver.max_inflight_bytes",
        "DUNETRACE_MAX_INFLIGHT_BYTES",
        32 * 1024 * 1024,
        parse_positive_int,
        "Bytes of export requests held at once (a compressed body counts its inflated size); more are refused "
        "like max_inflight_requests.",
    ),
    Setting(
        "receiver.read_timeout_seconds",
        "DUNETRACE_READ_TIMEOUT",
        15,
        parse_positive_int,
        "An HTTP connection must send a request's headers within this many seconds of connecting or of its "
        "last answer, and its body within this many seconds more (else 408 and closed).",
    ),
    Setting(
        "receiver.max_connections",
        "DUNETRACE_MAX_CONNECTIONS",
        256,
        parse_positive_int,
        "Open connections per HTTP listener (OTLP/HTTP; the API takes a quarter); past it a new connection gets "
        "503 + Retry-After and is closed.",
    ),
    Setting(
        "receiver.keys",
        "DUNETRACE_OTLP_KEYS",
        [],
        parse_key_list,
        "Bearer keys the OTLP receivers require (comma-separated in the environment; at least 16 characters "
        "each): OTLP/HTTP 'Authorization: Bearer <key>' (else 401), gRPC metadata 'authorization' (else "
        "UNAUTHENTICATED). Empty: no authentication (keep the receivers on loopback or a private network).",
        secret=True,
    ),
    Setting(
        "receiver.tls.cert_file",
        "DUNETRACE_OTLP_TLS_CERT_FILE",
        "",
        parse_file_path,
        "Both OTLP receivers (gRPC and HTTP) serve TLS with this PEM certificate (chain) and key_file, and take "
        "TLS only (1.2 or later). Empty: plain text. Changed files are picked up for new connections.",
    ),
    Setting(
        "receiver.tls.key_file",
        "DUNETRACE_OTLP_TLS_KEY_FILE",
        "",
        parse_file_path,
        "The PEM private key of receiver.tls.cert_file (unencrypted).",
    ),
    Setting(
        "receiver.tls.client_ca_file",
        "DUNETRACE_OTLP_TLS_CLIENT_CA_FILE",
        "",
        parse_file_path,
        "Mutual TLS on the OTLP receivers: an exporter must present a certificate signed by a CA in this PEM "
        "file (needs receiver.tls.cert_file).",
    ),
    Setting(
        "receiver.retry_after_seconds",
        "DUNETRACE_RETRY_AFTER_SECONDS",
        1,
        parse_positive_int,
        "Base delay asked of clients refused for backpressure (HTTP Retry-After, gRPC RetryInfo); "
        "each refusal asks for 1-3x this at random, so refused clients do not retry in lockstep.",
    ),
    Setting(
        "receiver.translation_processes",
        "DUNETRACE_TRANSLATION_PROCESSES",
        "auto",
        parse_translation_processes,
        "Worker processes that translate exports (spans to facts, content to features and hashes), so the "
        "daemon uses more than one core. 0: a thread of the daemon's process. auto: one per CPU the daemon may "
        "use (its CPU affinity and cgroup quota, i.e. a container's CPU limit), at most 2; 0 on one CPU.",
    ),
    Setting(
        "api.endpoint",
        "DUNETRACE_API_ENDPOINT",
        "127.0.0.1:8002",
        parse_endpoint,
        "HTTP API listen address (/v1/runs, /v1/agents, /healthz, /readyz, /openapi.json).",
    ),
    Setting(
        "api.keys",
        "DUNETRACE_API_KEYS",
        [],
        parse_key_list,
        "Bearer keys for the API (comma-separated in the environment; at least 16 characters each). "
        "Required when the API listens on a non-loopback address, unless api.tls.client_ca_file is set.",
        secret=True,
    ),
    Setting(
        "api.allow_insecure",
        "DUNETRACE_API_ALLOW_INSECURE",
        False,
        parse_bool,
        "Allow a non-loopback API address without keys or mutual TLS (logged loudly at startup).",
    ),
    Setting(
        "api.tls.cert_file",
        "DUNETRACE_API_TLS_CERT_FILE",
        "",
        parse_file_path,
        "The API serves HTTPS only (TLS 1.2 or later) with this PEM certificate (chain) and key_file. Empty: "
        "plain HTTP. Changed files are picked up for new connections.",
    ),
    Setting(
        "api.tls.key_file",
        "DUNETRACE_API_TLS_KEY_FILE",
        "",
        parse_file_path,
        "The PEM private key of api.tls.cert_file (unencrypted).",
    ),
    Setting(
        "api.tls.client_ca_file",
        "DUNETRACE_API_TLS_CLIENT_CA_FILE",
        "",
        parse_file_path,
        "Mutual TLS on the API: a client must present a certificate signed by a CA in this PEM file (needs "
        "api.tls.cert_file); /healthz and /readyz too, so probes must present one.",
    ),
    Setting(
        "store.path",
        "DUNETRACE_DB_PATH",
        "./data/dunetrace.duckdb",
        parse_db_path,
        "DuckDB file (created with its directory if missing); ':memory:' keeps nothing on disk.",
    ),
    Setting(
        "store.memory_limit",
        "DUNETRACE_STORE_MEMORY_LIMIT",
        "256MB",
        parse_memory_limit,
        "DuckDB's memory limit (its buffer cache grows to it, then evicts); e.g. 256MB, 1GB.",
    ),
    Setting(
        "store.retention_hours",
        "DUNETRACE_STORE_RETENTION_HOURS",
        168,
        parse_non_negative_float,
        "Runs not written for this long are removed with their events, signals and alert deliveries "
        "(checked every tenth of it, at most every minute); 0 keeps everything.",
    ),
    Setting(
        "runs.stall_timeout_seconds",
        "DUNETRACE_STALL_TIMEOUT",
        90,
        parse_positive_float,
        "Seconds of silence after which a run with no root span is marked stalled.",
    ),
    Setting(
        "runs.end_grace_seconds",
        "DUNETRACE_END_GRACE",
        2,
        parse_non_negative_float,
        "End-of-run detectors (TOOL_AVOIDANCE, RAG_EMPTY_RETRIEVAL, GOAL_ABANDONMENT) are asked this long after "
        "the root span arrives, so spans that reach us after it (another service's, another export) count; "
        "0: at once.",
    ),
    Setting(
        "runs.default_agent_id",
        "DUNETRACE_DEFAULT_AGENT_ID",
        "default",
        parse_agent_id,
        "agent_id for runs whose spans name no agent, workflow or service.",
    ),
    Setting(
        "runs.max_open_runs",
        "DUNETRACE_MAX_OPEN_RUNS",
        20_000,
        parse_positive_int,
        "Runs kept open in memory; past this the least recently active are shed (and rebuilt from the "
        "store if they send again).",
    ),
    Setting(
        "privacy.hash_key",
        "DUNETRACE_HASH_KEY",
        "",
        parse_text,
        "When set, content hashes are hmac-sha256 with this key instead of plain sha256.",
        secret=True,
    ),
    Setting(
        "policies.signing_secret",
        "DUNETRACE_POLICY_SECRET",
        "",
        parse_text,
        "Signs every policy GET /v1/policies serves with the Dunetrace SDK's HMAC-SHA256 (its policy_secret):"
        " set the same secret in the SDK (DUNETRACE_POLICY_SECRET) and it enforces stop, switch_model and"
        " inject_prompt; without it the SDK downgrades them to log.",
        secret=True,
    ),
    Setting(
        "langfuse.base_url",
        "LANGFUSE_BASE_URL",
        "",
        parse_url,
        "Langfuse to fetch traces from and publish prompt fixes to (e.g. https://cloud.langfuse.com); "
        "empty: explain uses the sidecar's own spans and apply-fix is unavailable.",
    ),
    Setting("langfuse.public_key", "LANGFUSE_PUBLIC_KEY", "", parse_text, "Langfuse public key (Basic auth user)."),
    Setting(
        "langfuse.secret_key", "LANGFUSE_SECRET_KEY", "", parse_text, "Langfuse secret key (Basic auth).", secret=True
    ),
    Setting(
        "langfuse.timeout_seconds",
        "LANGFUSE_TIMEOUT",
        10,
        parse_positive_float,
        "Per-request timeout for Langfuse calls.",
    ),
    Setting(
        "langfuse.prompt_label",
        "DUNETRACE_LANGFUSE_PROMPT_LABEL",
        "production",
        parse_agent_id,
        "The prompt label agents fetch; apply-fix appends to the version carrying it and moves it to the new one.",
    ),
    Setting(
        "explain.anthropic_api_key",
        "ANTHROPIC_API_KEY",
        "",
        parse_text,
        "When set, explain asks Anthropic for the root cause and fix (first choice).",
        secret=True,
    ),
    Setting("explain.anthropic_base_url", "ANTHROPIC_BASE_URL", "", parse_url, "Anthropic API base URL (no /v1)."),
    Setting(
        "explain.anthropic_model",
        "DUNETRACE_ANTHROPIC_MODEL",
        "claude-sonnet-4-6",
        parse_agent_id,
        "Anthropic model for explain.",
    ),
    Setting(
        "explain.openai_api_key",
        "OPENAI_API_KEY",
        "",
        parse_text,
        "When set (and no Anthropic key), explain asks OpenAI.",
        secret=True,
    ),
    Setting("explain.openai_base_url", "OPENAI_BASE_URL", "", parse_url, "OpenAI API base URL (including /v1)."),
    Setting(
        "explain.openai_model", "DUNETRACE_OPENAI_MODEL", "gpt-4.1-mini", parse_agent_id, "OpenAI model for explain."
    ),
    Setting(
        "explain.timeout_seconds",
        "DUNETRACE_EXPLAIN_TIMEOUT",
        30,
        parse_positive_float,
        "Timeout of one LLM call; the explain request also bounds its retries within twice this.",
    ),
    Setting(
        "explain.max_retries",
        "DUNETRACE_EXPLAIN_MAX_RETRIES",
        2,
        parse_non_negative_int,
        "Retries of a failed LLM call (429, 5xx, 529 overloaded), with the SDK's backoff.",
    ),
    Setting(
        "explain.cache_seconds",
        "DUNETRACE_EXPLAIN_CACHE_SECONDS",
        600,
        parse_non_negative_int,
        "How long an explain answer is kept in memory per signal (never on disk); 0 disables.",
    ),
    Setting(
        "alerts.slack_webhook_url",
        "SLACK_WEBHOOK_URL",
        "",
        parse_url,
        "Slack incoming webhook for alerts (Block Kit); empty: no Slack alerts.",
        secret=True,
    ),
    Setting(
        "alerts.slack_min_severity",
        "SLACK_MIN_SEVERITY",
        "HIGH",
        parse_severity,
        "Least severe signal sent to Slack: CRITICAL, HIGH, MEDIUM or LOW.",
    ),
    Setting(
        "alerts.webhook_url",
        "WEBHOOK_URL",
        "",
        parse_url,
        "Generic webhook for alerts (JSON: the signal, its evidence and explanation); empty: none.",
        secret=True,  # such URLs often carry a token
    ),
    Setting(
        "alerts.webhook_min_severity",
        "WEBHOOK_MIN_SEVERITY",
        "LOW",
        parse_severity,
        "Least severe signal sent to the webhook.",
    ),
    Setting(
        "alerts.webhook_secret",
        "WEBHOOK_SECRET",
        "",
        parse_text,
        "Signs webhook alerts (Standard Webhooks: webhook-id, webhook-timestamp, webhook-signature); "
        "a whsec_ secret is base64.",
        secret=True,
    ),
    Setting(
        "alerts.dashboard_url",
        "DASHBOARD_URL",
        "",
        parse_url,
        "When set, Slack alerts link to <dashboard_url>/runs/<run_id>: the sidecar's own API URL (e.g."
        " http://127.0.0.1:8002) opens the run in its dashboard.",
    ),
    Setting(
        "alerts.max_attempts",
        "DUNETRACE_ALERT_MAX_ATTEMPTS",
        10,
        parse_positive_int,
        "Attempts per alert and destination (exponential backoff with jitter, honouring Retry-After).",
    ),
    Setting(
        "alerts.agent_wait_seconds",
        "DUNETRACE_ALERT_AGENT_WAIT",
        5,
        parse_non_negative_int,
        "Seconds an alert waits for its run to name its agent (root or agent span) when no gen_ai.agent.name "
        "resource attribute names it up front; then it goes out under the name known so far. 0: at once.",
    ),
    Setting(
        "alerts.timeout_seconds",
        "DUNETRACE_ALERT_TIMEOUT",
        5,
        parse_positive_float,
        "Timeout of one alert delivery attempt.",
    ),
    Setting("log_level", "DUNETRACE_LOG_LEVEL", "info", parse_log_level, "Log level: debug, info, warning or error."),
)
SETTINGS_BY_PATH = {s.path: s for s in SETTINGS}
CONFIG_ENV = "DUNETRACE_CONFIG"
DETECTORS_KEY = "detectors"  # its own section: see detectors/settings.py and the README
PRICES_KEY = "model_prices"  # model-name prefix: [USD per million input tokens, per million output tokens]


def parse_prices(raw: Any) -> dict[str, tuple[float, float]]:
    """The default price table with the file's entries merged over it."""
    prices = dict(DEFAULT_MODEL_PRICES)
    if raw is None:
        return prices
    if not isinstance(raw, dict):
        raise ConfigError(f"{PRICES_KEY}: expected a mapping of model prefix to [input, output] USD per million")
    for model, pair in raw.items():
        if (
            not isinstance(pair, list)
            or len(pair) != 2
            or not all(isinstance(v, (int, float)) and not isinstance(v, bool) and v >= 0 for v in pair)
        ):
            raise ConfigError(f"{PRICES_KEY}.{model}: expected [input, output] USD per million tokens, both >= 0")
        prices[str(model)] = (float(pair[0]), float(pair[1]))
    return prices


@dataclass(frozen=True, slots=True)
class TlsConfig:
    """A listener group's TLS files; all empty: plain text."""

    cert_file: str = ""
    key_file: str = ""
    client_ca_file: str = ""

    @property
    def enabled(self) -> bool:
        return bool(self.cert_file)

    @property
    def mutual(self) -> bool:
        return bool(self.client_ca_file)

    def files(self) -> TlsFiles:
        return TlsFiles(self.cert_file, self.key_file, self.client_ca_file)


@dataclass(frozen=True, slots=True)
class ReceiverConfig:
    grpc_endpoint: Endpoint
    http_endpoint: Endpoint
    max_http_body_bytes: int
    max_inflight_requests: int
    max_inflight_bytes: int
    read_timeout_seconds: int
    max_connections: int
    keys: tuple[str, ...]
    max_grpc_message_bytes: int
    max_queued_events: int
    retry_after_seconds: int
    translation_processes: int | None  # None: auto (dunetrace_sidecar/translation.py)
    tls: TlsConfig = TlsConfig()


@dataclass(frozen=True, slots=True)
class ApiConfig:
    endpoint: Endpoint
    keys: tuple[str, ...]
    allow_insecure: bool
    tls: TlsConfig = TlsConfig()


@dataclass(frozen=True, slots=True)
class StoreConfig:
    path: str
    memory_limit: str
    retention_hours: float


@dataclass(frozen=True, slots=True)
class RunsConfig:
    stall_timeout_seconds: float
    end_grace_seconds: float
    default_agent_id: str
    max_open_runs: int


@dataclass(frozen=True, slots=True)
class PrivacyConfig:
    hash_key: str


@dataclass(frozen=True, slots=True)
class PoliciesConfig:
    signing_secret: str = ""


@dataclass(frozen=True, slots=True)
class LangfuseConfig:
    base_url: str
    public_key: str
    secret_key: str
    timeout_seconds: float
    prompt_label: str

    @property
    def configured(self) -> bool:
        return bool(self.base_url and self.public_key and self.secret_key)


@dataclass(frozen=True, slots=True)
class AlertsConfig:
    slack_webhook_url: str
    slack_min_severity: str
    webhook_url: str
    webhook_min_severity: str
    webhook_secret: str
    dashboard_url: str
    max_attempts: int
    agent_wait_seconds: int
    timeout_seconds: float


@dataclass(frozen=True, slots=True)
class ExplainConfig:
    anthropic_api_key: str
    anthropic_base_url: str
    anthropic_model: str
    openai_api_key: str
    openai_base_url: str
    openai_model: str
    timeout_seconds: float
    max_retries: int
    cache_seconds: int


@dataclass(frozen=True, slots=True)
class Config:
    receiver: ReceiverConfig
    api: ApiConfig
    store: StoreConfig
    runs: RunsConfig
    privacy: PrivacyConfig
    log_level: str
    langfuse: LangfuseConfig
    explain: ExplainConfig
    alerts: AlertsConfig
    detectors: DetectorSettings = field(default_factory=DetectorSettings.default)
    model_prices: Mapping[str, tuple[float, float]] = field(default_factory=lambda: dict(DEFAULT_MODEL_PRICES))
    policies: PoliciesConfig = field(default_factory=PoliciesConfig)

    def validate(self) -> None:
        """Cross-field rules; single-field ones live in the parsers. The TLS files are read and
        checked here, so `dunetrace-sidecar validate` and startup refuse the same ones."""
        for prefix, tls in (("receiver.tls", self.receiver.tls), ("api.tls", self.api.tls)):
            validate_tls(prefix, tls)
        if (
            not self.api.endpoint.is_loopback
            and not self.api.keys
            and not self.api.tls.mutual
            and not self.api.allow_insecure
        ):
            raise ConfigError(
                f"api.endpoint: the API listens on {self.api.endpoint}, which is not loopback, and no "
                "api.keys (DUNETRACE_API_KEYS) are set; set keys (or api.tls.client_ca_file for mutual TLS), "
                "or api.allow_insecure: true to accept the risk"
            )
        endpoints = {
            "receiver.grpc_endpoint": self.receiver.grpc_endpoint,
            "receiver.http_endpoint": self.receiver.http_endpoint,
            "api.endpoint": self.api.endpoint,
        }
        seen: dict[tuple[str, int], str] = {}
        for path, endpoint in endpoints.items():
            key = (endpoint.host, endpoint.port)
            if endpoint.port and key in seen:
                raise ConfigError(f"{path}: {endpoint} is already used by {seen[key]}")
            seen[key] = path


def validate_tls(prefix: str, tls: TlsConfig) -> None:
    if not tls.cert_file and not tls.key_file:
        if tls.client_ca_file:
            raise ConfigError(
                f"{prefix}.client_ca_file: mutual TLS needs TLS: set {prefix}.cert_file and {prefix}.key_file too"
            )
        return
    if not tls.cert_file or not tls.key_file:
        missing = "cert_file" if not tls.cert_file else "key_file"
        raise ConfigError(f"{prefix}.{missing}: {prefix}.cert_file and {prefix}.key_file are set together")
    try:
        load_tls(tls.files())
    except TlsError as exc:
        raise ConfigError(f"{prefix}.{exc.field}: {exc}") from None


def _flatten(data: Mapping[str, Any], prefix: str = "") -> dict[str, Any]:
    flat: dict[str, Any] = {}
    for key, value in data.items():
        path = f"{prefix}{key}"
        if not isinstance(key, str):
            raise ConfigError(f"{path}: keys must be strings")
        if isinstance(value, dict) and not any(s.path == path for s in SETTINGS):
            flat.update(_flatten(value, path + "."))
        else:
            flat[path] = value
    return flat


def read_file(path: str | Path) -> dict[str, Any]:
    try:
        text = Path(path).read_text()
    except OSError as exc:
        raise ConfigError(f"cannot read config file {path}: {exc.strerror}") from None
    try:
        data = yaml.safe_load(text)
    except yaml.YAMLError as exc:
        raise ConfigError(f"{path}: not valid YAML: {exc}") from None
    if data is None:
        return {}
    if not isinstance(data, dict):
        raise ConfigError(f"{path}: the top level must be a mapping of settings")
    data = dict(data)
    sections = {key: data.pop(key) for key in (DETECTORS_KEY, PRICES_KEY) if key in data}
    flat = _flatten(data)
    flat.update(sections)
    for key in flat:
        if key not in SETTINGS_BY_PATH and key not in (DETECTORS_KEY, PRICES_KEY):
            raise ConfigError(f"{key}: unknown setting (see `dunetrace-sidecar --help`)")
    return flat


def load(config_file: str | Path | None = None, environ: Mapping[str, str] | None = None) -> Config:
    environ = os.environ if environ is None else environ
    config_file = config_file or environ.get(CONFIG_ENV) or None
    raw: dict[str, Any] = {s.path: s.default for s in SETTINGS}
    if config_file:
        raw.update(read_file(config_file))
    try:
        detectors = DetectorSettings.parse(raw.get(DETECTORS_KEY))
    except ValueError as exc:
        raise ConfigError(str(exc)) from None
    prices = parse_prices(raw.get(PRICES_KEY))
    values: dict[str, Any] = {}
    for setting in SETTINGS:
        source = setting.path
        value = raw[setting.path]
        if setting.env and setting.env in environ:
            source, value = setting.env, environ[setting.env]
        try:
            values[setting.path] = setting.parse(value)
        except ValueError as exc:
            raise ConfigError(f"{source}: {exc}") from None
    config = Config(
        receiver=ReceiverConfig(
            grpc_endpoint=values["receiver.grpc_endpoint"],
            http_endpoint=values["receiver.http_endpoint"],
            max_http_body_bytes=values["receiver.max_http_body_bytes"],
            max_inflight_requests=values["receiver.max_inflight_requests"],
            max_inflight_bytes=values["receiver.max_inflight_bytes"],
            read_timeout_seconds=values["receiver.read_timeout_seconds"],
            max_connections=values["receiver.max_connections"],
            keys=values["receiver.keys"],
            max_grpc_message_bytes=values["receiver.max_grpc_message_bytes"],
            max_queued_events=values["receiver.max_queued_events"],
            retry_after_seconds=values["receiver.retry_after_seconds"],
            translation_processes=values["receiver.translation_processes"],
            tls=_tls_config(values, "receiver.tls"),
        ),
        api=ApiConfig(
            endpoint=values["api.endpoint"],
            keys=values["api.keys"],
            allow_insecure=values["api.allow_insecure"],
            tls=_tls_config(values, "api.tls"),
        ),
        store=StoreConfig(
            path=values["store.path"],
            memory_limit=values["store.memory_limit"],
            retention_hours=values["store.retention_hours"],
        ),
        runs=RunsConfig(
            stall_timeout_seconds=values["runs.stall_timeout_seconds"],
            end_grace_seconds=values["runs.end_grace_seconds"],
            default_agent_id=values["runs.default_agent_id"],
            max_open_runs=values["runs.max_open_runs"],
        ),
        privacy=PrivacyConfig(hash_key=values["privacy.hash_key"]),
        policies=PoliciesConfig(signing_secret=values["policies.signing_secret"]),
        langfuse=LangfuseConfig(
            base_url=values["langfuse.base_url"],
            public_key=values["langfuse.public_key"],
            secret_key=values["langfuse.secret_key"],
            timeout_seconds=values["langfuse.timeout_seconds"],
            prompt_label=values["langfuse.prompt_label"],
        ),
        alerts=AlertsConfig(
            slack_webhook_url=values["alerts.slack_webhook_url"],
            slack_min_severity=values["alerts.slack_min_severity"],
            webhook_url=values["alerts.webhook_url"],
            webhook_min_severity=values["alerts.webhook_min_severity"],
            webhook_secret=values["alerts.webhook_secret"],
            dashboard_url=values["alerts.dashboard_url"],
            max_attempts=values["alerts.max_attempts"],
            agent_wait_seconds=values["alerts.agent_wait_seconds"],
            timeout_seconds=values["alerts.timeout_seconds"],
        ),
        explain=ExplainConfig(
            anthropic_api_key=values["explain.anthropic_api_key"],
            anthropic_base_url=values["explain.anthropic_base_url"],
            anthropic_model=values["explain.anthropic_model"],
            openai_api_key=values["explain.openai_api_key"],
            openai_base_url=values["explain.openai_base_url"],
            openai_model=values["explain.openai_model"],
            timeout_seconds=values["explain.timeout_seconds"],
            max_retries=values["explain.max_retries"],
            cache_seconds=values["explain.cache_seconds"],
        ),
        log_level=values["log_level"],
        detectors=detectors,
        model_prices=prices,
    )
    config.validate()
    return config


def _tls_config(values: Mapping[str, Any], prefix: str) -> TlsConfig:
    return TlsConfig(
        cert_file=values[f"{prefix}.cert_file"],
        key_file=values[f"{prefix}.key_file"],
        client_ca_file=values[f"{prefix}.client_ca_file"],
    )


def _shown(default: Any) -> str | None:
    """A default as it would be written in the YAML file; None when there is none."""
    if default in ("", []):
        return None
    if isinstance(default, bool):
        return "true" if default else "false"
    return str(default)


def settings_reference_markdown() -> str:
    """The README's configuration table, generated from SETTINGS."""
    lines = ["| key | environment | default | meaning |", "|---|---|---|---|"]
    for s in SETTINGS:
        shown = _shown(s.default)
        default = f"`{shown}`" if shown is not None else "(none)"
        lines.append(f"| `{s.path}` | `{s.env}` | {default} | {s.help} |")
    return "\n".join(lines)


def settings_help_text() -> str:
    """The ``--help`` epilog, generated from SETTINGS."""
    lines = ["settings (YAML key path / environment variable, default):"]
    for s in SETTINGS:
        default = _shown(s.default) or "(none)"
        lines.append(f"  {s.path}  /  {s.env}  [default: {default}]")
        lines.append(f"      {s.help}")
    lines.append(f"  the config file itself: --config FILE or {CONFIG_ENV}")
    lines.append("  detectors: thresholds per detector and per agent, in the file only (see the README)")
    return "\n".join(lines)
