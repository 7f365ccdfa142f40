"""Long-polling for job results (and workflows) over the API process's one LISTEN
connection (api.notifications).

App.wait_for_result_async opens a connection per waiter; an API with a hundred clients
long-polling would hold a hundred connections. Here the process's listener hears
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
from collections.abc import Awaitable, Callable, Collection, Iterator
from typing import TypeVar

from skiplock.api.notifications import Notifications
from skiplock.jobs import Job
from skiplock.waiter import FINISHED_CHANNEL, finished_ids, reread_until

T = TypeVar("T")

RECHECK_SECONDS = 2.0


class FinishedListener:
    """The waiters of this API process, woken by its listener."""

    def __init__(self, notifications: Notifications) -> None:
        self.notifications = notifications
        self._waiters: dict[int, set[asyncio.Event]] = {}
        notifications.subscribe(self)

    @property
    def prompt(self) -> bool:
        # a waiting long-poll hears its job's finish at once, not in the next batch
        return bool(self._waiters)

    def heard(self, channel: str, payload: str) -> None:
        if channel == FINISHED_CHANNEL:
            self._dispatch(payload)

    def missed(self) -> None:
        self._wake_all()

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
            if timeout > 0 and self.notifications.start():
                with contextlib.suppress(asyncio.TimeoutError):
                    await asyncio.wait_for(self.notifications.listening.wait(), min(timeout, 1.0))

            async def wake(_: T, seconds: float) -> None:
                with contextlib.suppress(asyncio.TimeoutError):
                    await asyncio.wait_for(event.wait(), seconds)
                # Cleared before the next read: a finish during that read wakes the next wait.
                event.clear()

            return await reread_until(
                read, done, wake, timeout=max(0.0, deadline - loop.time()), recheck=RECHECK_SECONDS
            )
