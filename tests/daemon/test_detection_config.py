"""Detector settings from the config file: per-agent overrides, shadow mode, hot reload
(file change and SIGHUP), and a bad edit rejected while the old settings stay in force."""

from __future__ import annotations

import signal
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path

from tests.sidecar import FIXTURES, ROOT, Sidecar, wait_for, with_new_trace_ids

LOOP = "openllmetry-openai-toolloop.pb"  # agent support_agent (its @agent span), 4 identical lookup_order calls
OI_LOOP = "openinference-openai-toolloop.pb"  # the same loop from agent fixture-agent-openinference


def send_copy(daemon: Sidecar, name: str) -> str:
    body, mapping = with_new_trace_ids((FIXTURES / name).read_bytes())
    assert daemon.post_otlp(body).status == 200
    [run_id] = mapping.values()
    daemon.wait_run(run_id, lambda r: r["status"] != "running")
    return run_id


def fired(daemon: Sidecar, run_id: str, include_shadow: bool = False) -> list[str]:
    shadow = "&include_shadow=true" if include_shadow else ""
    return [s["failure_type"] for s in daemon.api_json(f"/v1/signals?run_id={run_id}{shadow}")["signals"]]


def test_per_agent_override_changes_what_fires(make_sidecar: Callable[..., Sidecar], tmp_path: Path) -> None:
    config = tmp_path / "sidecar.yaml"
    # The loop agent legitimately looks an order up four times: allow it five.
    config.write_text("detectors:\n  agents:\n    support_agent:\n      tool_loop: {threshold: 5}\n")
    daemon = make_sidecar(config_file=config)
    assert fired(daemon, send_copy(daemon, LOOP)) == []
    assert fired(daemon, send_copy(daemon, OI_LOOP)) == ["TOOL_LOOP"]  # other agents keep the default of 3


def test_shadow_signals_are_stored_but_hidden_by_default(make_sidecar: Callable[..., Sidecar], tmp_path: Path) -> None:
    config = tmp_path / "sidecar.yaml"
    config.write_text("detectors:\n  tool_loop: {shadow: true}\n")
    daemon = make_sidecar(config_file=config)
    run_id = send_copy(daemon, LOOP)
    assert fired(daemon, run_id) == []
    assert fired(daemon, run_id, include_shadow=True) == ["TOOL_LOOP"]
    [shadowed] = daemon.run(run_id)["signals"]  # the run shows all its signals, flagged
    assert shadowed["shadow"] is True
    [agent] = [a for a in daemon.api_json("/v1/agents")["agents"] if a["agent_id"] == "support_agent"]
    assert agent["signal_count"] == 0


def test_disabled_detector_never_fires(make_sidecar: Callable[..., Sidecar], tmp_path: Path) -> None:
    config = tmp_path / "sidecar.yaml"
    config.write_text("detectors:\n  first_step_failure: {enabled: false}\n")
    daemon = make_sidecar(config_file=config)
    assert fired(daemon, send_copy(daemon, "openllmetry-openai-errors.pb")) == []


def test_hot_reload_on_file_change_and_sighup(make_sidecar: Callable[..., Sidecar], tmp_path: Path) -> None:
    config = tmp_path / "sidecar.yaml"
    config.write_text("log_level: info\n")
    daemon = make_sidecar(config_file=config)
    assert fired(daemon, send_copy(daemon, LOOP)) == ["TOOL_LOOP"]

    # An edit to the file takes effect without a restart.
    config.write_text("detectors:\n  tool_loop: {threshold: 5}\n")
    wait_for(lambda: daemon.log_text().count("detector settings updated") == 1, what="the reload")
    assert fired(daemon, send_copy(daemon, LOOP)) == []

    # A bad edit is rejected with a line naming the key; the running settings stay.
    config.write_text("detectors:\n  tool_loop: {threshold: lots}\n")
    wait_for(lambda: "config reload rejected" in daemon.log_text(), what="the rejection")
    [line] = [line for line in daemon.log_text().splitlines() if "config reload rejected" in line]
    assert "detectors.tool_loop.threshold" in line
    assert fired(daemon, send_copy(daemon, LOOP)) == []  # still threshold 5

    # SIGHUP reloads too (here: back to the defaults, with the file otherwise unchanged in stamp).
    config.write_text("log_level: info\n")
    wait_for(lambda: daemon.log_text().count("detector settings updated") == 2, what="the second reload")
    assert daemon.process is not None
    daemon.process.send_signal(signal.SIGHUP)
    wait_for(lambda: "config reloaded (SIGHUP)" in daemon.log_text(), what="the SIGHUP reload")
    assert fired(daemon, send_copy(daemon, LOOP)) == ["TOOL_LOOP"]
    assert daemon.process.poll() is None  # SIGHUP did not stop it


def test_validate_names_bad_detector_settings(tmp_path: Path) -> None:
    cases = {
        "detectors:\n  tool_lop: {threshold: 3}\n": "detectors.tool_lop",
        "detectors:\n  tool_loop: {treshold: 3}\n": "detectors.tool_loop.treshold",
        "detectors:\n  tool_loop: {threshold: 1}\n": "detectors.tool_loop.threshold",
        "detectors:\n  tool_loop: {window: 100}\n": "detectors.tool_loop.window",
        "detectors:\n  slow_step: {enabled: yes please}\n": "detectors.slow_step.enabled",
        "detectors:\n  agents:\n    a1:\n      context_bloat: {growth_factor: x}\n": (
            "detectors.agents.a1.context_bloat.growth_factor"
        ),
    }
    for text, path in cases.items():
        config = tmp_path / "bad.yaml"
        config.write_text(text)
        result = subprocess.run(
            [sys.executable, "-m", "dunetrace_sidecar", "validate", "--config", str(config)],
            capture_output=True,
            text=True,
            timeout=60,
            cwd=ROOT,
        )
        assert result.returncode == 2, (text, result.stdout, result.stderr)
        assert path in result.stderr, (text, result.stderr)
    good = tmp_path / "good.yaml"
    good.write_text(
        "detectors:\n  tool_loop: {threshold: 4, window: 6}\n  agents:\n    a1:\n      slow_step: {tool_ms: 500}\n"
    )
    ok = subprocess.run(
        [sys.executable, "-m", "dunetrace_sidecar", "validate", "--config", str(good)],
        capture_output=True,
        text=True,
        timeout=60,
        cwd=ROOT,
    )
    assert ok.returncode == 0, ok.stderr
