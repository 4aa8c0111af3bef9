"""The wheel's one build step: the live-decisions messages (``dunetrace/_pb/decisions_pb2.py``),
generated from the repository's ``proto/dunetrace/sidecar/v1/decisions.proto`` — the same
source the daemon's ``setup.py`` generates its side from — with protoc from grpcio-tools, a
build requirement held at 1.66 so the gencode (protobuf 5.27) loads on any runtime from 5.27 on.
"""

from __future__ import annotations

import shutil
import tempfile
from pathlib import Path
from typing import Any

from hatchling.builders.hooks.plugin.interface import BuildHookInterface

PROTO_ROOT = Path("..") / ".." / "proto"
PROTO = "dunetrace/sidecar/v1/decisions.proto"


class DecisionsProtoHook(BuildHookInterface):  # type: ignore[type-arg]
    PLUGIN_NAME = "custom"

    def initialize(self, version: str, build_data: dict[str, Any]) -> None:
        from grpc_tools import protoc

        self._out = Path(tempfile.mkdtemp(prefix="dunetrace-pb-"))
        proto_root = (Path(self.root) / PROTO_ROOT).resolve()
        args = ["protoc", f"-I{proto_root}", f"--python_out={self._out}", f"--pyi_out={self._out}", PROTO]
        if protoc.main(args) != 0:
            raise RuntimeError(f"protoc failed on {proto_root / PROTO}")
        stem = Path(PROTO).with_suffix("")
        for suffix in ("_pb2.py", "_pb2.pyi"):
            build_data["force_include"][str(self._out / f"{stem}{suffix}")] = f"dunetrace/_pb/{stem.name}{suffix}"

    def finalize(self, version: str, build_data: dict[str, Any], artifact_path: str) -> None:
        shutil.rmtree(self._out, ignore_errors=True)
