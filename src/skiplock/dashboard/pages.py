"""What every dashboard page shares: who is looking, rendering, the guard every action
passes (session, CSRF, read-only, scope) and its audit row, and the error pages."""

from __future__ import annotations

import json
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import datetime
from typing import Any
from urllib.parse import urlencode

import psycopg
from jinja2 import Environment, PackageLoader, StrictUndefined, select_autoescape
from psycopg_pool import PoolTimeout
from starlette.datastructures import FormData
from starlette.exceptions import HTTPException
from starlette.requests import Request
from starlette.responses import HTMLResponse, RedirectResponse, Response

from skiplock import store
from skiplock.api.auth import Principal, client_address
from skiplock.api.failures import FailureLimiter
from skiplock.api.problems import Problem
from skiplock.api.state import ApiState
from skiplock.dashboard.session import CSRF_FIELD, SESSION_COOKIE, Session, SessionCodec, same_token
from skiplock.errors import JobNotFound

PREFIX = "/dashboard"
# Where DashboardDispatch leaves the dashboard's URL root (the API's mount prefix + PREFIX).
BASE_KEY = "skiplock.dashboard_base"
# A form never needs more than a few short fields.
MAX_FORM_FIELDS = 20
HEADERS = {
    # Only the dashboard's own script and stylesheet run; no page can be framed.
    "Content-Security-Policy": "default-src 'self'; frame-ancestors 'none'; form-action 'self'",
    "X-Frame-Options": "DENY",
    "Referrer-Policy": "same-origin",
    "Cache-Control": "no-store",
}
# What a redirect after an action may announce: fixed words, so a link cannot make the
# page say anything else.
NOTICES = {
    "retried": "The job was queued again.",
    "cancelled": "The job was cancelled.",
    "cancelling": "The job is running: its worker was told to stop it.",
    "paused": "The queue is paused.",
    "resumed": "The queue is running again.",
    "configured": "The queue's settings are saved.",
    "stopping": "The worker was told to stop.",
    "redriven": "The dead letter was queued again.",
    "enabled": "The schedule is enabled; its next run is computed from now.",
    "disabled": "The schedule is disabled.",
    "deleted": "The schedule was deleted; the jobs it enqueued stay.",
    "fired": "The schedule ran now: this is its job.",
    "enqueued": "The job was enqueued.",
    "workflow_cancelled": "The workflow's unfinished steps were cancelled.",
    "workflow_retried": "The workflow's steps that did not succeed run again.",
}

templates = Environment(
    loader=PackageLoader("skiplock.dashboard", "templates"),
    autoescape=select_autoescape(default=True),
    undefined=StrictUndefined,
)


def pretty_json(value: Any) -> str:
    return json.dumps(value, indent=2, sort_keys=True, default=str)


def when(value: datetime | str | None) -> str:
    if value is None:
        return "—"
    if isinstance(value, str):
        return value
    return value.strftime("%Y-%m-%d %H:%M:%S %Z").rstrip()


templates.filters["pretty_json"] = pretty_json
templates.filters["when"] = when


@dataclass
class Dashboard:
    """The dashboard's settings, kept on its Starlette app's state."""

    api: ApiState
    codec: SessionCodec | None
    limiter: FailureLimiter
    read_only: bool
    # where a job's trace is shown: a URL with {trace_id} (and {span_id}); None: the id
    trace_url: str | None = None


@dataclass(frozen=True)
class Viewer:
    """A logged-in request: its session (for the CSRF token) and its principal as of
    this request."""

    session: Session
    principal: Principal


class PageError(Exception):
    """Answer with the error page: `status`, a title and one sentence."""

    def __init__(self, status: int, title: str, detail: str) -> None:
        super().__init__(detail)
        self.status, self.title, self.detail = status, title, detail


class LoginRequired(Exception):
    """No valid session: the browser is sent to the login page."""


def dashboard_of(request: Request) -> Dashboard:
    dashboard: Dashboard = request.app.state.dashboard
    return dashboard


def page_url(request: Request, path: str) -> str:
    """The URL of a dashboard page (`/jobs/5`), under whatever prefix serves it."""
    base: str = request.scope.get(BASE_KEY, PREFIX)
    return base + path


def not_found(what: str) -> PageError:
    return PageError(404, "Not found", f"{what} not found")


async def principal_of(dashboard: Dashboard, session: Session) -> Principal | None:
    """The session's user or token as it stands now; None when disabled or revoked."""
    if session.kind == "user":
        user = await dashboard.api.run(store.find_user(session.subject))
        if user is None:
            return None
        name, _, scope, queues = user
        return Principal(actor=name, scope=scope, queue_pattern=queues)
    token = await dashboard.api.run(store.find_api_token(session.subject))
    if token is None:
        return None
    name, scope, queues, _ = token
    return Principal(actor=name, scope=scope, queue_pattern=queues)


async def viewer(request: Request) -> Viewer:
    """Who is looking; LoginRequired when nobody valid is."""
    dashboard = dashboard_of(request)
    if dashboard.codec is None:
        raise LoginRequired
    session = dashboard.codec.loads(request.cookies.get(SESSION_COOKIE))
    if session is None:
        raise LoginRequired
    principal = await principal_of(dashboard, session)
    if principal is None:
        raise LoginRequired
    return Viewer(session, principal)


def check_sees_all_queues(who: Viewer, page: str) -> None:
    """The pages that are not per queue (dead letters, workers, schedules, the audit
    log) are closed to a queue-limited login, as the API's routes are to a queue-limited
    token."""
    if who.principal.queue_pattern is not None:
        raise PageError(
            403,
            "Forbidden",
            f"{page} are not shown to a login limited to queues {who.principal.queue_pattern}",
        )


async def acting(
    request: Request, scope: str, *, max_fields: int = MAX_FORM_FIELDS
) -> tuple[Viewer, FormData]:
    """The guard of every action (a POST): a session, its CSRF token in the form, not
    read-only, and `scope` (write: job and workflow actions, enqueue; admin: the rest,
    as in the API). `max_fields` bounds the form (an enqueue form holds more)."""
    who = await viewer(request)
    async with request.form(max_fields=max_fields, max_files=0) as form:
        fields = FormData(form)
    if not same_token(fields.get(CSRF_FIELD), who.session.csrf):
        raise PageError(403, "Forbidden", "the form's CSRF token is missing or wrong")
    if dashboard_of(request).read_only:
        raise PageError(403, "Forbidden", "the dashboard is read-only")
    if not who.principal.allows(scope):
        raise PageError(
            403,
            "Forbidden",
            f"this action needs the {scope} scope; you have {who.principal.scope}",
        )
    return who, fields


async def audit(
    request: Request, who: Viewer, status: int, target: str | None, **detail: Any
) -> None:
    """One audit row per action, as the API writes one per mutating call; the action is
    the dashboard's path (`POST /dashboard/jobs/5/retry`)."""
    # below the API's root, as the API's audit rows are (the router moves root_path)
    api_root = page_url(request, "").removesuffix(PREFIX)
    path = request.url.path.removeprefix(api_root)
    call = store.record_audit(
        who.principal.actor,
        f"{request.method} {path}",
        target,
        status,
        {"client": client_address(request.scope), "via": "dashboard", **detail},
    )
    await dashboard_of(request).api.run(call)


async def audit_found(
    request: Request,
    who: Viewer,
    found: object,
    status: int,
    target: str,
    what: str,
    **detail: Any,
) -> None:
    """Audit an action under `target`: `status` when it `found` its object (not None or
    False), else 404, and then answer 404 naming `what`."""
    missing = found is None or found is False
    await audit(request, who, 404 if missing else status, target, **detail)
    if missing:
        raise not_found(what)


def render(
    request: Request,
    template: str,
    context: Mapping[str, Any],
    *,
    who: Viewer | None = None,
    status: int = 200,
) -> HTMLResponse:
    """The page `template` with what the layout needs: URLs, the viewer, the CSRF token
    and whether actions are shown (`can("write")`)."""
    dashboard = dashboard_of(request)

    def can(scope: str) -> bool:
        return who is not None and not dashboard.read_only and who.principal.allows(scope)

    notice = NOTICES.get(request.query_params.get("notice", ""))
    html = templates.get_template(template).render(
        base=page_url(request, ""),
        who=who.principal if who else None,
        csrf=who.session.csrf if who else "",
        csrf_field=CSRF_FIELD,
        read_only=dashboard.read_only,
        can=can,
        all_queues=who is not None and who.principal.queue_pattern is None,
        notice=notice,
        path=request.url.path,
        **context,
    )
    return HTMLResponse(html, status_code=status, headers=HEADERS)


def back_to(request: Request, path: str, notice: str | None = None) -> RedirectResponse:
    """After an action: see the page again (303, so a reload does not post twice)."""
    url = page_url(request, path) + (f"?notice={notice}" if notice else "")
    return RedirectResponse(url, status_code=303)


async def page_error(request: Request, exc: Exception) -> Response:
    """The error page for what a page raised: its own PageError, the API state's Problem
    (503 while the database is away), a job gone meanwhile, or the router's 404/405."""
    if isinstance(exc, PageError):
        status, title, detail = exc.status, exc.title, exc.detail
    elif isinstance(exc, Problem):
        status, title, detail = exc.status, exc.error, exc.detail
    elif isinstance(exc, JobNotFound):
        status, title, detail = 404, "Not found", str(exc)
    elif isinstance(exc, HTTPException):
        status, title, detail = exc.status_code, "Error", str(exc.detail)
        if status == 404:
            title, detail = "Not found", "no such page"
    else:  # psycopg.OperationalError, PoolTimeout
        status, title, detail = 503, "Database unavailable", "the database is not answering"
    return render(request, "error.html", {"title": title, "detail": detail}, status=status)


async def login_required(request: Request, exc: Exception) -> Response:
    login = page_url(request, "/login")
    if request.method == "GET":
        nxt = request.url.path + (f"?{request.url.query}" if request.url.query else "")
        return RedirectResponse(f"{login}?{urlencode({'next': nxt})}", status_code=303)
    return await page_error(request, PageError(403, "Forbidden", "log in first"))


EXCEPTION_HANDLERS: dict[Any, Any] = {
    PageError: page_error,
    Problem: page_error,
    HTTPException: page_error,
    psycopg.OperationalError: page_error,
    PoolTimeout: page_error,
    JobNotFound: page_error,
    LoginRequired: login_required,
}
