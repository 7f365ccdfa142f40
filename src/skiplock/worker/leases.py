"""The leases of a worker's running jobs: renewed for all of them in one statement per
heartbeat, and watched on a clock of their own so that a handler stops once its lease
may have ended (the rescue may then hand the job to another worker)."""

from __future__ import annotations

import asyncio
import logging
import uuid
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from datetime import timedelta
from typing import Any, Literal, Protocol

from skiplock import store
from skiplock.context import JobContext
from skiplock.jobs import ClaimedJob
from skiplock.worker.completer import Completer
from skiplock.worker.executor import JobThreads
from skiplock.worker.loops import LoopHealth, every
from skiplock.worker.settings import WorkerSettings

log = logging.getLogger("skiplock.worker")

StopReason = Literal["cancel", "lost", "shutdown"]


@dataclass
class Running:
    job: ClaimedJob
    ctx: JobContext
    # loop time at which the lease was last taken or renewed, as sent: the lease ends
    # no earlier than this plus the lease's length
    renewed_at: float
    handle: asyncio.Task[None] | None = None
    stop_reason: StopReason | None = None
    deadline: float | None = None  # loop time after which the lease is no longer renewed


class PooledCall(Protocol):
    """Runs a store call on a pooled connection, waiting at most `wait` s for one."""

    async def __call__(self, call: store.Call[Any], *, wait: float | None = None) -> Any: ...


class Leases:
    """Renews and watches the leases of the jobs in `running` (the worker's own map)."""

    def __init__(
        self,
        worker_id: uuid.UUID,
        settings: WorkerSettings,
        running: Mapping[int, Running],
        *,
        completer: Completer,
        threads: JobThreads,
        health: LoopHealth,
        lock: asyncio.Lock,
        call: PooledCall,
        stop_job: Callable[[int, StopReason], None],
        stop_requested: Callable[[], None],
    ) -> None:
        self._worker_id = worker_id
        self._settings = settings
        self._running = running
        self._completer = completer
        self._threads = threads
        self._health = health
        # Shared with the completer: both lock the same running rows.
        self._lock = lock
        self._call = call
        self._stop_job = stop_job
        self._stop_requested = stop_requested

    async def heartbeat_forever(self) -> None:
        s = self._settings
        interval = s.heartbeat_interval or s.lease / 3

        async def beat() -> None:
            stuck = self._threads.stuck()
            if stuck:
                log.warning(
                    "worker %s unhealthy: %d job thread(s) cannot be stopped and hold a slot",
                    self._worker_id,
                    stuck,
                )
            # A beat that waits longer than its interval for a connection is late anyway:
            # fail it (and say so) and try again, rather than queue behind a dead link.
            await self.heartbeat_once(wait=interval)

        # The first beat at once: it records the lease the worker's health is judged by.
        await every(self._health, "heartbeat", interval, beat, at_once=True)

    async def watch_forever(self) -> None:
        """Stop handlers whose lease may have ended unrenewed, on a clock of its own (a
        heartbeat stuck on a dead connection cannot say so in time), within a sixth of a
        lease: from then on the rescue may hand the job to another worker."""
        s = self._settings
        step = s.lease / 6
        # Not before the lease could have ended: a beat that is only late (a busy machine)
        # still saves the job, as long as no rescue came first. And never before two
        # beats were missed: a heartbeat interval as long as the lease is a choice.
        older_than = max(s.lease, 2 * (s.heartbeat_interval or s.lease / 3))
        loop = asyncio.get_running_loop()
        last = loop.time()

        async def watch() -> None:
            nonlocal last
            # This loop does no I/O, so a wake-up far later than its step means nothing
            # ran on the event loop meanwhile (a handler that never yields): the leases
            # may have lapsed and the jobs been rescued elsewhere. (The heartbeat's own
            # clock cannot tell: a beat waiting on a dead link looks just as late.)
            late = loop.time() - last - step
            if late > s.lease / 2:
                log.warning("worker %s: event loop was blocked for %.1f s", self._worker_id, late)
            self.stop_lapsed_jobs(older_than=older_than)
            last = loop.time()

        await every(self._health, "leases", step, watch)

    async def heartbeat_once(self, *, wait: float | None = None) -> None:
        """Renew the leases of running jobs (except those stuck past their deadline) and of
        outcomes not yet written; stop handlers whose job is no longer ours or is cancelled.
        `wait`: how long to wait for a pooled connection (the pool's timeout when None)."""
        now = asyncio.get_running_loop().time()
        renew = [
            (r.job.id, r.job.attempt)
            for r in self._running.values()
            if r.deadline is None or now < r.deadline
        ]
        async with self._lock:
            held = await self._call(
                store.heartbeat_jobs(
                    self._worker_id,
                    renew + self._completer.held_tokens(),
                    timedelta(seconds=self._settings.lease),
                    stuck_jobs=self._threads.stuck(),
                    stalled_loops=self._health.stalled(),
                ),
                wait=wait,
            )
        if None in held:  # skiplock.stop_worker, recorded on this worker's row
            self._stop_requested()
        for job_id, _ in renew:
            running = self._running.get(job_id)
            if job_id not in held:
                self._stop_job(job_id, "lost")
            elif held[job_id]:
                self._stop_job(job_id, "cancel")
            elif running is not None:
                running.renewed_at = now

    def stop_lapsed_jobs(self, *, older_than: float) -> None:
        """Stop the handlers whose lease was last renewed more than `older_than` seconds
        ago (heartbeats failing): the rescue may then hand their jobs to another worker,
        and a job must not run in two places at once. Their outcomes would be refused
        anyway (fencing)."""
        now = asyncio.get_running_loop().time()
        for running in list(self._running.values()):
            renewable = running.deadline is None or now < running.deadline
            if renewable and now - running.renewed_at > older_than:
                self._stop_job(running.job.id, "lost")
