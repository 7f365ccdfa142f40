"""Where an App's connections come from: its DSN, pooler mode and listen DSN, resolved
in the one order (argument, then environment), and the pools its calls run on."""

from __future__ import annotations

import asyncio
import threading
from typing import Any, TypeVar

import psycopg
from psycopg_pool import AsyncConnectionPool, ConnectionPool

from skiplock import store
from skiplock.config import connection_kwargs, resolve_dsn, resolve_listen_dsn, resolve_pooler
from skiplock.errors import ConfigError
from skiplock.store import Call

T = TypeVar("T")


class Database:
    """The database an App talks to; see App for the arguments."""

    def __init__(
        self,
        dsn: str | None = None,
        *,
        pool_timeout: float = 30.0,
        pooler: str | None = None,
        listen_dsn: str | None = None,
    ) -> None:
        self._dsn = dsn
        self._pooler = resolve_pooler(pooler) if pooler else None
        self._listen_dsn = listen_dsn
        # How long a producer call waits for a pooled connection before PoolTimeout.
        self.pool_timeout = pool_timeout
        self._pool: ConnectionPool | None = None
        self._async_pool: AsyncConnectionPool | None = None
        self._async_pool_loop: asyncio.AbstractEventLoop | None = None
        self._pool_lock = threading.Lock()

    @property
    def dsn(self) -> str:
        dsn = self._dsn or resolve_dsn()
        if not dsn:
            raise ConfigError(
                "no database configured: pass dsn=, or set SKIPLOCK_DSN or DATABASE_URL"
            )
        return dsn

    @dsn.setter
    def dsn(self, value: str) -> None:
        self._dsn = value

    @property
    def pooler(self) -> str:
        """ "transaction" when the DSN leads to a transaction-mode pooler, else "none"."""
        return self._pooler or resolve_pooler()

    @pooler.setter
    def pooler(self, value: str) -> None:
        self._pooler = resolve_pooler(value)

    @property
    def connection_kwargs(self) -> dict[str, Any]:
        """psycopg.connect's keyword arguments for this app's connections (autocommit)."""
        return connection_kwargs(self.pooler)

    @property
    def listen_dsn(self) -> str | None:
        """Where LISTEN goes: the listen DSN (argument, then SKIPLOCK_LISTEN_DSN), else the
        DSN itself, except through a transaction-mode pooler, where a LISTEN stays on a
        server connection that later serves others and hears nothing itself: None, poll."""
        given = self._listen_dsn or resolve_listen_dsn()
        if given:
            return given
        return None if self.pooler == "transaction" else self.dsn

    @listen_dsn.setter
    def listen_dsn(self, value: str | None) -> None:
        self._listen_dsn = value

    def _sync_pool(self) -> ConnectionPool:
        with self._pool_lock:
            if self._pool is None:
                self._pool = ConnectionPool(
                    self.dsn,
                    min_size=1,
                    max_size=4,
                    open=True,
                    timeout=self.pool_timeout,
                    kwargs=self.connection_kwargs,
                    configure=store.show_readable_json,
                )
            return self._pool

    async def async_pool(self) -> AsyncConnectionPool:
        """The app's async connection pool (autocommit) for the running event loop, opened
        on first use in that loop.

        A pool belongs to the loop that opened it; a script that calls
        `asyncio.run(app.enqueue_async(...))` twice runs two loops, and the second gets a
        pool of its own (the first one's connections went with its loop). The pool is
        opened with its first connection made (`wait=True`): a connection still being made
        in the background when `asyncio.run` ends and cancels it could swallow the cancel
        (asyncio.wait_for on Python 3.11) and keep the loop from closing.
        """
        loop = asyncio.get_running_loop()
        if self._async_pool is not None and self._async_pool_loop is not loop:
            self._async_pool = None
        if self._async_pool is None:
            pool = AsyncConnectionPool(
                self.dsn,
                min_size=1,
                max_size=4,
                open=False,
                timeout=self.pool_timeout,
                kwargs=self.connection_kwargs,
                configure=store.ashow_readable_json,
            )
            await pool.open(wait=True, timeout=self.pool_timeout)
            if self._async_pool is None:
                self._async_pool, self._async_pool_loop = pool, loop
            else:  # another caller opened one while we awaited: keep theirs
                await pool.close()
        return self._async_pool

    def run(self, call: Call[T], conn: psycopg.Connection[Any] | None = None) -> T:
        """Run one store call on `conn` (joining its transaction) or on the app's pool."""
        if conn is not None:
            return call.run(conn)
        with self._sync_pool().connection() as pooled:
            return call.run(pooled)

    async def arun(self, call: Call[T], conn: psycopg.AsyncConnection[Any] | None = None) -> T:
        if conn is not None:
            return await call.arun(conn)
        async with (await self.async_pool()).connection() as pooled:
            return await call.arun(pooled)

    def close(self) -> None:
        if self._pool is not None:
            self._pool.close()
            self._pool = None

    async def aclose(self) -> None:
        if self._async_pool is not None:
            await self._async_pool.close()
            self._async_pool = None
