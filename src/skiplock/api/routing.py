"""Routes declared with what /openapi.json says of them: each method's Operation (its
operationId, parameters, body and answers), next to the handler that serves it.

One Route per path serves all its methods, so a 405's Allow header lists them all:
Starlette matches the first route whose path fits and answers 405 with only that
route's methods; two Routes on one path would hide each other's methods.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import BaseRoute, Route

Endpoint = Callable[[Request], Awaitable[Response]]
JSON = "application/json"

# Every error a route can answer, with what it means: an Operation lists its own.
ERRORS = {
    400: "The body is not JSON of the expected shape (`invalid json`).",
    401: "No bearer token, or one that is unknown, revoked, expired or badly signed"
    " (`unauthorized`); only when the API runs with auth. At login: a wrong username or"
    " password, or a disabled user (one answer for all three).",
    403: "The token lacks the scope this call needs, or is limited to other queues (`forbidden`).",
    404: "No such job, queue, schedule, worker or dead letter (`not found`).",
    409: "The resource is not in a state that allows this (`conflict`, `job failed`, …).",
    413: "The body is larger than the API's limit (`body too large`).",
    415: "The body is not sent as `Content-Type: application/json` in UTF-8"
    " (`unsupported media type`).",
    422: "A parameter or field fails its check; `field` names it (for job args, the path"
    " in them: `args.to`; `unknown task` when no worker published the task; `duplicate key`"
    " when a key appears twice in one object).",
    429: "Too many failed authentication attempts from this address; see Retry-After.",
    501: "Login is not configured: the API runs without auth, or without an HS256 JWT"
    " secret to sign tokens with (`login not configured`).",
    503: "The database is unreachable or too slow, or the API holds as many request bodies"
    " as it may (`server busy`); see Retry-After.",
}


@dataclass(frozen=True)
class Param:
    """A query or path parameter: its name, its type (for the schema) and what it is."""

    name: str
    type: Any
    description: str
    default: Any = None


@dataclass(frozen=True)
class Answer:
    """One success answer: the type of its JSON body (None: no body; a tuple: one of
    those) and what it means; another `media` type (text, HTML) has a string body."""

    model: Any
    description: str
    media: str = JSON


@dataclass(frozen=True)
class Operation:
    """One method of a route, as /openapi.json describes it. `id` is its operationId: a
    public name (generated clients call it), so it never changes once released."""

    endpoint: Endpoint
    id: str
    summary: str
    tag: str
    answers: Mapping[int, Answer]
    body: Any = None
    query: Sequence[Param] = ()
    errors: tuple[int, ...] = (503,)


class ApiRoute(Route):
    """A Route that knows its Operations and path parameters."""

    operations: dict[str, Operation]
    path_parameters: tuple[Param, ...]


def route(
    path: str,
    operations: Mapping[str, Operation],
    *,
    name: str,
    params: Sequence[Param] = (),
) -> ApiRoute:
    """One Route for `path` whose endpoint calls operations[request.method] (HEAD → GET);
    `params` declares the path's {parameters}."""
    table = {method: operation.endpoint for method, operation in operations.items()}

    async def endpoint(request: Request) -> Response:
        method = "GET" if request.method == "HEAD" else request.method
        return await table[method](request)

    declared = ApiRoute(path, endpoint, methods=list(table), name=name)
    declared.operations = dict(operations)
    declared.path_parameters = tuple(params)
    return declared


class AliasRoute(Route):
    """Another path for operations declared elsewhere, for the clients of other job
    systems: `of` is the declared path they stand for, which /openapi.json documents
    (once) and the auth rules read."""

    of: str


def alias(
    path: str, of: str, endpoint: Endpoint, *, name: str, methods: Sequence[str] = ("GET",)
) -> AliasRoute:
    """`path` served by `endpoint`, standing for the route declared at `of`."""
    route = AliasRoute(path, endpoint, methods=list(methods), name=name)
    route.of = of
    return route


def aliases(routes: Sequence[BaseRoute], *, at: str, of: str) -> list[AliasRoute]:
    """The ApiRoutes of `routes`, mounted at `of`, served at `at` as well."""
    return [
        alias(
            at + route.path,
            of + route.path,
            route.endpoint,
            name=f"{route.name}_alias{at.replace('/', '_')}",
            methods=list(route.operations),
        )
        for route in routes
        if isinstance(route, ApiRoute)
    ]
