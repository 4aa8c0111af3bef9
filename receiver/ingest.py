"""What the OTLP servers hand requests to (the pipeline implements it), still encoded."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal, Protocol, TypeVar

from google.protobuf.message import DecodeError, Message

from receiver import otlp_json
from receiver.errors import BAD_DATA, ReceiverError

M = TypeVar("M", bound=Message)


@dataclass(frozen=True, slots=True)
class ExportResult:
    """Items refused (partial success) and why; 0 and "" is full success."""

    rejected: int = 0
    message: str = ""


@dataclass(frozen=True, slots=True)
class EncodedRequest:
    """An export request's bytes as they arrived (inflated): decoded where it is translated, in a
    worker process (dunetrace_sidecar/translation.py), so the daemon's process neither parses it
    nor encodes it again to hand it over. ``encoding``: ``grpc`` (a gRPC message), ``protobuf``
    or ``json`` (an OTLP/HTTP body)."""

    body: bytes
    encoding: Literal["grpc", "protobuf", "json"]

    def decode(self, request_type: type[M]) -> M:
        """The request, or ReceiverError(BAD_DATA) saying what it is not (never the parser's text)."""
        message = request_type()
        name = request_type.__name__
        if self.encoding == "json":
            try:
                return otlp_json.parse(self.body, message)
            except otlp_json.JsonDecodeError as exc:
                raise ReceiverError(BAD_DATA, f"the body is not a valid OTLP/JSON {name}", cause=exc) from None
        try:
            message.ParseFromString(self.body)
        except DecodeError as exc:
            what = (
                f"the message is not a valid {name}"
                if self.encoding == "grpc"
                else f"the body is not a valid {name} (OTLP protobuf)"
            )
            raise ReceiverError(BAD_DATA, what, cause=exc) from None
        return message


class Ingest(Protocol):
    def check_capacity(self) -> None:
        """Raise ReceiverError(QUEUE_FULL | SHUTTING_DOWN) when no more work can be taken."""

    def note_refused(self, transport: str, signal: str, reason: str) -> None:
        """A whole export request was refused (counted, never logged per request)."""

    async def export_traces(self, request: EncodedRequest, transport: str) -> ExportResult:
        """Decode, translate and store; returns once the result is durable. Raises ReceiverError
        (BAD_DATA for a request that does not decode)."""

    async def export_logs(self, request: EncodedRequest, transport: str) -> ExportResult:
        """gen_ai content records are used, the rest dropped and counted."""

    async def export_metrics(self, request: EncodedRequest, transport: str) -> ExportResult:
        """Accepted so default OpenLLMetry setups see no errors; counted and dropped."""
