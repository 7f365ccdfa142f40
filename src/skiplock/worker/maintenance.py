"""The maintenance every worker runs, safe to run everywhere at once (SKIP LOCKED,
advisory locks in SQL): rescue of expired leases, the sweep of waiting jobs, expiry,
the metrics history's minute, retention, and the scheduler that enqueues due cron
schedules."""

from __future__ import annotations

import logging
from collections.abc import Awaitable, Callable, Mapping
from datetime import timedelta
from typing import Any

from psycopg_pool import AsyncConnectionPool

from skiplock import schedules, store
from skiplock.schedules import ScheduleSpec
from skiplock.store import Call
from skiplock.worker.loops import LoopHealth, every
from skiplock.worker.settings import WorkerSettings

log = logging.getLogger("skiplock.worker")

PRUNE_BATCH = 1000  # rows per retention statement: short, never holding up the hot path
PRUNE_EVERY = 60  # maintenance rounds per retention pass


class Maintenance:
    """One worker's share of the maintenance; `declared` are the app's schedules."""

    def __init__(
        self,
        settings: WorkerSettings,
        pool: AsyncConnectionPool,
        call: Callable[[Call[Any]], Awaitable[Any]],
        health: LoopHealth,
        declared: Mapping[str, ScheduleSpec],
    ) -> None:
        self._settings = settings
        self._pool = pool
        self._call = call
        self._health = health
        self._declared = declared
        self._rounds = 0

    async def maintain_forever(self) -> None:
        await every(self._health, "maintenance", self._settings.rescue_interval, self.maintain_once)

    async def maintain_once(self) -> None:
        """Rescue expired leases, sweep waiting jobs, expire jobs past their deadline,
        take the metrics history's minute; every PRUNE_EVERY rounds, prune."""
        rescued = await self._call(store.rescue_expired_jobs())
        if rescued:
            log.warning("rescued %d jobs with expired leases: %s", len(rescued), rescued)
        await self._call(store.sweep_waiting_jobs())
        expired = await self._call(store.expire_jobs())
        if expired:
            log.info("expired %d jobs past their deadline: %s", len(expired), expired)
        await self.record_metrics_once()
        self._rounds += 1
        if self._rounds % PRUNE_EVERY == 0:
            await self.prune_once()

    async def record_metrics_once(self) -> bool:
        """Sample the queues' depth unless some worker did this minute, and then fold
        the minute's job metrics into their rows and hours: every worker asks every
        round, one of them does it once a minute. Whether this worker did."""
        if await self._call(store.sample_queue_depth()) is None:
            return False
        await self._call(store.fold_metrics())
        return True

    async def prune_once(self) -> int:
        """Retention: forget silent workers, spent unique keys, finished jobs and finished
        workflows older than `history_retention`, audit entries older than
        `audit_retention`, and the metrics history past `metrics_retention` (minutes) and
        `metrics_hourly_retention` (hours), in batches (every worker may do it at once).
        Returns how many finished jobs were deleted."""
        await self._call(store.prune_workers(timedelta(hours=1)))
        await self._call(store.prune_unique_keys())
        s = self._settings
        if s.audit_retention is not None:
            await self._in_batches(store.prune_audit_log(s.audit_retention, PRUNE_BATCH))
        if s.metrics_retention is not None or s.metrics_hourly_retention is not None:
            await self._in_batches(
                store.prune_metrics(s.metrics_retention, s.metrics_hourly_retention, PRUNE_BATCH)
            )
        if s.history_retention is None:
            return 0
        deleted = await self._in_batches(store.prune_job_history(s.history_retention, PRUNE_BATCH))
        await self._in_batches(store.prune_workflows(s.history_retention, PRUNE_BATCH))
        return deleted

    async def _in_batches(self, call: Call[int]) -> int:
        """Run a pruning call until a batch comes back short, at most 100 batches per
        round (the next round goes on); how many rows went."""
        total = 0
        for _ in range(100):
            batch: int = await self._call(call)
            total += batch
            if batch < PRUNE_BATCH:
                break
        return total

    async def schedule_forever(self) -> None:
        declared = False

        async def declare_then_tick() -> None:
            # The app's schedules are declared until that succeeds once, then ticked.
            nonlocal declared
            if not declared:
                for spec in self._declared.values():
                    await self._call(schedules.create_call(spec))
                declared = True
            await self.schedule_once()

        await every(
            self._health,
            "scheduler",
            self._settings.schedule_interval,
            declare_then_tick,
            at_once=True,
        )

    async def schedule_once(self) -> list[int]:
        """One scheduler pass (see skiplock.schedules.tick); returns the enqueued ids."""
        async with self._pool.connection() as conn:
            return await schedules.tick(conn)
