"""GET /openapi.json (OpenAPI 3.1, generated) and GET /docs (a page listing it).

The document is built from the app's own routes: each ApiRoute's Operations (api/routing.py)
give the paths, operationIds, parameters and answers, and the types they name (request
Structs of api/models.py, answers of api/responses.py, the core's Job and Workflow) give
the schemas, through msgspec.json.schema_components. Nothing here lists a field.
"""

from __future__ import annotations

import dataclasses
import re
import typing
from collections.abc import Iterator, Sequence
from typing import Any

import msgspec
from starlette.requests import Request
from starlette.responses import HTMLResponse, JSONResponse, Response
from starlette.routing import BaseRoute, Mount

from skiplock.api.auth import required_scope
from skiplock.api.problems import PROBLEM_JSON
from skiplock.api.responses import Cut, Problem
from skiplock.api.routing import ERRORS, JSON, Answer, ApiRoute, Operation, Param, route
from skiplock.store import PREVIEW_CHARS
from skiplock.version import __version__

REF = "#/components/schemas/{name}"


def _walk(routes: Sequence[BaseRoute], prefix: str = "") -> Iterator[tuple[str, ApiRoute]]:
    for item in routes:
        if isinstance(item, Mount):
            yield from _walk(item.routes, prefix + item.path)
        elif isinstance(item, ApiRoute):
            # {name:path} in Starlette is {name} in OpenAPI
            yield re.sub(r"\{(\w+):\w+\}", r"{\1}", prefix + item.path), item


def build_document(routes: Sequence[BaseRoute]) -> dict[str, Any]:
    """The OpenAPI document of `routes` (create_app's, Mounts included)."""
    declared = list(_walk(routes))
    types: list[Any] = [Problem]
    for _, item in declared:
        for operation in item.operations.values():
            for answer in operation.answers.values():
                types += _models(answer.model)
            types += [operation.body] if operation.body is not None else []
            types += [param.type for param in (*item.path_parameters, *operation.query)]
    schemas, components = msgspec.json.schema_components(types, ref_template=REF)
    of_type = dict(zip(map(id, types), schemas, strict=True))
    paths: dict[str, dict[str, Any]] = {}
    for path, item in declared:
        for method, operation in item.operations.items():
            paths.setdefault(path, {})[method.lower()] = _operation(
                path, method, operation, item.path_parameters, lambda t: of_type[id(t)]
            )
    _open_objects(components)
    _open_objects(paths)
    for name in _dataclass_names(types):
        # The core's records are written whole (their to_json): every field is present.
        component = components[name]
        component["required"] = list(component["properties"])
        for value in component["properties"].values():
            value.pop("default", None)
    return {
        "openapi": "3.1.0",
        "info": {
            "title": "skiplock",
            "version": __version__,
            "description": "Background jobs on PostgreSQL. Errors are problem+json"
            " (RFC 9457): {type, title, status, error, detail, field}.",
        },
        "paths": paths,
        "components": {
            "schemas": components,
            "securitySchemes": {
                "bearer": {
                    "type": "http",
                    "scheme": "bearer",
                    "description": "A skiplock API token (`sk_…`) or a JWT; see docs/api.md."
                    " Each operation lists the scope it needs.",
                }
            },
        },
    }


def _operation(
    path: str,
    method: str,
    operation: Operation,
    path_parameters: Sequence[Param],
    schema: Any,
) -> dict[str, Any]:
    responses: dict[str, Any] = {
        str(status): _answer(answer, schema) for status, answer in operation.answers.items()
    }
    errors = set(operation.errors)
    if operation.body is not None:
        # every body goes through api/body.py: 400, 413 and 415 are always possible
        errors |= {400, 413, 415}
    scope = required_scope(method, path)
    if scope is not None:
        errors |= {401, 403, 429}
    for status in sorted(errors):
        responses[str(status)] = {
            "description": ERRORS[status],
            "content": {PROBLEM_JSON: {"schema": schema(Problem)}},
        }
    document: dict[str, Any] = {
        "operationId": operation.id,
        "summary": operation.summary,
        "tags": [operation.tag],
        "security": [] if scope is None else [{"bearer": [scope]}],
        "responses": responses,
    }
    parameters = [_param(p, "path", schema) for p in path_parameters] + [
        _param(p, "query", schema) for p in operation.query
    ]
    if parameters:
        document["parameters"] = parameters
    if operation.body is not None:
        document["requestBody"] = {
            "required": True,
            "content": {JSON: {"schema": schema(operation.body)}},
        }
    return document


def _dataclass_names(types: Sequence[Any]) -> set[str]:
    """The names of the dataclasses among `types` and inside them (Workflow's steps)."""
    names: set[str] = set()
    pending: list[Any] = [t for t in types if dataclasses.is_dataclass(t)]
    while pending:
        model = pending.pop()
        if model.__name__ in names:
            continue
        names.add(model.__name__)
        for hint in typing.get_type_hints(model).values():
            pending += [a for a in typing.get_args(hint) if dataclasses.is_dataclass(a)]
    return names


def _models(model: Any) -> list[Any]:
    """The types an answer names: none, one, or each of a tuple (one of them)."""
    if model is None:
        return []
    return list(model) if isinstance(model, tuple) else [model]


def _answer(answer: Answer, schema: Any) -> dict[str, Any]:
    models = _models(answer.model)
    if not models:
        return {"description": answer.description}
    body = schema(models[0]) if len(models) == 1 else {"oneOf": [schema(m) for m in models]}
    return {"description": answer.description, "content": {answer.media: {"schema": body}}}


def _param(param: Param, where: str, schema: Any) -> dict[str, Any]:
    declared = dict(schema(param.type))
    if param.default is not None:
        declared["default"] = param.default
    return {
        "name": param.name,
        "in": where,
        "required": where == "path",
        "schema": declared,
        "description": param.description,
    }


def _open_objects(node: Any) -> None:
    """Make every object whose keys are not declared (args, meta, progress) say so, so a
    generated client types it as a map of any JSON, not as an empty object; every
    duration (a timedelta of the core) a number of seconds, as the API writes it."""
    if isinstance(node, list):
        for value in node:
            _open_objects(value)
        return
    if not isinstance(node, dict):
        return
    if node.get("type") == "object" and "properties" not in node:
        node.setdefault("additionalProperties", True)
    if "default" in node and node["default"] is None:
        # "not given" needs no default; with one, openapi-typescript makes the field
        # required in a request body.
        del node["default"]
    if node.get("format") == "duration":
        node.clear()
        node.update({"type": "number", "description": "Seconds."})
    if node.get("title") == Cut.__name__ or "truncated" in node.get("properties", {}):
        node.setdefault("description", TRUNCATED)
    for value in node.values():
        _open_objects(value)


TRUNCATED = (
    f"A listed value is sent whole only while its JSON text is at most {PREVIEW_CHARS}"
    " bytes; a longer one is null, and `truncated` holds its size, its first characters"
    " and the URL that has it whole."
)


async def openapi_json(request: Request) -> Response:
    """GET /openapi.json → 200 with the OpenAPI document of this app; mounted under a
    prefix, its `servers` names that prefix, so clients built from it call the mounted
    API."""
    state = request.app.state
    if getattr(state, "openapi", None) is None:
        state.openapi = build_document(request.app.routes)
    document: dict[str, Any] = state.openapi
    root_path = request.scope.get("root_path", "")
    if not root_path:
        return JSONResponse(document)
    return JSONResponse({**document, "servers": [{"url": root_path}]})


# No CDN assets (the docs must work offline): a few lines of JS render the document.
DOCS_PAGE = """<!doctype html>
<html lang="en"><head><meta charset="utf-8"><title>skiplock API</title>
<style>
body{font:15px/1.45 system-ui,sans-serif;max-width:60rem;margin:2rem auto;padding:0 1rem}
h2{margin-top:2rem;text-transform:capitalize}
details{border:1px solid #ddd;border-radius:6px;margin:.4rem 0;padding:.4rem .7rem}
summary{cursor:pointer} code{background:#f4f4f4;padding:0 .25rem;border-radius:3px}
.m{display:inline-block;width:4.2rem;font-weight:600;font-family:monospace}
.get{color:#06c}.post{color:#080}.put{color:#a60}.delete{color:#c00}
pre{background:#f7f7f7;padding:.5rem;overflow:auto;font-size:13px}
</style></head>
<body><h1>skiplock API</h1>
<p>Machine-readable: <a href="openapi.json">openapi.json</a>.
Examples: <code>docs/api.md</code>.</p><div id="ops">Loading…</div>
<script>
// Relative: the page and the document sit side by side, at the root or under a mount.
fetch("openapi.json").then(r => r.json()).then(doc => {
  const byTag = {};
  for (const [path, item] of Object.entries(doc.paths))
    for (const [method, op] of Object.entries(item))
      (byTag[op.tags[0]] = byTag[op.tags[0]] || []).push([method, path, op]);
  const esc = s => String(s).replace(/[&<>]/g, c => ({"&":"&amp;","<":"&lt;",">":"&gt;"})[c]);
  let html = "";
  for (const [tag, ops] of Object.entries(byTag)) {
    html += "<h2>" + esc(tag) + "</h2>";
    for (const [method, path, op] of ops) {
      const params = (op.parameters || []).map(p =>
        "<li><code>" + esc(p.name) + "</code> (" + p.in + ") " +
        esc(p.description || "") + "</li>").join("");
      const codes = Object.entries(op.responses).map(([c, r]) =>
        "<li><b>" + c + "</b> " + esc(r.description) + "</li>").join("");
      const schema = op.requestBody && op.requestBody.content["application/json"].schema;
      const body = schema ? "<p>Body:</p><pre>" +
        esc(JSON.stringify(schema, null, 1)) + "</pre>" : "";
      html += "<details><summary><span class='m " + method + "'>" + method.toUpperCase() +
        "</span> <code>" + esc(path) + "</code> <code>" + esc(op.operationId) + "</code> — " +
        esc(op.summary) + "</summary>" +
        (params ? "<p>Parameters:</p><ul>" + params + "</ul>" : "") + body +
        "<p>Responses:</p><ul>" + codes + "</ul></details>";
    }
  }
  document.getElementById("ops").innerHTML = html;
});
</script></body></html>
"""


async def docs_page(request: Request) -> Response:
    """GET /docs → 200 HTML listing the operations of /openapi.json."""
    return HTMLResponse(DOCS_PAGE)


routes = [
    route(
        "/openapi.json",
        {
            "GET": Operation(
                openapi_json,
                "get_openapi",
                "This document.",
                "ops",
                {200: Answer(dict[str, Any], "OpenAPI 3.1.")},
                errors=(),
            )
        },
        name="openapi",
    ),
    route(
        "/docs",
        {
            "GET": Operation(
                docs_page,
                "get_docs",
                "A browsable page listing these operations.",
                "ops",
                {200: Answer(str, "HTML.", media="text/html")},
                errors=(),
            )
        },
        name="docs",
    ),
]
