"""The API process's one LISTEN connection, shared by whoever needs to hear of jobs:
the result long-polls (api.results) and the dashboard's live updates (dashboard.live).

It LISTENs on skiplock_jobs (queues that got ready jobs) and skiplock_finished (jobs
that finished), opens with its first use (an API nobody waits on or watches holds no
connection for it), reconnects with backoff whenever it fails, and is closed by the
API's lifespan. Notifications are read in batches, at most one every GATHER seconds,
so what hearing them costs the process is bounded by time, not by the rate of jobs;
while a subscriber is `prompt` (a long-poll is waiting) each is handed on at once.
A subscriber is told when it may have missed something (the connection was down):
NOTIFY is a hint, and each subscriber re-reads on its own schedule as well.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable
from typing import Any, Protocol

import psycopg

from skiplock.cancelling import cancel_and_wait
from skiplock.waiter import FINISHED_CHANNEL

log = logging.getLogger("skiplock.api")

JOBS_CHANNEL = "skiplock_jobs"
CHANNELS = (JOBS_CHANNEL, FINISHED_CHANNEL)
# The listener reads notifications in batches, at most one every GATHER seconds.
GATHER = 0.2
RECONNECT_FIRST = 0.5
RECONNECT_MAX = 30.0


class Subscriber(Protocol):
    @property
    def prompt(self) -> bool:
        """Whether notifications should be handed on at once rather than in batches."""

    def heard(self, channel: str, payload: str) -> None:
        """One notification (each distinct one of a batch once)."""

    def missed(self) -> None:
        """Notifications may have been missed: re-read whatever they would have told."""


class Notifications:
    def __init__(self, dsn: Callable[[], str | None]) -> None:
        self._dsn = dsn
        self._task: asyncio.Task[None] | None = None
        self.subscribers: list[Subscriber] = []
        self.listening = asyncio.Event()
        # the PostgreSQL backend of the LISTEN connection, while there is one
        self.backend_pid: int | None = None

    def subscribe(self, subscriber: Subscriber) -> None:
        self.subscribers.append(subscriber)

    def start(self) -> bool:
        """Listen from now on, unless already; False when there is nowhere to LISTEN
        (a transaction-mode pooler and no listen DSN, see App.listen_dsn)."""
        dsn = self._dsn()
        if dsn is None:
            return False
        if self._task is None or self._task.done():
            self._task = asyncio.create_task(self._run(dsn), name="skiplock-api-listener")
        return True

    async def close(self) -> None:
        if self._task is not None:
            await cancel_and_wait(self._task)
            self._task = None
        self.listening.clear()
        self.backend_pid = None

    async def _run(self, dsn: str) -> None:
        delay = RECONNECT_FIRST
        while True:
            try:
                await self._listen(dsn)
            except Exception as exc:  # a long-lived loop: it says why and goes on
                log.warning(
                    "listener: %s: %s; reconnecting in %.1f s",
                    type(exc).__name__,
                    exc,
                    delay,
                    exc_info=not isinstance(exc, psycopg.Error | OSError),
                )
            if self.listening.is_set():  # it had worked: start the backoff again
                delay = RECONNECT_FIRST
            self.listening.clear()
            self.backend_pid = None
            self._missed()
            await asyncio.sleep(delay)
            delay = min(delay * 2, RECONNECT_MAX)

    async def _listen(self, dsn: str) -> None:
        # TCP keepalives notice a connection that died silently; the subscribers' own
        # re-reads bound what a missed notification costs meanwhile.
        async with await psycopg.AsyncConnection.connect(
            dsn, autocommit=True, connect_timeout=5, keepalives=1, keepalives_idle=30
        ) as conn:
            for channel in CHANNELS:
                await conn.execute(f"LISTEN {channel}")
            self.backend_pid = conn.info.backend_pid
            self.listening.set()
            log.info("listener: listening (backend %s)", self.backend_pid)
            # what happened while nobody listened notified nobody
            self._missed()
            while True:
                await self._next_batch(conn)

    async def _next_batch(self, conn: psycopg.AsyncConnection[Any]) -> None:
        """Wait for a notification; unless a subscriber is prompt, let more gather for
        GATHER seconds; then hand each distinct one to every subscriber."""
        heard: dict[tuple[str, str], None] = {}
        async for notice in conn.notifies(stop_after=1):
            heard[notice.channel, notice.payload] = None
        if not any(subscriber.prompt for subscriber in self.subscribers):
            await asyncio.sleep(GATHER)
            async for notice in conn.notifies(timeout=0.01):
                heard[notice.channel, notice.payload] = None
        for channel, payload in heard:
            for subscriber in self.subscribers:
                subscriber.heard(channel, payload)

    def _missed(self) -> None:
        for subscriber in self.subscribers:
            subscriber.missed()
