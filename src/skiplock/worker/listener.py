"""The one LISTEN connection of a worker process, kept alive.

NOTIFY is only a hint: the fetch loop also polls. The listener reconnects with backoff
when its connection drops, and a probe (a NOTIFY to itself sent over another connection)
notices a connection that died silently and forces a reconnect.

A listener that has never heard its probe asks a second, new connection to the same DSN
to hear one. If that one is deaf too, the connection is not dead: LISTEN does not reach
the session the NOTIFYs go to (a transaction-mode pooler between it and the database),
and reconnecting would give the same. The listener says so once and stays connected;
the worker keeps to its poll interval; a probe heard later turns NOTIFY pickup back on.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable, Sequence

import psycopg
from psycopg import sql
from psycopg_pool import AsyncConnectionPool

from skiplock import store
from skiplock.worker.deadline import wait_event, within
from skiplock.worker.loops import LoopHealth

log = logging.getLogger("skiplock.worker")
Dispatch = Callable[[str, str], None]


class Listener:
    def __init__(
        self,
        dsn: str,
        channels: Sequence[str],
        dispatch: Dispatch,
        *,
        probe_channel: str,
        probe_pool: AsyncConnectionPool,
        probe_interval: float = 30.0,
        probe_timeout: float = 5.0,
        poll_interval: float = 1.0,
        health: LoopHealth | None = None,
    ) -> None:
        self._dsn = dsn
        self._channels = [*channels, probe_channel]
        self._dispatch = dispatch
        self._probe_channel = probe_channel
        self._probe_pool = probe_pool
        self.probe_interval = probe_interval
        self.probe_timeout = probe_timeout
        self.poll_interval = poll_interval  # the worker's, for the warning when LISTEN is deaf
        self._conn: psycopg.AsyncConnection | None = None
        self._probe_seen = asyncio.Event()
        self.connected = asyncio.Event()
        self._reconnect_requested = False
        self.reconnects = 0
        self._health = health or LoopHealth(stall_after=float("inf"))
        self._probe_answered = False  # ever, on any connection of this listener
        # LISTEN does not work through this connection: the worker only polls.
        self.deaf = False

    async def run(self) -> None:
        first = True
        while True:
            try:
                # Bounded: the probe only watches a connection that is up, so a server
                # that goes silent while we connect must not hold the listener here.
                self._conn = await within(self.probe_timeout, self._subscribe)
                self.connected.set()
                self._health.succeeded("listener")
                if not first:
                    self.reconnects += 1
                    log.info("listener reconnected")
                    # Anything enqueued while we were away sent its NOTIFY to nobody.
                    self._dispatch("skiplock_jobs", "*")
                first = False
                while not self._reconnect_requested:
                    # Bounded waits, so a probe failure can make this loop reconnect.
                    async for notice in self._conn.notifies(timeout=1.0):
                        if notice.channel == self._probe_channel:
                            self._probe_seen.set()
                        else:
                            self._dispatch(notice.channel, notice.payload)
                self._reconnect_requested = False
                raise psycopg.OperationalError("listener probe missed")
            except Exception as exc:
                self.connected.clear()
                if isinstance(exc, asyncio.TimeoutError):
                    exc = psycopg.OperationalError(f"no answer within {self.probe_timeout:.1f} s")
                delay = self._health.failed("listener", exc, "listener connection lost")
                await self._close()
                await asyncio.sleep(delay)

    async def _subscribe(self) -> psycopg.AsyncConnection:
        """A new connection LISTENing on every channel (one round trip for all)."""
        conn = await psycopg.AsyncConnection.connect(self._dsn, autocommit=True)
        try:
            await conn.execute(
                sql.SQL("; ").join(
                    sql.SQL("LISTEN {}").format(sql.Identifier(c)) for c in self._channels
                )
            )
        except BaseException:
            await conn.close()
            raise
        return conn

    async def probe_forever(self) -> None:
        while True:
            await asyncio.sleep(self.probe_interval)
            try:
                await self.probe_once()
            except Exception as exc:
                self._health.failed("probe", exc)
            else:
                self._health.succeeded("probe")

    async def probe_once(self) -> bool:
        """Send a NOTIFY to ourselves; reconnect if it does not come back in time."""
        if not self.connected.is_set():
            return False
        self._probe_seen.clear()
        try:
            async with self._probe_pool.connection() as conn:
                await store.notify(self._probe_channel, "probe").arun(conn)
        except psycopg.OperationalError:
            return False  # the database is away; the reconnect loops handle it
        # wait_event, not asyncio.wait_for: on Python 3.11 wait_for swallows a cancel that
        # arrives as the probe comes back, and the worker's shutdown then waits forever.
        if await wait_event(self._probe_seen, self.probe_timeout):
            if self.deaf:
                log.info("listener: LISTEN works now; picking up jobs on NOTIFY again")
                self.deaf = False
            self._probe_answered = True
            return True
        if self.deaf:
            return False  # said once already; reconnecting would give the same
        if not self._probe_answered and await self._heard_on_a_new_connection() is False:
            log.warning(
                "LISTEN does not work through this connection (a transaction-mode pooler?);"
                " polling every %g s; give a direct --listen-dsn / SKIPLOCK_LISTEN_DSN for"
                " instant pickup",
                self.poll_interval,
            )
            self.deaf = True
            return False
        log.warning("listener missed its probe for %.1f s; reconnecting", self.probe_timeout)
        self._reconnect_requested = True
        return False

    async def _heard_on_a_new_connection(self) -> bool | None:
        """Probe once more, heard by a new connection to the same DSN: True when it hears
        (the listening connection is dead: reconnect), False when it is deaf too (LISTEN
        does not work there), None when it cannot tell (no connection)."""
        try:
            conn = await psycopg.AsyncConnection.connect(
                self._dsn, autocommit=True, connect_timeout=max(1, round(self.probe_timeout))
            )
        except psycopg.OperationalError:
            return None
        try:
            await conn.execute(sql.SQL("LISTEN {}").format(sql.Identifier(self._probe_channel)))
            async with self._probe_pool.connection() as sender:
                await store.notify(self._probe_channel, "again").arun(sender)
            async for _ in conn.notifies(timeout=self.probe_timeout, stop_after=1):
                return True
            return False
        except psycopg.OperationalError:
            return None
        finally:
            await conn.close()

    async def _close(self) -> None:
        conn, self._conn = self._conn, None
        if conn is not None and not conn.closed:
            await conn.close()
