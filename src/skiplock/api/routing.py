"""Routes that serve several methods on one path, so a 405's Allow header lists them all.

Starlette matches the first route whose path fits and answers 405 with only that
route's methods; two Routes on one path would hide each other's methods.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Mapping

from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

Endpoint = Callable[[Request], Awaitable[Response]]


def route(path: str, handlers: Mapping[str, Endpoint], *, name: str) -> Route:
    """One Route for `path` whose endpoint calls handlers[request.method] (HEAD → GET)."""
    table = dict(handlers)

    async def endpoint(request: Request) -> Response:
        method = "GET" if request.method == "HEAD" else request.method
        return await table[method](request)

    return Route(path, endpoint, methods=list(table), name=name)
