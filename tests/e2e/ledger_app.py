"""Tasks for end-to-end tests: every handler start and finish is written to a ledger
table on its own autocommit connection, so a test can see each execution even when
the worker running it is killed."""

from __future__ import annotations

import asyncio
import os

from psycopg_pool import AsyncConnectionPool

import skiplock

app = skiplock.App()
_pool: AsyncConnectionPool | None = None

LEDGER_DDL = """
CREATE TABLE IF NOT EXISTS ledger (
    job_id bigint NOT NULL,
    attempt integer NOT NULL,
    event text NOT NULL,
    pid integer NOT NULL,
    at timestamptz NOT NULL DEFAULT clock_timestamp()
)
"""


async def record(ctx: skiplock.JobContext, event: str) -> None:
    global _pool
    if _pool is None:
        _pool = AsyncConnectionPool(
            app.dsn, min_size=1, max_size=8, open=False, kwargs={"autocommit": True}
        )
        await _pool.open()
    async with _pool.connection() as conn:
        await conn.execute(
            "INSERT INTO ledger (job_id, attempt, event, pid) VALUES (%s, %s, %s, %s)",
            (ctx.id, ctx.attempt, event, os.getpid()),
        )


@app.task(name="ledger.record")
async def record_run(ctx: skiplock.JobContext) -> int:
    await record(ctx, "start")
    await record(ctx, "finish")
    return os.getpid()


@app.task(name="ledger.sleep", retry_policy=skiplock.RetryPolicy.fixed(0.5))
async def sleep_run(ctx: skiplock.JobContext, seconds: float) -> int:
    await record(ctx, "start")
    await asyncio.sleep(seconds)
    await record(ctx, "finish")
    return os.getpid()


@app.task(name="ledger.side", queue="side")
async def side_run(ctx: skiplock.JobContext) -> int:
    await record(ctx, "start")
    await record(ctx, "finish")
    return os.getpid()
