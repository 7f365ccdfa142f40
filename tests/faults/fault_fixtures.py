"""Fixtures of the fault suite: the ledger and state log installed in this test's
database, worker processes that are all gone at teardown, an acknowledged-ids file and
a private PostgreSQL server.

Test modules import them (`from fault_fixtures import ...`): a conftest.py here would
replace the root one as module `conftest`, which other tests import helpers from. Each
is registered under its short name and defined as `*_fixture`, so importing it does not
clash with the test's parameter of the same name."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import psycopg
import pytest
from harness import AckedIds, PgServer, Workers, install

from skiplock.migrate import migrate


@pytest.fixture(name="ledger")
def ledger_fixture(conn: psycopg.Connection[Any]) -> psycopg.Connection[Any]:
    """The test's autocommit connection, with the ledger and the state log installed."""
    install(conn)
    return conn


@pytest.fixture(name="workers")
def workers_fixture(dsn: str, tmp_path: Path) -> Iterator[Workers]:
    pool = Workers(dsn, tmp_path)
    yield pool
    pool.kill_all()


@pytest.fixture(name="acked")
def acked_fixture(tmp_path: Path) -> Iterator[AckedIds]:
    ids = AckedIds(tmp_path / "acked-ids")
    yield ids
    ids.close()


@pytest.fixture(name="pg_server")
def pg_server_fixture() -> Iterator[PgServer]:
    """A private PostgreSQL server this test may stop or kill; migrated, with the ledger."""
    server = PgServer()
    try:
        with psycopg.connect(server.dsn, autocommit=True) as conn:
            migrate(conn)
            install(conn)
        yield server
    finally:
        server.destroy()
