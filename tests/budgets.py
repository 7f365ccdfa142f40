"""Row and buffer budgets (the `scale` tier): a database the size of a busy install
(skiplock.bench.scale: SKIPLOCK_SCALE_HISTORY jobs of history, 10M by default, and
SKIPLOCK_SCALE_QUEUED queued, 1M), and what statements touch in skiplock's tables and
indexes, read from the transaction's own statistics (pg_stat_get_xact_*): counts, not
timings, so a budget holds on any machine. Timings are in bench/."""

from __future__ import annotations

import os
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from typing import Any

import psycopg
import pytest
from psycopg import sql
from starlette.testclient import TestClient

from skiplock.bench.scale import load_scale_data
from skiplock.store.call import Call

HISTORY = int(os.environ.get("SKIPLOCK_SCALE_HISTORY", 10_000_000))
QUEUED = int(os.environ.get("SKIPLOCK_SCALE_QUEUED", 1_000_000))

_READS = (
    "SELECT coalesce(sum(pg_stat_get_xact_tuples_returned(c.oid)"
    "                    + pg_stat_get_xact_tuples_fetched(c.oid)), 0)::bigint,"
    "       coalesce(sum(pg_stat_get_xact_blocks_fetched(c.oid)), 0)::bigint"
    " FROM pg_class c WHERE c.relnamespace = 'skiplock'::regnamespace"
)


@contextmanager
def scale_database(server: Any, template: str) -> Iterator[str]:
    """A database of its own, cloned from the migrated template and filled; its DSN."""
    name = f"skiplock_scale_{os.getpid()}"
    create = sql.SQL("CREATE DATABASE {} TEMPLATE {}")
    drop = sql.SQL("DROP DATABASE IF EXISTS {} WITH (FORCE)")
    with psycopg.connect(server.dsn("postgres"), autocommit=True) as admin:
        admin.execute(drop.format(sql.Identifier(name)))
        admin.execute(create.format(sql.Identifier(name), sql.Identifier(template)))
    try:
        dsn: str = server.dsn(name)
        with psycopg.connect(dsn, autocommit=True) as conn:
            load_scale_data(conn, history=HISTORY, queued=QUEUED)
        yield dsn
    finally:
        with psycopg.connect(server.dsn("postgres"), autocommit=True) as admin:
            admin.execute(drop.format(sql.Identifier(name)))


@contextmanager
def counting(conn: psycopg.Connection) -> Iterator[list[int]]:
    """Within the block (one transaction, rolled back at its end), what the connection's
    statements touch: the yielded list is [rows, blocks] once the block ends."""
    touched = [0, 0]
    with conn.transaction(force_rollback=True):
        # a parallel worker's reads are not counted in this transaction's figures
        conn.execute("SET LOCAL max_parallel_workers_per_gather = 0")
        before = conn.execute(_READS).fetchone()
        yield touched
        after = conn.execute(_READS).fetchone()
    assert before is not None and after is not None
    touched[:] = [after[0] - before[0], after[1] - before[1]]


def reads(conn: psycopg.Connection, statements: Sequence[tuple[str, Any]]) -> tuple[int, int]:
    """Rows and blocks the statements touch, run in one transaction then rolled back."""
    with counting(conn) as touched:
        for text, params in statements:
            conn.execute(text.encode(), params).fetchall()
    return touched[0], touched[1]


def statements_of(client: TestClient, path: str, monkeypatch: pytest.MonkeyPatch) -> list[Any]:
    """Every statement the app behind `client` sends to answer GET `path` (each a store
    Call: no SQL is sent another way)."""
    sent: list[tuple[str, Any]] = []
    arun = Call.arun

    async def recording(call: Call[Any], conn: psycopg.AsyncConnection[Any]) -> Any:
        sent.append((call.sql, call.params))
        return await arun(call, conn)

    with monkeypatch.context() as patch:
        patch.setattr(Call, "arun", recording)
        response = client.get(path)
    assert response.status_code == 200, (path, response.text[:500])
    assert sent, path
    return sent
