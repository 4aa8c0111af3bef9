"""Configuration: defaults, the YAML file, environment overrides, errors that name the key
path, the non-loopback rule, the CLI, the one table that drives --help and the README, and
the daemon's start/stop behaviour (a port already taken, SIGTERM).

Expected values are written down from the documented defaults, not read from SETTINGS.
"""

from __future__ import annotations

import dataclasses
import os
import signal
import socket
import subprocess
import sys
from collections.abc import Callable, Mapping
from pathlib import Path

import pytest

from dunetrace_sidecar.config import SETTINGS, ConfigError, Endpoint, load, settings_reference_markdown
from tests.sidecar import ROOT, Sidecar

KEY1 = "k1-aaaaaaaaaaaaaaaa"
KEY2 = "k2-bbbbbbbbbbbbbbbb"
KEY3 = "k3-cccccccccccccccc"

FILE_YAML = f"""\
receiver:
  grpc_endpoint: "127.0.0.1:5317"
  http_endpoint: "127.0.0.1:5318"
  max_http_body_bytes: 1048576
api:
  endpoint: "127.0.0.1:9002"
  keys: ["{KEY1}"]
store:
  path: /var/lib/dunetrace/from-file.duckdb
runs:
  stall_timeout_seconds: 30
  default_agent_id: file-agent
privacy:
  hash_key: file-secret
log_level: warning
"""


def write(tmp_path: Path, text: str, name: str = "sidecar.yaml") -> Path:
    path = tmp_path / name
    path.write_text(text)
    return path


def clean_env(**overrides: str) -> dict[str, str]:
    """This process's environment without any DUNETRACE_ setting, plus ``overrides``."""
    env = {k: v for k, v in os.environ.items() if not k.startswith(("DUNETRACE_", "OTEL_", "TRACELOOP_"))}
    env["PYTHONUNBUFFERED"] = "1"
    env.update(overrides)
    return env


def run_cli(*args: str, env: Mapping[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "dunetrace_sidecar", *args],
        cwd=ROOT,
        env=dict(env) if env is not None else clean_env(),
        capture_output=True,
        text=True,
        timeout=60,
    )


# --- defaults, file, environment -------------------------------------------------------------


def test_defaults_without_file_or_environment() -> None:
    config = load(None, {})
    assert config.receiver.grpc_endpoint == Endpoint("127.0.0.1", 4317)
    assert config.receiver.http_endpoint == Endpoint("127.0.0.1", 4318)
    assert config.api.endpoint == Endpoint("127.0.0.1", 8002)
    assert str(config.receiver.grpc_endpoint) == "127.0.0.1:4317"
    assert str(config.receiver.http_endpoint) == "127.0.0.1:4318"
    assert str(config.api.endpoint) == "127.0.0.1:8002"
    assert config.store.path == "./data/dunetrace.duckdb"
    assert config.runs.stall_timeout_seconds == 90
    assert config.api.keys == ()
    assert config.api.allow_insecure is False
    assert config.privacy.hash_key == ""
    assert config.log_level == "info"
    assert config.runs.default_agent_id == "default"


def test_empty_yaml_file_gives_the_defaults(tmp_path: Path) -> None:
    assert load(write(tmp_path, ""), {}) == load(None, {})


def test_yaml_file_sets_values(tmp_path: Path) -> None:
    config = load(write(tmp_path, FILE_YAML), {})
    assert config.receiver.grpc_endpoint == Endpoint("127.0.0.1", 5317)
    assert config.receiver.http_endpoint == Endpoint("127.0.0.1", 5318)
    assert config.receiver.max_http_body_bytes == 1048576
    assert config.api.endpoint == Endpoint("127.0.0.1", 9002)
    assert config.api.keys == (KEY1,)
    assert config.store.path == "/var/lib/dunetrace/from-file.duckdb"
    assert config.runs.stall_timeout_seconds == 30
    assert config.runs.default_agent_id == "file-agent"
    assert config.privacy.hash_key == "file-secret"
    assert config.log_level == "warning"


def test_environment_overrides_the_file(tmp_path: Path) -> None:
    environ = {
        "DUNETRACE_OTLP_HTTP_ENDPOINT": "127.0.0.1:6318",
        "DUNETRACE_DB_PATH": ":memory:",
        "DUNETRACE_API_KEYS": f"{KEY2}, {KEY3}",
        "DUNETRACE_HASH_KEY": "env-secret",
        "DUNETRACE_LOG_LEVEL": "DEBUG",
        "DUNETRACE_STALL_TIMEOUT": "2.5",
    }
    config = load(write(tmp_path, FILE_YAML), environ)
    assert config.receiver.http_endpoint == Endpoint("127.0.0.1", 6318)
    assert config.store.path == ":memory:"
    assert config.api.keys == (KEY2, KEY3)
    assert config.privacy.hash_key == "env-secret"
    assert config.log_level == "debug"
    assert config.runs.stall_timeout_seconds == 2.5
    # Settings the environment does not name still come from the file.
    assert config.receiver.grpc_endpoint == Endpoint("127.0.0.1", 5317)
    assert config.api.endpoint == Endpoint("127.0.0.1", 9002)
    assert config.runs.default_agent_id == "file-agent"


def test_dunetrace_config_names_the_file(tmp_path: Path) -> None:
    path = write(tmp_path, FILE_YAML)
    config = load(None, {"DUNETRACE_CONFIG": str(path)})
    assert config.receiver.http_endpoint == Endpoint("127.0.0.1", 5318)
    assert config.log_level == "warning"


def test_explicit_file_wins_over_dunetrace_config(tmp_path: Path) -> None:
    explicit = write(tmp_path, "log_level: error\n", "explicit.yaml")
    named = write(tmp_path, "log_level: debug\n", "named.yaml")
    assert load(explicit, {"DUNETRACE_CONFIG": str(named)}).log_level == "error"


# --- errors name the key path --------------------------------------------------------------------


@pytest.mark.parametrize(
    ("yaml_text", "environ", "named"),
    [
        pytest.param("receiver:\n  grpc_port: 4317\n", {}, "receiver.grpc_port", id="unknown-key"),
        pytest.param("receiver:\n  http_endpoint: nope\n", {}, "receiver.http_endpoint", id="bad-endpoint"),
        pytest.param('api:\n  endpoint: "127.0.0.1:70000"\n', {}, "api.endpoint", id="port-out-of-range"),
        pytest.param("runs:\n  stall_timeout_seconds: -5\n", {}, "runs.stall_timeout_seconds", id="negative-stall"),
        pytest.param("log_level: loud\n", {}, "log_level", id="bad-log-level"),
        pytest.param("api:\n  keys: [tooshort-key]\n", {}, "api.keys", id="short-api-key"),
        pytest.param("receiver:\n  max_http_body_bytes: lots\n", {}, "receiver.max_http_body_bytes", id="bad-int"),
        pytest.param("api:\n  allow_insecure: maybe\n", {}, "api.allow_insecure", id="bad-bool"),
        pytest.param("", {"DUNETRACE_STALL_TIMEOUT": "abc"}, "DUNETRACE_STALL_TIMEOUT", id="env-stall"),
        pytest.param("", {"DUNETRACE_OTLP_GRPC_ENDPOINT": "nope"}, "DUNETRACE_OTLP_GRPC_ENDPOINT", id="env-endpoint"),
        pytest.param("", {"DUNETRACE_API_KEYS": "tooshort-key"}, "DUNETRACE_API_KEYS", id="env-short-key"),
    ],
)
def test_error_names_the_key_path(tmp_path: Path, yaml_text: str, environ: dict[str, str], named: str) -> None:
    with pytest.raises(ConfigError) as caught:
        load(write(tmp_path, yaml_text), environ)
    assert named in str(caught.value)


def test_port_out_of_range_message_names_the_port(tmp_path: Path) -> None:
    with pytest.raises(ConfigError) as caught:
        load(write(tmp_path, 'receiver:\n  grpc_endpoint: "127.0.0.1:70000"\n'), {})
    assert "receiver.grpc_endpoint" in str(caught.value)
    assert "70000" in str(caught.value)


def test_short_api_key_is_not_echoed(tmp_path: Path) -> None:
    with pytest.raises(ConfigError) as caught:
        load(write(tmp_path, "api:\n  keys: [tooshort-key]\n"), {})
    assert "tooshort-key" not in str(caught.value)


@pytest.mark.parametrize(
    "yaml_text",
    [
        pytest.param("- receiver\n- api\n", id="list"),
        pytest.param("just a string\n", id="scalar"),
        pytest.param("receiver: [\n", id="invalid-yaml"),
        pytest.param("receiver:\n  http_endpoint: 'a\n", id="unterminated-quote"),
    ],
)
def test_unusable_file_is_a_config_error_naming_the_file(tmp_path: Path, yaml_text: str) -> None:
    path = write(tmp_path, yaml_text)
    with pytest.raises(ConfigError) as caught:
        load(path, {})
    assert str(path) in str(caught.value)


def test_missing_file_is_a_config_error(tmp_path: Path) -> None:
    path = tmp_path / "absent.yaml"
    with pytest.raises(ConfigError) as caught:
        load(path, {})
    assert str(path) in str(caught.value)


def test_two_listeners_on_one_address_are_refused(tmp_path: Path) -> None:
    text = 'receiver:\n  http_endpoint: "127.0.0.1:7000"\napi:\n  endpoint: "127.0.0.1:7000"\n'
    with pytest.raises(ConfigError) as caught:
        load(write(tmp_path, text), {})
    assert "api.endpoint" in str(caught.value)
    assert "receiver.http_endpoint" in str(caught.value)


def test_config_objects_are_frozen() -> None:
    config = load(None, {})
    mutations: list[Callable[[], None]] = [
        lambda: setattr(config, "log_level", "debug"),
        lambda: setattr(config.api, "keys", (KEY1,)),
        lambda: setattr(config.api, "allow_insecure", True),
        lambda: setattr(config.receiver, "http_endpoint", Endpoint("0.0.0.0", 1)),
        lambda: setattr(config.receiver.http_endpoint, "port", 1),
        lambda: setattr(config.store, "path", ":memory:"),
        lambda: setattr(config.runs, "stall_timeout_seconds", 1.0),
        lambda: setattr(config.privacy, "hash_key", "x"),
    ]
    for mutate in mutations:
        with pytest.raises(dataclasses.FrozenInstanceError):
            mutate()
    assert config == load(None, {})


# --- the API on a non-loopback address ---------------------------------------------------------


@pytest.mark.parametrize(
    "endpoint",
    [
        "0.0.0.0:8002",
        "[::]:8002",
        "192.168.1.10:8002",
    ],
)
def test_non_loopback_api_without_keys_is_refused(tmp_path: Path, endpoint: str) -> None:
    with pytest.raises(ConfigError) as caught:
        load(write(tmp_path, f'api:\n  endpoint: "{endpoint}"\n'), {})
    assert "api.endpoint" in str(caught.value)


def test_host_name_beginning_with_127_is_not_loopback(tmp_path: Path) -> None:
    # Was a bug (config.Endpoint.is_loopback): the check is host.startswith("127."), so the host NAME
    # "127.attacker.example" counts as loopback and an API bound to whatever it resolves to starts
    # without keys. Only addresses in 127.0.0.0/8, ::1 and localhost are loopback.
    with pytest.raises(ConfigError) as caught:
        load(write(tmp_path, 'api:\n  endpoint: "127.attacker.example:8002"\n'), {})
    assert "api.endpoint" in str(caught.value)


def test_non_loopback_api_refusal_from_the_environment() -> None:
    with pytest.raises(ConfigError) as caught:
        load(None, {"DUNETRACE_API_ENDPOINT": "0.0.0.0:8002"})
    assert "api.endpoint" in str(caught.value)


@pytest.mark.parametrize("endpoint", ["127.0.0.1:8002", "127.0.0.2:8002", "localhost:8002", "[::1]:8002"])
def test_loopback_api_without_keys_loads(tmp_path: Path, endpoint: str) -> None:
    config = load(write(tmp_path, f'api:\n  endpoint: "{endpoint}"\n'), {})
    assert config.api.keys == ()
    assert config.api.endpoint.is_loopback is True


def test_non_loopback_api_with_keys_loads(tmp_path: Path) -> None:
    config = load(write(tmp_path, f'api:\n  endpoint: "0.0.0.0:8002"\n  keys: ["{KEY1}"]\n'), {})
    assert config.api.endpoint == Endpoint("0.0.0.0", 8002)
    assert config.api.keys == (KEY1,)
    env_config = load(None, {"DUNETRACE_API_ENDPOINT": "0.0.0.0:8002", "DUNETRACE_API_KEYS": KEY2})
    assert env_config.api.keys == (KEY2,)


def test_non_loopback_api_with_allow_insecure_loads(tmp_path: Path) -> None:
    config = load(write(tmp_path, 'api:\n  endpoint: "0.0.0.0:8002"\n  allow_insecure: true\n'), {})
    assert config.api.endpoint == Endpoint("0.0.0.0", 8002)
    assert config.api.keys == ()
    assert config.api.allow_insecure is True
    env_config = load(None, {"DUNETRACE_API_ENDPOINT": "0.0.0.0:8002", "DUNETRACE_API_ALLOW_INSECURE": "true"})
    assert env_config.api.allow_insecure is True


# --- the CLI ---------------------------------------------------------------------------------------


def test_cli_validate_accepts_a_good_file(tmp_path: Path) -> None:
    result = run_cli("validate", "--config", str(write(tmp_path, FILE_YAML)))
    assert result.returncode == 0, result.stderr
    assert result.stderr == ""


def test_cli_validate_rejects_a_bad_file_naming_the_key(tmp_path: Path) -> None:
    result = run_cli("validate", "--config", str(write(tmp_path, "receiver:\n  grpc_port: 4317\n")))
    assert result.returncode == 2
    assert "receiver.grpc_port" in result.stderr


def test_cli_validate_reports_a_bad_environment_value(tmp_path: Path) -> None:
    env = clean_env(DUNETRACE_LOG_LEVEL="loud")
    result = run_cli("validate", "--config", str(write(tmp_path, FILE_YAML)), env=env)
    assert result.returncode == 2
    assert "DUNETRACE_LOG_LEVEL" in result.stderr


def test_help_lists_every_setting() -> None:
    result = run_cli("--help")
    assert result.returncode == 0, result.stderr
    for setting in SETTINGS:
        assert setting.path in result.stdout, setting.path
        assert setting.env is not None and setting.env in result.stdout, setting.env
    assert "DUNETRACE_CONFIG" in result.stdout


def test_readme_configuration_reference_is_the_generated_table() -> None:
    # README.md is written by another contributor; it carries the table generated by
    # settings_reference_markdown() between the two markers.
    text = (ROOT / "README.md").read_text()
    start, end = "<!-- settings:start -->", "<!-- settings:end -->"
    assert text.count(start) == 1 and text.count(end) == 1, "README.md needs exactly one settings marker pair"
    between = text.split(start, 1)[1].split(end, 1)[0]
    assert between.strip() == settings_reference_markdown().strip()


def test_generated_table_has_a_row_per_setting() -> None:
    rows = settings_reference_markdown().splitlines()[2:]
    assert len(rows) == len(SETTINGS)
    for row, setting in zip(rows, SETTINGS, strict=True):
        assert row.startswith(f"| `{setting.path}` | `{setting.env}` |")


# --- the daemon's start and stop ---------------------------------------------------------------------


@pytest.mark.parametrize(
    "variable", ["DUNETRACE_OTLP_GRPC_ENDPOINT", "DUNETRACE_OTLP_HTTP_ENDPOINT", "DUNETRACE_API_ENDPOINT"]
)
def test_port_already_taken_exits_non_zero_naming_the_address(tmp_path: Path, variable: str) -> None:
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        address = f"127.0.0.1:{taken.getsockname()[1]}"
        env = clean_env(
            DUNETRACE_OTLP_GRPC_ENDPOINT="127.0.0.1:0",
            DUNETRACE_OTLP_HTTP_ENDPOINT="127.0.0.1:0",
            DUNETRACE_API_ENDPOINT="127.0.0.1:0",
            DUNETRACE_DB_PATH=str(tmp_path / "db.duckdb"),
        )
        env[variable] = address
        result = run_cli(env=env)
    assert result.returncode != 0
    failure_lines = [line for line in result.stderr.splitlines() if "startup failed" in line]
    assert len(failure_lines) == 1, result.stderr
    assert address in failure_lines[0]


def test_sigterm_stops_cleanly(make_sidecar: Callable[..., Sidecar]) -> None:
    daemon = make_sidecar()
    assert daemon.stop() == 0
    log = daemon.log_text()
    assert "stopped" in log
    assert log.index("shutting down") < log.index("stopped")
    assert "Traceback" not in log


def test_sigint_stops_cleanly(make_sidecar: Callable[..., Sidecar]) -> None:
    daemon = make_sidecar()
    assert daemon.process is not None
    daemon.process.send_signal(signal.SIGINT)
    assert daemon.process.wait(timeout=30) == 0
    daemon.process = None
    assert "stopped" in daemon.log_text()
