"""Logging in to the dashboard with a user's name and password or with an API token, and
out again.

A password is checked as POST /api/v1/login checks it (store.find_user, an argon2 check
off the event loop, a dummy hash for unknown names, store.record_user_login); a token as
the API's bearer tokens are (its sha256 looked up). Failures count toward a per-address
limit (429) and every attempt leaves an audit row, as the API's logins do.
"""

from __future__ import annotations

import asyncio
import secrets
from typing import Any

from starlette.requests import Request
from starlette.responses import RedirectResponse, Response
from starlette.routing import Route

from skiplock import store
from skiplock.api.auth import TOKEN_PREFIX, client_address, hash_token
from skiplock.api.state import Conn
from skiplock.dashboard.pages import (
    MAX_FORM_FIELDS,
    Dashboard,
    PageError,
    dashboard_of,
    page_url,
    render,
    viewer,
)
from skiplock.dashboard.session import (
    CSRF_FIELD,
    LOGIN_COOKIE,
    SESSION_COOKIE,
    Session,
    same_token,
    set_cookie,
)
from skiplock.passwords import check_password

DENIED = "wrong username, password or token"
NO_SECRET = (
    "The dashboard signs its sessions with the server's HS256 secret, and this server has"
    " none: set SKIPLOCK_JWT_SECRET (at least 32 bytes) with SKIPLOCK_JWT_ISSUER and"
    " SKIPLOCK_JWT_AUDIENCE (or --jwt-secret, --jwt-issuer, --jwt-audience) for"
    " `skiplock serve`."
)


def safe_next(request: Request, value: str | None) -> str:
    """Where to go after login: a dashboard path only, never another site."""
    base = page_url(request, "")
    if value and value.startswith(base + "/") and not value.startswith("//"):
        return value
    return base + "/"


def login_form(
    request: Request, *, error: str | None = None, status: int = 200, nxt: str | None = None
) -> Response:
    """The form, with a fresh login CSRF token in it and in its cookie; `nxt` is where a
    login goes next (the query's `next` when the form is first shown)."""
    dashboard = dashboard_of(request)
    token = secrets.token_urlsafe(24)
    response = render(
        request,
        "login.html",
        {
            "error": error,
            "no_secret": NO_SECRET if dashboard.codec is None else None,
            "login_csrf": token,
            "next": request.query_params.get("next", "") if nxt is None else nxt,
        },
        status=status,
    )
    set_cookie(request, response, LOGIN_COOKIE, token, None, page_url(request, "/login"))
    return response


async def login_page(request: Request) -> Response:
    """GET /dashboard/login: the form; POST: check the credentials, set the session."""
    if request.method == "GET":
        return login_form(request)
    dashboard = dashboard_of(request)
    if dashboard.codec is None:
        return login_form(request, status=501)
    async with request.form(max_fields=MAX_FORM_FIELDS, max_files=0) as form:
        fields = {key: form.get(key) for key in ("username", "password", "token", CSRF_FIELD)}
        given_next = form.get("next")
    nxt = given_next if isinstance(given_next, str) else ""
    if not same_token(fields[CSRF_FIELD], request.cookies.get(LOGIN_COOKIE)):
        raise PageError(403, "Forbidden", "the login form's CSRF token is missing or wrong")
    client = client_address(request.scope)
    wait = dashboard.limiter.retry_after(client)
    username = str(fields["username"] or "").strip()
    password = str(fields["password"] or "")
    token = str(fields["token"] or "").strip()
    actor = username or "token"
    if wait is not None:
        await audit_login(dashboard, actor, 429, client)
        error = f"too many failed attempts; retry in {wait} s"
        return login_form(request, error=error, status=429, nxt=nxt)
    session = await (
        token_session(dashboard, token, client)
        if token
        else user_session(dashboard, username, password, client)
    )
    if session is None:
        dashboard.limiter.fail(client)
        await audit_login(dashboard, actor, 401, client)
        return login_form(request, error=DENIED, status=401, nxt=nxt)
    response = RedirectResponse(safe_next(request, nxt), status_code=303)
    assert dashboard.codec is not None
    set_cookie(
        request,
        response,
        SESSION_COOKIE,
        dashboard.codec.dumps(session),
        int(dashboard.codec.lifetime),
        page_url(request, "/"),
    )
    response.delete_cookie(LOGIN_COOKIE, path=page_url(request, "/login"))
    return response


async def user_session(
    dashboard: Dashboard, username: str, password: str, client: str
) -> Session | None:
    """A session for user `username` when `password` is theirs; the login recorded and
    audited in one transaction, as POST /api/v1/login does."""
    api = dashboard.api
    assert dashboard.codec is not None
    if not username or not password:
        return None
    user = await api.run(store.find_user(username))
    # argon2 is slow on purpose: off the event loop, so other requests go on meanwhile.
    checked = await asyncio.to_thread(check_password, user[1] if user else None, password)
    if user is None or not checked.ok:
        return None
    name = user[0]

    async def record(conn: Conn) -> bool:
        if not await api.app.arun(store.record_user_login(name, checked.rehash), conn):
            return False  # disabled or deleted while its password was being checked
        detail: dict[str, Any] = {"client": client, "outcome": "ok", "via": "dashboard"}
        await api.app.arun(store.record_audit(name, "login", None, 200, detail), conn)
        return True

    if not await api.db(record):
        return None
    return dashboard.codec.new("user", name)


async def token_session(dashboard: Dashboard, token: str, client: str) -> Session | None:
    """A session for a live API token, looked up by its sha256 as the API does; the
    login audited under the token's name."""
    assert dashboard.codec is not None
    if not token.startswith(TOKEN_PREFIX):
        return None
    digest = hash_token(token)
    found = await dashboard.api.run(store.find_api_token(digest))
    if found is None:
        return None
    await audit_login(dashboard, found[0], 200, client)
    return dashboard.codec.new("token", digest)


async def audit_login(dashboard: Dashboard, actor: str, status: int, client: str) -> None:
    outcome = "ok" if status == 200 else "denied"
    detail = {"client": client, "outcome": outcome, "via": "dashboard"}
    await dashboard.api.run(store.record_audit(actor, "login", None, status, detail))


async def logout(request: Request) -> Response:
    """POST /dashboard/logout: forget the session (CSRF-checked, so no other site can
    log a user out)."""
    who = await viewer(request)
    async with request.form(max_fields=MAX_FORM_FIELDS, max_files=0) as form:
        given = form.get(CSRF_FIELD)
    if not same_token(given, who.session.csrf):
        raise PageError(403, "Forbidden", "the form's CSRF token is missing or wrong")
    response = RedirectResponse(page_url(request, "/login"), status_code=303)
    response.delete_cookie(SESSION_COOKIE, path=page_url(request, "/"))
    return response


routes = [
    Route("/login", login_page, methods=["GET", "POST"], name="login"),
    Route("/logout", logout, methods=["POST"], name="logout"),
]
