"""Compressed OTLP/HTTP bodies: inflated strictly and within bounds (issue 11).

aiohttp's own inflater accepted a gzip stream cut short and answered 200 for spans it never
read; and the in-flight bound counted compressed bytes, so inflated bodies could hold many
times more memory than admission allowed.
"""

from __future__ import annotations

import gzip
import zlib

import pytest

from receiver.admission import Admission
from receiver.errors import ReceiverError
from tests.receiver.test_bad_input import (  # noqa: F401  (limited: the small-limit daemon fixture)
    LIMIT,
    PROTOBUF,
    assert_still_serves,
    fresh_toolloop,
    limited,
    status_body,
)
from tests.sidecar import Sidecar


def gz(body: bytes) -> bytes:
    return gzip.compress(body)


def stored(daemon: Sidecar, run_id: str) -> bool:
    return daemon.api(f"/v1/runs/{run_id}").status == 200


@pytest.mark.parametrize("cut", [1, 5, 8, 20])
def test_a_gzip_stream_cut_short_is_400_and_stores_nothing(sidecar: Sidecar, cut: int) -> None:
    body, run_id = fresh_toolloop()
    result = sidecar.post_otlp(gz(body)[:-cut], extra_headers={"Content-Encoding": "gzip"})
    assert result.status == 400, result.body[:200]
    assert "cut short" in status_body(result, PROTOBUF).message
    assert not stored(sidecar, run_id)
    assert_still_serves(sidecar)


def test_bytes_after_the_gzip_stream_are_400(sidecar: Sidecar) -> None:
    body, run_id = fresh_toolloop()
    result = sidecar.post_otlp(gz(body) + b"trailing bytes", extra_headers={"Content-Encoding": "gzip"})
    assert result.status == 400
    assert not stored(sidecar, run_id)


@pytest.mark.parametrize(
    ("encoding", "compress"),
    [
        ("gzip", gz),
        ("gzip", lambda b: gz(b[:100]) + gz(b[100:])),  # two members, as concatenated gzip files are
        ("deflate", zlib.compress),  # RFC 9110 deflate: zlib-wrapped
        ("deflate", lambda b: zlib.compress(b, wbits=-15)),  # raw deflate, as some clients send
        ("GZIP", gz),
    ],
)
def test_good_compressed_bodies_are_stored(sidecar: Sidecar, encoding: str, compress: object) -> None:
    body, run_id = fresh_toolloop()
    assert callable(compress)
    result = sidecar.post_otlp(compress(body), extra_headers={"Content-Encoding": encoding})
    assert result.status == 200, result.body[:200]
    assert sidecar.run(run_id)["tool_calls"] == 4


def test_inflated_size_over_the_limit_is_413(limited: Sidecar) -> None:  # noqa: F811
    # small on the wire, over the limit once inflated
    padded = b"\x0a" + b"\x00" * (2 * LIMIT)
    result = limited.post_otlp(gz(padded), extra_headers={"Content-Encoding": "gzip"})
    assert result.status == 413
    assert "Retry-After" not in result.headers
    assert_still_serves(limited)


def test_admission_counts_what_a_body_grows_to() -> None:
    admission = Admission(max_requests=10, max_bytes=1000)
    with admission.admit(100) as grow:
        grow(700)  # the first body alone may grow as far as it needs
        assert admission.bytes == 800
        with admission.admit(100) as grow_second:
            with pytest.raises(ReceiverError):
                grow_second(200)  # 800 + 100 + 200 > 1000: refused, retried later
            assert admission.bytes == 900
        assert admission.bytes == 800
        with pytest.raises(ReceiverError), admission.admit(300):  # the inflated first body refuses the next
            pass
    assert (admission.bytes, admission.requests) == (0, 0)
