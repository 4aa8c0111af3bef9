"""A throwaway PKI for the TLS tests, made with the openssl command-line tool: a CA, server
certificates for 127.0.0.1 / localhost, a client certificate, and a second CA that nobody trusts."""

from __future__ import annotations

import shutil
import subprocess
from dataclasses import dataclass
from pathlib import Path

import pytest


@dataclass(frozen=True)
class Pair:
    cert: Path
    key: Path


@dataclass(frozen=True)
class Pki:
    ca: Path  # the CA that signed server, renewed and client
    server: Pair  # CN=dunetrace-server, SAN 127.0.0.1 and localhost
    renewed: Pair  # the same names, CN=dunetrace-renewed: what a renewal installs
    client: Pair  # CN=agent, clientAuth
    stranger_ca: Path  # another CA
    stranger: Pair  # a client certificate signed by stranger_ca


def _openssl(*args: str, cwd: Path) -> None:
    subprocess.run(["openssl", *args], cwd=cwd, check=True, capture_output=True, timeout=60)


def _key(directory: Path, name: str) -> Path:
    path = directory / f"{name}.key"
    _openssl("genpkey", "-algorithm", "EC", "-pkeyopt", "ec_paramgen_curve:P-256", "-out", str(path), cwd=directory)
    return path


def _ca(directory: Path, name: str) -> Pair:
    key = _key(directory, name)
    cert = directory / f"{name}.crt"
    _openssl("req", "-x509", "-new", "-key", str(key), "-out", str(cert), "-days", "2", "-subj", f"/CN={name}",
             cwd=directory)  # fmt: skip
    return Pair(cert, key)


def _signed(directory: Path, name: str, ca: Pair, extensions: str) -> Pair:
    key = _key(directory, name)
    csr = directory / f"{name}.csr"
    ext = directory / f"{name}.ext"
    ext.write_text(extensions)
    cert = directory / f"{name}.crt"
    _openssl("req", "-new", "-key", str(key), "-out", str(csr), "-subj", f"/CN={name}", cwd=directory)
    _openssl("x509", "-req", "-in", str(csr), "-CA", str(ca.cert), "-CAkey", str(ca.key), "-CAcreateserial",
             "-out", str(cert), "-days", "2", "-extfile", str(ext), cwd=directory)  # fmt: skip
    return Pair(cert, key)


SERVER_EXTENSIONS = "subjectAltName=IP:127.0.0.1,DNS:localhost\nextendedKeyUsage=serverAuth\n"
CLIENT_EXTENSIONS = "extendedKeyUsage=clientAuth\n"


def make_pki(directory: Path) -> Pki:
    if shutil.which("openssl") is None:
        pytest.fail("the openssl command-line tool is needed to make test certificates (.ci/system-packages.sh)")
    directory.mkdir(parents=True, exist_ok=True)
    ca = _ca(directory, "dunetrace-test-ca")
    stranger_ca = _ca(directory, "stranger-ca")
    return Pki(
        ca=ca.cert,
        server=_signed(directory, "dunetrace-server", ca, SERVER_EXTENSIONS),
        renewed=_signed(directory, "dunetrace-renewed", ca, SERVER_EXTENSIONS),
        client=_signed(directory, "agent", ca, CLIENT_EXTENSIONS),
        stranger_ca=stranger_ca.cert,
        stranger=_signed(directory, "stranger", stranger_ca, CLIENT_EXTENSIONS),
    )
