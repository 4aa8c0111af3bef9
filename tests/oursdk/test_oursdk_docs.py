"""The docs' "Local policies" code block runs verbatim with our SDK, and each of its three policies
acts on a run: the loop fix on the TOOL_LOOP our detectors see in-process, the cost cap at $0.50,
the stop at the 6th tool call; the sidecar stores the run as stopped by policy."""

from __future__ import annotations

from pathlib import Path

from tests.oursdk.env import SCRIPTS
from tests.oursdk.harness import run_script
from tests.sdk.harness import Api
from tests.sidecar import TESTDATA, Sidecar

DOCS = TESTDATA / "seed-dunetrace-docs.txt"  # the docs our users read (../shared/spec), as the tests hold them
SCRIPT = SCRIPTS / "docs_local_policies.py"


def _block(text: str, first: str, last: str) -> str:
    lines = text.splitlines()
    start = lines.index(first)
    end = lines.index(last, start)
    return "\n".join(lines[start + 1 : end])


def test_the_script_holds_the_docs_block_verbatim() -> None:
    docs = _block(DOCS.read_text(), "Local policies (no backend required)", "Remote policies (dashboard-managed)")
    ours = _block(SCRIPT.read_text(), "# --- the docs, verbatim ---", "# --- end of the docs ---")
    assert docs.count("dt.add_policy(") == 3
    assert ours == docs


def test_the_docs_local_policies_act(oursdk_python: Path, oursdk_daemon: Sidecar) -> None:
    out = run_script(oursdk_python, "docs_local_policies", oursdk_daemon)
    r = out.result
    # gpt-4o at 100k in / 5k out costs $0.30 a call: past $0.50 after the 2nd answer
    assert r["models"] == ["gpt-4o", "gpt-4o", "gpt-4o-mini", "gpt-4o-mini", "gpt-4o-mini", "gpt-4o-mini"]
    assert r["stopped"] == {"policy": "cap tool calls", "at_tool_call": 6}
    assert r["additions"] == ["Stop repeating tool calls. Summarise what you know and answer directly."]
    run = Api(oursdk_daemon).wait_run(r["run_id"])
    assert (run["status"], run["exit_reason"], run["tool_calls"], run["llm_calls"]) == (
        "errored",
        "policy_violation",
        6,
        6,
    )
    fired = [
        (e["payload"]["policy_name"], e["payload"]["action_type"])
        for e in run["events"]
        if e["event_type"] == "policy.triggered"
    ]
    assert fired == [("cost cap", "switch_model"), ("loop fix", "inject_prompt"), ("cap tool calls", "stop")]
