"""The dashboard's Starlette app, and how the API's app hands it its paths.

Pages live under /dashboard (/jobs at the API's root already answers JSON for clients of
other job systems); `/` and `/ui` lead there. The API's app passes these paths to the
dashboard before its bearer-token middleware (DashboardDispatch): the dashboard
authenticates with its own session cookie and enforces the same scopes itself.
"""

from __future__ import annotations

from datetime import timedelta
from pathlib import Path

from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import RedirectResponse, Response
from starlette.routing import Mount, Route
from starlette.staticfiles import StaticFiles
from starlette.types import ASGIApp, Receive, Scope, Send

from skiplock.api.auth import AuthConfig, below_root
from skiplock.api.failures import FailureLimiter
from skiplock.api.state import ApiState
from skiplock.dashboard import (
    audit,
    dead_letters,
    export,
    jobs,
    live,
    login,
    queues,
    schedules,
    tasks,
    workflows,
)
from skiplock.dashboard.job_relations import check_trace_url
from skiplock.dashboard.pages import (
    BASE_KEY,
    EXCEPTION_HANDLERS,
    PREFIX,
    Dashboard,
    page_url,
)
from skiplock.dashboard.session import SessionCodec
from skiplock.errors import ConfigError

STATIC = Path(__file__).parent / "static"
ENTRY_PATHS = frozenset({"/", "/ui", "/ui/", PREFIX})


async def to_dashboard(request: Request) -> Response:
    return RedirectResponse(page_url(request, "/"), status_code=302)


def dashboard_app(
    api: ApiState,
    auth: AuthConfig | None,
    *,
    read_only: bool = False,
    trace_url: str | None = None,
) -> Starlette:
    """The dashboard over the API's state: its session is signed with `auth`'s HS256
    secret (without one, every page says how to set it); logins count toward a failure
    limit as strict as the API's. Its live updates' hub is `state.live`, on the API's
    listener, which the app that mounts it closes (api_lifespan). A job's page links its
    trace through `trace_url` (see job_relations.check_trace_url; ConfigError when it
    is not one)."""
    if trace_url is not None:
        try:
            check_trace_url(trace_url)
        except ValueError as exc:
            raise ConfigError(f"trace_url {exc}") from None
    secret = auth.jwt_secret if auth is not None else None
    lifetime = auth.login_lifetime if auth is not None else timedelta(hours=12)
    dashboard = Dashboard(
        api=api,
        codec=SessionCodec(secret, lifetime.total_seconds()) if secret else None,
        limiter=FailureLimiter(
            auth.max_failures if auth else 10, auth.failure_window if auth else 60.0
        ),
        read_only=read_only,
        trace_url=trace_url,
    )
    routes = [
        Route("/", to_dashboard),
        Route("/ui", to_dashboard),
        Route("/ui/", to_dashboard),
        Route(PREFIX, to_dashboard),
        Mount(
            PREFIX,
            routes=[
                *queues.routes,
                *login.routes,
                *jobs.routes,
                *dead_letters.routes,
                *export.routes,
                *schedules.routes,
                *workflows.routes,
                *tasks.routes,
                *audit.routes,
                *live.routes,
                Mount("/static", StaticFiles(directory=STATIC), name="static"),
            ],
        ),
    ]
    app = Starlette(routes=routes, exception_handlers=EXCEPTION_HANDLERS)
    app.state.dashboard = dashboard
    app.state.live = live.LiveHub(api.notifications)
    return app


class DashboardDispatch:
    """Hands `/`, `/ui` and everything under /dashboard to the dashboard, the rest to the
    API; mounted under a prefix, it works below that prefix as the API does."""

    def __init__(self, app: ASGIApp, *, dashboard: ASGIApp) -> None:
        self.app = app
        self.dashboard = dashboard

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "http":
            root_path: str = scope.get("root_path", "")
            path = below_root(root_path, scope["path"])
            if path in ENTRY_PATHS or path.startswith(PREFIX + "/"):
                scope[BASE_KEY] = root_path + PREFIX
                await self.dashboard(scope, receive, send)
                return
        await self.app(scope, receive, send)
