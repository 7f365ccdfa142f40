"""Long-polling for job results (and workflows) over one shared LISTEN connection per
API process.

App.wait_for_result_async opens a connection per waiter; an API with a hundred clients
long-polling would hold a hundred connections. Here one connection LISTENs on
skiplock_finished and wakes the waiters whose job ids a notification names. NOTIFY is
only a hint: waiters re-read the job at least every RECHECK_SECONDS, so a lost
notification or a listener that is reconnecting costs latency, never a wrong answer.
With nowhere to LISTEN (a transaction-mode pooler and no listen DSN, see App.listen_dsn)
there is no listener: waiters re-read every RECHECK_SECONDS. The re-read loop is
skiplock.waiter's reread_until, the one App's waits use.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Awaitable, Callable, Collection, Iterator
from typing import TypeVar

import psycopg

from skiplock.jobs import Job
from skiplock.waiter import FINISHED_CHANNEL, finished_ids, reread_until

log = logging.getLogger("skiplock.api")
T = TypeVar("T")

RECHECK_SECONDS = 2.0
RECONNECT_SECONDS = 1.0


class FinishedListener:
    """Started on first use, stopped by the API's lifespan."""

    def __init__(self, dsn: Callable[[], str | None]) -> None:
        self._dsn = dsn
        self._waiters: dict[int, set[asyncio.Event]] = {}
        self._task: asyncio.Task[None] | None = None
        self.connected = asyncio.Event()

    def _ensure_started(self) -> bool:
        """Start listening unless already; False when there is nowhere to LISTEN."""
        dsn = self._dsn()
        if dsn is None:
            return False
        if self._task is None or self._task.done():
            self._task = asyncio.create_task(self._listen(dsn), name="skiplock-api-finished")
        return True

    async def _listen(self, dsn: str) -> None:
        while True:
            try:
                async with await psycopg.AsyncConnection.connect(
                    dsn, autocommit=True, connect_timeout=5
                ) as conn:
                    await conn.execute(f"LISTEN {FINISHED_CHANNEL}")
                    self.connected.set()
                    # Anything that finished while we were away notified nobody.
                    self._wake_all()
                    async for notice in conn.notifies():
                        self._dispatch(notice.payload)
            except (psycopg.Error, OSError) as exc:
                log.warning("result listener: %s; reconnecting", type(exc).__name__)
            self.connected.clear()
            await asyncio.sleep(RECONNECT_SECONDS)

    def _dispatch(self, payload: str) -> None:
        job_ids = finished_ids(payload)
        if job_ids is None:
            self._wake_all()
            return
        for job_id in job_ids:
            for event in self._waiters.get(job_id, ()):
                event.set()

    def _wake_all(self) -> None:
        for events in self._waiters.values():
            for event in events:
                event.set()

    @contextlib.contextmanager
    def _registered(self, job_ids: Collection[int]) -> Iterator[asyncio.Event]:
        event = asyncio.Event()
        for job_id in job_ids:
            self._waiters.setdefault(job_id, set()).add(event)
        try:
            yield event
        finally:
            for job_id in job_ids:
                events = self._waiters.get(job_id)
                if events is not None:
                    events.discard(event)
                    if not events:
                        del self._waiters[job_id]

    async def wait(self, job_id: int, read: Callable[[], Awaitable[Job]], timeout: float) -> Job:
        """Read the job until it has finished or `timeout` seconds have passed; return
        the last read. `read` raises for an unknown job."""
        return await self.wait_for([job_id], read, lambda job: job.finished, timeout)

    async def wait_for(
        self,
        job_ids: Collection[int],
        read: Callable[[], Awaitable[T]],
        done: Callable[[T], bool],
        timeout: float,
    ) -> T:
        """Call `read` until `done` says yes of what it returned or `timeout` seconds have
        passed, re-reading whenever one of `job_ids` finishes; return the last read. A
        workflow waits on its steps' jobs this way."""
        loop = asyncio.get_running_loop()
        deadline = loop.time() + timeout
        with self._registered(job_ids) as event:
            # Registered before the first read: a finish between read and wait is seen.
            if timeout > 0 and self._ensure_started():
                with contextlib.suppress(asyncio.TimeoutError):
                    await asyncio.wait_for(self.connected.wait(), min(timeout, 1.0))

            async def wake(_: T, seconds: float) -> None:
                with contextlib.suppress(asyncio.TimeoutError):
                    await asyncio.wait_for(event.wait(), seconds)
                # Cleared before the next read: a finish during that read wakes the next wait.
                event.clear()

            return await reread_until(
                read, done, wake, timeout=max(0.0, deadline - loop.time()), recheck=RECHECK_SECONDS
            )

    async def close(self) -> None:
        if self._task is not None:
            self._task.cancel()
            await asyncio.gather(self._task, return_exceptions=True)
            self._task = None
