"""Authentication, scopes and the audit log of the HTTP API (see docs/api.md).

When create_app gets an AuthConfig, every route except the open ones (OPEN_ROUTES:
liveness, readiness, Prometheus scrapes and the API description) needs
`Authorization: Bearer <token>`, where the token is either

- a skiplock API token (`sk_…`, made by `skiplock tokens create`): looked up by its
  sha256, so the database never holds the secret; or
- a JWT signed with the configured HS256 secret or RS256 public key, with exp, iss and
  aud checked and `alg: none` refused; its `scope` and `queues` claims map to the same
  scopes and queue patterns as a token's.

Scopes nest: read (GET) < write (enqueue jobs and workflows, cancel, retry) < admin
(everything else). Each decision is taken from the route the router matches, by its
declared path (`/api/v1/jobs/{job_id}/cancel`), never from the raw request path, so the
API answers the same at the root and mounted under any prefix in a host app.
A token limited to a queue pattern sees only those queues: jobs, queues and tasks of others
answer 404, as if they did not exist, and routes that are not per queue answer 403.
Failed attempts are limited per client address (api/failures.py); every mutating call
by a known caller leaves one row in skiplock.audit_log. Users trade a name and password
for a JWT at POST /api/v1/login (api/login.py), an open route.
"""

from __future__ import annotations

import fnmatch
import hashlib
import hmac
import logging
import re
import secrets
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Annotated, Any

import jwt
import psycopg
from msgspec import Meta
from psycopg_pool import PoolTimeout
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import BaseRoute, Match, Mount, Route
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from skiplock import store
from skiplock.api.failures import FailureLimiter
from skiplock.api.problems import Problem, database_unavailable, problem_response
from skiplock.api.query import LIMIT, Query
from skiplock.api.responses import AuditPage
from skiplock.api.routing import AliasRoute, Answer, Operation, Param
from skiplock.api.routing import route as declare_route
from skiplock.api.state import ApiState, api_state
from skiplock.errors import ConfigError

log = logging.getLogger("skiplock.api.auth")

SCOPES = ("read", "write", "admin")
TOKEN_PREFIX = "sk_"
# The rules below name routes by their declared path under the API's root, as the
# router matches them (a mount prefix is not part of it).
# Open without a token: load balancers and scrapers seldom carry credentials, and none
# of these answers says anything about jobs (/ready says only "database reachable").
# Login too: it is where a caller without a token gets one.
OPEN_ROUTES = frozenset(
    {"/health", "/ready", "/metrics", "/openapi.json", "/docs", "/api/v1/login"}
)
# The routes a `write` token may call beyond GET: the producer's and operator's
# day-to-day job actions. Every other non-GET route is admin.
WRITE_ROUTES = frozenset(
    {
        "/api/v1/jobs",
        "/api/v1/jobs/{job_id}/cancel",
        "/api/v1/jobs/{job_id}/retry",
        "/api/v1/workflows",
        "/api/v1/workflows/{workflow_id}/cancel",
        "/api/v1/workflows/{workflow_id}/retry",
    }
)
ADMIN_READS = frozenset({"/api/v1/audit"})
# Routes that know which queue they touch, and so can serve a queue-limited token.
QUEUE_AWARE = (
    "/api/v1/jobs",
    "/api/v1/queues",
    "/api/v1/workflows",
    "/api/v1/tasks",
    "/api/v1/metrics/history",
)
QUEUE_PATTERN = re.compile(r"[A-Za-z0-9_.:*?-]{1,64}")
TOKEN_NAME = re.compile(r"[A-Za-z0-9_.:@-]{1,100}")
PRINCIPAL_KEY = "skiplock.principal"
# Where the middleware leaves itself for the login route (its config and failure count).
AUTH_KEY = "skiplock.auth"
# HMAC keys shorter than the hash's output make brute force of the secret cheaper than
# of the signature (RFC 7518 §3.2 asks for at least 256 bits for HS256).
MIN_HS256_SECRET_BYTES = 32


@dataclass(frozen=True)
class AuthConfig:
    """How the API authenticates: always API tokens; JWTs too when a key is given.

    `jwt_public_key` is PEM text. With either key, `jwt_issuer` and `jwt_audience` are
    required: a token minted for another service must not open this one. A client
    address gets `max_failures` failed attempts per `failure_window` seconds (logins
    included), then 429. A login's JWT (HS256: it needs `jwt_secret`) expires after
    `login_lifetime`.
    """

    jwt_secret: str | None = None
    jwt_public_key: str | None = None
    jwt_issuer: str | None = None
    jwt_audience: str | None = None
    max_failures: int = 10
    failure_window: float = 60.0
    login_lifetime: timedelta = timedelta(hours=12)

    def __post_init__(self) -> None:
        if self.jwt_secret is not None and len(self.jwt_secret.encode()) < MIN_HS256_SECRET_BYTES:
            raise ConfigError(
                f"jwt_secret must be at least {MIN_HS256_SECRET_BYTES} bytes,"
                f" got {len(self.jwt_secret.encode())}"
            )
        if self.jwt_public_key is not None and "-----BEGIN" not in self.jwt_public_key:
            raise ConfigError("jwt_public_key must be PEM text (-----BEGIN PUBLIC KEY-----)")
        if self.jwt_enabled and not (self.jwt_issuer and self.jwt_audience):
            raise ConfigError("jwt_issuer and jwt_audience are required when a JWT key is set")
        if self.max_failures < 1:
            raise ConfigError(f"max_failures must be >= 1, got {self.max_failures}")
        if not self.failure_window > 0:
            raise ConfigError(f"failure_window must be > 0 seconds, got {self.failure_window}")
        if not self.login_lifetime > timedelta(0):
            raise ConfigError(f"login_lifetime must be > 0, got {self.login_lifetime}")

    @property
    def jwt_enabled(self) -> bool:
        return self.jwt_secret is not None or self.jwt_public_key is not None


@dataclass(frozen=True)
class Principal:
    """Who is calling: `actor` is the token's name or `jwt:<sub>`."""

    actor: str
    scope: str
    queue_pattern: str | None = None

    def allows(self, scope: str) -> bool:
        return SCOPES.index(self.scope) >= SCOPES.index(scope)

    def sees(self, queue: str) -> bool:
        """Whether `queue` is under this principal's pattern; the same rule as SQL's
        skiplock.queue_matches (the pattern alphabet has no `[`, so fnmatch's classes
        cannot appear)."""
        return self.queue_pattern is None or fnmatch.fnmatchcase(queue, self.queue_pattern)


def new_token() -> str:
    """A fresh API token secret: `sk_` and 256 random bits."""
    return TOKEN_PREFIX + secrets.token_urlsafe(32)


def hash_token(token: str) -> str:
    """What the database keeps of a token: its sha256, hex. The secret is random and
    long, so a plain hash is enough (no salt or slow hash needed, unlike a password)."""
    return hashlib.sha256(token.encode()).hexdigest()


def check_token_name(name: str) -> str:
    if not TOKEN_NAME.fullmatch(name):
        raise ConfigError(f"token name must be 1 to 100 of A-Z a-z 0-9 _ . : @ -, got {name!r}")
    return name


def check_queue_pattern(pattern: str | None) -> str | None:
    if pattern is not None and not QUEUE_PATTERN.fullmatch(pattern):
        raise ConfigError(
            "queues must be a queue name or a glob (* and ?) of 1 to 64 characters,"
            f" got {pattern!r}"
        )
    return pattern


def client_address(scope: Scope) -> str:
    """The address failed attempts are counted under."""
    return scope["client"][0] if scope.get("client") else "unknown"


def principal_of(request: Request) -> Principal | None:
    """The caller of this request; None when the API runs without auth."""
    principal: Principal | None = request.scope.get(PRINCIPAL_KEY)
    return principal


def required_scope(method: str, route: str | None) -> str | None:
    """The scope a call of `route` (its declared path, e.g. /api/v1/jobs/{job_id}) needs;
    None for the open routes. A path no route serves (route None) needs only a valid
    token: nothing runs there but the router's 404 or trailing-slash redirect."""
    if route in OPEN_ROUTES:
        return None
    if route is None:
        return "read"
    if method in ("GET", "HEAD"):
        return "admin" if route in ADMIN_READS else "read"
    if method == "POST" and route in WRITE_ROUTES:
        return "write"
    return "admin"


def matched_route(routes: Sequence[BaseRoute], scope: Scope) -> str | None:
    """The declared path of the route the router picks for this request, matched as
    Starlette matches it (so under root_path, when the API is mounted); a route that
    fits the path but not the method counts too (its 405 comes after auth). None when
    no route fits."""
    partial: str | None = None
    for route in routes:
        match, child_scope = route.matches(scope)
        if match is Match.NONE:
            continue
        if isinstance(route, Mount):
            # The router hands the request to the first mount that fits, found or not.
            inner = matched_route(route.routes, {**scope, **child_scope})
            return None if inner is None else route.path + inner
        if isinstance(route, Route):
            # an alias has the rules of the route it stands for
            path = route.of if isinstance(route, AliasRoute) else route.path_format
            if match is Match.FULL:
                return path
            partial = partial or path
    return partial


def below_root(root_path: str, path: str) -> str:
    """`path` below the API's root: /api/v1/jobs whether or not a host mounts the API."""
    return path.removeprefix(root_path) if root_path else path


class Unauthorized(Exception):
    """The request carries no usable credential; the message says why (401)."""


class AuthMiddleware:
    """Authenticates every non-open request, enforces scopes, limits failures and writes
    the audit log. Runs outside the routes, so it answers its own errors."""

    def __init__(
        self, app: ASGIApp, *, api: ApiState, config: AuthConfig, routes: Sequence[BaseRoute]
    ) -> None:
        self.app = app
        self.api = api
        self.config = config
        self.routes = routes
        self.limiter = FailureLimiter(config.max_failures, config.failure_window)

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        scope[AUTH_KEY] = self
        method: str = scope["method"]
        # Read now: the router rewrites scope["root_path"] as it descends into mounts.
        root_path: str = scope.get("root_path", "")
        path = below_root(root_path, scope["path"])
        route = matched_route(self.routes, scope)
        needed = required_scope(method, route)
        if needed is None:
            await self.app(scope, receive, send)
            return
        client = client_address(scope)
        wait = self.limiter.retry_after(client)
        if wait is not None:
            await problem_response(
                429,
                "too many failed attempts",
                f"too many failed authentication attempts; retry in {wait} s",
                headers={"Retry-After": str(wait)},
            )(scope, receive, send)
            return
        try:
            principal = await self.authenticate(scope)
        except Unauthorized as exc:
            self.limiter.fail(client)
            await unauthorized(str(exc))(scope, receive, send)
            return
        except Problem as problem:
            await problem_response(
                problem.status, problem.error, problem.detail, headers=problem.headers
            )(scope, receive, send)
            return
        scope[PRINCIPAL_KEY] = principal
        denial = forbidden_reason(principal, needed, route)
        if denial is not None:
            response: Response = problem_response(403, "forbidden", denial)
            await response(scope, receive, send)
            await self.audit(principal, method, path, 403, client, None)
            return
        if method in ("GET", "HEAD", "OPTIONS"):
            await self.app(scope, receive, send)
            return
        status = 500
        location: str | None = None

        async def send_tracked(message: Message) -> None:
            nonlocal status, location
            if message["type"] == "http.response.start":
                status = message["status"]
                for key, value in message.get("headers", []):
                    if key == b"location":
                        location = value.decode("latin-1")
            await send(message)

        try:
            await self.app(scope, receive, send_tracked)
        finally:
            created = below_root(root_path, location) if location else None
            await self.audit(principal, method, path, status, client, created)

    async def authenticate(self, scope: Scope) -> Principal:
        header = b""
        for key, value in scope["headers"]:
            if key == b"authorization":
                header = value
                break
        if not header:
            raise Unauthorized("this route needs an Authorization: Bearer <token> header")
        kind, _, token = header.decode("latin-1").partition(" ")
        token = token.strip()
        if kind.lower() != "bearer" or not token:
            raise Unauthorized("the Authorization header must be: Bearer <token>")
        if token.startswith(TOKEN_PREFIX):
            return await self.api_token(token)
        if self.config.jwt_enabled:
            return self.jwt_principal(token)
        raise Unauthorized("invalid token")

    async def api_token(self, token: str) -> Principal:
        digest = hash_token(token)
        try:
            found = await self.api.run(store.find_api_token(digest))
        except (psycopg.OperationalError, PoolTimeout):
            raise database_unavailable() from None
        # The lookup is by hash, so timing says nothing about the secret; the final
        # comparison is constant-time all the same, in case the lookup ever changes.
        if found is None or not hmac.compare_digest(found[3], digest):
            raise Unauthorized("invalid token (unknown or revoked)")
        name, scope, pattern, _ = found
        return Principal(actor=name, scope=scope, queue_pattern=pattern)

    def jwt_principal(self, token: str) -> Principal:
        config = self.config
        try:
            algorithm = jwt.get_unverified_header(token).get("alg")
            keys = {"HS256": config.jwt_secret, "RS256": config.jwt_public_key}
            key = keys.get(algorithm) if isinstance(algorithm, str) else None
            if key is None or not isinstance(algorithm, str):
                # Covers `none` and any algorithm this server holds no key for.
                raise Unauthorized(f"invalid token: algorithm {algorithm!r} is not accepted")
            claims: dict[str, Any] = jwt.decode(
                token,
                key,
                algorithms=[algorithm],
                issuer=config.jwt_issuer,
                audience=config.jwt_audience,
                options={"require": ["exp", "iss", "aud", "sub"]},
            )
        except jwt.PyJWTError as exc:
            raise Unauthorized(f"invalid token: {exc}") from None
        scope = jwt_scope(claims.get("scope"))
        queues = claims.get("queues")
        if queues is not None and not (isinstance(queues, str) and QUEUE_PATTERN.fullmatch(queues)):
            raise Unauthorized("invalid token: the queues claim must be a queue name or glob")
        return Principal(actor=f"jwt:{claims['sub']}", scope=scope, queue_pattern=queues)

    async def audit(
        self,
        principal: Principal,
        method: str,
        path: str,
        status: int,
        client: str,
        location: str | None,
    ) -> None:
        """One audit row; `path` and `location` are below the API's root."""
        if method in ("GET", "HEAD", "OPTIONS"):
            return
        call = store.record_audit(
            principal.actor,
            f"{method} {path}",
            audit_target(location or path),
            status,
            {"client": client},
        )
        try:
            await self.api.run(call)
        except Exception:
            # The answer is already out; losing an audit row must not turn into a 500.
            log.exception("could not write the audit row for %s %s", method, path)


def jwt_scope(claim: Any) -> str:
    """The highest skiplock scope in a JWT `scope` claim: space-separated words, each
    `read`/`write`/`admin`, optionally prefixed `skiplock:` (other words are ignored)."""
    words = claim.split() if isinstance(claim, str) else []
    granted = [w.removeprefix("skiplock:") for w in words]
    known = [s for s in SCOPES if s in granted]
    if not known:
        raise Unauthorized("invalid token: its scope claim grants none of read, write, admin")
    return known[-1]


def forbidden_reason(principal: Principal, needed: str, route: str | None) -> str | None:
    if not principal.allows(needed):
        return f"this call needs the {needed} scope; the token has {principal.scope}"
    queue_aware = route is None or route.startswith(QUEUE_AWARE)
    if principal.queue_pattern is not None and not queue_aware:
        return (
            f"the token is limited to queues {principal.queue_pattern};"
            " only the jobs, workflows, queues, tasks and metrics history routes serve it"
        )
    return None


def audit_target(path: str) -> str | None:
    """`jobs/5` for /api/v1/jobs/5/cancel (or the Location of a created job)."""
    parts = path.removeprefix("/api/v1/").strip("/").split("/")
    return "/".join(parts[:2]) if len(parts) >= 2 else None


def unauthorized(detail: str) -> Response:
    return problem_response(
        401,
        "unauthorized",
        detail,
        headers={"WWW-Authenticate": 'Bearer realm="skiplock", error="invalid_token"'},
    )


def _audit_json(row: dict[str, Any]) -> dict[str, Any]:
    return {k: v.isoformat() if isinstance(v, datetime) else v for k, v in row.items()}


async def list_audit(request: Request) -> Response:
    """GET /api/v1/audit?limit=N&before=ID → 200 {"entries": [...], "next_before"}: newest
    first; pass `next_before` as `before` for the next page (admin)."""
    api = api_state(request)
    query = Query(request, AUDIT_PARAMETERS)
    limit = query.limit()
    before = query.integer("before", 0, 1, 2**63 - 1) if query.text("before") else None
    rows = await api.run(store.list_audit(limit=limit + 1, before_id=before))
    next_before = rows[limit - 1]["id"] if len(rows) > limit else None
    return JSONResponse(
        {"entries": [_audit_json(row) for row in rows[:limit]], "next_before": next_before}
    )


AUDIT_PARAMETERS = (
    LIMIT,
    Param("before", Annotated[int, Meta(ge=1)], "`next_before` of the previous page."),
)
routes = [
    declare_route(
        "/audit",
        {
            "GET": Operation(
                list_audit,
                "list_audit",
                "The audit log of mutating calls, newest first (admin).",
                "auth",
                {200: Answer(AuditPage, "A page.")},
                query=AUDIT_PARAMETERS,
                errors=(422, 503),
            )
        },
        name="list_audit",
    )
]
"""Mounted under /api/v1 by create_app (whether or not auth is on)."""
