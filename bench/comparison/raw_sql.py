"""The raw-SQL ceiling: the least a PostgreSQL queue can do per job, on the same server.

A table shaped like a minimal queue (id, payload, run_at, priority) and an index for the
claim. A consumer claims up to CLAIM_BATCH jobs in one UPDATE that moves their run_at
past a lease (a visibility timeout: a consumer that dies leaves them to be claimed
again), then deletes them in one statement: two round trips per batch, no handler, no
history, no NOTIFY (an empty claim waits POLL seconds). Consumers are threads of one
process, one connection each, sync psycopg with prepared statements. The producer
inserts with one statement per call on one connection. This is what "x% of the ceiling"
means.
"""

from __future__ import annotations

import signal
import threading
from collections.abc import Callable
from typing import Any

import psycopg
from psycopg.types.json import Jsonb

from comparison.producer import Producer

VARIANTS = {"1 connection": 1, "2 connections": 2}
CLAIM_BATCH = 500
POLL = 0.005
CONFIG = (
    f"sync psycopg, claim {CLAIM_BATCH} with `UPDATE ... SET run_at = now() + lease WHERE id = "
    "ANY(ARRAY(SELECT id ... ORDER BY priority, run_at FOR UPDATE SKIP LOCKED LIMIT n)) "
    "RETURNING id, payload`, then `DELETE ... WHERE id = ANY(ids)`, on 1 or 2 connections "
    "(best shown); no handler, no NOTIFY; the producer `INSERT ... SELECT payload FROM "
    "generate_series(1, n)`"
)
LATENCY = False
SCHEMA = (
    "CREATE TABLE IF NOT EXISTS ceiling_jobs ("
    " id bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,"
    " payload jsonb NOT NULL DEFAULT '{}',"
    " run_at timestamptz NOT NULL DEFAULT now(),"
    " priority smallint NOT NULL DEFAULT 0)",
    "CREATE INDEX IF NOT EXISTS ceiling_jobs_claim_idx ON ceiling_jobs (priority, run_at, id)",
)
CLAIM = (
    "UPDATE ceiling_jobs SET run_at = now() + interval '5 minutes'"
    " WHERE id = ANY(ARRAY("
    "  SELECT id FROM ceiling_jobs WHERE run_at <= now()"
    "  ORDER BY priority, run_at, id FOR UPDATE SKIP LOCKED LIMIT %s))"
    " RETURNING id, payload"
)
FINISH = "DELETE FROM ceiling_jobs WHERE id = ANY(%s)"
INSERT_ONE = "INSERT INTO ceiling_jobs (payload) VALUES (%s)"
# n jobs of one payload: the payload travels once, as a producer of no-op jobs needs
INSERT_MANY = "INSERT INTO ceiling_jobs (payload) SELECT %s FROM generate_series(1, %s)"


def install(dsn: str) -> None:
    with psycopg.connect(dsn, autocommit=True) as conn:
        for statement in SCHEMA:
            conn.execute(statement)


async def open_producer(dsn: str) -> Producer:
    conn = await psycopg.AsyncConnection.connect(dsn, autocommit=True)
    empty = Jsonb({})

    async def enqueue(n: int, stamp: float | None) -> None:
        if n == 1:
            await conn.execute(INSERT_ONE, (Jsonb({"t": stamp}) if stamp else empty,))
        else:
            await conn.execute(INSERT_MANY, (empty, n))

    return Producer(dsn, "ceiling_jobs", "TRUNCATE ceiling_jobs", enqueue, conn.close)


def consume(dsn: str, stop: threading.Event) -> None:
    with psycopg.connect(dsn, autocommit=True) as conn:
        while not stop.is_set():
            rows: list[Any] = conn.execute(CLAIM, (CLAIM_BATCH,), prepare=True).fetchall()
            if not rows:
                stop.wait(POLL)
                continue
            conn.execute(FINISH, ([row[0] for row in rows],), prepare=True)


def worker(
    dsn: str, variant: str, ready: Callable[[], None], stamp: Callable[[float | None], None]
) -> None:
    stop = threading.Event()
    signal.signal(signal.SIGTERM, lambda *_: stop.set())
    ready()
    threads = [threading.Thread(target=consume, args=(dsn, stop)) for _ in range(VARIANTS[variant])]
    for thread in threads:
        thread.start()
    for thread in threads:
        while thread.is_alive():
            thread.join(0.2)
