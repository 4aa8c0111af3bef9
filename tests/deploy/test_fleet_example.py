"""The fleet example (deploy/helm/examples/fleet, docs/scaling.md): an OpenTelemetry Collector whose
loadbalancing exporter routes every trace by its id to one of several gateways, each a release of
this chart with its own DuckDB file. Rendered by the real Helm engine with the chart as its
dependency, validated against the Kubernetes schemas, the collector's config read as the Collector
would read its shape, and each gateway's config by the daemon itself. Offline: no cluster, no
Collector binary."""

from __future__ import annotations

import copy
import re
import subprocess
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
import yaml

from tests.deploy.chart import (
    BIN,
    CHART,
    NAMESPACE,
    RELEASE,
    by_kind,
    daemon_container,
    join_documents,
    kubernetes_validate,
    lint_chart,
    manifests,
    render,
    validate_config,
    with_dependency,
)
from tests.deploy.test_chart import YAMLLINT_CONFIG

FLEET = CHART.parent / "examples" / "fleet"
GATEWAYS = [f"{RELEASE}-gateway-{n}" for n in range(3)]
HEADLESS = f"{RELEASE}-gateways"
COLLECTOR = f"{RELEASE}-collector"
SHARED_SECRET = "dunetrace-fleet"
# What the Secret made with kubectl holds (deploy/helm/README.md): the collector sends the OTLP key.
SECRET_DATA = {
    "DUNETRACE_API_KEYS": "fleet-api-key-0123456789abcdef",
    "DUNETRACE_OTLP_KEYS": "fleet-otlp-key-0123456789",
}
OTLP_GRPC = 4317

Docs = list[dict[str, Any]]


@pytest.fixture(scope="module")
def fleet_chart(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The example with its dependency in charts/, as `helm dependency update` leaves it."""
    return with_dependency(FLEET, tmp_path_factory.mktemp("fleet"))


@pytest.fixture(scope="module")
def rendered(fleet_chart: Path) -> dict[str, str]:
    return render(None, chart=fleet_chart)


@pytest.fixture
def docs(rendered: dict[str, str]) -> Docs:
    return manifests(rendered)  # a fresh copy each time: tests below break it on purpose


def named(docs: Docs, kind: str, name: str) -> dict[str, Any]:
    [found] = [d for d in by_kind(docs, kind) if d["metadata"]["name"] == name]
    return found


def collector_config(docs: Docs) -> dict[str, Any]:
    config = yaml.safe_load(named(docs, "ConfigMap", COLLECTOR)["data"]["collector.yaml"])
    assert isinstance(config, dict)
    return config


def pod_labels(deployment: dict[str, Any]) -> dict[str, str]:
    labels: dict[str, str] = deployment["spec"]["template"]["metadata"]["labels"]
    return labels


def gateway_deployments(docs: Docs) -> Docs:
    return [d for d in by_kind(docs, "Deployment") if d["metadata"]["name"] != COLLECTOR]


def fleet_problems(docs: Docs) -> list[str]:
    """What keeps the rendered fleet from routing each trace to one gateway: [] when nothing does."""
    problems: list[str] = []
    config = collector_config(docs)
    exporters = config.get("exporters", {})
    balancers = [key for key in exporters if key.split("/")[0] in ("loadbalancing", "load_balancing")]
    if len(balancers) != 1:
        return [f"one loadbalancing exporter expected, found {balancers}"]
    [name] = balancers
    balancer = exporters[name]
    if balancer.get("routing_key") != "traceID":
        problems.append(f"routing_key is {balancer.get('routing_key')!r}, not traceID")
    k8s = balancer.get("resolver", {}).get("k8s") or {}
    service_name, _, namespace = str(k8s.get("service", "")).partition(".")
    if (service_name, namespace) != (HEADLESS, NAMESPACE):
        problems.append(f"the resolver watches {k8s.get('service')!r}, not {HEADLESS}.{NAMESPACE}")
    if k8s.get("ports") != [OTLP_GRPC]:
        problems.append(f"the resolver's ports are {k8s.get('ports')!r}, not [{OTLP_GRPC}]")
    # Every pipeline names only declared components, and traces and logs leave through the balancer.
    pipelines = config.get("service", {}).get("pipelines", {})
    for signal in ("traces", "logs"):
        pipeline = pipelines.get(signal) or {}
        if pipeline.get("exporters") != [name]:
            problems.append(f"the {signal} pipeline exports to {pipeline.get('exporters')}, not [{name}]")
    for signal, pipeline in pipelines.items():
        for section in ("receivers", "processors", "exporters"):
            for component in pipeline.get(section, []):
                if component not in (config.get(section) or {}):
                    problems.append(f"{signal} pipeline: {section[:-1]} {component} is not declared")
    for extension in config.get("service", {}).get("extensions", []):
        if extension not in (config.get("extensions") or {}):
            problems.append(f"extension {extension} is not declared")
    # The headless Service the resolver watches: a port 4317 onto the gateways' gRPC receivers, and
    # a selector that takes every gateway's pods and no other.
    services = [d for d in by_kind(docs, "Service") if d["metadata"]["name"] == service_name]
    if not services:
        return [*problems, f"no Service {service_name} is rendered"]
    [service] = services
    if service["spec"].get("clusterIP") != "None":
        problems.append(f"{service_name} is not headless")
    ports = {p["port"]: p.get("targetPort") for p in service["spec"].get("ports", [])}
    if ports.get(OTLP_GRPC) != "otlp-grpc":
        problems.append(f"{service_name} does not forward {OTLP_GRPC} to the gateways' otlp-grpc port: {ports}")
    selector = service["spec"].get("selector", {}).items()
    gateways = gateway_deployments(docs)
    for deployment in gateways:
        if not selector <= pod_labels(deployment).items():
            problems.append(f"{service_name} does not select {deployment['metadata']['name']}'s pods")
        container = daemon_container(deployment["spec"]["template"]["spec"])
        if {"name": "otlp-grpc", "containerPort": OTLP_GRPC, "protocol": "TCP"} not in container["ports"]:
            problems.append(f"{deployment['metadata']['name']} does not receive OTLP/gRPC on {OTLP_GRPC}")
    if selector <= pod_labels(named(docs, "Deployment", COLLECTOR)).items():
        problems.append(f"{service_name} selects the collector's own pods")
    if not gateways:
        problems.append("no gateway is rendered")
    return problems


# --- the example as rendered ---------------------------------------------------------------------


def test_example_lints_clean(fleet_chart: Path) -> None:
    report = lint_chart(None, chart=fleet_chart)
    assert report["errors"] == [] and [m for m in report["messages"] if m["severity"] >= 2] == []


def test_what_the_example_renders(docs: Docs) -> None:
    per_gateway = [("ConfigMap", ""), ("Deployment", ""), ("PersistentVolumeClaim", "-data"), ("Service", "")]
    collector = ("ConfigMap", "Deployment", "Role", "RoleBinding", "Service", "ServiceAccount")
    assert sorted((d["kind"], d["metadata"]["name"]) for d in docs) == sorted(
        [(kind, gateway + suffix) for gateway in GATEWAYS for kind, suffix in per_gateway]
        + [(kind, COLLECTOR) for kind in collector]
        + [("Service", HEADLESS)]
    )
    assert by_kind(docs, "Secret") == []  # the gateways and the collector share a Secret made with kubectl


def test_the_collector_routes_every_trace_to_one_gateway(docs: Docs) -> None:
    assert fleet_problems(docs) == []
    balancer = collector_config(docs)["exporters"]["loadbalancing"]
    assert balancer["routing_key"] == "traceID"
    assert balancer["resolver"] == {"k8s": {"service": f"{HEADLESS}.{NAMESPACE}", "ports": [OTLP_GRPC]}}
    headless = named(docs, "Service", HEADLESS)
    assert headless["spec"]["clusterIP"] == "None"
    assert headless["spec"]["ports"] == [
        {"name": "otlp-grpc", "port": OTLP_GRPC, "targetPort": "otlp-grpc", "protocol": "TCP", "appProtocol": "grpc"}
    ]


def test_an_export_is_answered_after_the_gateways_commit(docs: Docs) -> None:
    """No queue in the collector: its answer to the agent waits for the gateways' (which commit
    first), and the gateways' backpressure reaches the agent."""
    balancer = collector_config(docs)["exporters"]["loadbalancing"]
    assert balancer["sending_queue"] == {"enabled": False}
    assert balancer["protocol"]["otlp"]["sending_queue"] == {"enabled": False}
    assert balancer["retry_on_failure"]["enabled"] is True
    assert balancer["protocol"]["otlp"]["retry_on_failure"] == {"enabled": False}


def test_the_collector_sends_the_gateways_otlp_key(docs: Docs) -> None:
    collector = named(docs, "Deployment", COLLECTOR)
    [container] = collector["spec"]["template"]["spec"]["containers"]
    headers = collector_config(docs)["exporters"]["loadbalancing"]["protocol"]["otlp"]["headers"]
    assert headers == {"authorization": "Bearer ${env:DUNETRACE_OTLP_KEY}"}
    assert container["env"] == [
        {
            "name": "DUNETRACE_OTLP_KEY",
            "valueFrom": {"secretKeyRef": {"name": SHARED_SECRET, "key": "DUNETRACE_OTLP_KEYS"}},
        }
    ]
    for deployment in gateway_deployments(docs):
        env = daemon_container(deployment["spec"]["template"]["spec"])["env"]
        refs = {v["name"]: v["valueFrom"]["secretKeyRef"] for v in env}
        assert refs["DUNETRACE_OTLP_KEYS"] == {"name": SHARED_SECRET, "key": "DUNETRACE_OTLP_KEYS", "optional": True}


def test_the_collector_runs_the_config_it_is_given(docs: Docs) -> None:
    spec = named(docs, "Deployment", COLLECTOR)["spec"]["template"]["spec"]
    [container] = spec["containers"]
    assert container["args"] == ["--config=/etc/otelcol/collector.yaml"]
    assert container["volumeMounts"] == [{"name": "config", "mountPath": "/etc/otelcol", "readOnly": True}]
    assert spec["volumes"] == [{"name": "config", "configMap": {"name": COLLECTOR}}]
    assert "collector.yaml" in named(docs, "ConfigMap", COLLECTOR)["data"]
    config = collector_config(docs)
    assert config["receivers"]["otlp"]["protocols"] == {
        "grpc": {"endpoint": "0.0.0.0:4317"},
        "http": {"endpoint": "0.0.0.0:4318"},
    }
    ports = {p["name"]: p["containerPort"] for p in container["ports"]}
    assert ports == {"otlp-grpc": 4317, "otlp-http": 4318, "health": 13133}
    assert config["extensions"]["health_check"] == {"endpoint": "0.0.0.0:13133"}
    assert container["readinessProbe"]["httpGet"] == {"path": "/", "port": "health"}
    service = named(docs, "Service", COLLECTOR)
    assert service["spec"]["selector"].items() <= pod_labels(named(docs, "Deployment", COLLECTOR)).items()
    service_ports = [(p["port"], p["targetPort"]) for p in service["spec"]["ports"]]
    assert service_ports == [(4317, "otlp-grpc"), (4318, "otlp-http")]


def test_the_resolver_may_watch_the_gateways(docs: Docs) -> None:
    """The k8s resolver reads the Service's EndpointSlices (Endpoints in older Collectors) with the
    collector's own ServiceAccount."""
    spec = named(docs, "Deployment", COLLECTOR)["spec"]["template"]["spec"]
    assert spec["serviceAccountName"] == COLLECTOR and "automountServiceAccountToken" not in spec
    binding = named(docs, "RoleBinding", COLLECTOR)
    assert binding["roleRef"] == {"apiGroup": "rbac.authorization.k8s.io", "kind": "Role", "name": COLLECTOR}
    assert binding["subjects"] == [{"kind": "ServiceAccount", "name": COLLECTOR, "namespace": NAMESPACE}]
    watch = ["get", "list", "watch"]
    assert named(docs, "Role", COLLECTOR)["rules"] == [
        {"apiGroups": ["discovery.k8s.io"], "resources": ["endpointslices"], "verbs": watch},
        {"apiGroups": [""], "resources": ["endpoints"], "verbs": watch},
    ]


def test_each_gateway_is_one_writer_with_its_own_store(docs: Docs) -> None:
    claims = set()
    for name in GATEWAYS:
        deployment = named(docs, "Deployment", name)
        assert deployment["spec"]["replicas"] == 1 and deployment["spec"]["strategy"] == {"type": "Recreate"}
        volumes = {v["name"]: v for v in deployment["spec"]["template"]["spec"]["volumes"]}
        claims.add(volumes["dunetrace-data"]["persistentVolumeClaim"]["claimName"])
        assert named(docs, "PersistentVolumeClaim", f"{name}-data")["spec"]["accessModes"] == ["ReadWriteOnce"]
        config = yaml.safe_load(named(docs, "ConfigMap", name)["data"]["config.yaml"])
        assert config["receiver"] == {"grpc_endpoint": "0.0.0.0:4317", "http_endpoint": "0.0.0.0:4318"}
        assert config["store"]["path"] == "/var/lib/dunetrace/dunetrace.duckdb"
    assert claims == {f"{name}-data" for name in GATEWAYS}  # no two gateways share a file


@pytest.mark.parametrize("name", GATEWAYS)
def test_gateway_config_is_accepted_by_the_daemon(docs: Docs, name: str, tmp_path: Path) -> None:
    path = tmp_path / "config.yaml"
    path.write_text(named(docs, "ConfigMap", name)["data"]["config.yaml"])
    result = validate_config(path, SECRET_DATA)
    assert (result.returncode, result.stdout.strip()) == (0, f"configuration ok: {path}"), result.stderr


def test_rendered_manifests_pass_kubernetes_strict_validation(rendered: dict[str, str], tmp_path: Path) -> None:
    path = tmp_path / "fleet.yaml"
    path.write_text(join_documents(rendered))
    result = kubernetes_validate(path)
    assert result.returncode == 0, result.stdout + result.stderr
    checked = re.findall(r"^INFO \S+ passed for resource (\S+) against version 1\.30$", result.stdout, re.M)
    assert len(checked) == len(manifests(rendered)) == 19


def test_yamllint_sources_and_rendered_output(rendered: dict[str, str], tmp_path: Path) -> None:
    out = tmp_path / "fleet.yaml"
    out.write_text(join_documents(rendered))
    collector = tmp_path / "collector.yaml"
    collector.write_text(named(manifests(rendered), "ConfigMap", COLLECTOR)["data"]["collector.yaml"])
    sources = [FLEET / "Chart.yaml", FLEET / "values.yaml", out, collector]
    result = subprocess.run(
        [str(BIN / "yamllint"), "-f", "parsable", "-d", YAMLLINT_CONFIG, *map(str, sources)],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert (result.returncode, result.stdout) == (0, ""), result.stdout + result.stderr


# --- the checks above can fail ------------------------------------------------------------------


def _set_collector_config(docs: Docs, change: Callable[[dict[str, Any]], None]) -> None:
    configmap = named(docs, "ConfigMap", COLLECTOR)
    config = yaml.safe_load(configmap["data"]["collector.yaml"])
    change(config)
    configmap["data"]["collector.yaml"] = yaml.safe_dump(config)


def _balancer(config: dict[str, Any]) -> dict[str, Any]:
    balancer: dict[str, Any] = config["exporters"]["loadbalancing"]
    return balancer


BREAKAGES: dict[str, tuple[Callable[[Docs], None], str]] = {
    "routing by service": (
        lambda docs: _set_collector_config(docs, lambda c: _balancer(c).update(routing_key="service")),
        "routing_key is 'service', not traceID",
    ),
    "no routing key": (
        lambda docs: _set_collector_config(docs, lambda c: _balancer(c).pop("routing_key")),
        "routing_key is None, not traceID",
    ),
    "the HTTP port": (
        lambda docs: _set_collector_config(docs, lambda c: _balancer(c)["resolver"]["k8s"].update(ports=[4318])),
        "the resolver's ports are [4318], not [4317]",
    ),
    "a gateway's own Service": (
        lambda docs: _set_collector_config(
            docs, lambda c: _balancer(c)["resolver"]["k8s"].update(service=f"{GATEWAYS[0]}.{NAMESPACE}")
        ),
        f"the resolver watches '{GATEWAYS[0]}.{NAMESPACE}', not {HEADLESS}.{NAMESPACE}",
    ),
    "logs sent elsewhere": (
        lambda docs: _set_collector_config(
            docs, lambda c: c["service"]["pipelines"]["logs"].update(exporters=["otlp/elsewhere"])
        ),
        "the logs pipeline exports to ['otlp/elsewhere'], not [loadbalancing]",
    ),
    "an undeclared processor": (
        lambda docs: _set_collector_config(
            docs, lambda c: c["service"]["pipelines"]["traces"].update(processors=["batch"])
        ),
        "traces pipeline: processor batch is not declared",
    ),
    "a ClusterIP Service": (
        lambda docs: named(docs, "Service", HEADLESS)["spec"].update(clusterIP="10.0.0.1"),
        f"{HEADLESS} is not headless",
    ),
    "a selector naming one gateway": (
        lambda docs: named(docs, "Service", HEADLESS)["spec"]["selector"].update(
            {"app.kubernetes.io/name": "gateway-0"}
        ),
        f"{HEADLESS} does not select {GATEWAYS[1]}'s pods",
    ),
    "a selector taking the collector too": (
        lambda docs: named(docs, "Service", HEADLESS)["spec"].update(selector={"app.kubernetes.io/instance": RELEASE}),
        f"{HEADLESS} selects the collector's own pods",
    ),
    "the Service onto the HTTP port": (
        lambda docs: named(docs, "Service", HEADLESS)["spec"]["ports"][0].update(targetPort="otlp-http"),
        f"{HEADLESS} does not forward 4317 to the gateways' otlp-grpc port",
    ),
}


@pytest.mark.parametrize("breakage", sorted(BREAKAGES))
def test_fleet_problems_catches(docs: Docs, breakage: str) -> None:
    broken = copy.deepcopy(docs)
    change, expected = BREAKAGES[breakage]
    change(broken)
    problems = fleet_problems(broken)
    assert any(p.startswith(expected) for p in problems), problems
    assert fleet_problems(docs) == []  # the unbroken copy still passes


def test_kubernetes_validate_strict_rejects_a_broken_collector(docs: Docs, tmp_path: Path) -> None:
    collector = copy.deepcopy(named(docs, "Deployment", COLLECTOR))
    collector["spec"]["template"]["spec"]["containers"][0]["env"][0]["valueFrom"]["secretKeyRef"]["keyy"] = "x"
    path = tmp_path / "typo.yaml"
    path.write_text(yaml.safe_dump(collector))
    result = kubernetes_validate(path)
    assert result.returncode == 1 and "keyy" in result.stdout + result.stderr
