"""How the worker's long-lived loops fail: each survives any exception, logs it (at most
once a minute per loop, with how many it left unsaid), backs off and goes on; a loop that
has failed without a success for longer than `stall_after` is stalled, and a worker with a
stalled loop is unhealthy and claims nothing until the loop recovers."""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import Any

import psycopg

from skiplock.worker.backoff import Backoff

log = logging.getLogger("skiplock.worker")
# What a transaction-mode pooler does to psycopg's prepared statements when skiplock was
# not told about it: the next transaction lands on a server connection that lacks the
# statement, or already has one of that name.
POOLER_SYMPTOMS = (
    psycopg.errors.DuplicatePreparedStatement,
    psycopg.errors.InvalidSqlStatementName,
)
POOLER_HINT = (
    " [prepared statements lost between transactions: behind a transaction-mode pooler?"
    " set SKIPLOCK_POOLER=transaction]"
)


@dataclass
class _Failing:
    since: float
    retried: bool
    count: int = 0
    unlogged: int = 0
    logged_at: float | None = None
    backoff: Backoff = field(default_factory=Backoff)


class LoopHealth:
    """The failure state of every named loop of one worker."""

    def __init__(
        self,
        stall_after: float,
        *,
        log_every: float = 60.0,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.stall_after = stall_after
        self.log_every = log_every
        self._clock = clock
        self._failing: dict[str, _Failing] = {}

    def succeeded(self, loop: str) -> None:
        failing = self._failing.pop(loop, None)
        if failing is not None:
            log.warning(
                "%s recovered after %d failure(s) over %.1f s",
                loop,
                failing.count,
                self._clock() - failing.since,
            )

    def failed(
        self, loop: str, exc: BaseException, what: str | None = None, *, retried: bool = True
    ) -> float:
        """Record and log a failure of `loop` (`what` failed: "<loop> failed" unless
        told); returns how long to wait before retrying. A failure that is not `retried`
        (nothing will try again until new work comes) is logged but never stalls.

        A lost connection is expected while the database restarts: one line at WARNING.
        Anything else is a defect or a broken schema: ERROR with the traceback."""
        now = self._clock()
        failing = self._failing.setdefault(loop, _Failing(since=now, retried=retried))
        failing.count += 1
        delay = failing.backoff.next()
        if failing.logged_at is not None and now - failing.logged_at < self.log_every:
            failing.unlogged += 1
            return delay
        what = what or f"{loop} failed"
        if isinstance(exc, POOLER_SYMPTOMS):
            what += POOLER_HINT
        then = f"; retrying in {delay:.1f} s" if retried else ""
        if failing.unlogged:
            then += f" ({failing.unlogged} more since the last report)"
        if isinstance(exc, psycopg.OperationalError):
            log.warning("%s (%s)%s", what, exc, then)
        else:
            log.error("%s (%s: %s)%s", what, type(exc).__name__, exc, then, exc_info=exc)
        failing.logged_at, failing.unlogged = now, 0
        return delay

    def stalled(self) -> list[str]:
        """The loops that have failed, and been retried, for longer than stall_after."""
        now = self._clock()
        return sorted(
            loop
            for loop, failing in self._failing.items()
            if failing.retried and now - failing.since > self.stall_after
        )


async def every(
    health: LoopHealth,
    loop: str,
    interval: float,
    step: Callable[[], Awaitable[Any]],
    *,
    at_once: bool = False,
) -> None:
    """Run `step` every `interval` seconds (the first time at once, or after one
    interval) for good; a failure is recorded in `health` as a failure of `loop`, and
    retried sooner (with backoff, never later than the interval)."""
    delay = 0.0 if at_once else interval
    while True:
        await asyncio.sleep(delay)
        try:
            await step()
        except Exception as exc:
            delay = min(interval, health.failed(loop, exc))
        else:
            health.succeeded(loop)
            delay = interval
