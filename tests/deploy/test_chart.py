"""The Helm chart: linted and rendered by a real Helm engine for every ci/*-values.yaml scenario,
each manifest validated against the Kubernetes schemas, the values schema's refusals, the
rendered config accepted by the daemon, and what each scenario must render."""

from __future__ import annotations

import json
import re
import shutil
import subprocess
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import jsonschema
import pytest
import yaml
from helm_python.errors import HelmRenderError, HelmValuesError

from dunetrace_sidecar.config import Config, load
from dunetrace_sidecar.daemon import GRACE_SECONDS
from dunetrace_sidecar.translation import MAX_AUTO_PROCESSES
from tests.deploy.buildcontext import ROOT
from tests.deploy.chart import (
    BIN,
    CHART,
    CI,
    EXAMPLE_APP,
    RELEASE,
    SECRET_VARIABLES,
    all_containers,
    by_kind,
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
    scenarios,
    secret_data,
    validate_config,
)
from tests.tls_pki import make_pki

FULLNAME = f"{RELEASE}-dunetrace-sidecar"
TLS_DIR = "/etc/dunetrace-tls"
SCENARIOS = [
    "existing-secret-values.yaml",
    "gateway-values.yaml",
    "persistence-values.yaml",
    "secrets-values.yaml",
    "servicemonitor-values.yaml",
    "sidecar-native-values.yaml",
    "sidecar-values.yaml",
    "tls-values.yaml",
]
# What the Secret made outside the chart holds in the existing-secret scenario (as documented).
EXISTING_SECRET = {"DUNETRACE_API_KEYS": "key-from-the-existing-secret-0001"}
SECRETS_SCENARIO = {
    "DUNETRACE_API_KEYS": "first-api-key-0123456789,second-api-key-0123456789",
    "DUNETRACE_OTLP_KEYS": "first-otlp-key-0123456789",
    "DUNETRACE_HASH_KEY": "hash-key-for-hmac-content-hashes",
    "DUNETRACE_POLICY_SECRET": "policy-signing-secret-0123",
    "LANGFUSE_PUBLIC_KEY": "pk-lf-0000-public",
    "LANGFUSE_SECRET_KEY": "sk-lf-0000-secret",
    "ANTHROPIC_API_KEY": "sk-ant-test-key",
    "OPENAI_API_KEY": "sk-openai-test-key",
    "SLACK_WEBHOOK_URL": "https://hooks.slack.com/services/T000/B000/XXXXXXXX",
    "WEBHOOK_URL": "https://alerts.example.com/dunetrace",
    "WEBHOOK_SECRET": "whsec_c2VjcmV0LXNpZ25pbmcta2V5",
}
YAMLLINT_CONFIG = (
    "{extends: default, rules: {line-length: {max: 120}, document-start: disable, "
    "indentation: {spaces: 2, indent-sequences: whatever}, truthy: {check-keys: false}}}"
)


@pytest.fixture(scope="module")
def tls_secret(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """What the kubernetes.io/tls Secret of the tls scenario holds, as the pod sees it mounted."""
    pki = make_pki(tmp_path_factory.mktemp("pki"))
    mounted = tmp_path_factory.mktemp("dunetrace-tls")
    for name, source in (("tls.crt", pki.server.cert), ("tls.key", pki.server.key), ("ca.crt", pki.ca)):
        (mounted / name).write_bytes(source.read_bytes())
    return mounted


def with_tls_files(config_text: str, mounted: Path) -> str:
    """The rendered config with the Secret's mount point replaced by a directory holding its files."""
    return config_text.replace(f"{TLS_DIR}/", f"{mounted}/")


@pytest.fixture(scope="module")
def rendered() -> dict[str, dict[str, str]]:
    return {name: render(scenario_values(name)) for name in scenarios()}


def docs_of(rendered: dict[str, dict[str, str]], name: str) -> list[dict[str, Any]]:
    return manifests(rendered[name])


def kinds(docs: list[dict[str, Any]]) -> list[tuple[str, str]]:
    return sorted((d["kind"], d["metadata"]["name"]) for d in docs)


# --- every scenario: lint, render, Kubernetes schemas, the daemon's own validation -------------


def test_every_scenario_is_covered() -> None:
    assert scenarios() == SCENARIOS


@pytest.mark.parametrize("name", [None, *SCENARIOS])
def test_helm_lint_strict(name: str | None) -> None:
    report = lint_chart(scenario_values(name) if name else None)
    assert report["errors"] == []
    # Severity 1 is INFO ("icon is recommended"); warnings (2) and errors (3) fail.
    assert [m for m in report["messages"] if m["severity"] >= 2] == []


def test_helm_lint_reports_template_errors(tmp_path: Path) -> None:
    """The lint engine is not blind: a broken copy of the chart fails it."""
    broken = tmp_path / "dunetrace-sidecar"
    shutil.copytree(CHART, broken)
    (broken / "templates" / "broken.yaml").write_text("{{ nosuchfunc . }}\n")
    report = lint_chart(None, chart=broken)
    assert any(m["severity"] == 3 and 'function "nosuchfunc" not defined' in m["error"] for m in report["messages"])


def test_rendered_manifests_pass_kubernetes_strict_validation(
    rendered: dict[str, dict[str, str]], tmp_path: Path
) -> None:
    paths = []
    for name in SCENARIOS:
        path = tmp_path / name
        path.write_text(join_documents(rendered[name]))
        paths.append(path)
    default = tmp_path / "default-values.yaml"
    default.write_text(join_documents(render()))
    result = kubernetes_validate(default, *paths)
    assert result.returncode == 0, result.stdout + result.stderr
    checked = re.findall(r"^INFO (\S+) passed for resource (\S+) against version 1\.30$", result.stdout, re.M)
    assert len(checked) == sum(len(docs_of(rendered, n)) for n in SCENARIOS) + len(manifests(render())) - 1
    # The one kind without a Kubernetes schema is the CRD, which only warns.
    warnings = [line for line in result.stdout.splitlines() if line.startswith("WARN")]
    assert warnings == [
        f"WARN {tmp_path / 'servicemonitor-values.yaml'} Couldn't find schema for kind ServiceMonitor with "
        "api version monitoring.coreos.com/v1 for kubernetes version 1.30"
    ]


def test_kubernetes_validate_strict_rejects_an_unknown_field(
    rendered: dict[str, dict[str, str]], tmp_path: Path
) -> None:
    deployment = one(docs_of(rendered, "gateway-values.yaml"), "Deployment")
    deployment["spec"]["template"]["spec"]["containers"][0]["securityContxt"] = {}
    path = tmp_path / "typo.yaml"
    path.write_text(yaml.safe_dump(deployment))
    result = kubernetes_validate(path)
    assert result.returncode == 1 and "securityContxt" in result.stdout + result.stderr


@pytest.mark.parametrize("name", SCENARIOS)
def test_rendered_config_is_accepted_by_the_daemon(
    rendered: dict[str, dict[str, str]], name: str, tmp_path: Path, tls_secret: Path
) -> None:
    docs = docs_of(rendered, name)
    path = tmp_path / "config.yaml"
    path.write_text(with_tls_files(one(docs, "ConfigMap")["data"]["config.yaml"], tls_secret))
    env = pod_environment(docs, EXISTING_SECRET if name == "existing-secret-values.yaml" else None)
    result = validate_config(path, env)
    assert (result.returncode, result.stdout.strip()) == (0, f"configuration ok: {path}"), result.stderr


def test_the_api_key_is_what_makes_the_config_valid(rendered: dict[str, dict[str, str]], tmp_path: Path) -> None:
    """Without keys in its environment the daemon refuses the chart's config (the API listens beyond
    loopback): the Secret is part of the configuration, and the existing Secret must hold keys."""
    path = tmp_path / "config.yaml"
    path.write_text(one(docs_of(rendered, "existing-secret-values.yaml"), "ConfigMap")["data"]["config.yaml"])
    result = validate_config(path)
    assert result.returncode == 2
    assert "api.endpoint: the API listens on 0.0.0.0:8002, which is not loopback" in result.stderr


def test_yamllint_sources_and_rendered_output(rendered: dict[str, dict[str, str]], tmp_path: Path) -> None:
    # templates/ holds Go templates, not YAML: it is checked through its rendered output instead.
    sources = [CHART / "Chart.yaml", CHART / "values.yaml", *sorted(CI.glob("*.yaml"))]
    sources += [EXAMPLE_APP / "Chart.yaml", EXAMPLE_APP / "values.yaml", ROOT / "deploy" / "docker" / "config.yaml"]
    outputs = []
    for name in SCENARIOS:
        out = tmp_path / name
        out.write_text(join_documents(rendered[name]))
        outputs.append(out)
    result = subprocess.run(
        [str(BIN / "yamllint"), "-f", "parsable", "-d", YAMLLINT_CONFIG, *map(str, sources + outputs)],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert (result.returncode, result.stdout) == (0, ""), result.stdout + result.stderr


# --- values.yaml and values.schema.json ---------------------------------------------------------


def schema() -> dict[str, Any]:
    loaded: dict[str, Any] = json.loads((CHART / "values.schema.json").read_text())
    return loaded


def open_objects(node: dict[str, Any], path: str = "") -> Iterator[tuple[str, Any]]:
    """(path, additionalProperties) of every object schema that is not closed."""
    if node.get("type") == "object" and node.get("additionalProperties") is not False:
        yield path, node.get("additionalProperties")
    for key, child in node.get("properties", {}).items():
        yield from open_objects(child, f"{path}.{key}" if path else key)
    if isinstance(node.get("items"), dict):
        yield from open_objects(node["items"], f"{path}[]")


def test_schema_closes_every_object_but_the_config_and_string_maps() -> None:
    jsonschema.Draft7Validator.check_schema(schema())
    assert schema()["additionalProperties"] is False
    assert dict(open_objects(schema())) == {
        "config": None,  # the daemon's own config: `dunetrace-sidecar validate` checks it, unknown keys included
        "global": None,  # Helm hands a subchart the parent's globals
        "service.annotations": {"type": "string"},
        "metrics.serviceMonitor.labels": {"type": "string"},
        "podAnnotations": {"type": "string"},
        "podLabels": {"type": "string"},
        "nodeSelector": {"type": "string"},
    }


def value_paths(values: Any, path: str = "") -> Iterator[str]:
    if isinstance(values, dict):
        for key, child in values.items():
            child_path = f"{path}.{key}" if path else key
            yield child_path
            if child_path != "config":
                yield from value_paths(child, child_path)


def schema_paths(node: dict[str, Any], path: str = "") -> Iterator[str]:
    for key, child in node.get("properties", {}).items():
        child_path = f"{path}.{key}" if path else key
        yield child_path
        yield from schema_paths(child, child_path)


def test_schema_describes_exactly_the_values() -> None:
    values = yaml.safe_load((CHART / "values.yaml").read_text())
    jsonschema.Draft7Validator(schema()).validate(values)
    # The schema also takes the resource names values.yaml leaves out (its comments name them).
    optional = {
        f"{prefix}.{kind}.{name}"
        for prefix in ("resources", "exampleAgent.resources")
        for kind, name in (("limits", "cpu"), ("limits", "ephemeral-storage"), ("requests", "ephemeral-storage"))
    }
    assert set(value_paths(values)) == set(schema_paths(schema())) - {"global"} - optional


def test_every_values_key_is_commented() -> None:
    lines = (CHART / "values.yaml").read_text().splitlines()
    uncommented = []
    for number, line in enumerate(lines):
        key = re.match(r"^(\s*)([A-Za-z_][\w.-]*):", line)
        if not key or "#" in line:
            continue
        above = lines[number - 1] if number else ""
        if not re.match(rf"^{key.group(1)}#", above):
            uncommented.append(f"{number + 1}: {line.strip()}")
    assert uncommented == []


@pytest.mark.parametrize(
    ("values", "message"),
    [
        ({"replicas": 3}, "- at '': additional properties 'replicas' not allowed"),
        ({"image": {"tga": "1.0"}}, "- at '/image': additional properties 'tga' not allowed"),
        (
            {"metrics": {"serviceMonitor": {"enable": True}}},
            "- at '/metrics/serviceMonitor': additional properties 'enable' not allowed",
        ),
        ({"persistence": {"enabled": "yes"}}, "- at '/persistence/enabled': got string, want boolean"),
        ({"terminationGracePeriodSeconds": "30s"}, "- at '/terminationGracePeriodSeconds': got string, want integer"),
        ({"mode": "daemonset"}, "- at '/mode': value must be one of 'sidecar', 'gateway'"),
        ({"config": "receiver: {}"}, "- at '/config': got string, want object"),
        ({"secrets": {"apiKeys": ["too-short"]}}, "- at '/secrets/apiKeys/0': minLength: got 9, want 16"),
        ({"secrets": {"otlpKeys": ["too-short"]}}, "- at '/secrets/otlpKeys/0': minLength: got 9, want 16"),
        ({"tls": {"clientauth": True}}, "- at '/tls': additional properties 'clientauth' not allowed"),
        ({"securityContext": {"runAsUser": 0}}, "- at '/securityContext/runAsUser': minimum: got 0, want 1"),
    ],
)
def test_schema_rejects_bad_values(values: dict[str, Any], message: str) -> None:
    with pytest.raises(HelmValuesError) as raised:
        render(values)
    assert str(raised.value).splitlines()[2:] == [message]


def test_config_is_left_to_the_daemon(tmp_path: Path) -> None:
    """Any keys pass the chart's schema under `config`; the daemon rejects the unknown ones, naming them."""
    docs = manifests(render({"mode": "gateway", "config": {"receiver": {"max_queue": 5}}}))
    path = tmp_path / "config.yaml"
    path.write_text(one(docs, "ConfigMap")["data"]["config.yaml"])
    result = validate_config(path, pod_environment(docs))
    assert result.returncode == 2
    assert "receiver.max_queue: unknown setting" in result.stderr


@pytest.mark.parametrize(
    ("values", "message"),
    [
        (
            {"config": {"api": {"keys": ["a-key-in-the-configmap-0000"]}}},
            "config.api.keys is a secret: set secrets.apiKeys instead "
            "(or DUNETRACE_API_KEYS in secrets.existingSecret)",
        ),
        (
            {"config": {"langfuse": {"secret_key": "sk"}}},
            "config.langfuse.secret_key is a secret: set secrets.langfuseSecretKey instead",
        ),
        (
            {"secrets": {"existingSecret": "creds", "openaiApiKey": "sk"}},
            "secrets.openaiApiKey: leave it empty when secrets.existingSecret is set",
        ),
        (
            {"config": {"store": {"path": "/data/dunetrace.duckdb"}}},
            'config.store.path must be a file under /var/lib/dunetrace/ (the data volume) or :memory:, got "/data/',
        ),
        (
            {"config": {"receiver": {"grpc_endpoint": "0.0.0.0:0"}}},
            "config.receiver.grpc_endpoint must be host:port with a fixed port (the container and Service ports "
            'follow it), got "0.0.0.0:0"',
        ),
        (
            {"config": {"api": {"endpoint": "127.0.0.1:8002"}}},
            "config.api.endpoint must listen beyond loopback (e.g. 0.0.0.0:8002)",
        ),
        ({"metrics": {"serviceMonitor": {"enabled": True}}}, "metrics.serviceMonitor.enabled needs mode: gateway"),
        ({"mode": "gateway", "exampleAgent": {"enabled": True}}, "exampleAgent.enabled needs mode: sidecar"),
        ({"exampleAgent": {"enabled": True}}, "exampleAgent.image.repository and exampleAgent.image.tag are required"),
        (
            {"config": {"receiver": {"keys": ["an-otlp-key-in-the-configmap"]}}},
            "config.receiver.keys is a secret: set secrets.otlpKeys instead",
        ),
        ({"tls": {"clientAuth": True}}, "tls.receiver, tls.api and tls.clientAuth take effect with tls.existingSecret"),
        (
            {"mode": "gateway", "tls": {"existingSecret": "t", "receiver": False, "clientAuth": True}},
            "tls.clientAuth needs tls.receiver",
        ),
        (
            {
                "tls": {"existingSecret": "t"},
                "exampleAgent": {"enabled": True, "image": {"repository": "r", "tag": "1"}},
            },
            "exampleAgent.enabled exports in plain text to localhost: set tls.receiver: false",
        ),
    ],
)
def test_render_refuses_what_the_daemon_or_the_chart_cannot_honour(values: dict[str, Any], message: str) -> None:
    with pytest.raises(HelmRenderError) as raised:
        render(values)
    assert message in str(raised.value)


# --- what each scenario renders -----------------------------------------------------------------


def test_default_values_render_the_config_and_a_generated_key_for_your_own_pods() -> None:
    docs = manifests(render())
    assert kinds(docs) == [("ConfigMap", FULLNAME), ("Secret", FULLNAME)]
    assert config_of(docs) == {
        "receiver": {"grpc_endpoint": "127.0.0.1:4317", "http_endpoint": "127.0.0.1:4318"},
        "api": {"endpoint": "0.0.0.0:8002"},
        "store": {"path": "/var/lib/dunetrace/dunetrace.duckdb"},
        "log_level": "info",
    }
    [key] = secret_data(docs).values()
    assert list(secret_data(docs)) == ["DUNETRACE_API_KEYS"] and re.fullmatch(r"[A-Za-z0-9]{40}", key)


def test_sidecar_example_runs_the_agent_and_the_daemon_in_one_pod(rendered: dict[str, dict[str, str]]) -> None:
    docs = docs_of(rendered, "sidecar-values.yaml")
    assert kinds(docs) == [
        ("ConfigMap", FULLNAME),
        ("Deployment", f"{FULLNAME}-example-agent"),
        ("Secret", FULLNAME),
    ]
    spec = pod_spec(docs)
    assert "initContainers" not in spec
    assert [c["name"] for c in spec["containers"]] == ["agent", "dunetrace-sidecar"]
    agent = spec["containers"][0]
    assert agent["image"] == "registry.example.com/support-agent:1.4.2"
    assert agent["env"] == [
        {"name": "OTEL_EXPORTER_OTLP_ENDPOINT", "value": "http://localhost:4317"},
        {"name": "OTEL_EXPORTER_OTLP_PROTOCOL", "value": "grpc"},
        {"name": "OTEL_SERVICE_NAME", "value": "support-agent"},
        {"name": "TRACELOOP_METRICS_ENABLED", "value": "false"},
    ]
    config = config_of(docs)
    # OTLP only from the pod's own containers; the API reachable by the kubelet's probes.
    assert config["receiver"] == {"grpc_endpoint": "127.0.0.1:4317", "http_endpoint": "127.0.0.1:4318"}
    assert config["api"] == {"endpoint": "0.0.0.0:8002"}
    assert config["detectors"] == {"tool_loop": {"threshold": 4}}
    assert [v["name"] for v in spec["volumes"]] == ["dunetrace-config", "dunetrace-data", "dunetrace-tmp"]
    assert spec["volumes"][1] == {"name": "dunetrace-data", "emptyDir": {"sizeLimit": "1Gi"}}


def test_native_sidecar_starts_before_the_agent(rendered: dict[str, dict[str, str]]) -> None:
    spec = pod_spec(docs_of(rendered, "sidecar-native-values.yaml"))
    assert [c["name"] for c in spec["initContainers"]] == ["dunetrace-sidecar"]
    assert spec["initContainers"][0]["restartPolicy"] == "Always"
    assert [c["name"] for c in spec["containers"]] == ["agent"]


def test_daemon_container_probes_ports_and_security(rendered: dict[str, dict[str, str]]) -> None:
    for name in SCENARIOS:
        spec = pod_spec(docs_of(rendered, name))
        container = daemon_container(spec)
        assert container["args"] == ["--config", "/etc/dunetrace/config.yaml"]
        assert container["image"] == "dunetrace/dunetrace-sidecar:0.1.0"
        assert container["ports"] == [
            {"name": "otlp-grpc", "containerPort": 4317, "protocol": "TCP"},
            {"name": "otlp-http", "containerPort": 4318, "protocol": "TCP"},
            {"name": "dunetrace-api", "containerPort": 8002, "protocol": "TCP"},
        ]
        https = {"scheme": "HTTPS"} if name == "tls-values.yaml" else {}
        assert container["livenessProbe"]["httpGet"] == {"path": "/healthz", "port": "dunetrace-api", **https}
        assert container["readinessProbe"]["httpGet"] == {"path": "/readyz", "port": "dunetrace-api", **https}
        assert container["startupProbe"]["httpGet"] == {"path": "/healthz", "port": "dunetrace-api", **https}
        assert container["securityContext"] == {
            "runAsNonRoot": True,
            "runAsUser": 10001,
            "runAsGroup": 10001,
            "readOnlyRootFilesystem": True,
            "allowPrivilegeEscalation": False,
            "capabilities": {"drop": ["ALL"]},
            "seccompProfile": {"type": "RuntimeDefault"},
        }
        if name == "gateway-values.yaml":  # more open runs and queued events than the defaults
            assert container["resources"] == {"requests": {"cpu": "500m", "memory": "1Gi"}, "limits": {"memory": "2Gi"}}
        else:
            assert container["resources"] == {
                "requests": {"cpu": "100m", "memory": "256Mi"},
                "limits": {"memory": "1Gi"},
            }
        tls_mount = [{"name": "dunetrace-tls", "mountPath": TLS_DIR, "readOnly": True}] if https else []
        assert container["volumeMounts"] == [
            {"name": "dunetrace-config", "mountPath": "/etc/dunetrace", "readOnly": True},
            {"name": "dunetrace-data", "mountPath": "/var/lib/dunetrace"},
            {"name": "dunetrace-tmp", "mountPath": "/tmp"},
            *tls_mount,
        ]
        assert spec["automountServiceAccountToken"] is False
        assert spec["securityContext"] == {
            "runAsNonRoot": True,
            "fsGroup": 10001,
            "seccompProfile": {"type": "RuntimeDefault"},
        }


def test_gateway_is_one_deployment_behind_a_service_with_named_ports(rendered: dict[str, dict[str, str]]) -> None:
    docs = docs_of(rendered, "gateway-values.yaml")
    assert kinds(docs) == [
        ("ConfigMap", FULLNAME),
        ("Deployment", FULLNAME),
        ("Secret", FULLNAME),
        ("Service", FULLNAME),
    ]
    deployment = one(docs, "Deployment")
    assert deployment["spec"]["replicas"] == 1 and deployment["spec"]["strategy"] == {"type": "Recreate"}
    service = one(docs, "Service")
    assert service["spec"]["type"] == "ClusterIP"
    assert service["spec"]["ports"] == [
        {"name": "otlp-grpc", "port": 4317, "targetPort": "otlp-grpc", "protocol": "TCP", "appProtocol": "grpc"},
        {"name": "otlp-http", "port": 4318, "targetPort": "otlp-http", "protocol": "TCP", "appProtocol": "http"},
        {"name": "api", "port": 8002, "targetPort": "dunetrace-api", "protocol": "TCP", "appProtocol": "http"},
    ]
    selector = service["spec"]["selector"]
    assert (
        selector
        == deployment["spec"]["selector"]["matchLabels"]
        == {
            "app.kubernetes.io/name": "dunetrace-sidecar",
            "app.kubernetes.io/instance": RELEASE,
            "app.kubernetes.io/component": "gateway",
        }
    )
    assert selector.items() <= deployment["spec"]["template"]["metadata"]["labels"].items()
    config = config_of(docs)
    assert config["receiver"] == {
        "grpc_endpoint": "0.0.0.0:4317",
        "http_endpoint": "0.0.0.0:4318",
        "max_queued_events": 400000,
    }
    assert config["runs"] == {"default_agent_id": "unnamed-agent", "max_open_runs": 50000}
    assert secret_data(docs) == {"DUNETRACE_API_KEYS": "gateway-key-0123456789abcdef"}
    assert pod_spec(docs)["volumes"][1] == {"name": "dunetrace-data", "emptyDir": {"sizeLimit": "1Gi"}}


def test_secrets_come_from_the_secret_and_never_from_the_configmap(rendered: dict[str, dict[str, str]]) -> None:
    docs = docs_of(rendered, "secrets-values.yaml")
    assert secret_data(docs) == SECRETS_SCENARIO
    assert pod_environment(docs) == SECRETS_SCENARIO
    env = daemon_container(pod_spec(docs))["env"]
    assert env == [
        {"name": v, "valueFrom": {"secretKeyRef": {"name": FULLNAME, "key": v}}} for v in sorted(SECRETS_SCENARIO)
    ]
    everything_but_the_secret = join_documents(
        {path: text for path, text in rendered["secrets-values.yaml"].items() if not path.endswith("secret.yaml")}
    )
    for value in SECRETS_SCENARIO.values():
        for part in value.split(","):
            assert part not in everything_but_the_secret
    assert config_of(docs)["langfuse"] == {"base_url": "https://cloud.langfuse.com", "prompt_label": "production"}
    assert set(SECRET_VARIABLES.values()) == set(SECRETS_SCENARIO)


def test_existing_secret_is_referenced_and_none_is_made(rendered: dict[str, dict[str, str]]) -> None:
    docs = docs_of(rendered, "existing-secret-values.yaml")
    assert by_kind(docs, "Secret") == []
    env = daemon_container(pod_spec(docs))["env"]
    assert env == [
        {"name": v, "valueFrom": {"secretKeyRef": {"name": "dunetrace-credentials", "key": v, "optional": True}}}
        for v in sorted(SECRET_VARIABLES.values())
    ]


def test_persistence_mounts_a_claim_and_recreates(rendered: dict[str, dict[str, str]]) -> None:
    docs = docs_of(rendered, "persistence-values.yaml")
    claim = one(docs, "PersistentVolumeClaim")
    assert claim["metadata"]["name"] == f"{FULLNAME}-data"
    assert claim["spec"] == {
        "accessModes": ["ReadWriteOnce"],
        "storageClassName": "standard",
        "resources": {"requests": {"storage": "10Gi"}},
    }
    spec = pod_spec(docs)
    assert spec["volumes"][1] == {"name": "dunetrace-data", "persistentVolumeClaim": {"claimName": f"{FULLNAME}-data"}}
    assert one(docs, "Deployment")["spec"]["strategy"] == {"type": "Recreate"}


def test_existing_claim_is_used_as_is() -> None:
    docs = manifests(render({"mode": "gateway", "persistence": {"enabled": True, "existingClaim": "dunetrace-db"}}))
    assert by_kind(docs, "PersistentVolumeClaim") == []
    assert pod_spec(docs)["volumes"][1] == {
        "name": "dunetrace-data",
        "persistentVolumeClaim": {"claimName": "dunetrace-db"},
    }


def test_service_monitor_and_scrape_annotations(rendered: dict[str, dict[str, str]]) -> None:
    docs = docs_of(rendered, "servicemonitor-values.yaml")
    monitor = one(docs, "ServiceMonitor")
    assert monitor["apiVersion"] == "monitoring.coreos.com/v1"
    assert monitor["metadata"]["labels"]["release"] == "kube-prometheus-stack"
    assert monitor["spec"]["endpoints"] == [
        {"port": "api", "path": "/metrics", "interval": "15s", "scrapeTimeout": "10s"}
    ]
    service = one(docs, "Service")
    assert monitor["spec"]["selector"]["matchLabels"].items() <= service["metadata"]["labels"].items()
    assert "api" in [p["name"] for p in service["spec"]["ports"]]
    annotations = one(docs, "Deployment")["spec"]["template"]["metadata"]["annotations"]
    assert {k: v for k, v in annotations.items() if k.startswith("prometheus.io/")} == {
        "prometheus.io/scrape": "true",
        "prometheus.io/port": "8002",
        "prometheus.io/path": "/metrics",
    }


def test_pod_rolls_on_config_changes_but_not_on_detector_changes() -> None:
    def checksum(values: dict[str, Any]) -> str:
        annotations = one(manifests(render(values)), "Deployment")["spec"]["template"]["metadata"]["annotations"]
        value: str = annotations["checksum/dunetrace-config"]
        return value

    base = {"mode": "gateway", "secrets": {"apiKeys": ["gateway-key-0123456789abcdef"]}}
    first = checksum(base)
    # The daemon re-reads `detectors` from the mounted file by itself: no restart needed.
    assert checksum({**base, "config": {"detectors": {"tool_loop": {"threshold": 9}}}}) == first
    assert checksum({**base, "config": {"runs": {"max_open_runs": 10}}}) != first


def test_no_key_is_generated_when_the_risk_is_accepted() -> None:
    docs = manifests(render({"mode": "gateway", "config": {"api": {"allow_insecure": True}}}))
    assert by_kind(docs, "Secret") == []
    assert "env" not in daemon_container(pod_spec(docs))


def test_every_container_in_the_rendered_pods_is_hardened(rendered: dict[str, dict[str, str]]) -> None:
    for name in SCENARIOS:
        for container in all_containers(pod_spec(docs_of(rendered, name))):
            assert container["securityContext"]["allowPrivilegeEscalation"] is False, (name, container["name"])
            assert container["securityContext"]["capabilities"] == {"drop": ["ALL"]}, (name, container["name"])


# --- TLS ----------------------------------------------------------------------------------------


def test_tls_secret_is_mounted_whole_and_the_config_points_into_it(rendered: dict[str, dict[str, str]]) -> None:
    docs = docs_of(rendered, "tls-values.yaml")
    spec = pod_spec(docs)
    # Mounted whole, never by subPath: only then does a renewed Secret reach the running pod.
    assert spec["volumes"][-1] == {"name": "dunetrace-tls", "secret": {"secretName": "dunetrace-tls"}}
    assert all("subPath" not in m for m in daemon_container(spec)["volumeMounts"])
    config = config_of(docs)
    files = {"cert_file": f"{TLS_DIR}/tls.crt", "key_file": f"{TLS_DIR}/tls.key"}
    assert config["receiver"]["tls"] == {**files, "client_ca_file": f"{TLS_DIR}/ca.crt"}
    assert config["api"]["tls"] == files  # no client certificates asked of the probes
    assert pod_environment(docs) == {
        "DUNETRACE_API_KEYS": "tls-api-key-0123456789abcdef",
        "DUNETRACE_OTLP_KEYS": "tls-otlp-key-0123456789abcdef",
    }
    ports = {p["name"]: p["appProtocol"] for p in one(docs, "Service")["spec"]["ports"]}
    assert ports == {"otlp-grpc": "grpc", "otlp-http": "https", "api": "https"}
    annotations = one(docs, "Deployment")["spec"]["template"]["metadata"]["annotations"]
    assert annotations["prometheus.io/scheme"] == "https"


def test_tls_for_the_api_only(tmp_path: Path, tls_secret: Path) -> None:
    """Sidecar mode: the receivers stay plain on localhost (the example agent exports there), the
    API that the kubelet and Prometheus reach on the pod's IP is HTTPS."""
    values = {
        "tls": {"existingSecret": "dunetrace-tls", "receiver": False},
        "exampleAgent": {"enabled": True, "image": {"repository": "registry.example.com/agent", "tag": "1"}},
    }
    docs = manifests(render(values))
    config = config_of(docs)
    assert "tls" not in config["receiver"] and config["api"]["tls"]["cert_file"] == f"{TLS_DIR}/tls.crt"
    container = daemon_container(pod_spec(docs))
    assert container["readinessProbe"]["httpGet"]["scheme"] == "HTTPS"
    path = tmp_path / "config.yaml"
    path.write_text(with_tls_files(one(docs, "ConfigMap")["data"]["config.yaml"], tls_secret))
    result = validate_config(path, pod_environment(docs))
    assert result.returncode == 0, result.stderr


def test_service_monitor_scrapes_https_when_the_api_serves_it() -> None:
    values = {
        "mode": "gateway",
        "secrets": {"apiKeys": ["gateway-key-0123456789abcdef"]},
        "tls": {"existingSecret": "dunetrace-tls"},
        "metrics": {"serviceMonitor": {"enabled": True}},
    }
    [endpoint] = one(manifests(render(values)), "ServiceMonitor")["spec"]["endpoints"]
    assert endpoint["scheme"] == "https" and endpoint["tlsConfig"] == {"insecureSkipVerify": True}


def test_no_tls_without_the_secret() -> None:
    docs = manifests(render({"mode": "gateway", "secrets": {"apiKeys": ["gateway-key-0123456789abcdef"]}}))
    config = config_of(docs)
    assert "tls" not in config["receiver"] and "tls" not in config["api"]
    assert "scheme" not in daemon_container(pod_spec(docs))["livenessProbe"]["httpGet"]


# --- the chart's limits against the daemon's own ------------------------------------------------

MIB = 1024 * 1024
PROCESS_BYTES = 160 * MIB  # an idle daemon measures ~125 MiB RSS (Python, grpc, aiohttp, DuckDB)
OPEN_RUN_BYTES = 12 * 1024  # bench/ measures ~10 KB of RSS per open run
QUEUED_EVENT_BYTES = 1024  # an event waiting for the store writer
# A translation worker measures ~42 MiB RSS, multiprocessing's resource tracker ~13 MiB.
WORKER_BYTES = 48 * MIB
TRACKER_BYTES = 16 * MIB
_UNITS = {"Ki": 1024, "Mi": MIB, "Gi": 1024 * MIB, "K": 1000, "M": 1000**2, "G": 1000**3}
_DUCKDB_UNITS = {"KB": 1000, "MB": 1000**2, "GB": 1000**3, "TB": 1000**4, "KIB": 1024, "MIB": MIB, "GIB": 1024**3}


def quantity_bytes(quantity: str) -> int:
    """A Kubernetes memory quantity (1Gi, 512Mi, 1G, a plain number of bytes)."""
    found = re.fullmatch(r"(\d+)(Ki|Mi|Gi|K|M|G)?", str(quantity))
    assert found, quantity
    return int(found.group(1)) * _UNITS.get(found.group(2) or "", 1)


def duckdb_bytes(limit: str) -> int:
    found = re.fullmatch(r"(\d+(?:\.\d+)?)(KB|MB|GB|TB|KIB|MIB|GIB)", limit)
    assert found, limit
    return int(float(found.group(1)) * _DUCKDB_UNITS[found.group(2)])


def memory_budget(config: Config) -> int:
    """What the daemon may hold with these settings; values.yaml's resources comment spells it out."""
    return (
        PROCESS_BYTES
        + duckdb_bytes(config.store.memory_limit)
        + 2 * config.receiver.max_inflight_bytes
        + config.runs.max_open_runs * OPEN_RUN_BYTES
        + config.receiver.max_queued_events * QUEUED_EVENT_BYTES
        + translation_bytes(config.receiver.translation_processes)
    )


def translation_bytes(setting: int | None) -> int:
    """The worker processes: ``auto`` depends on the node's CPUs, so its most is budgeted."""
    workers = MAX_AUTO_PROCESSES if setting is None else setting
    return workers * WORKER_BYTES + TRACKER_BYTES if workers else 0


def daemon_config(docs: list[dict[str, Any]], tmp_path: Path, tls_secret: Path, name: str) -> Config:
    """The settings the daemon would run with: the rendered file, loaded by the daemon's own loader."""
    path = tmp_path / f"{name}.config.yaml"
    path.write_text(with_tls_files(one(docs, "ConfigMap")["data"]["config.yaml"], tls_secret))
    env = pod_environment(docs, EXISTING_SECRET if name == "existing-secret-values.yaml" else None)
    return load(path, environ=env)


@pytest.mark.parametrize("name", SCENARIOS)
def test_memory_limit_covers_the_daemons_budget(
    rendered: dict[str, dict[str, str]], name: str, tmp_path: Path, tls_secret: Path
) -> None:
    docs = docs_of(rendered, name)
    config = daemon_config(docs, tmp_path, tls_secret, name)
    limit = quantity_bytes(daemon_container(pod_spec(docs))["resources"]["limits"]["memory"])
    assert memory_budget(config) <= limit, (memory_budget(config) // MIB, limit // MIB)


def test_the_default_limit_covers_the_defaults_and_the_budget_can_fail(tmp_path: Path, tls_secret: Path) -> None:
    docs = manifests(render({"mode": "gateway", "secrets": {"apiKeys": ["gateway-key-0123456789abcdef"]}}))
    config = daemon_config(docs, tmp_path, tls_secret, "default")
    limit = quantity_bytes(daemon_container(pod_spec(docs))["resources"]["limits"]["memory"])
    assert limit == 1024 * MIB
    assert 950 * MIB < memory_budget(config) <= limit  # ~1,010 MiB, as values.yaml says
    # Twice the open runs at the same limit no longer fit: the check is not blind.
    bigger = manifests(
        render({"mode": "gateway", "secrets": {"apiKeys": ["k" * 16]}, "config": {"runs": {"max_open_runs": 40000}}})
    )
    assert memory_budget(daemon_config(bigger, tmp_path, tls_secret, "bigger")) > limit


def test_probes_and_grace_period_fit_the_daemon() -> None:
    values = yaml.safe_load((CHART / "values.yaml").read_text())
    # Shutdown: gRPC, then each of the two HTTP listeners, get GRACE_SECONDS each; then the store drains.
    assert values["terminationGracePeriodSeconds"] >= 3 * GRACE_SECONDS + 10
    # /healthz answers within 1 s under overload (test_overload.py): a probe waits longer than that.
    for probe in ("startupProbe", "livenessProbe", "readinessProbe"):
        assert values[probe]["timeoutSeconds"] >= 2, probe
    # The daemon is restarted only after a minute of failed liveness probes, not after one slow answer.
    liveness = values["livenessProbe"]
    assert liveness["periodSeconds"] * liveness["failureThreshold"] >= 60
    # Startup reads back every block of the store: up to 5 minutes before the pod is restarted.
    startup = values["startupProbe"]
    assert startup["periodSeconds"] * startup["failureThreshold"] >= 300
