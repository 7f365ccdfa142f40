"""PgQueuer as its CLI (`pgq run`) and its benchmark tool (tools/benchmark.py) run it.

Both run the worker on uvloop (`uvloop.run`) with the asyncpg driver on one direct
connection (`PgQueuer(AsyncpgDriver(await asyncpg.connect(dsn)))`; its performance guide:
"Always use a direct asyncpg connection (not a pool) for the QueueManager"). Its guide's
checklist applies `pgq autovac` after `pgq install`. The batch size is the one knob of
its guide for short jobs ("increase batch_size when jobs are short-lived"): 10 (its
default and its benchmark's), 100 and 500 are tried, the best reported.
"""

from __future__ import annotations

import signal
import subprocess
import sys
from collections.abc import Callable
from typing import Any

from comparison.producer import LOOPS, Producer

DRIVER = "asyncpg"
EVENT_LOOP = "uvloop"
BATCH_SIZES = (10, 100, 500)
VARIANTS = {f"batch {n}": n for n in BATCH_SIZES}
INSTALL_COMMANDS = (("install",), ("autovac",))
CONFIG = (
    "`PgQueuer(AsyncpgDriver(await asyncpg.connect(dsn)))` on uvloop (`uvloop.run`, as "
    "`pgq run` and its tools/benchmark.py), `run(batch_size=10 | 100 | 500)` (best shown), "
    "schema by `pgq install` then `pgq autovac`, default durability, LISTEN on; "
    "`Queries(AsyncpgDriver(...)).enqueue` for the producer, as its benchmark"
)
LATENCY = True


async def connect(dsn: str) -> Any:
    """One direct asyncpg connection, as its benchmark's `apg` driver."""
    import asyncpg

    return await asyncpg.connect(dsn)


def driver_for(connection: Any) -> Any:
    from pgqueuer.db import AsyncpgDriver

    return AsyncpgDriver(connection)


def install(dsn: str) -> None:
    for command in INSTALL_COMMANDS:
        subprocess.run(
            [sys.executable, "-m", "pgqueuer", "--pg-dsn", dsn, *command],
            check=True,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )


async def open_producer(dsn: str) -> Producer:
    from pgqueuer.queries import Queries

    connection = await connect(dsn)
    queries = Queries(driver_for(connection))

    async def enqueue(n: int, stamp: float | None) -> None:
        if n == 1:
            await queries.enqueue("noop", repr(stamp).encode() if stamp else None)
        else:
            await queries.enqueue(["noop"] * n, [None] * n, [0] * n)

    return Producer(dsn, "pgqueuer", "TRUNCATE pgqueuer, pgqueuer_log", enqueue, connection.close)


def worker(
    dsn: str, variant: str, ready: Callable[[], None], stamp: Callable[[float | None], None]
) -> None:
    import asyncio

    from pgqueuer import PgQueuer

    async def main() -> None:
        pgq = PgQueuer(driver_for(await connect(dsn)))

        @pgq.entrypoint("noop")
        async def noop(job: Any) -> None:
            stamp(float(job.payload) if job.payload else None)

        loop = asyncio.get_running_loop()
        for sig in (signal.SIGTERM, signal.SIGINT):
            loop.add_signal_handler(sig, pgq.shutdown.set)
        ready()
        await pgq.run(batch_size=VARIANTS[variant])

    # the event loop PgQueuer's CLI picks when uvloop is installed
    LOOPS[EVENT_LOOP](main())
