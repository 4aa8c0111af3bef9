"""The OpenAPI 3.1 document served at /openapi.json (a test keeps it equal to the routes)."""

from __future__ import annotations

from typing import Any

from dunetrace_sidecar import __version__
from dunetrace_sidecar.views import NOT_SEEN

_ERROR = {"$ref": "#/components/schemas/Error"}


def _json(schema: dict[str, Any], description: str) -> dict[str, Any]:
    return {"description": description, "content": {"application/json": {"schema": schema}}}


def _errors(*statuses: int) -> dict[str, Any]:
    text = {
        400: "Bad parameter",
        401: "Missing or wrong bearer key",
        403: "Refused for this failure type",
        404: "Not found",
        502: "Upstream (Langfuse / LLM) failed or refused",
        503: "Store, Langfuse or LLM unavailable or not configured",
        504: "Upstream timed out",
    }
    return {str(s): _json(_ERROR, text[s]) for s in statuses}


def _page(key: str, schema: str) -> dict[str, Any]:
    """A page of a list endpoint: the items under ``key`` and the cursor of the next page."""
    items = {"type": "array", "items": {"$ref": f"#/components/schemas/{schema}"}}
    page = {"type": "object", "properties": {key: items, "next_cursor": {"type": ["string", "null"]}}}
    return _json(page, f"A page of {key}")


def _query(name: str, description: str, schema: dict[str, Any] | None = None) -> dict[str, Any]:
    return {
        "name": name,
        "in": "query",
        "required": False,
        "description": description,
        "schema": schema or {"type": "string"},
    }


_TIME = "RFC 3339 timestamp or Unix seconds"
_POLICY = {"$ref": "#/components/schemas/Policy"}


def _body() -> dict[str, Any]:
    return {"required": True, "content": {"application/json": {"schema": _POLICY}}}


def openapi_document() -> dict[str, Any]:
    run_id_param = {
        "name": "run_id",
        "in": "path",
        "required": True,
        "description": "The run id as a UUID, or the 32-hex OTel / Langfuse trace id.",
        "schema": {"type": "string"},
    }
    signal_id_param = {
        "name": "signal_id",
        "in": "path",
        "required": True,
        "description": "The signal id (a UUID).",
        "schema": {"type": "string", "format": "uuid"},
    }
    policy_id_param = {
        "name": "policy_id",
        "in": "path",
        "required": True,
        "description": "The policy id.",
        "schema": {"type": "integer"},
    }
    return {
        "openapi": "3.1.0",
        "info": {
            "title": "Dunetrace Sidecar API",
            "version": __version__,
            "description": "Runs, events and agents seen by the sidecar. Payloads hold names, numbers and "
            "hashes only. Every error has the shape of the Error schema.",
        },
        "components": {
            "securitySchemes": {"bearer": {"type": "http", "scheme": "bearer"}},
            "schemas": {
                "Error": {
                    "type": "object",
                    "required": ["error"],
                    "properties": {
                        "error": {
                            "type": "object",
                            "required": ["code", "message"],
                            "properties": {
                                "code": {"type": "string", "description": "machine-readable, e.g. run_not_found"},
                                "message": {"type": "string", "description": "a sentence for people"},
                            },
                        }
                    },
                },
                "Run": {
                    "type": "object",
                    "properties": {
                        "run_id": {"type": "string", "format": "uuid"},
                        "trace_id": {"type": "string", "description": "32 hex characters"},
                        "agent_id": {"type": "string"},
                        "service_name": {"type": ["string", "null"]},
                        "status": {"type": "string", "enum": ["running", "completed", "errored", "stalled"]},
                        "started_at": {"type": ["string", "null"], "format": "date-time"},
                        "ended_at": {"type": ["string", "null"], "format": "date-time"},
                        "last_event_at": {"type": ["string", "null"], "format": "date-time"},
                        "step_count": {"type": "integer"},
                        "llm_calls": {"type": "integer"},
                        "tool_calls": {"type": "integer"},
                        "retrievals": {"type": "integer"},
                        "errors": {"type": "integer"},
                        "prompt_tokens": {"type": "integer"},
                        "completion_tokens": {"type": "integer"},
                        "exit_reason": {
                            "type": ["string", "null"],
                            "enum": ["final_answer", "completed", "error", None],
                        },
                    },
                },
                "Event": {
                    "type": "object",
                    "properties": {
                        "event_id": {"type": "string"},
                        "event_type": {"type": "string"},
                        "step_index": {"type": "integer"},
                        "timestamp": {"type": "string", "format": "date-time"},
                        "call_id": {"type": "string"},
                        "payload": {"type": "object", "description": "names, numbers and hashes; see detectors.md §2"},
                    },
                },
                "Signal": {
                    "type": "object",
                    "properties": {
                        "signal_id": {"type": "string", "format": "uuid", "description": "stable: from run and type"},
                        "run_id": {"type": "string", "format": "uuid"},
                        "agent_id": {"type": "string"},
                        "failure_type": {"type": "string", "description": "e.g. TOOL_LOOP"},
                        "severity": {"type": "string", "enum": ["CRITICAL", "HIGH", "MEDIUM", "LOW"]},
                        "confidence": {"type": "number", "minimum": 0, "maximum": 1},
                        "step_index": {"type": "integer", "description": "the step that proves it"},
                        "evidence": {"type": "object", "description": "names, numbers and hashes only"},
                        "detected_at": {"type": "string", "format": "date-time"},
                        "mode": {"type": "string", "enum": ["live", "end"]},
                        "shadow": {"type": "boolean", "description": "stored, never alerted"},
                        "explanation": {"$ref": "#/components/schemas/Explanation"},
                    },
                },
                "Explanation": {
                    "type": "object",
                    "description": "Deterministic, built from the evidence (no LLM).",
                    "properties": {
                        "title": {"type": "string"},
                        "what": {"type": "string"},
                        "why_it_matters": {"type": "string"},
                        "evidence_summary": {"type": "string"},
                        "suggested_fixes": {
                            "type": "array",
                            "items": {
                                "type": "object",
                                "properties": {
                                    "description": {"type": "string"},
                                    "language": {"type": "string", "enum": ["python", "text", "yaml"]},
                                    "code": {"type": "string"},
                                },
                            },
                        },
                    },
                },
                "ExplainAnswer": {
                    "type": "object",
                    "properties": {
                        "signal_id": {"type": "string"},
                        "root_cause": {"type": "string"},
                        "fix_content": {"type": "string", "description": "one sentence for prompt_addition"},
                        "fix_type": {"type": "string", "enum": ["prompt_addition", "code_change", "no_auto_apply"]},
                        "apply_blocked": {"type": "boolean"},
                        "langfuse_prompt_name": {"type": ["string", "null"]},
                        "langfuse_prompt_version": {"type": ["integer", "null"]},
                        "langfuse_trace_id": {"type": "string"},
                        "source": {"type": "string", "enum": ["langfuse", "sidecar_spans", "signal_only"]},
                        "explainer": {"type": "string", "description": "template, anthropic:<model> or openai:<model>"},
                        "fallback_reason": {"type": "string", "description": "why the LLM answer was not used"},
                        "langfuse_error": {"type": "string", "description": "why the Langfuse trace was not used"},
                    },
                },
                "AppliedFix": {
                    "type": "object",
                    "properties": {
                        "fix_id": {"type": ["string", "null"]},
                        "langfuse_prompt_name": {"type": "string"},
                        "label": {"type": "string"},
                        "old_version": {"type": "integer"},
                        "new_version": {"type": "integer"},
                        "prompt_url": {"type": "string"},
                        "already_applied": {"type": "boolean"},
                    },
                },
                "FixStatus": {
                    "type": "object",
                    "properties": {
                        "fix_applied": {"type": "boolean"},
                        "runs_after_fix": {"type": "integer"},
                        "recurrences_after_fix": {"type": "integer"},
                        "adopted_runs": {
                            "type": "integer",
                            "description": "runs whose generations used the new version",
                        },
                        "verdict": {
                            "type": "string",
                            "enum": ["verified", "likely_fixed", "still_occurring", "insufficient_data"],
                        },
                    },
                },
                "Policy": {
                    "type": "object",
                    "required": ["name", "condition", "action"],
                    "properties": {
                        "id": {"type": "integer", "readOnly": True},
                        "name": {"type": "string"},
                        "agent_id": {"type": "string", "description": "'*' for every agent (default)"},
                        "condition": {
                            "type": "object",
                            "required": ["trigger", "operator", "value"],
                            "properties": {
                                "trigger": {
                                    "type": "string",
                                    "enum": [
                                        "tool_call_count",
                                        "step_count",
                                        "cost_usd",
                                        "error_count",
                                        "finish_reason",
                                        "llm_latency_ms",
                                        "signal",
                                    ],
                                },
                                "operator": {
                                    "type": "string",
                                    "enum": ["gt", "gte", "lt", "lte", "eq", "neq", "contains"],
                                },
                                "value": {"description": "a number, or a string for finish_reason and signal"},
                            },
                        },
                        "action": {
                            "type": "object",
                            "required": ["type"],
                            "properties": {
                                "type": {"type": "string", "enum": ["stop", "switch_model", "inject_prompt", "log"]},
                                "params": {
                                    "type": "object",
                                    "description": "model for switch_model, prompt for inject_prompt",
                                },
                            },
                        },
                        "priority": {"type": "integer", "description": "lower first (default 100)"},
                        "enabled": {"type": "boolean"},
                    },
                },
                "RunDetail": {
                    "allOf": [
                        {"$ref": "#/components/schemas/Run"},
                        {
                            "type": "object",
                            "properties": {
                                "events": {"type": "array", "items": {"$ref": "#/components/schemas/Event"}},
                                "signals": {"type": "array", "items": {"$ref": "#/components/schemas/Signal"}},
                                "end_pending": {
                                    "type": "boolean",
                                    "description": "the end-of-run detectors still wait runs.end_grace_seconds"
                                    " for spans that reach the sidecar after the root",
                                },
                                "not_seen": {
                                    "type": "array",
                                    "items": {"type": "string", "enum": list(NOT_SEEN)},
                                    "description": "what the instrumentation did not send, so no detector"
                                    " could judge it: tool_names (tool calls known only from a finish"
                                    " reason), content (LLM calls with no prompt or output), root_span",
                                },
                            },
                        },
                    ]
                },
            },
        },
        "security": [{"bearer": []}],
        "paths": {
            "/healthz": {
                "get": {
                    "summary": "Liveness: the process serves HTTP",
                    "security": [],
                    "responses": {"200": _json({"type": "object"}, "Alive")},
                }
            },
            "/readyz": {
                "get": {
                    "summary": "Readiness: the store takes reads and writes",
                    "security": [],
                    "responses": {"200": _json({"type": "object"}, "Ready"), **_errors(503)},
                }
            },
            "/metrics": {
                "get": {
                    "summary": "Prometheus metrics (text exposition, or OpenMetrics when asked for)",
                    "security": [],
                    "responses": {"200": {"description": "Metrics", "content": {"text/plain": {}}}},
                }
            },
            "/openapi.json": {
                "get": {"summary": "This document", "responses": {"200": _json({"type": "object"}, "OpenAPI 3.1")}}
            },
            "/v1/agents": {
                "get": {
                    "summary": "Agents seen, with run counts and last seen time",
                    "responses": {
                        "200": _json(
                            {
                                "type": "object",
                                "properties": {
                                    "agents": {
                                        "type": "array",
                                        "items": {
                                            "type": "object",
                                            "properties": {
                                                "agent_id": {"type": "string"},
                                                "run_count": {"type": "integer"},
                                                "running_runs": {"type": "integer"},
                                                "signal_count": {"type": "integer", "description": "not shadow"},
                                                "last_seen": {"type": "string", "format": "date-time"},
                                            },
                                        },
                                    }
                                },
                            },
                            "Agents",
                        ),
                        **_errors(401),
                    },
                }
            },
            "/v1/runs": {
                "get": {
                    "summary": "Runs, newest first, filtered and paged",
                    "parameters": [
                        _query("agent_id", "Only this agent's runs"),
                        _query("status", "running, completed, errored or stalled"),
                        _query("since", f"Runs started at or after ({_TIME})"),
                        _query("until", f"Runs started before ({_TIME})"),
                        _query("limit", "Page size, 1-500 (default 50)", {"type": "integer"}),
                        _query("cursor", "next_cursor of the previous page"),
                    ],
                    "responses": {
                        "200": _page("runs", "Run"),
                        **_errors(400, 401),
                    },
                }
            },
            "/v1/runs/{run_id}": {
                "get": {
                    "summary": "One run with its events in step order and its signals",
                    "parameters": [run_id_param],
                    "responses": {
                        "200": _json({"$ref": "#/components/schemas/RunDetail"}, "The run"),
                        **_errors(400, 401, 404),
                    },
                }
            },
            "/v1/signals": {
                "get": {
                    "summary": "Signals, newest first, with their deterministic explanation",
                    "parameters": [
                        _query("agent_id", "Only this agent's signals"),
                        _query("run_id", "Only this run's signals (UUID or 32 hex)"),
                        _query("failure_type", "e.g. TOOL_LOOP"),
                        _query("severity", "CRITICAL, HIGH, MEDIUM or LOW"),
                        _query("since", f"Detected at or after ({_TIME})"),
                        _query("until", f"Detected before ({_TIME})"),
                        _query("include_shadow", "Also shadow-mode signals (default false)", {"type": "boolean"}),
                        _query("limit", "Page size, 1-500 (default 50)", {"type": "integer"}),
                        _query("cursor", "next_cursor of the previous page"),
                    ],
                    "responses": {
                        "200": _page("signals", "Signal"),
                        **_errors(400, 401),
                    },
                }
            },
            "/v1/policies": {
                "get": {
                    "summary": "Policies; ?agent_id= gives that agent's and the '*' ones (what SDKs fetch)",
                    "parameters": [_query("agent_id", "Only policies that apply to this agent")],
                    "responses": {
                        "200": _json(
                            {
                                "type": "object",
                                "properties": {
                                    "policies": {"type": "array", "items": {"$ref": "#/components/schemas/Policy"}}
                                },
                            },
                            "Policies, in priority order",
                        ),
                        **_errors(401),
                    },
                },
                "post": {
                    "summary": "Create a policy",
                    "requestBody": _body(),
                    "responses": {"201": _json(_POLICY, "Created"), **_errors(400, 401)},
                },
            },
            "/v1/policies/{policy_id}": {
                "get": {
                    "summary": "One policy",
                    "parameters": [policy_id_param],
                    "responses": {"200": _json(_POLICY, "The policy"), **_errors(400, 401, 404)},
                },
                "put": {
                    "summary": "Replace a policy",
                    "parameters": [policy_id_param],
                    "requestBody": _body(),
                    "responses": {"200": _json(_POLICY, "Replaced"), **_errors(400, 401, 404)},
                },
                "delete": {
                    "summary": "Delete a policy",
                    "parameters": [policy_id_param],
                    "responses": {"204": {"description": "Deleted"}, **_errors(400, 401, 404)},
                },
            },
            "/v1/policies/{policy_id}/toggle": {
                "patch": {
                    "summary": 'Enable or disable (flip, or set with {"enabled": bool})',
                    "parameters": [policy_id_param],
                    "responses": {"200": _json(_POLICY, "The policy"), **_errors(400, 401, 404)},
                }
            },
            "/v1/signals/{signal_id}/explain": {
                "post": {
                    "summary": "Root cause and one fix for a signal (LLM when configured, else deterministic)",
                    "parameters": [signal_id_param],
                    "requestBody": {
                        "required": False,
                        "content": {
                            "application/json": {
                                "schema": {
                                    "type": "object",
                                    "properties": {
                                        "langfuse_trace_id": {
                                            "type": "string",
                                            "description": "32 hex; default: the run's own trace id",
                                        }
                                    },
                                }
                            }
                        },
                    },
                    "responses": {
                        "200": _json({"$ref": "#/components/schemas/ExplainAnswer"}, "The explanation"),
                        **_errors(400, 401, 404, 503),
                    },
                }
            },
            "/v1/signals/{signal_id}/apply-fix": {
                "post": {
                    "summary": "Append the fix to the Langfuse prompt and publish it as a new version with the label",
                    "parameters": [signal_id_param],
                    "requestBody": {
                        "required": True,
                        "content": {
                            "application/json": {
                                "schema": {
                                    "type": "object",
                                    "required": ["fix_content", "langfuse_prompt_name"],
                                    "properties": {
                                        "fix_content": {"type": "string", "maxLength": 1000},
                                        "langfuse_prompt_name": {"type": "string"},
                                        "label": {"type": "string", "description": "default: langfuse.prompt_label"},
                                    },
                                }
                            }
                        },
                    },
                    "responses": {
                        "200": _json({"$ref": "#/components/schemas/AppliedFix"}, "Published (or already applied)"),
                        **_errors(400, 401, 403, 404, 502, 503, 504),
                    },
                }
            },
            "/v1/signals/{signal_id}/rollback-fix": {
                "post": {
                    "summary": "Move the label back to the version before the fix",
                    "parameters": [signal_id_param],
                    "responses": {
                        "200": _json({"type": "object"}, "Rolled back"),
                        **_errors(400, 401, 404, 502, 503, 504),
                    },
                }
            },
            "/v1/signals/{signal_id}/fix-status": {
                "get": {
                    "summary": "Whether the fix worked: runs after it, recurrences, adoption, verdict",
                    "parameters": [signal_id_param],
                    "responses": {
                        "200": _json(
                            {"$ref": "#/components/schemas/FixStatus"}, "The status (or that no fix was applied)"
                        ),
                        **_errors(400, 401, 404),
                    },
                }
            },
            "/v1/signals/{signal_id}": {
                "get": {
                    "summary": "One signal with its evidence and explanation",
                    "parameters": [signal_id_param],
                    "responses": {
                        "200": _json({"$ref": "#/components/schemas/Signal"}, "The signal"),
                        **_errors(400, 401, 404),
                    },
                }
            },
        },
    }
