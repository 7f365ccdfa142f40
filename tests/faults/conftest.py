"""Fixtures of the fault suite: the ledger and state log installed in this test's
database, worker processes that are all gone at teardown, and an acknowledged-ids file."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import psycopg
import pytest
from harness import AckedIds, PgServer, Workers, install

from skiplock.migrate import migrate


@pytest.fixture
def ledger(conn: psycopg.Connection[Any]) -> psycopg.Connection[Any]:
    """The test's autocommit connection, with the ledger and the state log installed."""
    install(conn)
    return conn


@pytest.fixture
def workers(dsn: str, tmp_path: Path) -> Iterator[Workers]:
    pool = Workers(dsn, tmp_path)
    yield pool
    pool.kill_all()


@pytest.fixture
def acked(tmp_path: Path) -> Iterator[AckedIds]:
    ids = AckedIds(tmp_path / "acked-ids")
    yield ids
    ids.close()


@pytest.fixture
def pg_server() -> Iterator[PgServer]:
    """A private PostgreSQL server this test may stop or kill; migrated, with the ledger."""
    server = PgServer()
    try:
        with psycopg.connect(server.dsn, autocommit=True) as conn:
            migrate(conn)
            install(conn)
        yield server
    finally:
        server.destroy()
