"""The environment our own SDK (sdk/python, distribution ``dunetrace``) runs in for its tests.

A venv of its own at ``<repo>/.oursdkenv`` holding only the SDK's wheel and what the wheel
depends on (OpenTelemetry pinned by ``constraints.txt``): never the repo's ``.venv``, and never
``.sdkenv`` (the published ``dunetrace``, same import name). The wheel is built from
``sdk/python`` with ``pip wheel`` (hatchling from PyPI, build isolation) and the venv is reused
while the stamp ``.oursdkenv/.sources.sha256`` holds the digest of the SDK's sources, the
detectors the wheel carries and the constraints. Built the way tests/sdk/env.py builds
``.sdkenv`` (its helpers are used here): bounded steps, a file lock against two builders.

By hand::

    .venv/bin/python -m tests.oursdk.env      # build (or check) it and print its python
    .venv/bin/python -m tests.oursdk.env --stacks   # the same with the frameworks (stacks.txt)
"""

from __future__ import annotations

import hashlib
import os
import shutil
import sys
from pathlib import Path

from tests.sdk.env import (
    CHECK_TIMEOUT_S,
    PIP_TIMEOUT_S,
    VENV_TIMEOUT_S,
    SdkEnv,
    SdkEnvError,
    _base_python,
    _python_in,
    _run,
    ensure_venv,
)

ROOT = Path(__file__).resolve().parents[2]
HERE = Path(__file__).resolve().parent
SDK_SOURCE = ROOT / "sdk" / "python"
DETECTORS = ROOT / "detectors"
CONSTRAINTS = HERE / "constraints.txt"
SCRIPTS = HERE / "scripts"
OURSDKENV = Path(os.environ.get("DUNETRACE_OURSDKENV", str(ROOT / ".oursdkenv")))
# The SDK next to the frameworks and clients the docs' examples use (stacks.txt): a second venv,
# so the first stays the proof of the light dependency set.
STACKS = HERE / "stacks.txt"
OURSDK_STACKS_ENV = Path(os.environ.get("DUNETRACE_OURSDK_STACKS_ENV", str(ROOT / ".oursdkenv-stacks")))
STAMP_NAME = ".sources.sha256"
SDK_VERSION = "0.6.0.dev0"


def _inputs(requirements: Path | None = None) -> list[Path]:
    files = [SDK_SOURCE / "pyproject.toml", SDK_SOURCE / "hatch_build.py", SDK_SOURCE / "README.md", CONSTRAINTS]
    files += sorted((ROOT / "proto").rglob("*.proto"))  # the wheel's generated messages
    if requirements is not None:
        files.append(requirements)
    for tree in (SDK_SOURCE / "src", DETECTORS):
        files += [p for p in tree.rglob("*") if p.is_file() and "__pycache__" not in p.parts and p.suffix != ".pyc"]
    return sorted(files)


def sources_digest(requirements: Path | None = None) -> str:
    """What the venv was built from: every file of the SDK's sources, of detectors/, the pins and
    the extra requirements, if any."""
    digest = hashlib.sha256()
    for path in _inputs(requirements):
        digest.update(str(path.relative_to(ROOT)).encode() + b"\0" + path.read_bytes() + b"\0")
    return digest.hexdigest()


def _is_current(venv: Path, digest: str) -> bool:
    stamp = venv / STAMP_NAME
    return _python_in(venv).exists() and stamp.exists() and stamp.read_text().strip() == digest


def _build(venv: Path, digest: str, requirements: Path | None) -> None:
    if venv.exists():
        shutil.rmtree(venv)
    _run([_base_python(), "-m", "venv", str(venv)], VENV_TIMEOUT_S, f"python -m venv {venv}")
    python = str(_python_in(venv))
    wheelhouse = venv / "wheelhouse"
    log = _run(
        [python, "-m", "pip", "wheel", "--no-deps", "--timeout", "60", "-w", str(wheelhouse), str(SDK_SOURCE)],
        PIP_TIMEOUT_S,
        "pip wheel sdk/python",
    )
    wheels = sorted(wheelhouse.glob("dunetrace-*.whl"))
    if len(wheels) != 1:
        raise SdkEnvError(f"pip wheel made {[w.name for w in wheels]}, expected one dunetrace wheel:\n{log[-5000:]}")
    log += _run(
        [python, "-m", "pip", "install", "--timeout", "60", "--retries", "3", "-c", str(CONSTRAINTS), str(wheels[0])],
        PIP_TIMEOUT_S,
        f"pip install {wheels[0].name} into {venv}",
    )
    if requirements is not None:
        log += _run(
            [python, "-m", "pip", "install", "--timeout", "60", "-c", str(CONSTRAINTS), "-r", str(requirements)],
            PIP_TIMEOUT_S,
            f"pip install -r {requirements.name} into {venv}",
        )
    (venv / "pip-install.log").write_text(log)
    check = _run(
        [python, "-c", "import importlib.metadata as m, dunetrace; print(m.version('dunetrace'))"],
        CHECK_TIMEOUT_S,
        "importing dunetrace in our SDK's environment",
    ).strip()
    if check.splitlines()[-1:] != [SDK_VERSION]:
        raise SdkEnvError(f"our SDK's environment has dunetrace {check!r}, expected {SDK_VERSION}")
    (venv / STAMP_NAME).write_text(digest + "\n")


def ensure_oursdk_env(venv: Path = OURSDKENV, requirements: Path | None = None) -> SdkEnv:
    """The environment (with ``requirements`` too, if given), rebuilt when the SDK's sources,
    detectors/, the pins or the requirements changed."""
    digest = sources_digest(requirements)
    return ensure_venv(venv, lambda: _is_current(venv, digest), lambda: _build(venv, digest, requirements))


def ensure_oursdk_stacks_env() -> SdkEnv:
    return ensure_oursdk_env(OURSDK_STACKS_ENV, STACKS)


def main() -> int:
    try:
        env = ensure_oursdk_stacks_env() if sys.argv[1:] == ["--stacks"] else ensure_oursdk_env()
    except SdkEnvError as exc:
        print(exc, file=sys.stderr)
        return 1
    state = f"built in {env.seconds:.1f}s" if env.built else "up to date"
    print(f"{env.python} ({state})")
    return 0


if __name__ == "__main__":
    sys.exit(main())
