"""POST /api/v1/login: a user's name and password (`skiplock users create`) for a JWT
that carries the user's scope and queue pattern, signed with the API's HS256 secret and
so accepted on every route as any JWT is (api/auth.py).

Every way a login can fail on the credentials (unknown user, disabled user, wrong
password) answers the same 401 after the same work: an unknown name is checked against
a dummy hash. Failures count toward the failed-authentication limit (429), and every
attempt leaves one audit row (actor: the username; action `login`; never the password).

POST /api/login answers too, for clients of other job systems that post there: a rewrite
of the path before routing (LoginAlias), not a second route, so /openapi.json describes
one operation.
"""

from __future__ import annotations

import asyncio
from datetime import datetime, timezone
from typing import Any, Literal, cast

import jwt
import msgspec
from starlette.requests import Request
from starlette.responses import Response
from starlette.types import ASGIApp, Receive, Scope, Send

from skiplock import store
from skiplock.api.auth import AUTH_KEY, AuthConfig, AuthMiddleware, below_root, client_address
from skiplock.api.body import read_json_object
from skiplock.api.fields import decode
from skiplock.api.models import LOGIN_FIELDS, LOGIN_RULES, Login
from skiplock.api.problems import Problem
from skiplock.api.responses import LoginToken
from skiplock.api.routing import Answer, Operation, route
from skiplock.api.state import ApiState, api_state
from skiplock.passwords import check_password

LOGIN_PATH = "/api/v1/login"
ALIAS_PATH = "/api/login"
DENIED = "wrong username or password"


def not_configured(detail: str) -> Problem:
    return Problem(501, "login not configured", detail)


def login_config(request: Request) -> tuple[AuthConfig, AuthMiddleware]:
    """The auth settings login signs with; 501 saying what to set when it cannot sign."""
    middleware: AuthMiddleware | None = request.scope.get(AUTH_KEY)
    if middleware is None:
        raise not_configured(
            "the API runs without authentication, so there is nothing to log in to;"
            " serve it with auth and a JWT secret (skiplock serve --jwt-secret, or"
            " SKIPLOCK_JWT_SECRET, with --jwt-issuer and --jwt-audience)"
        )
    if middleware.config.jwt_secret is None:
        raise not_configured(
            "login signs HS256 JWTs and the API has no JWT secret: set SKIPLOCK_JWT_SECRET"
            " (or --jwt-secret) with --jwt-issuer and --jwt-audience"
        )
    return middleware.config, middleware


def issue_token(config: AuthConfig, name: str, scope: str, queues: str | None) -> LoginToken:
    """A JWT for user `name`, as api/auth.py verifies them: sub, iss, aud, exp, and the
    scope and queues claims."""
    assert config.jwt_secret is not None
    now = datetime.now(timezone.utc).replace(microsecond=0)
    expires_at = now + config.login_lifetime
    claims: dict[str, Any] = {
        "sub": name,
        "iss": config.jwt_issuer,
        "aud": config.jwt_audience,
        "iat": now,
        "exp": expires_at,
        "scope": scope,
    }
    if queues is not None:
        claims["queues"] = queues
    token = jwt.encode(claims, config.jwt_secret, algorithm="HS256")
    return LoginToken(
        token=token,
        token_type="bearer",
        expires_at=expires_at,
        scope=cast(Literal["read", "write", "admin"], scope),  # the token_scope enum
        queues=queues,
    )


async def audit_login(api: ApiState, username: str, status: int, client: str) -> None:
    outcome = "ok" if status == 200 else "denied"
    await api.run(
        store.record_audit(username, "login", None, status, {"client": client, "outcome": outcome})
    )


async def login(request: Request) -> Response:
    """POST /api/v1/login {"username", "password"} → 200 {"token", "token_type",
    "expires_at", "scope", "queues"}; 401 for any bad credential, 429 after too many."""
    config, middleware = login_config(request)
    api = api_state(request)
    client = client_address(request.scope)
    body = await read_json_object(request, limit=api.max_body_bytes)
    credentials = decode(body, Login, LOGIN_RULES, fields=LOGIN_FIELDS)
    credentials.check()
    username = credentials.username
    wait = middleware.limiter.retry_after(client)
    if wait is not None:
        await audit_login(api, username, 429, client)
        raise Problem(
            429,
            "too many failed attempts",
            f"too many failed authentication attempts; retry in {wait} s",
            headers={"Retry-After": str(wait)},
        )
    user = await api.run(store.find_user(username))
    # argon2 is slow on purpose: off the event loop, so other requests go on meanwhile.
    checked = await asyncio.to_thread(
        check_password, user[1] if user else None, credentials.password
    )
    if user is None or not checked.ok:
        middleware.limiter.fail(client)
        await audit_login(api, username, 401, client)
        raise Problem(401, "unauthorized", DENIED)
    name, _, scope, queues = user

    async def record(conn: Any) -> bool:
        # One transaction: a login is recorded and audited together, or not at all.
        if not await api.app.arun(store.record_user_login(name, checked.rehash), conn):
            return False  # disabled or deleted while its password was being checked
        await api.app.arun(
            store.record_audit(name, "login", None, 200, {"client": client, "outcome": "ok"}),
            conn,
        )
        return True

    if not await api.db(record):
        middleware.limiter.fail(client)
        await audit_login(api, username, 401, client)
        raise Problem(401, "unauthorized", DENIED)
    answer = issue_token(config, name, scope, queues)
    # no-store: a token must not sit in a cache (RFC 6749 §5.1).
    return Response(
        msgspec.json.encode(answer),
        media_type="application/json",
        headers={"Cache-Control": "no-store"},
    )


class LoginAlias:
    """Serves POST /api/login as POST /api/v1/login by rewriting the path before the
    router (and the auth middleware) see it."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "http":
            root_path: str = scope.get("root_path", "")
            if below_root(root_path, scope["path"]) == ALIAS_PATH:
                path = root_path + LOGIN_PATH
                scope = {**scope, "path": path, "raw_path": path.encode()}
        await self.app(scope, receive, send)


routes = [
    route(
        "/login",
        {
            "POST": Operation(
                login,
                "login",
                "Trade a user's name and password for a bearer JWT of the user's scope"
                " (also served at POST /api/login).",
                "auth",
                {200: Answer(LoginToken, "A token, its expiry, scope and queues.")},
                body=Login,
                errors=(401, 422, 429, 501, 503),
            )
        },
        name="login",
    )
]
"""Mounted under /api/v1 by create_app."""
