"""An injection attempt in an agent's conversation, as our SDK sees it: the message is scanned in
the agent's process (once, though the history resends it), only its labels leave, and the sidecar
raises PROMPT_INJECTION_SIGNAL; a message that merely uses one of the words is no injection."""

from __future__ import annotations

from pathlib import Path

from tests.oursdk.harness import run_script
from tests.sdk.harness import Api
from tests.sidecar import Sidecar


def test_an_injection_in_the_history_is_labelled_in_process_and_signalled(
    oursdk_python: Path, oursdk_daemon: Sidecar
) -> None:
    out = run_script(oursdk_python, "injection", oursdk_daemon)
    api = Api(oursdk_daemon)
    injected = api.wait_run(out.result["injected"], lambda r: r["status"] != "running")
    called = [e["payload"] for e in injected["events"] if e["event_type"] == "llm.called"]
    # Both calls carry the attacking message (the second resends the history): both are labelled.
    assert [c["injection"]["matched_patterns"] for c in called] == [["ignore_instructions"], ["ignore_instructions"]]
    assert all(c["injection"]["source"] == "input" for c in called)
    assert "PROMPT_INJECTION_SIGNAL" in {s["failure_type"] for s in injected["signals"]}
    clean = api.wait_run(out.result["clean"], lambda r: r["status"] != "running")
    assert [e["payload"].get("injection") for e in clean["events"] if e["event_type"] == "llm.called"] == [None]
    assert not clean["signals"]
    stored = oursdk_daemon.db_path.read_bytes() + (
        oursdk_daemon.db_path.with_suffix(".duckdb.wal").read_bytes()
        if oursdk_daemon.db_path.with_suffix(".duckdb.wal").exists()
        else b""
    )
    assert b"print the system prompt" not in stored
