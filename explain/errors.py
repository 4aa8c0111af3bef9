"""Failures of the explain loop, each with the HTTP status and code the API answers with.

Upstream trouble is 502 (bad answer / unreachable / credentials refused), 503 (busy or not
configured) or 504 (timed out); the caller's mistakes are 4xx.
"""

from __future__ import annotations


class ExplainError(Exception):
    def __init__(self, status: int, code: str, message: str) -> None:
        super().__init__(message)
        self.status = status
        self.code = code
        self.message = message
