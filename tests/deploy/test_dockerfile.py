"""The Dockerfile, checked without a Docker engine: hadolint, its structure, the build context
`.dockerignore` lets through, and the config it bakes in. (test_wheel_smoke.py builds and runs
what the image installs.)"""

from __future__ import annotations

import json
import subprocess
import tomllib
from pathlib import Path
from typing import Any

import yaml

from tests.deploy.buildcontext import (
    BAKED_CONFIG,
    ROOT,
    Stage,
    context_files,
    exec_form,
    expand_args,
    healthcheck,
    ignore_patterns,
    is_excluded,
    parse_copy,
    parse_dockerfile,
)
from tests.deploy.chart import BIN, by_kind, manifests, pod_spec, render, scenario_values, validate_config

PORTS = {4317, 4318, 8002}


def final_stage() -> Stage:
    return parse_dockerfile()[1][-1]


def pyproject() -> dict[str, Any]:
    return tomllib.loads((ROOT / "pyproject.toml").read_text())


def test_hadolint_finds_nothing() -> None:
    result = subprocess.run(
        [str(BIN / "hadolint"), "--format", "json", "Dockerfile"], cwd=ROOT, capture_output=True, text=True, timeout=60
    )
    assert (result.returncode, json.loads(result.stdout)) == (0, []), result.stdout + result.stderr


def test_hadolint_is_not_blind(tmp_path: Path) -> None:
    """The same binary fails a Dockerfile with the usual mistakes: the clean result above means something."""
    bad = tmp_path / "Dockerfile"
    bad.write_text("FROM python:latest\nRUN pip install requests\nUSER root\n")
    result = subprocess.run([str(BIN / "hadolint"), "--format", "json", str(bad)], capture_output=True, text=True)
    assert result.returncode == 1
    assert {finding["code"] for finding in json.loads(result.stdout)} >= {"DL3007", "DL3013", "DL3042", "DL3002"}


def test_two_stages_from_the_same_slim_python() -> None:
    args, stages = parse_dockerfile()
    assert args == {"PYTHON_IMAGE": "python:3.11-slim-bookworm"}
    assert [(s.base, s.name) for s in stages] == [("${PYTHON_IMAGE}", "build"), ("${PYTHON_IMAGE}", None)]
    # The same interpreter at the same path in both: the virtualenv built in one runs in the other.
    assert {expand_args(s.base, args) for s in stages} == {"python:3.11-slim-bookworm"}


def test_final_stage_installs_nothing_and_keeps_no_build_tools() -> None:
    stage = final_stage()
    assert stage.all("RUN") == []  # no package manager, compiler or cache can be left behind by this stage
    copies = [parse_copy(i) for i in stage.all("COPY")]
    assert [(c.from_stage, c.sources, c.destination, c.chown) for c in copies] == [
        ("build", ("/opt/dunetrace",), "/opt/dunetrace", None),
        ("build", ("/var/lib/dunetrace",), "/var/lib/dunetrace", "10001:10001"),
        (None, ("deploy/docker/config.yaml",), "/etc/dunetrace/config.yaml", None),
    ]
    build = parse_dockerfile()[1][0]
    [run] = build.all("RUN")
    # The build stage's pip keeps no cache, and pip itself is removed from the virtualenv that is copied.
    assert "--no-cache-dir" in run.value and "pip uninstall --yes pip setuptools" in run.value
    assert "apt-get" not in run.value  # every dependency is a wheel: no compiler is ever installed


def test_runs_as_a_non_root_numeric_user() -> None:
    user = final_stage().last("USER").value
    assert user == "10001:10001"
    uid, gid = (int(part) for part in user.split(":"))
    assert uid != 0 and gid != 0


def test_copy_sources_exist_and_are_in_the_build_context() -> None:
    patterns = ignore_patterns()
    for stage in parse_dockerfile()[1]:
        for instruction in stage.all("COPY"):
            copy = parse_copy(instruction)
            if copy.from_stage is not None:
                assert copy.from_stage in {s.name for s in parse_dockerfile()[1]}, instruction
                continue
            for source in copy.sources:
                assert (ROOT / source).exists(), f"line {instruction.line}: {source} does not exist"
                assert not is_excluded(source.rstrip("/"), patterns), f"{source} is left out by .dockerignore"


def test_build_stage_copies_every_package_the_wheel_declares() -> None:
    build = parse_dockerfile()[1][0]
    copied = {source.rstrip("/") for i in build.all("COPY") for source in parse_copy(i).sources}
    include = pyproject()["tool"]["setuptools"]["packages"]["find"]["include"]
    top_level = {pattern.rstrip("*").split(".")[0] for pattern in include}
    assert top_level == {"dunetrace_sidecar", "receiver", "detectors", "store", "explain"}
    # README.md is the wheel's long description (pyproject `readme`): the build needs it; setup.py
    # generates the decisions service's messages from proto/ while building.
    assert copied == top_level | {"pyproject.toml", "setup.py", "README.md", "proto"}


def test_dockerignore_keeps_the_context_to_the_sources() -> None:
    files = context_files()
    tops = {f.split("/")[0] for f in files}
    assert tops == {
        "pyproject.toml",
        "setup.py",
        "proto",
        "README.md",
        "dunetrace_sidecar",
        "receiver",
        "detectors",
        "store",
        "explain",
        "deploy",
    }
    assert [f for f in files if f.startswith("deploy/")] == ["deploy/docker/config.yaml"]
    assert not [f for f in files if "__pycache__" in f or f.endswith((".pyc", ".pyo", ".duckdb"))]
    assert "detectors/library/tool_loop.py" in files
    patterns = ignore_patterns()
    for left_out in (".venv/bin/python", ".git/HEAD", "tests/conftest.py", "bench/throughput.py", "data/x.duckdb"):
        assert is_excluded(left_out, patterns), left_out


def test_exposed_ports_match_the_baked_config_and_the_chart() -> None:
    exposed = {int(p) for i in final_stage().all("EXPOSE") for p in i.value.split()}
    assert exposed == PORTS
    baked = yaml.safe_load(BAKED_CONFIG.read_text())
    endpoints = [baked["receiver"]["grpc_endpoint"], baked["receiver"]["http_endpoint"], baked["api"]["endpoint"]]
    assert endpoints == ["0.0.0.0:4317", "0.0.0.0:4318", "0.0.0.0:8002"]
    assert {int(e.rsplit(":", 1)[1]) for e in endpoints} == exposed
    docs = manifests(render(scenario_values("gateway-values.yaml")))
    [service] = by_kind(docs, "Service")
    assert {p["port"] for p in service["spec"]["ports"]} == exposed
    [container] = pod_spec(docs)["containers"]
    assert {p["containerPort"] for p in container["ports"]} == exposed


def test_chart_runs_the_image_user() -> None:
    [container] = pod_spec(manifests(render(scenario_values("gateway-values.yaml"))))["containers"]
    uid, gid = final_stage().last("USER").value.split(":")
    context = container["securityContext"]
    assert (context["runAsUser"], context["runAsGroup"], context["runAsNonRoot"]) == (int(uid), int(gid), True)


def test_entrypoint_is_the_daemon_with_the_baked_config() -> None:
    stage = final_stage()
    assert exec_form(stage.last("ENTRYPOINT").value) == ["/opt/dunetrace/bin/dunetrace-sidecar"]
    assert exec_form(stage.last("CMD").value) == ["--config", "/etc/dunetrace/config.yaml"]


def test_data_lives_on_the_declared_volume() -> None:
    stage = final_stage()
    assert exec_form(stage.last("VOLUME").value) == ["/var/lib/dunetrace"]
    assert stage.last("WORKDIR").value == "/var/lib/dunetrace"
    baked = yaml.safe_load(BAKED_CONFIG.read_text())
    assert baked["store"]["path"] == "/var/lib/dunetrace/dunetrace.duckdb"


def test_healthcheck_is_the_daemons_own_with_the_baked_config() -> None:
    options, command = healthcheck(final_stage().last("HEALTHCHECK").value)
    assert options == {"interval": "30s", "timeout": "5s", "start-period": "30s", "retries": "3"}
    assert command == ["/opt/dunetrace/bin/dunetrace-sidecar", "--config", "/etc/dunetrace/config.yaml", "healthcheck"]
    assert exec_form(final_stage().last("CMD").value) == ["--config", "/etc/dunetrace/config.yaml"]


def test_baked_config_is_valid_and_accepts_the_risk_explicitly() -> None:
    baked = yaml.safe_load(BAKED_CONFIG.read_text())
    assert baked["api"] == {"endpoint": "0.0.0.0:8002", "allow_insecure": True}
    assert "DUNETRACE_API_KEYS" in BAKED_CONFIG.read_text()  # the comment telling operators to set keys
    result = validate_config(BAKED_CONFIG)
    assert (result.returncode, result.stdout.strip()) == (0, f"configuration ok: {BAKED_CONFIG}"), result.stderr


def test_chart_app_version_is_the_package_version() -> None:
    chart = yaml.safe_load((ROOT / "deploy" / "helm" / "dunetrace-sidecar" / "Chart.yaml").read_text())
    assert chart["appVersion"] == pyproject()["project"]["version"] == "0.1.0"
