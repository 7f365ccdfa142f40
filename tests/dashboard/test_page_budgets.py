"""No dashboard page scans the job tables: with 10M jobs of history and 1M queued
(skiplock.bench.scale), every statement a page sends is replayed in a transaction and
the rows and buffers it touched in skiplock's tables and indexes (the transaction's
pg_stat_get_xact_* figures) must stay within a fixed budget: a page reads what it shows,
not what the database holds. Counts, not timings; the page times are in
bench/dashboard_pages.py.

The `scale` tier (`pytest -m scale -n 0`): building the data takes a minute or two.
SKIPLOCK_SCALE_HISTORY and SKIPLOCK_SCALE_QUEUED make it smaller while working on it."""

from __future__ import annotations

import os
from collections.abc import Iterator
from typing import Any

import psycopg
import pytest
from dashboard_checks import CONFIG, PASSWORD, add_user, log_in
from psycopg import sql
from starlette.testclient import TestClient

import skiplock
from skiplock.api import create_app
from skiplock.bench.scale import dashboard_pages, load_scale_data
from skiplock.store.call import Call

pytestmark = pytest.mark.scale

HISTORY = int(os.environ.get("SKIPLOCK_SCALE_HISTORY", 10_000_000))
QUEUED = int(os.environ.get("SKIPLOCK_SCALE_QUEUED", 1_000_000))
# Per page, over every statement it sends: a scan of the history alone would read
# 10M rows in ~300,000 blocks.
ROW_BUDGET = 60_000
BLOCK_BUDGET = 6_000

PAGES = dashboard_pages(HISTORY)

READS = (
    "SELECT coalesce(sum(pg_stat_get_xact_tuples_returned(c.oid)"
    "                    + pg_stat_get_xact_tuples_fetched(c.oid)), 0)::bigint,"
    "       coalesce(sum(pg_stat_get_xact_blocks_fetched(c.oid)), 0)::bigint"
    " FROM pg_class c WHERE c.relnamespace = 'skiplock'::regnamespace"
)


@pytest.fixture(scope="module")
def scale_dsn(database_server: Any, template_database: str) -> Iterator[str]:
    """A database of its own, cloned from the migrated template and filled once."""
    name = f"skiplock_scale_{os.getpid()}"
    create = sql.SQL("CREATE DATABASE {} TEMPLATE {}")
    drop = sql.SQL("DROP DATABASE IF EXISTS {} WITH (FORCE)")
    with psycopg.connect(database_server.dsn("postgres"), autocommit=True) as admin:
        admin.execute(drop.format(sql.Identifier(name)))
        admin.execute(create.format(sql.Identifier(name), sql.Identifier(template_database)))
    try:
        dsn = database_server.dsn(name)
        with psycopg.connect(dsn, autocommit=True) as conn:
            load_scale_data(conn, history=HISTORY, queued=QUEUED)
            add_user(conn, "boss", "admin")
        yield dsn
    finally:
        with psycopg.connect(database_server.dsn("postgres"), autocommit=True) as admin:
            admin.execute(drop.format(sql.Identifier(name)))


@pytest.fixture(scope="module")
def client(scale_dsn: str) -> Iterator[TestClient]:
    with TestClient(create_app(skiplock.App(scale_dsn), auth=CONFIG)) as client:
        assert log_in(client, username="boss", password=PASSWORD).status_code == 303
        yield client


def reads(conn: psycopg.Connection, statements: list[tuple[str, Any]]) -> tuple[int, int]:
    """Rows and blocks the statements touch in skiplock's relations, run in one
    transaction that is then rolled back."""
    with conn.transaction(force_rollback=True):
        # a parallel worker's reads are not counted in this transaction's figures
        conn.execute("SET LOCAL max_parallel_workers_per_gather = 0")
        before = conn.execute(READS).fetchone()
        for sql, params in statements:
            conn.execute(sql.encode(), params).fetchall()
        after = conn.execute(READS).fetchone()
    assert before is not None and after is not None
    return after[0] - before[0], after[1] - before[1]


def statements_of(client: TestClient, path: str, monkeypatch: pytest.MonkeyPatch) -> list[Any]:
    """Every statement the dashboard sends to answer GET `path`."""
    sent: list[tuple[str, Any]] = []
    arun = Call.arun

    async def recording(call: Call[Any], conn: psycopg.AsyncConnection[Any]) -> Any:
        sent.append((call.sql, call.params))
        return await arun(call, conn)

    with monkeypatch.context() as patch:
        patch.setattr(Call, "arun", recording)
        response = client.get("/dashboard" + path)
    assert response.status_code == 200, (path, response.text[:500])
    assert sent, path
    return sent


@pytest.mark.parametrize("path", PAGES)
def test_a_page_reads_within_its_budget(
    client: TestClient, scale_dsn: str, path: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    statements = statements_of(client, path, monkeypatch)
    with psycopg.connect(scale_dsn, autocommit=True) as conn:
        rows, blocks = reads(conn, statements)
    assert rows <= ROW_BUDGET and blocks <= BLOCK_BUDGET, (path, rows, blocks)


def test_the_budget_catches_a_scan(scale_dsn: str) -> None:
    """The measure sees what a scan reads: counting the jobs touches every one."""
    with psycopg.connect(scale_dsn, autocommit=True) as conn:
        rows, _ = reads(conn, [("SELECT count(*) FROM skiplock.all_jobs", ())])
    assert rows >= HISTORY + QUEUED, rows
