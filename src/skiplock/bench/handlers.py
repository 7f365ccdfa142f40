"""The bench app (`skiplock.bench:app`): one task per --handler kind, on queue QUEUE."""

from __future__ import annotations

import asyncio
import time
from typing import Any

from skiplock.app import App

QUEUE = "skiplock-bench"
HANDLERS = {
    "async-noop": "skiplock.bench.async_noop",
    "sync-noop": "skiplock.bench.sync_noop",
    "sleep-1ms": "skiplock.bench.sleep_1ms",
}

app = App()


# With `stamp` (the latency scenario) a handler returns time.time() at its start, which
# the producer compares with its own time.time() taken when its enqueue call returned:
# one machine, one clock. Other jobs return None, so the drain encodes no result.


@app.task(name=HANDLERS["async-noop"], queue=QUEUE)
async def async_noop(stamp: bool = False, **_: Any) -> float | None:
    return time.time() if stamp else None


@app.task(name=HANDLERS["sync-noop"], queue=QUEUE)
def sync_noop(stamp: bool = False, **_: Any) -> float | None:
    return time.time() if stamp else None


@app.task(name=HANDLERS["sleep-1ms"], queue=QUEUE)
async def sleep_1ms(stamp: bool = False, **_: Any) -> float | None:
    started = time.time()
    await asyncio.sleep(0.001)
    return started if stamp else None
