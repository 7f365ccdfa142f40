"""Handlers' progress reports (ctx.report_progress), written to their jobs: one write in
flight per job, the latest value wins, a failed write is not retried."""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import Awaitable, Callable
from typing import Any

from skiplock import store
from skiplock.context import JobContext
from skiplock.worker.loops import LoopHealth


class ProgressWriter:
    """Writes the progress of the jobs of worker `worker_id`, from its event loop."""

    def __init__(
        self,
        loop: asyncio.AbstractEventLoop,
        worker_id: uuid.UUID,
        call: Callable[[store.Call[Any]], Awaitable[Any]],
        health: LoopHealth,
    ) -> None:
        self._loop = loop
        self._worker_id = worker_id
        self._call = call
        self._health = health
        self._latest: dict[int, tuple[float | None, str | None]] = {}
        self._writing: set[int] = set()
        self._tasks: set[asyncio.Task[None]] = set()

    def report(self, ctx: JobContext, fraction: float | None, message: str | None) -> None:
        """Queue a report; called on the worker's loop or from a handler's thread."""
        try:
            running_loop = asyncio.get_running_loop()
        except RuntimeError:
            running_loop = None
        if running_loop is self._loop:
            self._queue(ctx, fraction, message)
        else:
            self._loop.call_soon_threadsafe(self._queue, ctx, fraction, message)

    def _queue(self, ctx: JobContext, fraction: float | None, message: str | None) -> None:
        self._latest[ctx.id] = (fraction, message)
        if ctx.id not in self._writing:
            self._writing.add(ctx.id)
            writer = asyncio.create_task(self._write(ctx))
            self._tasks.add(writer)  # a task with no reference can be collected
            writer.add_done_callback(self._tasks.discard)

    async def _write(self, ctx: JobContext) -> None:
        try:
            while ctx.id in self._latest:
                fraction, message = self._latest.pop(ctx.id)
                try:
                    await self._call(
                        store.set_job_progress(
                            self._worker_id, ctx.id, ctx.attempt, fraction, message
                        )
                    )
                except Exception as exc:
                    # Not retried: the job's next report carries the latest value.
                    what = f"progress of job {ctx.id} not recorded"
                    self._health.failed("progress", exc, what, retried=False)
                else:
                    self._health.succeeded("progress")
        finally:
            self._writing.discard(ctx.id)
