"""The content boundary parses and writes JSON through the stdlib's C scanner and encoder,
called directly (receiver/content.py). Each must give exactly what ``json.loads`` and
``json.dumps`` give — a differing byte would change a hash the detectors compare — and refuse
what they refuse. The expected values here are the stdlib's own answers."""

from __future__ import annotations

import json
from typing import Any

from hypothesis import given, settings
from hypothesis import strategies as st

from receiver.content import canonical_arguments, loads_json, messages_from_semconv

SCALARS = (
    st.none()
    | st.booleans()
    | st.integers(min_value=-(2**70), max_value=2**70)
    | st.floats(allow_nan=True, allow_infinity=True)
    | st.text(max_size=20)
)
VALUES = st.recursive(
    SCALARS,
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=8), inner, max_size=4),
    max_leaves=20,
)
CONTAINERS = st.lists(VALUES, max_size=4) | st.dictionaries(st.text(max_size=8), VALUES, max_size=4)


def stdlib_loads(text: str) -> Any:
    try:
        return json.loads(text)
    except (ValueError, RecursionError):
        return text


def same(a: Any, b: Any) -> bool:
    """Equal, NaN included, and dicts in the same key order."""
    return json.dumps(a, sort_keys=False) == json.dumps(b, sort_keys=False) and type(a) is type(b)


@settings(max_examples=600, derandomize=True, deadline=None)
@given(CONTAINERS, st.sampled_from(["", " ", "\n\t ", "x", " ]", "}", "\u00a0", " 1"]))
def test_loads_json_answers_as_json_loads(value: Any, tail: str) -> None:
    text = json.dumps(value, ensure_ascii=False) + tail
    assert same(loads_json(text), stdlib_loads(text))


@settings(max_examples=400, derandomize=True, deadline=None)
@given(st.text(alphabet='[]{}",:0123456789.eE+-tfnrulNaIiy \\\n', max_size=40))
def test_loads_json_refuses_what_json_loads_refuses(text: str) -> None:
    text = "[" + text
    assert same(loads_json(text), stdlib_loads(text))


def test_loads_json_edge_cases_match_json_loads() -> None:
    cases = [
        "[NaN, Infinity, -Infinity]",
        "[123456789012345678901234567890]",
        '["\\ud800"]',
        '{"a": 1, "b": 2, "a": 3}',
        "[1] [2]",
        "{}  ",
        "[" * 5000 + "]" * 5000,  # deeper than the recursion limit: kept as text
        "[1,]",
        "{",
    ]
    for text in cases:
        assert same(loads_json(text), stdlib_loads(text)), text
    assert loads_json("plain text") == "plain text"
    assert loads_json(" [1]") == " [1]"  # only a string that starts as JSON is parsed, as before


@settings(max_examples=600, derandomize=True, deadline=None)
@given(VALUES)
def test_canonical_arguments_are_json_dumps_sorted_and_compact(value: Any) -> None:
    if isinstance(value, dict) and (set(value) == {"args", "kwargs"} or "input_str" in value):
        return  # an instrumentation's envelope: unwrapped first (tests/receiver elsewhere)
    if isinstance(value, str):
        if value[:1] not in ("{", "["):  # plain text: kept as it is
            assert canonical_arguments(value) == value
        return
    assert canonical_arguments(value) == json.dumps(value, sort_keys=True, separators=(",", ":"), ensure_ascii=False)


def test_canonical_arguments_of_json_text_and_of_the_unserialisable() -> None:
    assert canonical_arguments('{"b": [1, 2.5e-7], "a": "é"}') == '{"a":"é","b":[1,2.5e-07]}'  # Python's float repr
    assert canonical_arguments({"args": [], "kwargs": {"q": 1}}) == '{"q":1}'
    deep: list[Any] = []
    for _ in range(5000):
        deep = [deep]
    assert canonical_arguments(deep) == "<unserialisable arguments>"
    assert canonical_arguments({"x": {1, 2}}) == "<unserialisable arguments>"


@settings(max_examples=300, derandomize=True, deadline=None)
@given(CONTAINERS)
def test_non_text_content_is_json_dumps_sorted(content: Any) -> None:
    message = json.dumps([{"role": "user", "parts": [{"type": "text", "content": content}]}])
    [parsed] = messages_from_semconv(message)
    assert parsed.texts == [json.dumps(json.loads(json.dumps(content)), sort_keys=True, ensure_ascii=False)]
