"""skiplock through its public API: App, enqueue_async / enqueue_many_async, Worker."""

from __future__ import annotations

import asyncio
import subprocess
import sys
from collections.abc import Callable

import psycopg

from comparison.producer import Producer

# Worker(concurrency=N): the claim takes up to the free slots, so N is also the batch;
# docs/worker.md advises 500 for many short jobs.
VARIANTS = {"concurrency 200": 200, "concurrency 500": 500}
CONFIG = (
    "`Worker(app, concurrency=200 | 500, poll_interval=1.0)` (best shown), claim batch = "
    "free slots, psycopg pool, LISTEN on; `enqueue_async` / `enqueue_many_async` on one "
    "connection; schema by `skiplock migrate`"
)
LATENCY = True


def install(dsn: str) -> None:
    subprocess.run([sys.executable, "-m", "skiplock", "--dsn", dsn, "migrate"], check=True)


async def open_producer(dsn: str) -> Producer:
    import skiplock
    from skiplock.bench import truncate_job_tables_sql

    with psycopg.connect(dsn) as sync:
        truncate = truncate_job_tables_sql(sync)
    app = skiplock.App(dsn)
    conn = await psycopg.AsyncConnection.connect(dsn, autocommit=True)

    async def enqueue(n: int, stamp: float | None) -> None:
        if n == 1:
            await app.enqueue_async("noop", {"t": stamp} if stamp else None, conn=conn)
        else:
            await app.enqueue_many_async([{"task": "noop"}] * n, conn=conn)

    return Producer(dsn, "skiplock.jobs", truncate, enqueue, conn.close)


def worker(
    dsn: str, variant: str, ready: Callable[[], None], stamp: Callable[[float | None], None]
) -> None:
    import skiplock
    from skiplock.worker import Worker

    async def run() -> None:
        app = skiplock.App(dsn)

        @app.task(name="noop")
        async def noop(t: float | None = None) -> None:
            stamp(t)

        runtime = Worker(app, concurrency=VARIANTS[variant], poll_interval=1.0)
        ready()
        await runtime.run(install_signal_handlers=True)

    asyncio.run(run())
