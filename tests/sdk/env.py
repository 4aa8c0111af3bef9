"""The environment the published Dunetrace SDK (``dunetrace==0.5.7``) runs in for the end-to-end tests.

It is a venv of its own at ``<repo>/.sdkenv``, never the repo's ``.venv``: our own SDK (a later issue) takes the
same import name ``dunetrace``. Built from the pinned ``tests/sdk/requirements.txt`` and reused while the stamp
file ``.sdkenv/.requirements.sha256`` holds that file's sha256 (as ``tools/stacks/capture.py`` does for
``.stacks/``). Building needs PyPI and nothing else; every step is bounded in time. A file lock keeps two
pytest processes from building it at once.

Used by the session fixture ``sdk_python`` (tests/sdk/conftest.py), on first use. By hand::

    .venv/bin/python -m tests.sdk.env          # build (or check) it and print its python
"""

from __future__ import annotations

import fcntl
import hashlib
import os
import shutil
import subprocess
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
SDK_DIR = Path(__file__).resolve().parent
REQUIREMENTS = SDK_DIR / "requirements.txt"
SCENARIOS = SDK_DIR / "scenarios"
SDKENV = Path(os.environ.get("DUNETRACE_SDKENV", str(ROOT / ".sdkenv")))
STAMP_NAME = ".requirements.sha256"
SDK_VERSION = "0.5.7"

VENV_TIMEOUT_S = 30
PIP_TIMEOUT_S = 240  # the whole install (15 s here), inside pytest's 300 s per test (pip: --timeout per request)
LOCK_TIMEOUT_S = PIP_TIMEOUT_S + VENV_TIMEOUT_S + 60
CHECK_TIMEOUT_S = 60


class SdkEnvError(RuntimeError):
    """The SDK environment could not be built; the message carries pip's output."""


@dataclass(frozen=True)
class SdkEnv:
    path: Path
    python: Path
    built: bool  # False when an up-to-date environment was reused
    seconds: float


def requirements_digest(path: Path = REQUIREMENTS) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def _python_in(venv: Path) -> Path:
    return venv / "bin" / "python"


def _is_current(venv: Path, digest: str) -> bool:
    stamp = venv / STAMP_NAME
    return _python_in(venv).exists() and stamp.exists() and stamp.read_text().strip() == digest


def _base_python() -> str:
    """A Python 3.11 to create the venv with: the interpreter under the repo's venv (not the venv itself)."""
    base = getattr(sys, "_base_executable", None) or sys.executable
    return base if os.path.exists(base) else sys.executable


def _run(args: list[str], timeout: float, what: str) -> str:
    try:
        done = subprocess.run(
            args, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, timeout=timeout, env=_pip_env(), check=False
        )
    except subprocess.TimeoutExpired as exc:
        output = (exc.stdout or b"").decode(errors="replace")
        raise SdkEnvError(f"{what} timed out after {timeout:.0f}s:\n{output[-20000:]}") from exc
    output = done.stdout.decode(errors="replace")
    if done.returncode != 0:
        raise SdkEnvError(f"{what} failed (exit {done.returncode}):\n{output[-20000:]}")
    return output


def _pip_env() -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("PYTHON", "VIRTUAL_ENV", "PIP_REQUIRE"))}
    env["PIP_DISABLE_PIP_VERSION_CHECK"] = "1"
    env["PIP_NO_INPUT"] = "1"
    return env


def _build(venv: Path, digest: str) -> None:
    if venv.exists():
        shutil.rmtree(venv)  # out of date or half built: start clean, so nothing stale survives
    _run([_base_python(), "-m", "venv", str(venv)], VENV_TIMEOUT_S, f"python -m venv {venv}")
    python = str(_python_in(venv))
    log = _run(
        [python, "-m", "pip", "install", "--timeout", "60", "--retries", "3", "-r", str(REQUIREMENTS)],
        PIP_TIMEOUT_S,
        f"pip install -r {REQUIREMENTS.relative_to(ROOT)} into {venv}",
    )
    (venv / "pip-install.log").write_text(log)
    check = _run(
        [python, "-c", "import importlib.metadata as m, dunetrace; print(m.version('dunetrace'))"],
        CHECK_TIMEOUT_S,
        "importing dunetrace in the SDK environment",
    ).strip()
    if check.splitlines()[-1:] != [SDK_VERSION]:
        raise SdkEnvError(f"the SDK environment has dunetrace {check!r}, expected {SDK_VERSION}")
    (venv / STAMP_NAME).write_text(digest + "\n")


def ensure_sdk_env(venv: Path = SDKENV) -> SdkEnv:
    """The SDK environment, built when missing or when requirements.txt changed; raises SdkEnvError."""
    digest = requirements_digest()
    return ensure_venv(venv, lambda: _is_current(venv, digest), lambda: _build(venv, digest))


def ensure_venv(venv: Path, is_current: Callable[[], bool], build: Callable[[], None]) -> SdkEnv:
    """``venv`` as ``build`` makes it, built only when ``is_current`` says no, under a file lock
    so two test processes never build it at once; raises SdkEnvError."""
    started = time.monotonic()
    if is_current():
        return SdkEnv(venv, _python_in(venv), False, time.monotonic() - started)
    venv.parent.mkdir(parents=True, exist_ok=True)
    lock_path = venv.parent / (venv.name + ".lock")
    with lock_path.open("w") as lock:
        deadline = time.monotonic() + LOCK_TIMEOUT_S
        while True:
            try:
                fcntl.flock(lock, fcntl.LOCK_EX | fcntl.LOCK_NB)
                break
            except BlockingIOError:
                if time.monotonic() > deadline:
                    raise SdkEnvError(f"another process held {lock_path} for over {LOCK_TIMEOUT_S}s") from None
                time.sleep(0.5)
        try:
            built = not is_current()  # another process may have built it while we waited
            if built:
                build()
        finally:
            fcntl.flock(lock, fcntl.LOCK_UN)
    return SdkEnv(venv, _python_in(venv), built, time.monotonic() - started)


def main() -> int:
    try:
        env = ensure_sdk_env()
    except SdkEnvError as exc:
        print(exc, file=sys.stderr)
        return 1
    state = f"built in {env.seconds:.1f}s" if env.built else "up to date"
    print(f"{env.python} ({state})")
    return 0


if __name__ == "__main__":
    sys.exit(main())
