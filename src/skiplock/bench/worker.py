"""A bench worker process (`python -m skiplock.bench`): skiplock's Worker serving the
bench app on queue QUEUE, printing `ready` once it can take jobs."""

from __future__ import annotations

import argparse
import asyncio
import logging
from collections.abc import Sequence

from skiplock.bench.handlers import QUEUE, app
from skiplock.bench.processes import READY_TIMEOUT
from skiplock.worker import Worker, WorkerSettings


async def serve(worker: Worker) -> None:
    """Run a worker of the bench app; print `ready` once it listens and can claim."""
    runner = asyncio.create_task(worker.run(install_signal_handlers=True))
    started = asyncio.create_task(worker.started.wait())
    await asyncio.wait({runner, started}, return_when=asyncio.FIRST_COMPLETED)
    if worker.started.is_set():
        if worker.listener is not None:
            await asyncio.wait_for(worker.listener.connected.wait(), READY_TIMEOUT)
        print("ready", flush=True)
    else:
        started.cancel()
    await runner


def main(argv: Sequence[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description="A skiplock bench worker (used by the bench).")
    parser.add_argument("--concurrency", type=int, default=200)
    parser.add_argument("--batch-size", type=int, default=None)
    parser.add_argument("--poll-interval", type=float, default=1.0)
    opts = parser.parse_args(argv)
    # Per-job INFO lines would be measured too; the bench wants the runtime alone.
    logging.basicConfig(level=logging.WARNING, format="%(levelname)s %(name)s: %(message)s")
    settings = WorkerSettings(
        queues=(QUEUE,),
        concurrency=opts.concurrency,
        batch_size=opts.batch_size,
        poll_interval=opts.poll_interval,
        shutdown_grace=10.0,
    )
    asyncio.run(serve(Worker(app, settings)))
