"""Bearer keys, as the OTLP receivers and the API check them."""

from __future__ import annotations

import hmac


def key_matches(presented: str, keys: tuple[str, ...]) -> bool:
    """``Bearer <key>`` against the configured keys, in constant time; no keys: anything goes."""
    if not keys:
        return True
    scheme, _, token = presented.partition(" ")
    token_bytes = token.strip().encode("utf-8", "surrogateescape")
    return scheme.lower() == "bearer" and any(hmac.compare_digest(token_bytes, key.encode()) for key in keys)
