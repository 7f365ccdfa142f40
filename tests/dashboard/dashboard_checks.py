"""Helpers of the dashboard tests: users, tokens, dead letters, and logging a client in
as a browser would."""

from __future__ import annotations

import re
from typing import Any

import psycopg
from starlette.testclient import TestClient

import skiplock
from skiplock import store
from skiplock.api import AuthConfig
from skiplock.api.auth import hash_token, new_token
from skiplock.passwords import hash_password
from skiplock.testing import run_jobs

SECRET = "d" * 40
PASSWORD = "correct horse battery staple"
CONFIG = AuthConfig(
    jwt_secret=SECRET, jwt_issuer="skiplock-test", jwt_audience="skiplock-test", max_failures=3
)
CSRF = re.compile(r'name="csrf" value="([^"]+)"')


def add_user(conn: psycopg.Connection, name: str, scope: str, queues: str | None = None) -> None:
    assert store.create_user(name, hash_password(PASSWORD), scope, queues).run(conn)


def add_token(conn: psycopg.Connection, name: str, scope: str, queues: str | None = None) -> str:
    token = new_token()
    assert store.create_api_token(name, scope, queues, hash_token(token)).run(conn)
    return token


def csrf_of(html: str) -> str:
    found = CSRF.search(html)
    assert found, html
    return found.group(1)


def log_in(client: TestClient, base: str = "/dashboard", **credentials: str) -> Any:
    """Post the login form as a browser would (its CSRF token from the page)."""
    page = client.get(f"{base}/login")
    form = {"csrf": csrf_of(page.text), **credentials}
    return client.post(f"{base}/login", data=form, follow_redirects=False)


def dead_letters(dsn: str, queue: str, count: int) -> list[int]:
    """`count` jobs of task `boom` in `queue` that failed their only attempt."""
    app = skiplock.App(dsn)

    @app.task(name="boom")
    def boom() -> None:
        raise RuntimeError("boom")

    ids = [app.enqueue("boom", {}, queue=queue, max_attempts=1) for _ in range(count)]
    run_jobs(app, queues=[queue])
    app.close()
    return ids
