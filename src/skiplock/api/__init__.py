"""The HTTP API: a Starlette app whose every route is a call into one skiplock App.

    uvicorn --factory myproject.api:make  # where make() returns create_app(App(...))

No route sends SQL itself; errors are JSON of one shape (see problems.py).
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

from starlette.applications import Starlette
from starlette.middleware import Middleware
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Mount, Route

from skiplock.api import (
    dead_letters,
    jobs,
    observability,
    openapi,
    queues,
    schedules,
    tasks,
    workers,
    workflows,
)
from skiplock.api.auth import AuthConfig, AuthMiddleware
from skiplock.api.auth import routes as auth_routes
from skiplock.api.problems import EXCEPTION_HANDLERS, InternalErrorMiddleware
from skiplock.api.results import FinishedListener
from skiplock.api.state import ApiState
from skiplock.errors import ConfigError
from skiplock.registry import App
from skiplock.tracing import RequestTraceContext

__all__ = ["AuthConfig", "create_app"]


async def health(request: Request) -> Response:
    """Liveness only: answers without touching the database."""
    return JSONResponse({"status": "ok"})


def create_app(
    app: App,
    *,
    max_body_bytes: int = 1_048_576,
    db_timeout: float = 10.0,
    statement_timeout: float = 5.0,
    auth: AuthConfig | None = None,
) -> Starlette:
    """The API for `app`: jobs, workflows, queues, dead letters, schedules, workers, tasks
    under /api/v1, plus /health, /ready, /metrics, /openapi.json and /docs (see docs/api.md).

    Request bodies over `max_body_bytes` get 413. A database call that takes longer than
    `db_timeout` seconds (typically: waiting for a connection while PostgreSQL is away)
    gets 503 with Retry-After; each SQL statement is cancelled by PostgreSQL after
    `statement_timeout` seconds (503 "query timeout"). Shutting the server down closes
    the App's async pool and the result listener.

    With `auth`, every route but /health, /ready, /metrics, /openapi.json and /docs
    needs a bearer token (see api/auth.py); without it (None) the API is open, which is
    only right behind something else that authenticates.
    """
    if max_body_bytes < 1:
        raise ConfigError(f"max_body_bytes must be >= 1, got {max_body_bytes}")
    if not db_timeout > 0:
        raise ConfigError(f"db_timeout must be > 0 seconds, got {db_timeout}")
    if not 0.001 <= statement_timeout <= 3600:
        raise ConfigError(
            f"statement_timeout must be between 0.001 and 3600 seconds, got {statement_timeout}"
        )
    finished = FinishedListener(lambda: app.listen_dsn)
    state = ApiState(
        app=app,
        max_body_bytes=max_body_bytes,
        db_timeout=db_timeout,
        statement_timeout=statement_timeout,
        finished=finished,
    )
    # RequestTraceContext: a caller's traceparent header parents the jobs it enqueues.
    middleware = [Middleware(InternalErrorMiddleware), Middleware(RequestTraceContext)]
    if auth is not None:
        middleware.append(Middleware(AuthMiddleware, api=state, config=auth))

    @asynccontextmanager
    async def lifespan(_: Starlette) -> AsyncIterator[None]:
        try:
            yield
        finally:
            await finished.close()
            await app.aclose()

    starlette = Starlette(
        routes=[
            Route("/health", health, methods=["GET"], name="health"),
            *observability.routes,
            *openapi.routes,
            Mount(
                "/api/v1",
                routes=[
                    *jobs.routes,
                    *queues.routes,
                    *dead_letters.routes,
                    *schedules.routes,
                    *workers.routes,
                    *workflows.routes,
                    *tasks.routes,
                    *observability.api_routes,
                    *auth_routes,
                ],
            ),
        ],
        middleware=middleware,
        exception_handlers=EXCEPTION_HANDLERS,
        lifespan=lifespan,
    )
    starlette.state.api = state
    return starlette
