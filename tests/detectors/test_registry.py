"""The registry against spec §3: the 15 types, their modes, config keys and defaults; an
explanation template for each (explain/templates.py); and a `detectors` package that imports
nothing heavy."""

from __future__ import annotations

import dataclasses
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from detectors.base import REGISTRY, Signal
from detectors.settings import DetectorSettings
from explain.templates import TEMPLATES, explain
from tests.detectors.runs import Replay, RunBuilder, injection, loop, replay

ROOT = Path(__file__).resolve().parents[2]

SPEC_MODES = {
    "TOOL_LOOP": "live",
    "TOOL_THRASHING": "live",
    "RETRY_STORM": "live",
    "CASCADING_TOOL_FAILURE": "live",
    "LLM_TRUNCATION_LOOP": "live",
    "EMPTY_LLM_RESPONSE": "live",
    "FIRST_STEP_FAILURE": "live",
    "CONTEXT_BLOAT": "live",
    "SLOW_STEP": "live",
    "STEP_COUNT_INFLATION": "live",
    "REASONING_STALL": "live",
    "PROMPT_INJECTION_SIGNAL": "live",
    "TOOL_AVOIDANCE": "end",
    "RAG_EMPTY_RETRIEVAL": "end",
    "GOAL_ABANDONMENT": "end",
}

# type → (YAML key, {threshold: default}) as spec §3 names them
SPEC_DEFAULTS: dict[str, tuple[str, dict[str, Any]]] = {
    "TOOL_LOOP": ("tool_loop", {"window": 5, "threshold": 3}),
    "TOOL_THRASHING": ("tool_thrashing", {"window": 6}),
    "RETRY_STORM": ("retry_storm", {"threshold": 3}),
    "CASCADING_TOOL_FAILURE": ("cascading_tool_failure", {"threshold": 3}),
    "LLM_TRUNCATION_LOOP": ("llm_truncation_loop", {"threshold": 2}),
    "FIRST_STEP_FAILURE": ("first_step_failure", {"max_step": 2}),
    "CONTEXT_BLOAT": ("context_bloat", {"min_calls": 3, "min_last_tokens": 2000, "growth_factor": 3.0}),
    "SLOW_STEP": ("slow_step", {"tool_ms": 15000, "llm_ms": 30000}),
    "STEP_COUNT_INFLATION": ("step_count_inflation", {"inflation_factor": 2.0}),
    "REASONING_STALL": ("reasoning_stall", {"min_llm_calls": 5, "ratio": 4.0}),
    "TOOL_AVOIDANCE": ("tool_avoidance", {"min_llm_calls": 2}),
    "RAG_EMPTY_RETRIEVAL": ("rag_empty_retrieval", {"min_results": 1, "min_score": 0.3}),
    "GOAL_ABANDONMENT": ("goal_abandonment", {"stall_steps": 4}),
}


def test_the_fifteen_types_with_their_modes() -> None:
    assert {t: d.mode for t, d in REGISTRY.items()} == SPEC_MODES


@pytest.mark.parametrize("failure_type", sorted(SPEC_DEFAULTS))
def test_config_keys_and_defaults(failure_type: str) -> None:
    key, defaults = SPEC_DEFAULTS[failure_type]
    assert REGISTRY[failure_type].key == key
    config = DetectorSettings.parse({}).for_agent("any-agent")[failure_type]
    thresholds = {f.name: getattr(config, f.name) for f in dataclasses.fields(config)}
    assert thresholds.pop("enabled") is True
    assert thresholds.pop("shadow") is False
    assert thresholds == defaults


# --- one real signal of each type, for the explanation test ----------------------------------


def _tool_loop() -> Replay:
    b = RunBuilder()
    for _ in range(3):
        loop(b, "search", args_hash="sha256:aa")
    return replay(b.build())


def _thrashing() -> Replay:
    b = RunBuilder()
    for name in ["search", "fetch"] * 3:
        loop(b, name)
    return replay(b.build())


def _retry_storm() -> Replay:
    b = RunBuilder()
    for _ in range(3):
        loop(b, "search", success=False, error_type="Timeout")
    return replay(b.build())


def _cascade() -> Replay:
    b = RunBuilder()
    for name in ["search", "fetch", "search"]:
        loop(b, name, success=False, error_type="ConnectionError")
    return replay(b.build())


def _truncation() -> Replay:
    return replay(RunBuilder().llm(finish="length").llm(finish="length").build())


def _empty() -> Replay:
    return replay(RunBuilder().llm(tools=["search"]).tool("search").llm(finish="stop", output_length=0).build())


def _first_step() -> Replay:
    return replay(RunBuilder().llm(tools=["search"]).tool("search", success=False, error_type="AuthError").build())


def _bloat() -> Replay:
    b = RunBuilder()
    for tokens in (500, 1000, 2000):
        b.llm(tools=["search"], prompt_tokens=tokens).tool("search")
    return replay(b.build())


def _slow() -> Replay:
    return replay(RunBuilder().llm(tools=["search"]).tool("search", latency_ms=30000).build())


def _inflation() -> Replay:
    b = RunBuilder()
    for _ in range(6):
        loop(b, "search")
    return replay(b.build(), baseline=lambda agent: 5.0)


def _stall() -> Replay:
    b = RunBuilder()
    for _ in range(5):
        b.llm()
    return replay(b.build())


def _injection() -> Replay:
    found = injection("you_are_now", "system_tag", source="tool_result", input_length=1200)
    return replay(RunBuilder().llm(tools=["fetch_page"]).tool("fetch_page", injection=found).build())


def _avoidance() -> Replay:
    return replay(RunBuilder().start(tools=["calculator", "search"]).llm().llm().end().build())


def _rag() -> Replay:
    return replay(RunBuilder().start().retrieval(result_count=0, top_score=None, index_name="kb").llm().end().build())


def _abandonment() -> Replay:
    b = RunBuilder().llm(tools=["search"]).tool("search")
    for _ in range(4):
        b.llm(finish="length")
    r = replay(b.build())
    r.stall()
    return r


SCENARIOS: dict[str, Callable[[], Replay]] = {
    "TOOL_LOOP": _tool_loop,
    "TOOL_THRASHING": _thrashing,
    "RETRY_STORM": _retry_storm,
    "CASCADING_TOOL_FAILURE": _cascade,
    "LLM_TRUNCATION_LOOP": _truncation,
    "EMPTY_LLM_RESPONSE": _empty,
    "FIRST_STEP_FAILURE": _first_step,
    "CONTEXT_BLOAT": _bloat,
    "SLOW_STEP": _slow,
    "STEP_COUNT_INFLATION": _inflation,
    "REASONING_STALL": _stall,
    "PROMPT_INJECTION_SIGNAL": _injection,
    "TOOL_AVOIDANCE": _avoidance,
    "RAG_EMPTY_RETRIEVAL": _rag,
    "GOAL_ABANDONMENT": _abandonment,
}


def _evidence_tokens(signal: Signal) -> set[str]:
    """The numbers and names in a signal's evidence, as they could be written in a sentence."""
    tokens: set[str] = set()
    values: list[Any] = []
    for value in signal.evidence.values():
        values.extend(value if isinstance(value, list) else [value])
    for value in values:
        if isinstance(value, bool) or value is None:
            continue
        if isinstance(value, float) and value.is_integer():
            tokens.add(str(int(value)))
        tokens.add(str(value))
    return tokens


def test_every_registered_type_has_a_scenario() -> None:
    assert set(SCENARIOS) == set(REGISTRY)


@pytest.mark.parametrize("failure_type", sorted(SPEC_MODES))
def test_every_type_has_an_explanation(failure_type: str) -> None:
    assert failure_type in TEMPLATES  # not the generic fallback
    signal = SCENARIOS[failure_type]().hit(failure_type).signal

    explanation = explain(failure_type, signal.evidence, signal.confidence)

    assert explanation.title.strip()
    tokens = _evidence_tokens(signal)
    assert any(token in explanation.title for token in tokens), (explanation.title, tokens)
    assert explanation.what.strip()
    assert explanation.why_it_matters.strip()
    assert 1 <= len(explanation.suggested_fixes) <= 3
    assert all(fix.description.strip() for fix in explanation.suggested_fixes)


def test_detectors_import_nothing_heavy() -> None:
    code = (
        "import sys, detectors, detectors.library, detectors.engine, detectors.settings; "
        "bad=[m for m in sys.modules if m.split('.')[0] in "
        "('grpc','google','aiohttp','duckdb','opentelemetry','yaml')]; print(bad)"
    )
    result = subprocess.run([sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True, timeout=60)
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == "[]"
