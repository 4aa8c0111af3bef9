"""Scripted fake LLM provider: OpenAI (chat completions + responses) and Anthropic (messages).

Stateless script: the reply depends on how many tool results the request already carries.
While fewer than LOOPS tool results are present, the model asks for the same tool with
identical arguments; then it gives a final text answer.

Env: FAKE_PORT (default 27500), FAKE_LOOPS (default 4), FAKE_TOOL (default lookup_order),
     FAKE_DELAY_MS (default 0: latency added before every answer).
Run:  python fake_llm.py
"""

import asyncio
import json
import os
import time
import uuid

from aiohttp import web

LOOPS = int(os.environ.get("FAKE_LOOPS", "4"))
TOOL = os.environ.get("FAKE_TOOL", "lookup_order")
ARGS = {"order_id": "A123"}
FINAL = "Order A123 has shipped and will arrive on Friday."
LOG = []  # (endpoint, stream, n_tool_results, action)
# FAKE_MODE=loop (default: tool loop then answer) | truncate (every answer cut off: length / max_tokens)
#           | empty (every answer is an empty text with finish_reason stop / end_turn)
MODE = os.environ.get("FAKE_MODE", "loop")
DELAY = float(os.environ.get("FAKE_DELAY_MS", "0")) / 1000.0
if MODE == "truncate":
    LOOPS, FINAL = 0, "Order A123 has sh"
elif MODE == "empty":
    LOOPS, FINAL = 0, ""


def _tool_name(tools):
    names = []
    for t in tools or []:
        if "function" in t and isinstance(t["function"], dict):
            names.append(t["function"].get("name"))
        elif "name" in t:
            names.append(t["name"])
    if TOOL in names:
        return TOOL
    return names[0] if names else TOOL


def _log(endpoint, stream, n, action):
    LOG.append((endpoint, stream, n, action))
    print(f"[fake] {time.time():.3f} {endpoint} stream={stream} tool_results={n} -> {action}", flush=True)


# ---------------------------------------------------------------- OpenAI chat completions
async def chat_completions(request: web.Request) -> web.StreamResponse:
    body = await request.json()
    if DELAY:
        await asyncio.sleep(DELAY)
    msgs = body.get("messages", [])
    n = sum(1 for m in msgs if m.get("role") == "tool")
    stream = bool(body.get("stream"))
    model = body.get("model", "gpt-4o-mini")
    cid = "chatcmpl-" + uuid.uuid4().hex[:24]
    created = int(time.time())
    want_tool = n < LOOPS and body.get("tools")
    usage = {"prompt_tokens": 50 + 20 * n, "completion_tokens": 12, "total_tokens": 62 + 20 * n}
    if want_tool:
        name = _tool_name(body.get("tools"))
        tc = {
            "id": f"call_{uuid.uuid4().hex[:20]}",
            "type": "function",
            "function": {"name": name, "arguments": json.dumps(ARGS)},
        }
        message = {"role": "assistant", "content": None, "tool_calls": [tc]}
        finish = "tool_calls"
        _log("chat", stream, n, f"tool_call {name}")
    else:
        message = {"role": "assistant", "content": FINAL}
        finish = "length" if MODE == "truncate" else "stop"
        _log("chat", stream, n, f"final ({MODE})")
    if not stream:
        return web.json_response(
            {
                "id": cid,
                "object": "chat.completion",
                "created": created,
                "model": model,
                "choices": [{"index": 0, "message": message, "finish_reason": finish, "logprobs": None}],
                "usage": usage,
            }
        )
    resp = web.StreamResponse(headers={"Content-Type": "text/event-stream"})
    await resp.prepare(request)

    async def send(obj):
        await resp.write(f"data: {json.dumps(obj)}\n\n".encode())

    base = {"id": cid, "object": "chat.completion.chunk", "created": created, "model": model}
    await send(
        {**base, "choices": [{"index": 0, "delta": {"role": "assistant", "content": ""}, "finish_reason": None}]}
    )
    if want_tool:
        tc = message["tool_calls"][0]
        await send(
            {
                **base,
                "choices": [
                    {
                        "index": 0,
                        "delta": {
                            "tool_calls": [
                                {
                                    "index": 0,
                                    "id": tc["id"],
                                    "type": "function",
                                    "function": {"name": tc["function"]["name"], "arguments": ""},
                                }
                            ]
                        },
                        "finish_reason": None,
                    }
                ],
            }
        )
        await send(
            {
                **base,
                "choices": [
                    {
                        "index": 0,
                        "delta": {"tool_calls": [{"index": 0, "function": {"arguments": tc["function"]["arguments"]}}]},
                        "finish_reason": None,
                    }
                ],
            }
        )
    else:
        for piece in FINAL.split(" "):
            await send({**base, "choices": [{"index": 0, "delta": {"content": piece + " "}, "finish_reason": None}]})
    await send({**base, "choices": [{"index": 0, "delta": {}, "finish_reason": finish}]})
    so = body.get("stream_options") or {}
    if so.get("include_usage"):
        await send({**base, "choices": [], "usage": usage})
    await resp.write(b"data: [DONE]\n\n")
    await resp.write_eof()
    return resp


# ---------------------------------------------------------------- OpenAI responses
async def responses(request: web.Request) -> web.StreamResponse:
    body = await request.json()
    if DELAY:
        await asyncio.sleep(DELAY)
    inp = body.get("input", [])
    if isinstance(inp, str):
        inp = []
    n = sum(1 for it in inp if isinstance(it, dict) and it.get("type") == "function_call_output")
    stream = bool(body.get("stream"))
    model = body.get("model", "gpt-4o-mini")
    rid = "resp_" + uuid.uuid4().hex[:24]
    want_tool = n < LOOPS and body.get("tools")
    if want_tool:
        name = _tool_name(body.get("tools"))
        item = {
            "type": "function_call",
            "id": "fc_" + uuid.uuid4().hex[:20],
            "call_id": "call_" + uuid.uuid4().hex[:20],
            "name": name,
            "arguments": json.dumps(ARGS),
            "status": "completed",
        }
        _log("responses", stream, n, f"tool_call {name}")
    else:
        item = {
            "type": "message",
            "id": "msg_" + uuid.uuid4().hex[:20],
            "status": "completed",
            "role": "assistant",
            "content": [{"type": "output_text", "text": FINAL, "annotations": []}],
        }
        _log("responses", stream, n, "final")
    r = {
        "id": rid,
        "object": "response",
        "created_at": int(time.time()),
        "status": "completed",
        "model": model,
        "output": [item],
        "parallel_tool_calls": True,
        "tool_choice": "auto",
        "tools": body.get("tools", []),
        "usage": {
            "input_tokens": 50 + 20 * n,
            "output_tokens": 12,
            "total_tokens": 62 + 20 * n,
            "input_tokens_details": {"cached_tokens": 0},
            "output_tokens_details": {"reasoning_tokens": 0},
        },
        "error": None,
        "incomplete_details": None,
        "instructions": body.get("instructions"),
        "metadata": {},
        "temperature": 1.0,
        "top_p": 1.0,
        "text": {"format": {"type": "text"}},
        "truncation": "disabled",
    }
    if not stream:
        return web.json_response(r)
    resp = web.StreamResponse(headers={"Content-Type": "text/event-stream"})
    await resp.prepare(request)
    seq = 0

    async def send(ev):
        nonlocal seq
        ev["sequence_number"] = seq
        seq += 1
        await resp.write(f"event: {ev['type']}\ndata: {json.dumps(ev)}\n\n".encode())

    await send({"type": "response.created", "response": {**r, "status": "in_progress", "output": []}})
    await send({"type": "response.output_item.added", "output_index": 0, "item": item})
    await send({"type": "response.output_item.done", "output_index": 0, "item": item})
    await send({"type": "response.completed", "response": r})
    await resp.write_eof()
    return resp


# ---------------------------------------------------------------- Anthropic messages
async def messages(request: web.Request) -> web.StreamResponse:
    body = await request.json()
    if DELAY:
        await asyncio.sleep(DELAY)
    n = 0
    for m in body.get("messages", []):
        c = m.get("content")
        if isinstance(c, list):
            n += sum(1 for b in c if isinstance(b, dict) and b.get("type") == "tool_result")
    stream = bool(body.get("stream"))
    model = body.get("model", "claude-haiku-4-5")
    mid = "msg_" + uuid.uuid4().hex[:24]
    want_tool = n < LOOPS and body.get("tools")
    if want_tool:
        name = _tool_name(body.get("tools"))
        content = [{"type": "tool_use", "id": "toolu_" + uuid.uuid4().hex[:20], "name": name, "input": ARGS}]
        stop = "tool_use"
        _log("anthropic", stream, n, f"tool_use {name}")
    else:
        content = [{"type": "text", "text": FINAL}]
        stop = "max_tokens" if MODE == "truncate" else "end_turn"
        _log("anthropic", stream, n, f"final ({MODE})")
    usage = {"input_tokens": 50 + 20 * n, "output_tokens": 12}
    msg = {
        "id": mid,
        "type": "message",
        "role": "assistant",
        "model": model,
        "content": content,
        "stop_reason": stop,
        "stop_sequence": None,
        "usage": usage,
    }
    if not stream:
        return web.json_response(msg)
    resp = web.StreamResponse(headers={"Content-Type": "text/event-stream"})
    await resp.prepare(request)

    async def send(ev):
        await resp.write(f"event: {ev['type']}\ndata: {json.dumps(ev)}\n\n".encode())

    await send(
        {
            "type": "message_start",
            "message": {
                **msg,
                "content": [],
                "stop_reason": None,
                "usage": {"input_tokens": usage["input_tokens"], "output_tokens": 1},
            },
        }
    )
    blk = content[0]
    if blk["type"] == "text":
        await send({"type": "content_block_start", "index": 0, "content_block": {"type": "text", "text": ""}})
        await send({"type": "content_block_delta", "index": 0, "delta": {"type": "text_delta", "text": blk["text"]}})
    else:
        await send(
            {
                "type": "content_block_start",
                "index": 0,
                "content_block": {"type": "tool_use", "id": blk["id"], "name": blk["name"], "input": {}},
            }
        )
        await send(
            {
                "type": "content_block_delta",
                "index": 0,
                "delta": {"type": "input_json_delta", "partial_json": json.dumps(blk["input"])},
            }
        )
    await send({"type": "content_block_stop", "index": 0})
    await send(
        {
            "type": "message_delta",
            "delta": {"stop_reason": stop, "stop_sequence": None},
            "usage": {"output_tokens": usage["output_tokens"]},
        }
    )
    await send({"type": "message_stop"})
    await resp.write_eof()
    return resp


async def catch_all(request: web.Request) -> web.Response:
    print(f"[fake] UNHANDLED {request.method} {request.path}", flush=True)
    return web.json_response({"error": {"message": f"fake: no {request.path}"}}, status=404)


def make_app() -> web.Application:
    app = web.Application()
    for prefix in ("", "/v1"):
        app.router.add_post(prefix + "/chat/completions", chat_completions)
        app.router.add_post(prefix + "/responses", responses)
        app.router.add_post(prefix + "/messages", messages)
    app.router.add_route("*", "/{tail:.*}", catch_all)
    return app


if __name__ == "__main__":
    web.run_app(make_app(), host="127.0.0.1", port=int(os.environ.get("FAKE_PORT", "27500")), print=None)
