"""What the scenarios need of a system on the producer side."""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable, Coroutine
from dataclasses import dataclass
from typing import Any

import psycopg

# enqueue(n, stamp): n no-op jobs in one call; a one-job call carries `stamp` (the
# producer's time.time() before the call) for the latency scenario
Enqueue = Callable[[int, "float | None"], Awaitable[None]]


@dataclass
class Producer:
    dsn: str
    table: str  # the table whose row count is the backlog
    truncate: str
    enqueue: Enqueue
    close: Callable[[], Awaitable[None]]

    def reset(self) -> None:
        with psycopg.connect(self.dsn, autocommit=True) as conn:
            conn.execute(self.truncate)
            conn.execute(f"VACUUM ANALYZE {self.table}")

    def backlog(self) -> int:
        with psycopg.connect(self.dsn, autocommit=True) as conn:
            row = conn.execute(f"SELECT count(*) FROM {self.table}").fetchone()
        return int(row[0]) if row else 0


def run_on_uvloop(main: Coroutine[Any, Any, None]) -> None:
    import uvloop

    uvloop.run(main)


# The event loops the producers can run on (compare.py --loop). uvloop by default:
# PgQueuer's benchmark tool runs its producer on it, and uvicorn serves a web app (where
# jobs are often enqueued) on it when it is installed.
LOOPS: dict[str, Callable[[Coroutine[Any, Any, None]], None]] = {
    "uvloop": run_on_uvloop,
    "asyncio": asyncio.run,
}
