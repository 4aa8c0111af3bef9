"""The OpenAPI 3.1 document served at /openapi.json, generated from the routes and their models.

A route says what it takes (query and body models) and what it answers (a model per status);
pydantic writes the schemas, so the document cannot drift from what the API validates and
serializes.
"""

from __future__ import annotations

import re
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass
from typing import Any

from pydantic import BaseModel
from pydantic.json_schema import models_json_schema

from dunetrace_sidecar import __version__
from dunetrace_sidecar.models import Error, Input, Query

Handler = Callable[..., Awaitable[Any]]

ERROR_TEXT = {
    400: "Bad parameter or body (the message names the field)",
    401: "Missing or wrong bearer key",
    403: "Refused (a foreign Host, another origin, or a fix that is never applied automatically)",
    404: "Not found",
    413: "The body is over the size limit",
    415: "A request body must be application/json",
    502: "Upstream (Langfuse / LLM) failed or refused",
    503: "Store, Langfuse or LLM unavailable or not configured",
    504: "Upstream timed out",
}

# The path parameters of every route: description and schema.
PATH_PARAMETERS: dict[str, tuple[str, dict[str, Any]]] = {
    "run_id": ("The run id as a UUID, or the 32-hex OTel / Langfuse trace id.", {"type": "string"}),
    "signal_id": ("The signal id (a UUID).", {"type": "string", "format": "uuid"}),
    "policy_id": ("The policy id.", {"type": "integer", "minimum": 1}),
    "name": ("A file of the dashboard (index.html, app.js, style.css).", {"type": "string"}),
}


@dataclass(frozen=True)
class Route:
    method: str
    path: str
    handler: Handler
    summary: str
    # The success answer's model (None: described by ``answer_schema``), status and description.
    answer: type[BaseModel] | None
    status: int = 200
    description: str = "OK"
    answer_schema: dict[str, Any] | None = None
    answer_type: str = "application/json"
    query: type[Query] | None = None
    body: type[Input] | None = None
    # A body the handler reads itself (leniently, as a foreign client writes it): documented only.
    raw_body: type[BaseModel] | None = None
    body_required: bool = True
    errors: tuple[int, ...] = ()
    open: bool = False  # answered without a key (health, readiness, metrics)


def _ref(model: type[BaseModel]) -> dict[str, str]:
    return {"$ref": f"#/components/schemas/{model.__name__}"}


def _content(schema: dict[str, Any], description: str, media_type: str = "application/json") -> dict[str, Any]:
    return {"description": description, "content": {media_type: {"schema": schema}}}


def _parameters(route: Route, schemas: dict[str, Any]) -> list[dict[str, Any]]:
    parameters = []
    for name in re.findall(r"{(\w+)}", route.path):
        description, schema = PATH_PARAMETERS[name]
        parameters.append({"name": name, "in": "path", "required": True, "description": description, "schema": schema})
    if route.query is not None:
        properties = schemas[route.query.__name__]["properties"]
        for name, field in route.query.model_fields.items():
            schema = properties[name]
            if "anyOf" in schema:  # optional: the parameter is simply left out
                schema = next(s for s in schema["anyOf"] if s != {"type": "null"})
            schema = {k: v for k, v in schema.items() if k not in ("description", "title")}
            parameters.append(
                {"name": name, "in": "query", "required": False, "description": field.description, "schema": schema}
            )
    return parameters


def _operation(route: Route, schemas: dict[str, Any]) -> dict[str, Any]:
    answer = route.answer_schema if route.answer is None else _ref(route.answer)
    if answer is None:
        responses: dict[str, Any] = {str(route.status): {"description": route.description}}
    else:
        responses = {str(route.status): _content(answer, route.description, route.answer_type)}
    for status in route.errors:
        responses[str(status)] = _content(_ref(Error), ERROR_TEXT[status])
    operation: dict[str, Any] = {"summary": route.summary, "operationId": route.handler.__name__}
    parameters = _parameters(route, schemas)
    if parameters:
        operation["parameters"] = parameters
    body = route.body or route.raw_body
    if body is not None:
        operation["requestBody"] = {
            "required": route.body_required,
            "content": {"application/json": {"schema": _ref(body)}},
        }
    if route.open:
        operation["security"] = []
    operation["responses"] = responses
    return operation


def openapi_document(routes: Sequence[Route]) -> dict[str, Any]:
    models: list[type[BaseModel]] = [Error]
    for route in routes:
        models += [m for m in (route.answer, route.query, route.body, route.raw_body) if m is not None]
    unique = list(dict.fromkeys(models))
    _, definitions = models_json_schema(
        [(m, "validation" if m in {r.body or r.raw_body for r in routes} else "serialization") for m in unique],
        ref_template="#/components/schemas/{model}",
    )
    schemas = definitions.get("$defs", {})
    queries = {r.query for r in routes if r.query is not None}
    paths: dict[str, dict[str, Any]] = {}
    for route in routes:
        paths.setdefault(route.path, {})[route.method.lower()] = _operation(route, schemas)
    return {
        "openapi": "3.1.0",
        "info": {
            "title": "Dunetrace Sidecar API",
            "version": __version__,
            "description": "Runs, events, signals, fixes and policies seen by the sidecar. Payloads hold names,"
            " numbers and hashes only. Every error has the shape of the Error schema.",
        },
        "components": {
            "securitySchemes": {"bearer": {"type": "http", "scheme": "bearer"}},
            # Query models become parameters, not schemas.
            "schemas": {name: s for name, s in schemas.items() if name not in {q.__name__ for q in queries}},
        },
        "security": [{"bearer": []}],
        "paths": paths,
    }
