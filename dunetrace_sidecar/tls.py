"""TLS for the listeners, from PEM files, modelled on the OpenTelemetry Collector's configtls.

A certificate and its key (``cert_file``, ``key_file``) make a listener TLS-only; a client CA
(``client_ca_file``) makes it mutual TLS: a client must present a certificate the CA signed.
TLS 1.2 is the least version accepted. The files are checked when the configuration is
loaded (the daemon refuses to start on a missing, unreadable, encrypted or mismatched file)
and watched while it runs: when they change (cert-manager renewing a Secret), new
connections get the new certificate; connections already open keep theirs.
"""

from __future__ import annotations

import logging
import os
import ssl
import threading
from dataclasses import dataclass

import grpc

log = logging.getLogger("dunetrace.tls")

MIN_VERSION = ssl.TLSVersion.TLSv1_2


class TlsError(ValueError):
    """A file that cannot serve; ``field`` names it (cert_file, key_file, client_ca_file)."""

    def __init__(self, field: str, message: str) -> None:
        super().__init__(message)
        self.field = field


@dataclass(frozen=True, slots=True)
class TlsFiles:
    cert_file: str
    key_file: str
    client_ca_file: str = ""

    @property
    def mutual(self) -> bool:
        return bool(self.client_ca_file)

    def paths(self) -> tuple[str, ...]:
        return tuple(p for p in (self.cert_file, self.key_file, self.client_ca_file) if p)


@dataclass(frozen=True, slots=True)
class Pem:
    """The files' contents, read once and checked together."""

    cert: bytes
    key: bytes
    client_ca: bytes | None


def _read(field: str, path: str) -> bytes:
    try:
        with open(path, "rb") as file:
            return file.read()
    except OSError as exc:
        raise TlsError(field, f"cannot read {path}: {exc.strerror or exc}") from None


def _no_password() -> bytes:
    # Without a callback OpenSSL would prompt on the terminal for an encrypted key's password.
    return b""


def load(files: TlsFiles) -> tuple[Pem, ssl.SSLContext]:
    """Read and check the files; the server context built from them. Raises TlsError."""
    cert = _read("cert_file", files.cert_file)
    key = _read("key_file", files.key_file)
    ca = _read("client_ca_file", files.client_ca_file) if files.client_ca_file else None
    if b"-----BEGIN CERTIFICATE-----" not in cert:
        raise TlsError("cert_file", f"{files.cert_file} holds no PEM certificate")
    if b"PRIVATE KEY-----" not in key:
        raise TlsError("key_file", f"{files.key_file} holds no PEM private key")
    if b"ENCRYPTED" in key:
        raise TlsError("key_file", f"{files.key_file} is encrypted; give the key unencrypted (keep it in a Secret)")
    if ca is not None and b"-----BEGIN CERTIFICATE-----" not in ca:
        raise TlsError("client_ca_file", f"{files.client_ca_file} holds no PEM certificate")
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    context.minimum_version = MIN_VERSION
    try:
        context.load_cert_chain(files.cert_file, files.key_file, password=_no_password)
    except ssl.SSLError as exc:
        if "KEY_VALUES_MISMATCH" in str(exc):
            raise TlsError(
                "key_file", f"{files.key_file} is not the key of the certificate in {files.cert_file}"
            ) from None
        raise TlsError("cert_file", f"cannot use {files.cert_file} with {files.key_file} ({exc.reason})") from None
    if ca is not None:
        try:
            context.load_verify_locations(cadata=ca.decode("ascii", "replace"))
        except ssl.SSLError as exc:
            raise TlsError(
                "client_ca_file", f"{files.client_ca_file} is not a usable CA bundle ({exc.reason})"
            ) from None
        context.verify_mode = ssl.CERT_REQUIRED
    return Pem(cert, key, ca), context


def _stamp(paths: tuple[str, ...]) -> tuple[tuple[int, int, int], ...] | None:
    """What changes when a file is replaced: a mounted Secret swaps a symlink, so stat follows it."""
    try:
        return tuple((s.st_mtime_ns, s.st_size, s.st_ino) for s in map(os.stat, paths))
    except OSError:
        return None  # mid-replace: look again next time


class ServerTls:
    """One listener group's TLS: an SSLContext for aiohttp and credentials for grpc, both
    following the files when they change (``poll()``)."""

    def __init__(self, name: str, files: TlsFiles) -> None:
        self.name = name
        self.files = files
        pem, self.context = load(files)
        self._pem = pem
        self._stamp = _stamp(files.paths())
        self._lock = threading.Lock()  # grpc asks for the certificate from its own threads
        self._grpc_served: Pem | None = pem

    def poll(self) -> bool:
        """Reload when the files changed; True when a new certificate was installed. A broken
        set (say, a new certificate next to the old key) is logged and the current one kept."""
        stamp = _stamp(self.files.paths())
        if stamp is None or stamp == self._stamp:
            return False
        self._stamp = stamp
        try:
            pem, _ = load(self.files)
        except TlsError as exc:
            log.error(
                "tls %s: the changed files cannot serve (%s: %s); keeping the current certificate",
                self.name,
                exc.field,
                exc,
            )
            return False
        # In place: the listening socket keeps this context; new handshakes use the new chain.
        # A CA added to client_ca_file is trusted at once; one removed stays trusted until restart.
        self.context.load_cert_chain(self.files.cert_file, self.files.key_file, password=_no_password)
        if pem.client_ca is not None:
            self.context.load_verify_locations(cadata=pem.client_ca.decode("ascii", "replace"))
        with self._lock:
            self._pem = pem
        log.info("tls %s: certificate reloaded from %s", self.name, self.files.cert_file)
        return True

    def grpc_credentials(self) -> grpc.ServerCredentials:
        return grpc.dynamic_ssl_server_credentials(
            self._grpc_configuration(self._pem),
            self._grpc_fetch,
            require_client_authentication=self.files.mutual,
        )

    @staticmethod
    def _grpc_configuration(pem: Pem) -> grpc.ServerCertificateConfiguration:
        return grpc.ssl_server_certificate_configuration([(pem.key, pem.cert)], root_certificates=pem.client_ca)

    def _grpc_fetch(self) -> grpc.ServerCertificateConfiguration | None:
        """Called by grpc (on its own thread) before each new connection's handshake."""
        with self._lock:
            if self._grpc_served is self._pem:
                return None
            self._grpc_served = self._pem
            return self._grpc_configuration(self._pem)
