"""Writes outcomes in batches: whatever finished while the previous write was in flight
goes in the next one, so one statement records many jobs under load and a lone job is
written at once when idle. Writes are fenced in SQL, so replaying a batch after a lost
connection is harmless."""

from __future__ import annotations

import asyncio
import logging
import uuid
from collections.abc import Awaitable, Callable
from datetime import timedelta
from typing import Any

import psycopg
from psycopg_pool import AsyncConnectionPool

from skiplock import store
from skiplock.worker.executor import Outcome
from skiplock.worker.loops import LoopHealth

log = logging.getLogger("skiplock.worker")
# Called once per written batch with (outcome, status) pairs; status is what the database
# said happened, or "lost" when the job was no longer this worker's. A finish replayed
# after its first write committed (the connection died after COMMIT) gets the status
# that first write recorded: it is not a lost lease.
Written = Callable[[list[tuple[Outcome, str]]], Awaitable[None]]


class Completer:
    """Buffers outcomes and writes them in batches of at most `max_batch`.

    `lock` is shared with the heartbeat: both lock the same running rows, and taking them
    one statement at a time rules out a deadlock between the two. `on_drained` is called
    after every write, so a fetch loop held back by `saturated` can claim again.
    `before_write` is awaited before each write and must not raise: the worker writes
    its jobs' logs there, so a job is finished only once its log is stored.
    """

    def __init__(
        self,
        pool: AsyncConnectionPool,
        worker_id: uuid.UUID,
        on_written: Written,
        *,
        lock: asyncio.Lock,
        on_drained: Callable[[], None],
        max_pending: int = 10_000,
        max_batch: int = 1_000,
        health: LoopHealth | None = None,
        before_write: Callable[[], Awaitable[Any]] | None = None,
    ) -> None:
        self._pool = pool
        self._worker_id = worker_id
        self._on_written = on_written
        self._lock = lock
        self._on_drained = on_drained
        self._pending: list[Outcome] = []
        self._writing: list[Outcome] = []
        self._wake = asyncio.Event()
        self._idle = asyncio.Event()
        self._idle.set()
        self.max_pending = max_pending
        self.max_batch = max_batch
        self._health = health or LoopHealth(stall_after=float("inf"))
        self._before_write = before_write

    def add(self, outcome: Outcome) -> None:
        self._pending.append(outcome)
        self._idle.clear()
        self._wake.set()

    @property
    def saturated(self) -> bool:
        """True while the database is too slow to take outcomes; stop claiming then."""
        return len(self._pending) >= self.max_pending

    def held_tokens(self) -> list[tuple[int, int]]:
        """(job id, attempt) of outcomes not written yet: their leases must still be renewed."""
        return [(o.job.id, o.job.attempt) for o in (*self._writing, *self._pending)]

    async def flush(self) -> None:
        await self._idle.wait()

    async def run(self) -> None:
        while True:
            await self._wake.wait()
            self._wake.clear()
            while self._pending:
                self._writing = self._pending[: self.max_batch]
                del self._pending[: self.max_batch]
                try:
                    if self._before_write is not None:
                        await self._before_write()
                    async with self._lock:
                        await self._write(self._writing)
                    self._health.succeeded("completer")
                except (psycopg.DataError, psycopg.IntegrityError):
                    # The values themselves are refused: the same batch would fail again.
                    # Its leases lapse and the rescue retries those jobs (at-least-once).
                    log.exception("dropping %d outcomes the database refused", len(self._writing))
                except Exception as exc:
                    # A lost connection, or a schema in the middle of a change: the
                    # outcomes wait (their leases renewed by the heartbeat) and go again.
                    delay = self._health.failed(
                        "completer", exc, f"writing {len(self._writing)} outcomes failed"
                    )
                    self._pending[:0] = self._writing
                    await asyncio.sleep(delay)
                finally:
                    self._writing = []
                    self._on_drained()
            self._idle.set()

    async def _write(self, batch: list[Outcome]) -> None:
        succeeded = [o for o in batch if o.kind == "succeeded"]
        failed = [o for o in batch if o.kind == "failed"]
        released = [o for o in batch if o.kind == "released"]
        wid = self._worker_id
        written: list[tuple[Outcome, str]] = []
        async with self._pool.connection() as conn:
            if succeeded:
                done = set(
                    await store.complete_jobs(
                        wid,
                        [o.job.id for o in succeeded],
                        [o.job.attempt for o in succeeded],
                        [o.payload_json for o in succeeded],
                    ).arun(conn)
                )
                written += [(o, "succeeded" if o.job.id in done else "lost") for o in succeeded]
            if failed:
                statuses = await store.fail_jobs(
                    wid,
                    [o.job.id for o in failed],
                    [o.job.attempt for o in failed],
                    [o.payload_json for o in failed],
                ).arun(conn)
                written += [(o, statuses.get(o.job.id, "lost")) for o in failed]
            # one statement per delay: at once (shutdown) and the unknown-task delay
            for delay in sorted({o.delay for o in released}, key=lambda d: d or 0.0):
                same = [o for o in released if o.delay == delay]
                back = set(
                    await store.release_jobs(
                        wid,
                        [o.job.id for o in same],
                        [o.job.attempt for o in same],
                        delay=None if delay is None else timedelta(seconds=delay),
                    ).arun(conn)
                )
                written += [(o, "released" if o.job.id in back else "lost") for o in same]
            if any(status == "lost" for _, status in written):
                written = await self._recognise_replays(conn, written)
        try:
            await self._on_written(written)
        except Exception:
            # Written already: the batch must not go again for what came after.
            log.exception("after writing %d outcomes", len(written))

    async def _recognise_replays(
        self, conn: psycopg.AsyncConnection[Any], written: list[tuple[Outcome, str]]
    ) -> list[tuple[Outcome, str]]:
        """Tell our own finishes replayed after their COMMIT from lost leases.

        Rare (a finish changed nothing), so the extra query costs nothing under load."""
        lost = [o for o, status in written if status == "lost" and o.kind != "released"]
        if not lost:
            return written
        recorded = await store.recorded_attempts(
            self._worker_id, [(o.job.id, o.job.attempt) for o in lost]
        ).arun(conn)
        out: list[tuple[Outcome, str]] = []
        for outcome, status in written:
            earlier = recorded.get(outcome.job.id) if status == "lost" else None
            if earlier is not None:
                log.info(
                    "job %d: finish already recorded as %s (replayed after its commit)",
                    outcome.job.id,
                    earlier,
                )
                status = earlier
            out.append((outcome, status))
        return out
