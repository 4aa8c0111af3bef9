"""The one build step pyproject.toml cannot say: generate the decisions service's messages from
``proto/`` (protoc from grpcio-tools, a build requirement) into ``dunetrace_sidecar/_pb/``.
grpcio-tools is held at 1.66 on purpose: its gencode (protobuf 5.27) loads on every protobuf
runtime from 5.27 on, where a newer protoc's would demand as new a runtime.

Runs for wheels and editable installs alike; the generated files are never checked in.
"""

from __future__ import annotations

import shutil
import tempfile
from pathlib import Path

from setuptools import setup
from setuptools.command.build_py import build_py

ROOT = Path(__file__).resolve().parent
PROTOS = ("dunetrace/sidecar/v1/decisions.proto",)
OUT = ROOT / "dunetrace_sidecar" / "_pb"


def generate() -> None:
    from grpc_tools import protoc  # a build requirement (pyproject.toml [build-system])

    with tempfile.TemporaryDirectory() as tmp:
        for proto in PROTOS:
            # The full path names the file in protobuf's registry (no clash with a user's
            # "decisions.proto"); the module lands flat in our package, importing nothing else.
            args = ["protoc", f"-I{ROOT / 'proto'}", f"--python_out={tmp}", f"--pyi_out={tmp}", proto]
            if protoc.main(args) != 0:
                raise SystemExit(f"protoc failed on proto/{proto}")
            stem = Path(proto).with_suffix("")
            for suffix in ("_pb2.py", "_pb2.pyi"):
                shutil.copyfile(Path(tmp) / f"{stem}{suffix}", OUT / f"{stem.name}{suffix}")


class BuildPyWithProtos(build_py):
    def run(self) -> None:
        generate()
        super().run()


setup(cmdclass={"build_py": BuildPyWithProtos})
