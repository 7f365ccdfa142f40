"""Every 4xx/5xx the API sends, as RFC 9457 problem details
(`application/problem+json`): {"type", "title", "status", "detail", "error", "field"?}.

`error` (also the `title`) is a short, stable phrase a client can switch on, and `type`
the same as a URI (urn:skiplock:problem:invalid-field); `detail` is for people; `field`
names the request field at fault when there is one (a path such as `args.to` or
`[2].args.to` for a job's args). Handlers raise `Problem` (or let skiplock/psycopg
exceptions through) and the handlers below turn them into responses, so no route builds
an error body by hand.
"""

from __future__ import annotations

import http
import logging
from collections.abc import Mapping, Sequence
from typing import Any

import psycopg
import psycopg.errors
from psycopg_pool import PoolTimeout
from starlette.exceptions import HTTPException
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from skiplock.errors import ConfigError, JobNotFound
from skiplock.jobs import JSONError
from skiplock.validation import InvalidArgs

log = logging.getLogger("skiplock.api")

# Seconds a client should wait before retrying while the database is away: long enough
# not to hammer a restarting server, short enough that a blip costs little.
RETRY_AFTER_SECONDS = 5
PROBLEM_JSON = "application/problem+json"
PROBLEM_TYPE_PREFIX = "urn:skiplock:problem:"


class Problem(Exception):
    """An HTTP error answer: raise it from a route and it becomes the JSON response."""

    def __init__(
        self,
        status: int,
        error: str,
        detail: str,
        *,
        field: str | None = None,
        headers: Mapping[str, str] | None = None,
    ) -> None:
        super().__init__(detail)
        self.status = status
        self.error = error
        self.detail = detail
        self.field = field
        self.headers = dict(headers or {})


def problem_response(
    status: int,
    error: str,
    detail: str | None = None,
    *,
    field: str | None = None,
    headers: Mapping[str, str] | None = None,
) -> JSONResponse:
    """The problem+json response; `detail` and `field` are left out when None."""
    body: dict[str, Any] = {
        "type": problem_type(error),
        "title": error,
        "status": status,
        "error": error,
    }
    if detail is not None:
        body["detail"] = detail
    if field is not None:
        body["field"] = field
    return JSONResponse(
        body, status_code=status, headers=dict(headers or {}), media_type=PROBLEM_JSON
    )


def problem_type(error: str) -> str:
    """The problem's type URI: `invalid field` → urn:skiplock:problem:invalid-field."""
    slug = "".join(c if c.isalnum() else "-" for c in error.lower()).strip("-")
    return PROBLEM_TYPE_PREFIX + (slug or "error")


def invalid_field(field: str, detail: str) -> Problem:
    """422 for one request field; `detail` says what a valid value looks like."""
    return Problem(422, "invalid field", detail, field=field)


def database_unavailable() -> Problem:
    return Problem(
        503,
        "database unavailable",
        "the database cannot be reached; retry later",
        headers={"Retry-After": str(RETRY_AFTER_SECONDS)},
    )


def _from_problem(problem: Problem) -> JSONResponse:
    return problem_response(
        problem.status,
        problem.error,
        problem.detail,
        field=problem.field,
        headers=problem.headers,
    )


async def _problem(request: Request, exc: Exception) -> Response:
    assert isinstance(exc, Problem)
    return _from_problem(exc)


async def _http_exception(request: Request, exc: Exception) -> Response:
    # Starlette's own 404 (no route) and 405 (wrong method), in our shape.
    assert isinstance(exc, HTTPException)
    phrase = http.HTTPStatus(exc.status_code).phrase
    detail = exc.detail if exc.detail != phrase else None
    return problem_response(
        exc.status_code, phrase.lower(), detail, headers=dict(exc.headers or {})
    )


async def _job_not_found(request: Request, exc: Exception) -> Response:
    return problem_response(404, "not found", str(exc))


async def _invalid_args(request: Request, exc: Exception) -> Response:
    # The App's own check, for a task this API process registered itself.
    assert isinstance(exc, InvalidArgs)
    return problem_response(422, "invalid args", str(exc), field=exc.path)


async def _invalid_value(request: Request, exc: Exception) -> Response:
    # Raised by the core when a value slipped past the API's own checks.
    return problem_response(422, "invalid value", str(exc))


def _primary_message(exc: psycopg.Error) -> str:
    # Only the primary message: DETAIL/CONTEXT lines can echo whole rows back.
    return exc.diag.message_primary or str(exc).split("\n", 1)[0]


async def _rejected_by_database(request: Request, exc: Exception) -> Response:
    assert isinstance(exc, psycopg.Error)
    return problem_response(422, "rejected by database", _primary_message(exc))


async def _conflict(request: Request, exc: Exception) -> Response:
    # SQLSTATE 55000 is in psycopg's OperationalError family, but it means "not in this
    # state" (e.g. retrying a running job), not "database away": never a 503.
    assert isinstance(exc, psycopg.Error)
    return problem_response(409, "conflict", _primary_message(exc))


async def _query_timeout(request: Request, exc: Exception) -> Response:
    # statement_timeout (see ApiState.db): the database is there but too slow for this
    # request; QueryCanceled is an OperationalError, so it needs its own handler.
    log.warning("query timeout in %s %s", request.method, request.url.path)
    return problem_response(
        503,
        "query timeout",
        "the query took longer than the API's statement timeout; retry later or narrow it",
        headers={"Retry-After": str(RETRY_AFTER_SECONDS)},
    )


async def _database_unavailable(request: Request, exc: Exception) -> Response:
    # Expected while PostgreSQL restarts: one line, no traceback, and never the DSN.
    log.warning("database unavailable: %s: %s", type(exc).__name__, exc)
    return _from_problem(database_unavailable())


EXCEPTION_HANDLERS = {
    Problem: _problem,
    HTTPException: _http_exception,
    JobNotFound: _job_not_found,
    JSONError: _invalid_value,
    InvalidArgs: _invalid_args,
    ConfigError: _invalid_value,
    psycopg.errors.CheckViolation: _rejected_by_database,
    psycopg.DataError: _rejected_by_database,
    psycopg.errors.ObjectNotInPrerequisiteState: _conflict,
    psycopg.errors.QueryCanceled: _query_timeout,
    psycopg.OperationalError: _database_unavailable,
    PoolTimeout: _database_unavailable,
}
"""Exception class → handler, for Starlette(exception_handlers=...); the most specific
class in an exception's MRO wins."""


class InternalErrorMiddleware:
    """Answer any unhandled exception with 500 {"error": "internal error"} and log it.

    Starlette's own catch-all (ServerErrorMiddleware) re-raises after answering, so the
    server logs the traceback a second time; this one logs once, with
    logging.exception, and never puts the traceback in the body.
    """

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        started = False

        async def send_tracked(message: Message) -> None:
            nonlocal started
            if message["type"] == "http.response.start":
                started = True
            await send(message)

        try:
            await self.app(scope, receive, send_tracked)
        except Exception:
            log.exception("unhandled error in %s %s", scope.get("method"), scope.get("path"))
            if started:
                # Half a response is out; all that is left is to drop the connection.
                raise
            await problem_response(500, "internal error")(scope, receive, send)


def reject_unknown_fields(body: Mapping[str, Any], allowed: Sequence[str]) -> None:
    """422 naming the first field of `body` that is not in `allowed` (and listing all)."""
    unknown = sorted(set(body) - set(allowed))
    if unknown:
        raise Problem(
            422,
            "unknown field",
            f"unknown field(s): {', '.join(unknown)}; expected some of {', '.join(allowed)}",
            field=unknown[0],
        )
