"""mypy over the SDK as its wheel lays it out: ``sdk/python/src/dunetrace`` with the repository's
``detectors/`` as ``dunetrace._detectors`` (the wheel's force-include), staged in a temporary
directory, with the repository's mypy settings (pyproject.toml [tool.mypy]) and the repo venv's
OpenTelemetry for the imports. The repo's own ``mypy`` run cannot see the SDK: in the source tree
``dunetrace._detectors`` does not exist.

    .venv/bin/python -m tests.oursdk.typecheck
"""

from __future__ import annotations

import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
SOURCE = ROOT / "sdk" / "python" / "src" / "dunetrace"
DETECTORS = ROOT / "detectors"
GENERATED_STUB = ROOT / "dunetrace_sidecar" / "_pb" / "decisions_pb2.pyi"
CHECK_TIMEOUT_S = 240


def typecheck() -> subprocess.CompletedProcess[str]:
    with tempfile.TemporaryDirectory(prefix="oursdk-mypy-") as tmp:
        staged = Path(tmp) / "dunetrace"
        ignore = shutil.ignore_patterns("__pycache__", "*.pyc")
        shutil.copytree(SOURCE, staged, ignore=ignore)
        shutil.copytree(DETECTORS, staged / "_detectors", ignore=ignore)
        # The wheel generates dunetrace/_pb/decisions_pb2 from proto/ at build time; the daemon's
        # install generated the same messages' stub (setup.py), which stands in for it here.
        shutil.copyfile(GENERATED_STUB, staged / "_pb" / "decisions_pb2.pyi")
        return subprocess.run(
            [
                sys.executable,
                "-m",
                "mypy",
                "--config-file",
                str(ROOT / "pyproject.toml"),
                "--python-version",
                "3.11",
                "--cache-dir",  # fresh: a cache kept across staging dirs remembers modules wrongly
                str(Path(tmp) / ".mypy_cache"),
                "-p",
                "dunetrace",
            ],
            cwd=tmp,
            capture_output=True,
            text=True,
            timeout=CHECK_TIMEOUT_S,
            check=False,
        )


def main() -> int:
    done = typecheck()
    print(done.stdout + done.stderr, end="")
    return done.returncode


if __name__ == "__main__":
    sys.exit(main())
