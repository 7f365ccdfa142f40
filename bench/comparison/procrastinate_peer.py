"""Procrastinate 3 as its docs advise: PsycopgConnector (its recommended connector),
an async worker with concurrency for I/O-bound async tasks, LISTEN/NOTIFY on."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable
from typing import Any

from comparison.producer import Producer

VARIANTS = {"concurrency 100": 100}
CONFIG = (
    "`PsycopgConnector`, `run_worker_async(concurrency=100, listen_notify=True, "
    "delete_jobs='successful')`, `defer_async` / `batch_defer_async` for the producer, "
    "schema by its schema manager; it claims one job per query: drain of 20k in the "
    "first round only, no 100k"
)
LATENCY = True
# Its drain of one job per claim takes minutes for 20,000 jobs: the first size, once.
DRAIN_ROUNDS = 1
DRAIN_SIZES_MAX = 20_000


def app_for(dsn: str) -> Any:
    import procrastinate

    logging.getLogger("procrastinate.blueprints").setLevel(logging.ERROR)  # "App in __main__"
    return procrastinate.App(connector=procrastinate.PsycopgConnector(conninfo=dsn))


def install(dsn: str) -> None:
    async def apply() -> None:
        app = app_for(dsn)
        async with app.open_async():
            await app.schema_manager.apply_schema_async()

    asyncio.run(apply())


async def open_producer(dsn: str) -> Producer:
    app = app_for(dsn)

    @app.task(name="noop")
    async def noop(t: float | None = None) -> None:
        return None

    await app.open_async()

    async def enqueue(n: int, stamp: float | None) -> None:
        if n == 1:
            await noop.defer_async(t=stamp)
        else:
            await noop.batch_defer_async(*([{}] * n))

    return Producer(
        dsn, "procrastinate_jobs", "TRUNCATE procrastinate_jobs CASCADE", enqueue, app.close_async
    )


def worker(
    dsn: str, variant: str, ready: Callable[[], None], stamp: Callable[[float | None], None]
) -> None:
    async def run() -> None:
        app = app_for(dsn)

        @app.task(name="noop")
        async def noop(t: float | None = None) -> None:
            stamp(t)

        async with app.open_async():
            ready()
            await app.run_worker_async(
                concurrency=VARIANTS[variant],
                listen_notify=True,
                delete_jobs="successful",
                install_signal_handlers=True,
            )

    asyncio.run(run())
