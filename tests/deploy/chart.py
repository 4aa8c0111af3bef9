"""The Helm chart through a real Helm engine (helm-python-sdk embeds Helm's Go SDK: no binary, no
cluster), and the tools that check what it renders."""

from __future__ import annotations

import base64
import os
import shutil
import subprocess
import sys
from collections.abc import Iterator, Mapping
from pathlib import Path
from typing import Any

import yaml
from helm_python.chart import Chart, lint

from tests.deploy.buildcontext import ROOT

CHART = ROOT / "deploy" / "helm" / "dunetrace-sidecar"
CI = CHART / "ci"
EXAMPLE_APP = ROOT / "deploy" / "helm" / "examples" / "support-agent"
KUBE_VERSION = "1.30.0"
RELEASE = "demo"
NAMESPACE = "agents"
BIN = Path(sys.executable).parent

# The environment variables a pod gets from the chart's Secret (secrets.* key -> variable).
SECRET_VARIABLES = {
    "apiKeys": "DUNETRACE_API_KEYS",
    "otlpKeys": "DUNETRACE_OTLP_KEYS",
    "hashKey": "DUNETRACE_HASH_KEY",
    "policySecret": "DUNETRACE_POLICY_SECRET",
    "langfusePublicKey": "LANGFUSE_PUBLIC_KEY",
    "langfuseSecretKey": "LANGFUSE_SECRET_KEY",
    "anthropicApiKey": "ANTHROPIC_API_KEY",
    "openaiApiKey": "OPENAI_API_KEY",
    "slackWebhookUrl": "SLACK_WEBHOOK_URL",
    "webhookUrl": "WEBHOOK_URL",
    "webhookSecret": "WEBHOOK_SECRET",
}


def scenarios() -> list[str]:
    return sorted(p.name for p in CI.glob("*-values.yaml"))


def scenario_values(name: str) -> dict[str, Any]:
    values = yaml.safe_load((CI / name).read_text())
    assert isinstance(values, dict)
    return values


def with_dependency(example: Path, into: Path) -> Path:
    """A copy of an example chart with our chart in its charts/, as `helm dependency update` leaves it."""
    app = into / example.name
    shutil.copytree(example, app)
    shutil.copytree(CHART, app / "charts" / "dunetrace-sidecar")
    return app


def render(values: Mapping[str, Any] | None = None, chart: Path = CHART) -> dict[str, str]:
    """Template path -> rendered text (NOTES.txt and empty templates left out)."""
    with Chart.load(chart) as loaded:
        out = loaded.render(dict(values or {}), name=RELEASE, namespace=NAMESPACE, is_install=True)
    return {path: text for path, text in out.items() if not path.endswith("NOTES.txt") and text.strip()}


def lint_chart(values: Mapping[str, Any] | None = None, chart: Path = CHART) -> dict[str, Any]:
    return lint(chart, dict(values or {}), strict=True, kube_version=f"v{KUBE_VERSION}")


def manifests(rendered: Mapping[str, str]) -> list[dict[str, Any]]:
    docs = []
    for path in sorted(rendered):
        for doc in yaml.safe_load_all(rendered[path]):
            if doc is not None:
                docs.append(doc)
    return docs


def join_documents(rendered: Mapping[str, str]) -> str:
    return "---\n".join(rendered[path].strip("\n") + "\n" for path in sorted(rendered))


def by_kind(docs: list[dict[str, Any]], kind: str) -> list[dict[str, Any]]:
    return [d for d in docs if d["kind"] == kind]


def one(docs: list[dict[str, Any]], kind: str) -> dict[str, Any]:
    found = by_kind(docs, kind)
    assert len(found) == 1, f"{len(found)} {kind}s"
    return found[0]


def pod_spec(docs: list[dict[str, Any]]) -> dict[str, Any]:
    spec: dict[str, Any] = one(docs, "Deployment")["spec"]["template"]["spec"]
    return spec


def all_containers(spec: Mapping[str, Any]) -> Iterator[dict[str, Any]]:
    yield from spec.get("initContainers", [])
    yield from spec["containers"]


def daemon_container(spec: Mapping[str, Any]) -> dict[str, Any]:
    [container] = [c for c in all_containers(spec) if c["name"] == "dunetrace-sidecar"]
    return container


def config_of(docs: list[dict[str, Any]]) -> dict[str, Any]:
    config = yaml.safe_load(one(docs, "ConfigMap")["data"]["config.yaml"])
    assert isinstance(config, dict)
    return config


def secret_data(docs: list[dict[str, Any]]) -> dict[str, str]:
    secrets = by_kind(docs, "Secret")
    if not secrets:
        return {}
    [secret] = secrets
    return {k: base64.b64decode(v).decode() for k, v in secret.get("data", {}).items()}


def pod_environment(docs: list[dict[str, Any]], existing_secret: Mapping[str, str] | None = None) -> dict[str, str]:
    """The environment the daemon's container gets: literal values, and secretKeyRefs resolved
    against the rendered Secret (or `existing_secret`, standing in for a Secret made elsewhere)."""
    secrets = {s["metadata"]["name"]: secret_data([s]) for s in by_kind(docs, "Secret")}
    env: dict[str, str] = {}
    for var in daemon_container(pod_spec(docs)).get("env", []):
        if "value" in var:
            env[var["name"]] = var["value"]
            continue
        ref = var["valueFrom"]["secretKeyRef"]
        source = secrets.get(ref["name"], existing_secret or {})
        if ref["key"] in source:
            env[var["name"]] = source[ref["key"]]
        else:
            assert ref.get("optional") is True, f"{var['name']}: {ref} is missing and not optional"
    return env


def clean_environment(extra: Mapping[str, str] | None = None) -> dict[str, str]:
    """The test process's environment without anything the daemon reads, plus `extra`."""
    prefixes = ("DUNETRACE_", "OTEL_", "TRACELOOP_", "LANGFUSE_", "ANTHROPIC_", "OPENAI_")
    named = {"SLACK_WEBHOOK_URL", "SLACK_MIN_SEVERITY", "WEBHOOK_URL", "WEBHOOK_MIN_SEVERITY", "WEBHOOK_SECRET"}
    env = {
        k: v for k, v in os.environ.items() if not k.startswith(prefixes) and k not in named and k != "DASHBOARD_URL"
    }
    env.update(extra or {})
    return env


def validate_config(path: Path, env: Mapping[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    """`python -m dunetrace_sidecar validate --config FILE`, run from the repository root."""
    return subprocess.run(
        [sys.executable, "-m", "dunetrace_sidecar", "validate", "--config", str(path)],
        cwd=ROOT,
        env=clean_environment(env),
        capture_output=True,
        text=True,
        timeout=60,
    )


def kubernetes_validate(*paths: Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [str(BIN / "kubernetes-validate"), "-k", KUBE_VERSION, "--strict", *map(str, paths)],
        capture_output=True,
        text=True,
        timeout=120,
    )
