"""Summarize captures of tests/testdata/stacks/ as Markdown (what the README sections are generated from).

usage: .venv/bin/python tools/stacks/summarize.py [capture-name ...]   (needs opentelemetry-proto)

Per capture: how it was made (capture.json), the requests in arrival order, and per trace the span tree with the
attributes a translator keys on; then log records. Attribute keys are listed with list indexes folded to `N`
(`llm.input_messages.N.message.role`). Values are shown only for marker / name / finish-reason / id keys, and
(truncated) for tool input/output keys so their shape (envelope or plain arguments) is visible.
"""

import json
import os
import re
import sys
from collections import Counter, defaultdict

from opentelemetry.proto.collector.logs.v1 import logs_service_pb2
from opentelemetry.proto.collector.trace.v1 import trace_service_pb2

HERE = os.path.dirname(os.path.abspath(__file__))
CORPUS = os.path.join(os.path.dirname(os.path.dirname(HERE)), "tests", "testdata", "stacks")

MARKERS = [
    "gen_ai.operation.name",
    "openinference.span.kind",
    "traceloop.span.kind",
    "llm.request.type",
    "gen_ai.system",
    "gen_ai.provider.name",
    "llm.system",
    "llm.provider",
]
NAME_KEYS = [
    "gen_ai.agent.name",
    "agent.name",
    "gen_ai.workflow.name",
    "traceloop.workflow.name",
    "traceloop.entity.name",
    "gen_ai.tool.name",
    "tool.name",
    "graph.node.id",
    "langgraph.node",
]
NAME_RE = re.compile(r"(agent|workflow)[._]?name|\.agent$|agent_name|entity\.name|entity\.path|graph\.node", re.I)
FINISH_RE = re.compile(r"finish_reason|stop_reason", re.I)
ID_KEY_RE = re.compile(r"(tool[._]?call[._]?id|call_id|tool_call_id|\.tool_calls\.\d+\.(id|tool_call\.id))$", re.I)
IO_KEY_RE = re.compile(
    r"(entity\.input|entity\.output|^input\.value|^output\.value|tool\.call\.arguments|"
    r"tool\.call\.result|tool\.parameters|^tool\.arguments|^tool\.result|gen_ai\.tool\.input|"
    r"gen_ai\.tool\.output|^input\.mime_type|^output\.mime_type)",
    re.I,
)
CALL_ID_RE = re.compile(r"\b(call_[0-9a-f]{20}|toolu_[0-9a-f]{20}|fc_[0-9a-f]{20})\b")
KIND = {0: "UNSPECIFIED", 1: "INTERNAL", 2: "SERVER", 3: "CLIENT", 4: "PRODUCER", 5: "CONSUMER"}
STATUS = {0: "UNSET", 1: "OK", 2: "ERROR"}


def anyval(v):
    k = v.WhichOneof("value")
    if k is None:
        return None
    if k == "array_value":
        return [anyval(x) for x in v.array_value.values]
    if k == "kvlist_value":
        return {kv.key: anyval(kv.value) for kv in v.kvlist_value.values}
    if k == "bytes_value":
        return v.bytes_value.hex()
    return getattr(v, k)


def attrs(kvs):
    return {kv.key: anyval(kv.value) for kv in kvs}


def fold(key):
    return re.sub(r"\.\d+(?=\.|$)", ".N", key)


def short(v, n=110):
    s = v if isinstance(v, str) else json.dumps(v)
    s = s.replace("\n", "\\n").replace("|", "\\|")
    return s if len(s) <= n else s[:n] + f"…({len(s)} chars)"


def code(s):
    return f"`{s}`"


def folded_keys(a):
    return sorted({fold(k) for k in a})


def load(name):
    d = os.path.join(CORPUS, name)
    meta = json.load(open(os.path.join(d, "capture.json")))
    reqs = [json.loads(line) for line in open(os.path.join(d, "index.jsonl"))]
    spans, logs, req_rows = [], [], []
    for r in reqs:
        body = open(os.path.join(d, r["file"]), "rb").read()
        if r["signal"] == "traces":
            m = trace_service_pb2.ExportTraceServiceRequest()
            m.ParseFromString(body)
            n = 0
            scopes = Counter()
            for rs in m.resource_spans:
                res = attrs(rs.resource.attributes)
                for ss in rs.scope_spans:
                    for s in ss.spans:
                        n += 1
                        scopes[ss.scope.name] += 1
                        spans.append(
                            {
                                "req": r["seq"],
                                "res": res,
                                "scope": ss.scope.name,
                                "scope_version": ss.scope.version,
                                "span": s,
                                "a": attrs(s.attributes),
                            }
                        )
            req_rows.append((r, f"{n} spans", scopes))
        elif r["signal"] == "logs":
            m = logs_service_pb2.ExportLogsServiceRequest()
            m.ParseFromString(body)
            n = 0
            scopes = Counter()
            for rl in m.resource_logs:
                res = attrs(rl.resource.attributes)
                for sl in rl.scope_logs:
                    for lr in sl.log_records:
                        n += 1
                        scopes[sl.scope.name] += 1
                        logs.append(
                            {"req": r["seq"], "res": res, "scope": sl.scope.name, "lr": lr, "a": attrs(lr.attributes)}
                        )
            req_rows.append((r, f"{n} log records", scopes))
        else:
            req_rows.append((r, "?", Counter()))
    return meta, req_rows, spans, logs


def span_line(sp):
    s, a = sp["span"], sp["a"]
    bits = [f"{sp['label']} **{s.name}**", KIND[s.kind]]
    if s.status.code:
        bits.append(
            f"status={STATUS[s.status.code]}" + (f" ({short(s.status.message, 60)})" if s.status.message else "")
        )
    for k in MARKERS:
        if k in a:
            bits.append(f"{k}={short(a[k], 60)}")
    return " · ".join(bits)


def describe_span(sp, seen_keys):
    """Detail lines for one span (names, finish reasons, ids, tool io, events, keys)."""
    a, s = sp["a"], sp["span"]
    out = []
    names = {k: v for k, v in a.items() if k in NAME_KEYS or NAME_RE.search(k)}
    if names:
        out.append("names: " + ", ".join(f"{code(k)}={short(v, 60)}" for k, v in names.items()))
    fin = {k: v for k, v in a.items() if FINISH_RE.search(k)}
    if fin:
        out.append("finish: " + ", ".join(f"{code(k)}={short(v, 60)}" for k, v in fin.items()))
    for k in ("gen_ai.input.messages", "gen_ai.output.messages"):
        if isinstance(a.get(k), str):
            out.append(f"{code(k)} (JSON string): {messages_shape(a[k])}")
    ids = {k: v for k, v in a.items() if ID_KEY_RE.search(k)}
    if ids:  # ids in (replayed) input history: counted; others: values shown
        shown = [f"{code(k)}={short(v, 40)}" for k, v in ids.items() if "input" not in k]
        hist = Counter(fold(k) for k in ids if "input" in k)
        out.append("tool-call id keys: " + ", ".join(shown + [f"{code(k)} ×{n}" for k, n in hist.items()]))
    embedded = sorted({fold(k) for k, v in a.items() if k not in ids and isinstance(v, str) and CALL_ID_RE.search(v)})
    if embedded:
        out.append("call ids inside values of: " + ", ".join(code(k) for k in embedded))
    io = {k: v for k, v in a.items() if IO_KEY_RE.search(k)}
    if io and is_tool_span(a):  # tool spans: show enough of the value to see its shape
        out.append("tool io: " + "; ".join(f"{code(k)}={code(short(v, 600))}" for k, v in io.items()))
    elif io:  # other spans: key, value type and size only
        out.append(
            "io keys: " + ", ".join(f"{code(k)} ({type(v).__name__}, {len(str(v))} chars)" for k, v in io.items())
        )
    for ev in s.events:
        ea = attrs(ev.attributes)
        out.append(f"event {code(ev.name)} keys: " + (", ".join(code(k) for k in folded_keys(ea)) or "(none)"))
    fk = frozenset(folded_keys(a))
    best = None  # the earlier span (same scope) whose key set is closest
    for (scope, keys), label in seen_keys.items():
        if scope == sp["scope"]:
            d = len(keys ^ fk)
            if best is None or d < best[0]:
                best = (d, label, keys)
    if best and best[0] == 0:
        out.append(f"keys: as {best[1]}")
    elif best and best[0] <= 6 and len(fk) > 6:
        plus, minus = sorted(fk - best[2]), sorted(best[2] - fk)
        out.append(
            f"keys: as {best[1]}"
            + (" plus " + ", ".join(code(k) for k in plus) if plus else "")
            + (" minus " + ", ".join(code(k) for k in minus) if minus else "")
        )
    else:
        out.append(f"scope `{sp['scope']}`; keys: " + (", ".join(code(k) for k in sorted(fk)) or "(none)"))
    seen_keys.setdefault((sp["scope"], fk), sp["label"])
    return out


def messages_shape(v):
    """role:part-types per message (+ finish_reason) of a GenAI-semconv messages JSON string."""
    try:
        msgs = json.loads(v)
    except ValueError:
        return f"not JSON ({len(v)} chars)"
    if not isinstance(msgs, list):
        return f"JSON {type(msgs).__name__}"
    out = []
    for m in msgs:
        if not isinstance(m, dict):
            out.append(type(m).__name__)
            continue
        parts = "+".join(p.get("type", "?") for p in m.get("parts", []) if isinstance(p, dict))
        fin = f" finish_reason={json.dumps(m['finish_reason'])}" if "finish_reason" in m else ""
        out.append(f"{m.get('role')}:{parts or '-'}{fin}")
    return "[" + ", ".join(out) + "]"


def is_tool_span(a):
    return (
        a.get("gen_ai.operation.name") == "execute_tool"
        or str(a.get("openinference.span.kind", "")).upper() == "TOOL"
        or a.get("traceloop.span.kind") == "tool"
    )


def trace_tree(tspans, seen_keys, counter):
    by_id = {sp["span"].span_id: sp for sp in tspans}
    kids = defaultdict(list)
    roots = []
    for sp in tspans:
        p = sp["span"].parent_span_id
        if p and p in by_id:
            kids[p].append(sp)
        else:
            roots.append(sp)
    for v in kids.values():
        v.sort(key=lambda x: x["span"].start_time_unix_nano)
    roots.sort(key=lambda x: x["span"].start_time_unix_nano)
    lines = []

    def walk(sp, depth):
        counter[0] += 1
        sp["label"] = f"S{counter[0]}"
        ind = "  " * depth
        missing = ""
        if sp["span"].parent_span_id and sp["span"].parent_span_id not in by_id:
            missing = " (parent span id not in the capture)"
        lines.append(f"{ind}- {span_line(sp)}{missing} [req {sp['req']}]")
        for d in describe_span(sp, seen_keys):
            lines.append(f"{ind}  - {d}")
        for k in kids[sp["span"].span_id]:
            walk(k, depth + 1)

    for r in roots:
        walk(r, 0)
    return lines


def log_shape(lg):
    lr, a = lg["lr"], lg["a"]
    ev = lr.event_name or a.get("event.name") or "(no event name)"
    where = "LogRecord.event_name" if lr.event_name else ("`event.name` attribute" if "event.name" in a else "-")
    body = anyval(lr.body) if lr.HasField("body") else None
    if isinstance(body, dict):
        bdesc = "kvlist keys " + ", ".join(code(k) for k in body)
        nested = sorted(
            {f"{k}.{kk}" for k, v in body.items() if isinstance(v, dict) for kk in v}
            | {
                f"{k}[].{kk}"
                for k, v in body.items()
                if isinstance(v, list)
                for it in v
                if isinstance(it, dict)
                for kk in it
            }
        )
        if nested:
            bdesc += " (nested: " + ", ".join(code(k) for k in nested) + ")"
    elif body is None:
        bdesc = "no body"
    else:
        bdesc = f"{type(body).__name__} body"
    ids = "; tool-call ids in body" if body is not None and CALL_ID_RE.search(json.dumps(body)) else ""
    ids += "; tool-call ids in attributes" if CALL_ID_RE.search(json.dumps(a)) else ""
    return ev, (
        f"{code(ev)} (name in {where}), scope `{lg['scope']}`, severity {lr.severity_number}; "
        f"attrs: {', '.join(code(k) + attr_type(a, k) for k in folded_keys(a)) or '(none)'}; body: {bdesc}{ids}"
    )


def attr_type(a, folded):
    """' (array of kvlist)' etc. for non-scalar attribute values; '' for scalars."""
    v = a.get(folded)
    if isinstance(v, list):
        inner = {type(x).__name__ for x in v}
        return (
            " (array of " + "/".join(sorted("kvlist" if t == "dict" else t for t in inner)) + ")"
            if v
            else " (empty array)"
        )
    if isinstance(v, dict):
        return " (kvlist)"
    if isinstance(v, str) and v[:1] in "[{":
        return " (JSON string)"
    return ""


def section(name):
    meta, req_rows, spans, logs = load(name)
    L = [f"## {name}", ""]
    fl = meta["fake_llm"]
    cmd = " ".join(meta["command"])
    extra = {
        k: v
        for k, v in meta["env_vars"].items()
        if k.startswith(("OTEL_INSTRUMENTATION", "OTEL_SEMCONV", "LINGER", "LOGS_FIRST", "WORKFLOW_NAME"))
    }
    key_pkgs = {
        k: v
        for k, v in meta["versions"].items()
        if not k.startswith(("opentelemetry-exporter", "opentelemetry-proto", "pydantic_core", "wrapt"))
    }
    L.append(
        f"**Made with** `python tools/stacks/capture.py {name}`: venv `{meta['env']}` "
        f"(`{meta['requirements']}`), command `{cmd}`"
        + (", env " + ", ".join(f"`{k}={v}`" for k, v in extra.items()) if extra else "")
        + "."
    )
    L.append("")
    L.append("Versions: " + ", ".join(f"{k} {v}" for k, v in key_pkgs.items()) + ".")
    L.append("")
    L.append(
        f"Fake LLM: {fl['llm_calls']} calls ({fl['tool_call_answers']} tool-call answers, {fl['final_answers']} "
        f"final) on endpoint(s) {', '.join(fl['endpoints'])}, streaming={fl['streaming']}. "
        f"Script: tool executions = {meta['tool_executions']}."
    )
    L.append("")
    L.append("Requests in arrival order:")
    L.append("")
    for r, what, scopes in req_rows:
        L.append(
            f"- `{r['file']}` {r['body_bytes']} B: {what}"
            + (" — scopes " + ", ".join(f"`{k}`×{v}" for k, v in scopes.items()) if scopes else "")
        )
    L.append("")
    # resources
    res_seen = []
    for x in spans + logs:
        if x["res"] not in res_seen:
            res_seen.append(x["res"])
    for res in res_seen:
        L.append(
            "Resource: "
            + ", ".join(f"`{k}`={short(v, 50)}" for k, v in sorted(res.items()) if not k.startswith("telemetry.sdk"))
            + " (+ telemetry.sdk.*)"
        )
    L.append("")
    agent_names = ("order-support-agent", "Order support agent", "order-agent")
    whole, inside = Counter(), Counter()
    for sp in spans:
        for k, v in sp["a"].items():
            if v in agent_names:
                whole[f"{code(fold(k))} on {code(sp['span'].name)}"] += 1
            elif any(n in str(v) for n in agent_names):
                inside[code(fold(k))] += 1
        if any(n in sp["span"].name for n in agent_names):
            whole[f"span name {code(sp['span'].name)}"] += 1
    L.append(
        "Where the agent's name ("
        + "/".join(agent_names)
        + ") occurs: "
        + (
            "as a whole value: " + ", ".join(f"{k} ×{n}" for k, n in whole.items())
            if whole
            else "never as a whole value"
        )
        + ("; inside longer values of: " + ", ".join(f"{k} ×{n}" for k, n in inside.items()) if inside else "")
        + "."
    )
    L.append("")
    traces = defaultdict(list)
    for sp in spans:
        traces[sp["span"].trace_id].append(sp)
    order = sorted(traces, key=lambda t: min(s["span"].start_time_unix_nano for s in traces[t]))
    L.append(
        f"**{len(spans)} spans in {len(traces)} trace(s).** Span tree per trace (children by start time; "
        "`[req N]` = the request that carried the span):"
    )
    L.append("")
    seen_keys, counter = {}, [0]
    for i, t in enumerate(order, 1):
        ts = traces[t]
        L.append(f"Trace {i} (`{t.hex()[:8]}…`, {len(ts)} spans):")
        L.append("")
        L += trace_tree(ts, seen_keys, counter)
        L.append("")
    if logs:
        labels = {sp["span"].span_id: f"{sp['label']} ({sp['span'].name})" for sp in spans}
        L.append(f"**{len(logs)} log records**, by linked span (in record order):")
        L.append("")
        groups, shapes = [], {}
        for lg in logs:
            lr = lg["lr"]
            link = labels.get(lr.span_id, "span not in capture" if lr.span_id else "no span id")
            ev, shape = log_shape(lg)
            shapes.setdefault(shape, ev)
            if groups and groups[-1][0] == (lg["req"], link):
                groups[-1][1].append(ev)
            else:
                groups.append(((lg["req"], link), [ev]))
        for (req, link), evs in groups:
            L.append(f"- [req {req}] {link}: " + ", ".join(code(e) for e in evs))
        L.append("")
        L.append("Log record shapes:")
        L.append("")
        for shape in shapes:
            L.append(f"- {shape}")
        L.append("")
    return "\n".join(L)


def main():
    names = sys.argv[1:] or sorted(n for n in os.listdir(CORPUS) if os.path.isdir(os.path.join(CORPUS, n)))
    for n in names:
        print(section(n))


if __name__ == "__main__":
    main()
