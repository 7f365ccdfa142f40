"""The HTTP API: a Starlette app whose every route is a call into one skiplock App.

    uvicorn --factory myproject.api:make  # where make() returns create_app(App(...))

It can also be mounted in a host app (`Mount("/skiplock", api)`); the host then passes
`api_lifespan(api)` on from its own lifespan (see docs/api.md).

No route sends SQL itself; errors are JSON of one shape (see problems.py).
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

from starlette.applications import Starlette
from starlette.middleware import Middleware
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Mount

from skiplock import store
from skiplock.api import (
    dead_letters,
    job_logs,
    job_webhooks,
    jobs,
    login,
    metrics_history,
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
from skiplock.api.body import BodyBudget
from skiplock.api.problems import EXCEPTION_HANDLERS, InternalErrorMiddleware
from skiplock.api.responses import Health
from skiplock.api.results import FinishedListener
from skiplock.api.routing import Answer, Operation, alias, aliases, route
from skiplock.api.state import ApiState, api_state
from skiplock.app import App
from skiplock.errors import ConfigError
from skiplock.tracing import RequestTraceContext

__all__ = ["AuthConfig", "api_lifespan", "create_app"]

log = logging.getLogger("skiplock.api")
# How long /health waits for its figures before it answers without them.
HEALTH_DATABASE_SECONDS = 0.5


async def health(request: Request) -> Response:
    """Liveness: always 200 while the process serves requests. When the database answers
    within HEALTH_DATABASE_SECONDS it adds the live workers and the queue depth (jobs ready
    to run now); when it does not, the answer says only that this process is alive."""
    answer: dict[str, Any] = {"status": "ok"}
    try:
        figures = api_state(request).app.arun(store.health_figures())
        workers, depth = await asyncio.wait_for(figures, HEALTH_DATABASE_SECONDS)
    except Exception as exc:  # a liveness check never fails because of the database
        log.debug("health: no figures from the database (%s)", exc)
    else:
        answer.update(workers=workers, queue_depth=depth)
    return JSONResponse(answer)


def create_app(
    app: App,
    *,
    max_body_bytes: int = 1_048_576,
    max_body_bytes_in_flight: int = 16 * 1_048_576,
    db_timeout: float = 10.0,
    statement_timeout: float = 5.0,
    auth: AuthConfig | None = None,
    accept_unknown_tasks: bool = False,
    dashboard_read_only: bool = False,
    trace_url: str | None = None,
) -> Starlette:
    """The API for `app`: jobs, workflows, queues, dead letters, schedules, workers, tasks
    under /api/v1, plus /health, /ready, /metrics, /openapi.json and /docs (see docs/api.md).

    Request bodies over `max_body_bytes` get 413; when the bodies being handled at once
    already hold `max_body_bytes_in_flight` bytes, the next one gets 503 with Retry-After
    (a parsed body costs several times its size: this bounds the API's memory). Bodies
    must be UTF-8 JSON: another Content-Type gets 415. A database call that takes longer than
    `db_timeout` seconds (typically: waiting for a connection while PostgreSQL is away)
    gets 503 with Retry-After; each SQL statement is cancelled by PostgreSQL after
    `statement_timeout` seconds (503 "query timeout"). The App's async pool and the
    result listener open on first use; the app's lifespan closes them when the server
    shuts down. A host app that mounts this one does not run its lifespan: it passes
    `api_lifespan(api)` on from its own.

    With `auth`, every route but /health, /ready, /metrics, /openapi.json, /docs and
    POST /api/v1/login needs a bearer token (see api/auth.py); login gives users one
    when `auth` has a JWT secret (api/login.py). Without `auth` (None) the API is open,
    which is only right behind something else that authenticates.

    A job, workflow step or schedule whose task no worker has published gets 422 unless
    its body sends "allow_unregistered_task": true, or `accept_unknown_tasks` is set.

    The dashboard answers at / (pages under /dashboard, docs/dashboard.md), with its own
    login; `dashboard_read_only` hides and refuses its every action; `trace_url`, a URL
    with `{trace_id}` (and `{span_id}`), links a job's page to its trace.
    """
    from skiplock.dashboard import DashboardDispatch, dashboard_app  # it imports the API

    if max_body_bytes < 1:
        raise ConfigError(f"max_body_bytes must be >= 1, got {max_body_bytes}")
    if max_body_bytes_in_flight < max_body_bytes:
        raise ConfigError(
            f"max_body_bytes_in_flight must be >= max_body_bytes ({max_body_bytes}),"
            f" got {max_body_bytes_in_flight}"
        )
    if not db_timeout > 0:
        raise ConfigError(f"db_timeout must be > 0 seconds, got {db_timeout}")
    if not 0.001 <= statement_timeout <= 3600:
        raise ConfigError(
            f"statement_timeout must be between 0.001 and 3600 seconds, got {statement_timeout}"
        )
    state = ApiState(
        app=app,
        max_body_bytes=max_body_bytes,
        db_timeout=db_timeout,
        statement_timeout=statement_timeout,
        accept_unknown_tasks=accept_unknown_tasks,
    )
    state.finished = FinishedListener(state.notifications)
    dashboard = dashboard_app(state, auth, read_only=dashboard_read_only, trace_url=trace_url)
    # RequestTraceContext: a caller's traceparent header parents the jobs it enqueues.
    middleware = [
        Middleware(InternalErrorMiddleware),
        # POST /api/login → /api/v1/login before anything matches routes
        Middleware(login.LoginAlias),
        Middleware(RequestTraceContext),
        # before the bearer-token check: the dashboard's pages authenticate by cookie
        Middleware(
            DashboardDispatch,
            dashboard=dashboard,
        ),
    ]
    routes = [
        route(
            "/health",
            {
                "GET": Operation(
                    health,
                    "get_health",
                    "Liveness: always 200; with the database answering within half a second,"
                    " the live workers and the queue depth too. Also served at /api/v1/health.",
                    "ops",
                    {200: Answer(Health, "Alive.")},
                    errors=(),
                )
            },
            name="health",
        ),
        *observability.routes,
        *openapi.routes,
        # Paths other job systems' clients call, each standing for a declared one. Before
        # the /api/v1 mount: a request it fits goes to it, found or not.
        alias("/api/v1/health", "/health", health, name="api_health"),
        alias("/api/v1/stats", "/api/v1/metrics", observability.metrics_json, name="stats"),
        *aliases(jobs.routes, at="", of="/api/v1"),
        *aliases(jobs.routes, at="/api", of="/api/v1"),
        Mount(
            "/api/v1",
            routes=[
                *jobs.routes,
                *job_logs.routes,
                *job_webhooks.routes,
                *queues.routes,
                *dead_letters.routes,
                *schedules.routes,
                *workers.routes,
                *workflows.routes,
                *tasks.routes,
                *observability.api_routes,
                *metrics_history.routes,
                *auth_routes,
                *login.routes,
            ],
        ),
    ]
    if auth is not None:
        # The middleware matches each request against these routes, as the router will.
        middleware.append(Middleware(AuthMiddleware, api=state, config=auth, routes=routes))
    middleware.append(Middleware(BodyBudget, max_bytes=max_body_bytes_in_flight))
    starlette = Starlette(
        routes=routes,
        middleware=middleware,
        exception_handlers=EXCEPTION_HANDLERS,
        lifespan=api_lifespan,
    )
    starlette.state.api = state
    # the dashboard's live updates, on the process's listener
    starlette.state.live = dashboard.state.live
    return starlette


@asynccontextmanager
async def api_lifespan(api: Starlette) -> AsyncIterator[None]:
    """Close the pool and the LISTEN connection of `api` (made by create_app) on exit.

    The API's own lifespan when it is served alone. A host that mounts it passes it on:
    `Starlette(routes=[Mount("/skiplock", api)], lifespan=lambda _: api_lifespan(api))`,
    or `async with api_lifespan(api):` inside the host's lifespan. Nothing opens on entry:
    the pool and the listener open on first use, so a host that forgets this leaks them
    only until its process exits.
    """
    try:
        yield
    finally:
        state: ApiState = api.state.api
        await state.notifications.close()
        await state.app.aclose()
