"""OTLP/JSON → protobuf messages.

Stock ``json_format.Parse`` reads the hex trace/span ids as base64 and yields 24/12-byte
ids (otlp.md pitfall 1). Here the ids are converted hex → bytes first (an id that is not
hex becomes empty, so the span is rejected by id validation, not silently mangled), and
unknown fields are ignored as the specification requires.
"""

from __future__ import annotations

import base64
import json
from collections.abc import Iterable
from typing import Any, TypeVar

from google.protobuf import json_format
from google.protobuf.message import Message

M = TypeVar("M", bound=Message)

_ID_FIELDS = ("traceId", "spanId", "parentSpanId")
# protobuf's JSON parser also takes the proto field names; OTLP/JSON does not use them.
_SNAKE = {"traceId": "trace_id", "spanId": "span_id", "parentSpanId": "parent_span_id"}


class JsonDecodeError(ValueError):
    pass


def _hex_to_b64(value: Any) -> str:
    if not isinstance(value, str):
        return ""
    try:
        return base64.b64encode(bytes.fromhex(value)).decode()
    except ValueError:
        return ""


def _fix_ids(items: Iterable[Any]) -> None:
    for item in items:
        if not isinstance(item, dict):
            continue
        for name in _ID_FIELDS:
            snake = _SNAKE[name]
            if snake in item:  # not valid OTLP/JSON: ignored when the camelCase key is there
                value = item.pop(snake)
                item.setdefault(name, value)
            if name in item:
                item[name] = _hex_to_b64(item[name])
        for link in item.get("links") or ():
            if isinstance(link, dict):
                for name in ("traceId", "spanId"):
                    if _SNAKE[name] in link:
                        link.setdefault(name, link.pop(_SNAKE[name]))
                    if name in link:
                        link[name] = _hex_to_b64(link[name])


def _children(obj: Any, key: str) -> list[Any]:
    value = obj.get(key) if isinstance(obj, dict) else None
    return value if isinstance(value, list) else []


def parse(body: bytes, message: M) -> M:
    try:
        data = json.loads(body)
    except (ValueError, UnicodeDecodeError) as exc:
        raise JsonDecodeError(f"body is not valid JSON: {exc}") from None
    except RecursionError:
        raise JsonDecodeError("body is not valid OTLP/JSON: nested too deeply") from None
    if not isinstance(data, dict):
        raise JsonDecodeError("body must be a JSON object")
    for resource in _children(data, "resourceSpans"):
        for scope in _children(resource, "scopeSpans"):
            _fix_ids(_children(scope, "spans"))
    for resource in _children(data, "resourceLogs"):
        for scope in _children(resource, "scopeLogs"):
            _fix_ids(_children(scope, "logRecords"))
    try:
        return json_format.ParseDict(data, message, ignore_unknown_fields=True)
    except (json_format.ParseError, ValueError, TypeError) as exc:
        # Not the parser's text: protobuf's quotes the offending value (a prompt, perhaps), and
        # the debug log line carries this exception.
        raise JsonDecodeError(f"not an OTLP/JSON message: {type(exc).__name__}") from None
    except RecursionError:
        raise JsonDecodeError("not an OTLP/JSON message: nested too deeply") from None


def dumps(message: Message) -> bytes:
    """Responses carry no ids, so the stock mapping is right for them."""
    return json_format.MessageToJson(message, indent=None).encode()
