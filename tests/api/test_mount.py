"""The API mounted in a host app: its pools open on first use and close with the host.

Auth under a prefix is checked by tests/api/test_auth.py, whose tests run both at the
root and mounted.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

import psycopg
from api_checks import enqueue
from fastapi import FastAPI
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import PlainTextResponse, Response
from starlette.routing import Mount, Route
from starlette.testclient import TestClient

import skiplock
from conftest import wait_until
from skiplock.api import api_lifespan, create_app


def other_sessions(conn: psycopg.Connection) -> int:
    """Sessions on this test's database besides `conn` (the API's pool and listener, and
    the fixture's own connection)."""
    row = conn.execute(
        "SELECT count(*) FROM pg_stat_activity"
        " WHERE datname = current_database() AND pid <> pg_backend_pid()"
    ).fetchone()
    assert row is not None
    count: int = row[0]
    return count


async def home(request: Request) -> Response:
    return PlainTextResponse("the host's own page")


def use_the_api(client: TestClient, conn: psycopg.Connection, before: int) -> None:
    """Calls that open the API's pool and its result listener, through the prefix."""
    (job,) = enqueue(conn)
    assert client.get("/").text == "the host's own page"
    assert client.get("/skiplock/api/v1/jobs").json()["jobs"][0]["id"] == job
    response = client.get(f"/skiplock/api/v1/jobs/{job}/result", params={"wait": "0.1"})
    assert response.status_code == 202
    assert client.get("/skiplock/health").json() == {"status": "ok", "workers": 0, "queue_depth": 1}
    wait_until(lambda: other_sessions(conn) >= before + 2)


def test_pools_close_with_a_starlette_host(dsn: str, conn: psycopg.Connection) -> None:
    before = other_sessions(conn)
    api = create_app(skiplock.App(dsn))
    host = Starlette(
        routes=[Route("/", home), Mount("/skiplock", api)],
        lifespan=lambda _: api_lifespan(api),
    )
    with TestClient(host) as client:
        use_the_api(client, conn, before)
    wait_until(lambda: other_sessions(conn) == before)


def test_pools_close_inside_the_hosts_own_lifespan(dsn: str, conn: psycopg.Connection) -> None:
    before = other_sessions(conn)
    api = create_app(skiplock.App(dsn))
    events: list[str] = []

    @asynccontextmanager
    async def lifespan(_: Any) -> AsyncIterator[None]:
        events.append("host started")
        async with api_lifespan(api):
            yield
        events.append("host stopped")

    host = Starlette(routes=[Route("/", home), Mount("/skiplock", api)], lifespan=lifespan)
    with TestClient(host) as client:
        use_the_api(client, conn, before)
    assert events == ["host started", "host stopped"]
    wait_until(lambda: other_sessions(conn) == before)


def test_pools_close_with_a_fastapi_host(dsn: str, conn: psycopg.Connection) -> None:
    before = other_sessions(conn)
    api = create_app(skiplock.App(dsn))
    host = FastAPI(lifespan=lambda _: api_lifespan(api))
    host.get("/", response_class=PlainTextResponse)(lambda: "the host's own page")
    host.mount("/skiplock", api)
    with TestClient(host) as client:
        use_the_api(client, conn, before)
    wait_until(lambda: other_sessions(conn) == before)
