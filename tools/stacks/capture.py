"""Build the conformance capture corpus: real agent stacks -> fake LLM -> OTLP capture receiver.

usage: python tools/stacks/capture.py [--list] [--no-install] [capture-name ...]   (all captures when none given)

For each capture:
  1. venv .stacks/<env> (python3.11 -m venv; pip install -r tools/stacks/requirements/<env>.txt, skipped while the
     stamp file .stacks/<env>/.requirements.sha256 matches the requirements + the constraint files they name);
  2. fake_llm.py and otlp_capture.py on free 127.0.0.1 ports, run by a "tools" python that has aiohttp, grpcio and
     opentelemetry-proto (the repo's .venv when it has them, else the venv .stacks/tools from requirements/tools.txt);
  3. the stack script, with FAKE_BASE_URL / OTLP_ENDPOINT pointing at those ports (OTLP/HTTP protobuf);
  4. once the script has exited and the receiver has been quiet QUIET_S seconds, the servers are stopped and the
     capture is written to tests/testdata/stacks/<capture-name>/: the request bodies as received
     (NNNN-<signal>-<transport>.<ext>, numbered in arrival order), index.jsonl (otlp_capture.py's index) and
     capture.json (command, env vars, package versions, the fake LLM's answers, the script's output).
     Metrics requests are dropped (neither stored nor indexed; the numbering keeps their gaps).
A capture whose script fails (non-zero exit, time-out) is not written; its logs stay in .stacks/run/<capture-name>/.
Exception: a capture flagged allow_failure (the -empty / -truncate variants, where the framework may raise on the
model's answer) is written despite a non-zero exit, provided the fake LLM answered at least one call (a time-out or a
crash before any model answer is still a failure); capture.json then has the exit code and the error's last lines.

Variants: "<name>-clean" (FAKE_LOOPS=1: one tool call, then the answer) for every base capture but the -linger one;
"<name>-empty" (FAKE_MODE=empty) and "<name>-truncate" (FAKE_MODE=truncate) for a few. The FAKE_* vars go to the
fake LLM's environment (not the script's) and are recorded in capture.json as fake_llm_env.
Every wait is bounded.
"""

import argparse
import datetime
import hashlib
import json
import os
import re
import shutil
import signal
import socket
import subprocess
import sys
import time
import urllib.request

HERE = os.path.dirname(os.path.abspath(__file__))
REPO = os.path.dirname(os.path.dirname(HERE))
REQ_DIR = os.path.join(HERE, "requirements")
STACKS = os.path.join(REPO, ".stacks")
CORPUS = os.path.join(REPO, "tests", "testdata", "stacks")

INSTALL_TIMEOUT_S = 1800
SERVER_START_TIMEOUT_S = 30
SCRIPT_TIMEOUT_S = 600
QUIET_S = 2.0
QUIET_MAX_WAIT_S = 60

V2_LATEST = {"OTEL_SEMCONV_STABILITY_OPT_IN": "gen_ai_latest_experimental"}
CAPTURES = {  # name -> (env, script + args, extra env vars); in order of importance
    "openai-v2-none": ("openai-v2", ["openai_v2_loop.py", "root"], dict(V2_LATEST)),
    "openai-v2-span-only": (
        "openai-v2",
        ["openai_v2_loop.py", "root"],
        {**V2_LATEST, "OTEL_INSTRUMENTATION_GENAI_CAPTURE_MESSAGE_CONTENT": "SPAN_ONLY"},
    ),
    "openai-v2-event-only": (
        "openai-v2",
        ["openai_v2_loop.py", "root"],
        {**V2_LATEST, "OTEL_INSTRUMENTATION_GENAI_CAPTURE_MESSAGE_CONTENT": "EVENT_ONLY"},
    ),
    "openai-v2-span-and-event": (
        "openai-v2",
        ["openai_v2_loop.py", "root"],
        {**V2_LATEST, "OTEL_INSTRUMENTATION_GENAI_CAPTURE_MESSAGE_CONTENT": "SPAN_AND_EVENT"},
    ),
    "openai-v2-noroot": ("openai-v2", ["openai_v2_loop.py", "noroot"], dict(V2_LATEST)),
    "openai-v2-toolspans": (
        "openai-v2",
        ["openai_v2_loop.py", "toolspans"],
        {**V2_LATEST, "OTEL_INSTRUMENTATION_GENAI_CAPTURE_MESSAGE_CONTENT": "SPAN_ONLY"},
    ),
    "openai-v2-legacy-events": (
        "openai-v2-legacy",
        ["openai_v2_loop.py", "root"],
        {"OTEL_INSTRUMENTATION_GENAI_CAPTURE_MESSAGE_CONTENT": "true"},
    ),
    "openai-v2-legacy-events-linger": (
        "openai-v2-legacy",
        ["openai_v2_loop.py", "root"],
        {"OTEL_INSTRUMENTATION_GENAI_CAPTURE_MESSAGE_CONTENT": "true", "LINGER": "6"},
    ),
    "langgraph-openllmetry-openai": ("traceloop", ["langgraph_traceloop.py", "http", "prebuilt"], {}),
    "langgraph-openllmetry-anthropic": ("traceloop", ["langgraph_variants.py", "traceloop-anthropic"], {}),
    "langchain-agent-openllmetry-openai": ("traceloop", ["langgraph_traceloop.py", "http", "langchain"], {}),
    "agents-sdk-openllmetry": ("agents-openllmetry", ["agents_sdk.py", "openllmetry", "responses"], {}),
    "agents-sdk-openinference": ("agents-openinference", ["agents_sdk.py", "openinference", "responses"], {}),
    "langgraph-openinference-openai": (
        "langchain-openinference",
        ["langgraph_variants.py", "openinference-openai"],
        {},
    ),
    "llamaindex-openinference": ("llamaindex", ["llamaindex_agent.py", "http"], {}),
    "pydantic-ai-openai": ("pydantic-ai", ["pydantic_ai_agent.py", "openai"], {}),
    "pydantic-ai-anthropic": ("pydantic-ai", ["pydantic_ai_agent.py", "anthropic"], {}),
    "openllmetry-decorators-openai": ("traceloop", ["traceloop_decorators.py"], {}),
    "crewai-openinference": ("crewai", ["crewai_agent.py"], {}),
    "openlit-openai": ("openlit-1.34", ["openlit_openai_loop.py"], {}),
    "openlit-openai-1.36": ("openlit-1.36", ["openlit_openai_loop.py"], {}),
    "openlit-openai-1.45": ("openlit", ["openlit_openai_loop.py"], {}),
    "strands-openai": ("strands", ["strands_agent.py"], {}),
    "strands-openai-latest": ("strands", ["strands_agent.py"], dict(V2_LATEST)),
}
# Per-capture options (4th tuple element): fake_llm_env (FAKE_* vars for the fake LLM process), allow_failure.
BASE_CAPTURES = list(CAPTURES)
for _n in BASE_CAPTURES:  # clean runs: 1 tool call, then the answer (1 run, 2 LLM calls, 1 tool call)
    if not _n.endswith("-linger"):
        CAPTURES[_n + "-clean"] = (*CAPTURES[_n][:3], {"fake_llm_env": {"FAKE_LOOPS": "1"}})
ANSWER_VARIANTS = (
    "langgraph-openllmetry-anthropic",
    "pydantic-ai-anthropic",
    "openai-v2-span-only",
    "agents-sdk-openllmetry",
)
for _mode in ("empty", "truncate"):  # every answer empty / cut off; the framework may raise on it
    for _n in ANSWER_VARIANTS:
        _opts = {"fake_llm_env": {"FAKE_MODE": _mode}, "allow_failure": True}
        CAPTURES[f"{_n}-{_mode}"] = (*CAPTURES[_n][:3], _opts)


def capture_spec(name):
    """(env, script + args, extra env vars for the script, options)"""
    env_name, argv, extra, *rest = CAPTURES[name]
    return env_name, argv, extra, (rest[0] if rest else {})


# Set for every script (besides PATH/HOME/LANG): no telemetry, no key look-ups, only 127.0.0.1.
BASE_VARS = {
    "PYTHONUNBUFFERED": "1",
    "PYTHONDONTWRITEBYTECODE": "1",
    "OTLP_PROTO": "http",
    "OPENAI_API_KEY": "sk-fake",
    "ANTHROPIC_API_KEY": "sk-fake",
    "TRACELOOP_TELEMETRY": "false",
    "TRACELOOP_METRICS_ENABLED": "false",
    "CREWAI_DISABLE_TELEMETRY": "true",
    "CREWAI_TRACING_ENABLED": "false",
    "OTEL_SDK_DISABLED": "false",
    "DO_NOT_TRACK": "1",
    "NO_PROXY": "127.0.0.1,localhost",
}
PKG_RE = re.compile(
    r"^(opentelemetry|openinference|traceloop|langchain|langgraph|openai|anthropic|pydantic|llama-index"
    r"|crewai|litellm|wrapt|httpx|openlit|strands)",
    re.I,
)
FAKE_RE = re.compile(
    r"^\[fake\] (?P<t>[\d.]+) (?P<endpoint>\S+) stream=(?P<stream>\S+) tool_results=(?P<n>\d+) -> (?P<action>.*)$"
)


def log(msg):
    print(f"[capture.py] {msg}", flush=True)


# ------------------------------------------------------------------------------------------- venvs
def req_files(path):
    """The requirements file plus every -r / -c file it names (recursively)."""
    out = [path]
    for line in open(path):
        m = re.match(r"^\s*(-r|-c|--requirement|--constraint)\s+(\S+)", line)
        if m:
            out += req_files(os.path.join(os.path.dirname(path), m.group(2)))
    return out


def ensure_venv(env, install=True):
    venv = os.path.join(STACKS, env)
    py = os.path.join(venv, "bin", "python")
    req = os.path.join(REQ_DIR, env + ".txt")
    h = hashlib.sha256()
    for f in req_files(req):
        h.update(os.path.relpath(f, REQ_DIR).encode() + b"\0" + open(f, "rb").read())
    stamp_file = os.path.join(venv, ".requirements.sha256")
    stamp = h.hexdigest()
    if os.path.exists(py) and os.path.exists(stamp_file) and open(stamp_file).read().strip() == stamp:
        return py
    if not install:
        raise RuntimeError(f"venv {venv} missing or out of date (run without --no-install)")
    if not os.path.exists(py):
        log(f"creating venv {venv}")
        subprocess.run(["python3.11", "-m", "venv", venv], check=True, timeout=300)
    log(f"pip install -r {os.path.relpath(req, REPO)} (up to {INSTALL_TIMEOUT_S}s)")
    os.makedirs(os.path.join(STACKS, "logs"), exist_ok=True)
    with open(os.path.join(STACKS, "logs", env + ".log"), "w") as lf:
        r = subprocess.run(
            [py, "-m", "pip", "install", "-r", req], stdout=lf, stderr=subprocess.STDOUT, timeout=INSTALL_TIMEOUT_S
        )
    if r.returncode != 0:
        raise RuntimeError(f"pip install failed for {env}: see .stacks/logs/{env}.log")
    with open(stamp_file, "w") as f:
        f.write(stamp + "\n")
    return py


def tools_python(install=True):
    repo_py = os.path.join(REPO, ".venv", "bin", "python")
    if os.path.exists(repo_py):
        r = subprocess.run(
            [repo_py, "-c", "import aiohttp, grpc, opentelemetry.proto.collector.trace.v1"],
            capture_output=True,
            timeout=60,
        )
        if r.returncode == 0:
            return repo_py
    return ensure_venv("tools", install)


# ------------------------------------------------------------------------------------------- servers
def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def wait_for(cond, timeout, what):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if cond():
            return
        time.sleep(0.1)
    raise TimeoutError(f"timed out after {timeout}s waiting for {what}")


def port_open(port):
    try:
        with socket.create_connection(("127.0.0.1", port), timeout=0.5):
            return True
    except OSError:
        return False


def stop(proc, name):
    if proc.poll() is not None:
        return
    proc.send_signal(signal.SIGTERM)
    try:
        proc.wait(timeout=10)
    except subprocess.TimeoutExpired:
        log(f"{name} did not stop on SIGTERM; killing pid {proc.pid}")
        proc.kill()
        proc.wait(timeout=10)


def receiver_status(port):
    with urllib.request.urlopen(f"http://127.0.0.1:{port}/_capture/status", timeout=2) as r:
        return json.loads(r.read())


def pip_versions(py):
    r = subprocess.run([py, "-m", "pip", "freeze", "--all"], capture_output=True, text=True, timeout=120)
    out = {}
    for line in r.stdout.splitlines():
        if "==" in line and PKG_RE.match(line):
            k, v = line.split("==", 1)
            out[k] = v
    return dict(sorted(out.items()))


def fake_summary(lines):
    entries = []
    for line in lines:
        m = FAKE_RE.match(line.strip())
        if m:
            entries.append(
                {
                    "endpoint": m["endpoint"],
                    "stream": m["stream"] == "True",
                    "tool_results_in_request": int(m["n"]),
                    "answer": m["action"],
                }
            )
    summ = {
        "llm_calls": len(entries),
        "tool_call_answers": sum(1 for e in entries if e["answer"].startswith(("tool_call", "tool_use"))),
        "final_answers": sum(1 for e in entries if e["answer"].startswith("final")),
        "endpoints": sorted({e["endpoint"] for e in entries}),
        "streaming": sorted({e["stream"] for e in entries}),
    }
    unhandled = [ln.strip() for ln in lines if "UNHANDLED" in ln]
    if unhandled:
        summ["unhandled_requests"] = unhandled
    return summ, entries


# ------------------------------------------------------------------------------------------- one capture
def run_capture(name, install=True):
    env_name, argv, extra, opts = capture_spec(name)
    fake_env = dict(opts.get("fake_llm_env", {}))
    allow_failure = bool(opts.get("allow_failure"))
    py = ensure_venv(env_name, install)
    tpy = tools_python(install)
    work = os.path.join(STACKS, "run", name)
    shutil.rmtree(work, ignore_errors=True)
    raw = os.path.join(work, "raw")
    os.makedirs(raw)
    fake_port, http_port, grpc_port = free_port(), free_port(), free_port()
    while len({fake_port, http_port, grpc_port}) < 3:
        grpc_port = free_port()
    procs = []
    fake_out = open(os.path.join(work, "fake_llm.log"), "w")
    cap_out = open(os.path.join(work, "otlp_capture.log"), "w")
    try:
        fake = subprocess.Popen(
            [tpy, os.path.join(HERE, "fake_llm.py")],
            stdout=fake_out,
            stderr=subprocess.STDOUT,
            env={
                **{k: v for k, v in os.environ.items() if not k.startswith("FAKE_")},  # only the capture's FAKE_* vars
                **fake_env,
                "FAKE_PORT": str(fake_port),
                "PYTHONUNBUFFERED": "1",
            },
        )
        procs.append((fake, "fake_llm"))
        cap = subprocess.Popen(
            [
                tpy,
                os.path.join(HERE, "otlp_capture.py"),
                "--out",
                raw,
                "--host",
                "127.0.0.1",
                "--http-port",
                str(http_port),
                "--grpc-port",
                str(grpc_port),
            ],
            stdout=cap_out,
            stderr=subprocess.STDOUT,
            env={**os.environ, "PYTHONUNBUFFERED": "1"},
        )
        procs.append((cap, "otlp_capture"))
        wait_for(lambda: port_open(fake_port) or fake.poll() is not None, SERVER_START_TIMEOUT_S, "fake_llm")
        wait_for(
            lambda: os.path.exists(os.path.join(raw, "receiver.ready")) or cap.poll() is not None,
            SERVER_START_TIMEOUT_S,
            "otlp_capture",
        )
        if fake.poll() is not None or cap.poll() is not None:
            raise RuntimeError(f"a server exited at start; see {work}/fake_llm.log, otlp_capture.log")

        set_vars = {
            **BASE_VARS,
            **extra,
            "FAKE_BASE_URL": f"http://127.0.0.1:{fake_port}",
            "OTLP_ENDPOINT": f"http://127.0.0.1:{http_port}",
        }
        home = os.path.join(STACKS, "home")
        os.makedirs(home, exist_ok=True)
        run_env = {
            "PATH": os.path.dirname(py) + os.pathsep + os.environ.get("PATH", "/usr/bin:/bin"),
            "HOME": home,
            "LANG": os.environ.get("LANG", "C.UTF-8"),
            **set_vars,
        }
        cmd = [py, os.path.join(HERE, argv[0]), *argv[1:]]
        log(f"{name}: {' '.join(os.path.relpath(c, REPO) if c.startswith(REPO) else c for c in cmd)}")
        t0 = time.time()
        with open(os.path.join(work, "script.out"), "w") as so, open(os.path.join(work, "script.err"), "w") as se:
            sp = subprocess.Popen(cmd, stdout=so, stderr=se, env=run_env, cwd=REPO, start_new_session=True)
            try:
                rc = sp.wait(timeout=SCRIPT_TIMEOUT_S)
            except subprocess.TimeoutExpired:
                os.killpg(sp.pid, signal.SIGKILL)
                sp.wait(timeout=10)
                raise RuntimeError(f"script timed out after {SCRIPT_TIMEOUT_S}s; see {work}/script.out/.err") from None
        t_exit = time.time()
        # the receiver must have been quiet QUIET_S seconds after the script exited
        deadline = time.monotonic() + QUIET_MAX_WAIT_S
        while True:
            st = receiver_status(http_port)
            last = (st.get("last_recv_unix_ns") or 0) / 1e9
            if time.time() - max(last, t_exit) >= QUIET_S:
                break
            if time.monotonic() > deadline:
                log(f"{name}: receiver still busy after {QUIET_MAX_WAIT_S}s; stopping anyway")
                break
            time.sleep(0.2)
    finally:
        for p, pname in reversed(procs):
            stop(p, pname)
        fake_out.close()
        cap_out.close()

    out_text = open(os.path.join(work, "script.out")).read()
    err_text = open(os.path.join(work, "script.err")).read()
    summ, entries = fake_summary(open(os.path.join(work, "fake_llm.log")).read().splitlines())
    if rc != 0 and not (allow_failure and summ["llm_calls"] > 0):
        raise RuntimeError(f"script exited {rc}; stderr tail:\n{err_text[-3000:]}")
    script_error = None
    if rc != 0:  # allowed: the framework raised on the model's answer; keep the exception's last lines
        lines = [ln for ln in err_text.splitlines() if ln.strip()]
        script_error = lines[-12:]
        log(f"{name}: script exited {rc} (allowed): {lines[-1] if lines else ''}")

    # ---- write the corpus entry
    dest = os.path.join(CORPUS, name)
    tmp = dest + ".tmp"
    shutil.rmtree(tmp, ignore_errors=True)
    os.makedirs(tmp)
    counts, sizes, dropped = {}, {}, 0
    with open(os.path.join(raw, "index.jsonl")) as src, open(os.path.join(tmp, "index.jsonl"), "w") as idx:
        for line in src:
            rec = json.loads(line)
            if rec["signal"] == "metrics":
                dropped += 1
                continue
            idx.write(line)
            shutil.copyfile(os.path.join(raw, rec["file"]), os.path.join(tmp, rec["file"]))
            counts[rec["signal"]] = counts.get(rec["signal"], 0) + 1
            sizes[rec["signal"]] = sizes.get(rec["signal"], 0) + rec["body_bytes"]
    tool_lines = [ln for ln in out_text.splitlines() if "tool executions" in ln or ln.startswith("final:")]
    m = re.search(r"tool executions: (\d+)", out_text)
    meta = {
        "capture": name,
        "env": env_name,
        "requirements": os.path.relpath(os.path.join(REQ_DIR, env_name + ".txt"), REPO),
        "command": [f".stacks/{env_name}/bin/python", os.path.relpath(cmd[1], REPO), *cmd[2:]],
        "cwd": ".",
        "env_vars": set_vars,
        "env_vars_note": "the script's whole environment: these plus PATH (venv bin first), HOME (.stacks/home), LANG; "
        "ports are free ports picked for that run",
        "fake_llm_env": fake_env,
        "allow_failure": allow_failure,
        "otlp_export": "OTLP/HTTP protobuf",
        "captured_at": datetime.datetime.now(datetime.UTC).strftime("%Y-%m-%dT%H:%M:%SZ"),
        "python": subprocess.run(
            [py, "-c", "import sys; print(sys.version.split()[0])"], capture_output=True, text=True, timeout=60
        ).stdout.strip(),
        "versions": pip_versions(py),
        "script_start_unix_ns": int(t0 * 1e9),
        "script_exit_unix_ns": int(t_exit * 1e9),
        "script_exit_code": rc,
        "script_error": script_error,
        "script_seconds": round(t_exit - t0, 2),
        "script_output": tool_lines,
        "tool_executions": int(m.group(1)) if m else None,
        "fake_llm": {**summ, "answers": entries},
        "requests": counts,
        "request_body_bytes": sizes,
        "metrics_requests_dropped": dropped,
    }
    with open(os.path.join(tmp, "capture.json"), "w") as f:
        json.dump(meta, f, indent=2)
        f.write("\n")
    shutil.rmtree(dest, ignore_errors=True)
    os.rename(tmp, dest)
    log(
        f"{name}: wrote {os.path.relpath(dest, REPO)}: requests {counts}, bytes {sizes}, metrics dropped {dropped}, "
        f"LLM calls {summ['llm_calls']} (tool {summ['tool_call_answers']}, final {summ['final_answers']}), "
        f"tool executions {meta['tool_executions']}"
    )
    return meta


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("names", nargs="*")
    ap.add_argument("--list", action="store_true", help="list the captures and their venvs")
    ap.add_argument("--no-install", action="store_true", help="fail instead of installing a missing/stale venv")
    a = ap.parse_args()
    if a.list:
        for n in CAPTURES:
            e, argv, extra, opts = capture_spec(n)
            fake = " ".join(f"{k}={v}" for k, v in opts.get("fake_llm_env", {}).items())
            print(
                f"{n:40s} {e:24s} {' '.join(argv)} {' '.join(f'{k}={v}' for k, v in extra.items())}"
                + (f" [fake LLM: {fake}]" if fake else "")
                + (" [allow_failure]" if opts.get("allow_failure") else "")
            )
        return 0
    names = a.names or list(CAPTURES)
    unknown = [n for n in names if n not in CAPTURES]
    if unknown:
        ap.error(f"unknown capture(s): {unknown}; see --list")
    failed = {}
    for n in names:
        try:
            run_capture(n, install=not a.no_install)
        except Exception as e:  # report and go on with the others
            failed[n] = f"{type(e).__name__}: {e}"
            log(f"{n}: FAILED: {failed[n]}")
    if failed:
        log("failed: " + ", ".join(failed))
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
