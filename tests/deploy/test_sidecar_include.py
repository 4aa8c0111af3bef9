"""Sidecar mode from an application's own chart: the example chart in deploy/helm/examples, with
this chart as its dependency, includes the named templates; rendered by the real Helm engine,
validated against the Kubernetes schemas, and kept identical to the README's copy-paste example."""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

import pytest
import yaml

from tests.deploy.chart import (
    CHART,
    EXAMPLE_APP,
    RELEASE,
    config_of,
    daemon_container,
    join_documents,
    kubernetes_validate,
    lint_chart,
    manifests,
    one,
    pod_environment,
    pod_spec,
    render,
    scenario_values,
    validate_config,
    with_dependency,
)

README = CHART.parent / "README.md"
FULLNAME = f"{RELEASE}-dunetrace-sidecar"


@pytest.fixture(scope="module")
def app_chart(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The example chart with its dependency in charts/, as `helm dependency update` leaves it."""
    return with_dependency(EXAMPLE_APP, tmp_path_factory.mktemp("app"))


def render_app(app_chart: Path, values: dict[str, Any] | None = None) -> dict[str, str]:
    return render(values, chart=app_chart)


def test_example_chart_lints_clean(app_chart: Path) -> None:
    report = lint_chart(None, chart=app_chart)
    assert report["errors"] == [] and [m for m in report["messages"] if m["severity"] >= 2] == []


def test_agent_and_daemon_share_the_pod(app_chart: Path) -> None:
    docs = manifests(render_app(app_chart))
    assert sorted((d["kind"], d["metadata"]["name"]) for d in docs) == [
        ("ConfigMap", FULLNAME),
        ("Deployment", f"{RELEASE}-support-agent"),
        ("Secret", FULLNAME),
    ]
    spec = pod_spec(docs)
    assert "initContainers" not in spec
    assert [c["name"] for c in spec["containers"]] == ["agent", "dunetrace-sidecar"]
    assert spec["containers"][0]["env"][0] == {"name": "OTEL_EXPORTER_OTLP_ENDPOINT", "value": "http://localhost:4317"}
    assert spec["volumes"] == [
        {"name": "dunetrace-config", "configMap": {"name": FULLNAME}},
        {"name": "dunetrace-data", "emptyDir": {"sizeLimit": "1Gi"}},
        {"name": "dunetrace-tmp", "emptyDir": {"sizeLimit": "64Mi"}},
    ]
    annotations = one(docs, "Deployment")["spec"]["template"]["metadata"]["annotations"]
    assert sorted(annotations) == ["checksum/dunetrace-config", "checksum/dunetrace-secret"]
    daemon = daemon_container(spec)
    assert daemon["image"] == "registry.example.com/dunetrace-sidecar:0.1.0"
    # The included container is the one the chart renders for its own example workload.
    own = daemon_container(pod_spec(manifests(render(scenario_values("sidecar-values.yaml")))))
    assert {**daemon, "image": own["image"]} == own
    assert config_of(docs)["detectors"] == {"tool_loop": {"threshold": 4}}


def test_native_sidecar_moves_to_init_containers(app_chart: Path) -> None:
    spec = pod_spec(manifests(render_app(app_chart, {"dunetrace-sidecar": {"sidecar": {"native": True}}})))
    assert [(c["name"], c.get("restartPolicy")) for c in spec["initContainers"]] == [("dunetrace-sidecar", "Always")]
    assert [c["name"] for c in spec["containers"]] == ["agent"]


def test_subchart_values_are_checked_by_its_schema(app_chart: Path) -> None:
    from helm_python.errors import HelmValuesError

    with pytest.raises(HelmValuesError) as raised:
        render_app(app_chart, {"dunetrace-sidecar": {"mode": "daemonset"}})
    assert "- at '/mode': value must be one of 'sidecar', 'gateway'" in str(raised.value)


def test_example_manifests_pass_kubernetes_strict_validation(app_chart: Path, tmp_path: Path) -> None:
    paths = []
    for name, values in (("plain", None), ("native", {"dunetrace-sidecar": {"sidecar": {"native": True}}})):
        path = tmp_path / f"{name}.yaml"
        path.write_text(join_documents(render_app(app_chart, values)))
        paths.append(path)
    result = kubernetes_validate(*paths)
    assert result.returncode == 0, result.stdout + result.stderr
    assert len(re.findall(r"^INFO .* passed for resource", result.stdout, re.M)) == 6


def test_example_config_is_accepted_by_the_daemon(app_chart: Path, tmp_path: Path) -> None:
    docs = manifests(render_app(app_chart))
    path = tmp_path / "config.yaml"
    path.write_text(one(docs, "ConfigMap")["data"]["config.yaml"])
    env = pod_environment(docs)
    assert list(env) == ["DUNETRACE_API_KEYS"]
    result = validate_config(path, env)
    assert (result.returncode, result.stdout.strip()) == (0, f"configuration ok: {path}"), result.stderr


def readme_blocks(language: str) -> list[str]:
    return re.findall(rf"^```{language}\n(.*?)^```$", README.read_text(), re.M | re.S)


def test_readme_carries_the_tested_example() -> None:
    template = (EXAMPLE_APP / "templates" / "deployment.yaml").read_text()
    assert template in readme_blocks("yaml")
    chart = yaml.safe_load((EXAMPLE_APP / "Chart.yaml").read_text())
    values = yaml.safe_load((EXAMPLE_APP / "values.yaml").read_text())
    parsed = [yaml.safe_load(block) for block in readme_blocks("yaml") if "{{" not in block]
    assert {"dependencies": chart["dependencies"]} in parsed
    assert {"dunetrace-sidecar": values["dunetrace-sidecar"]} in parsed
