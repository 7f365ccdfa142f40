"""What every route needs from the Starlette app: the skiplock App and the API's limits."""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from typing import Any, TypeVar

import psycopg
from starlette.requests import Request

from skiplock import store
from skiplock.api.notifications import Notifications
from skiplock.api.problems import database_unavailable
from skiplock.api.results import FinishedListener
from skiplock.app import App
from skiplock.validation import SchemaCache

T = TypeVar("T")
Conn = psycopg.AsyncConnection[Any]


@dataclass
class ApiState:
    """The App the routes call into and the limits they apply; kept on app.state.api."""

    app: App
    max_body_bytes: int
    db_timeout: float
    statement_timeout: float = 5.0
    started: float = field(default_factory=time.monotonic)
    finished: FinishedListener | None = None
    # compiled validators of the task schemas workers published (POST /jobs checks)
    schemas: SchemaCache = field(default_factory=SchemaCache)
    # take jobs of tasks no worker has published as if they allowed it (serve/dev option)
    accept_unknown_tasks: bool = False
    # the process's one LISTEN connection, on the App's listen DSN
    notifications: Notifications = field(init=False)

    def __post_init__(self) -> None:
        self.notifications = Notifications(lambda: self.app.listen_dsn)

    async def call(self, awaitable: Awaitable[T]) -> T:
        """Await one App call; 503 if it takes longer than `db_timeout` seconds.

        The App's pool waits up to psycopg_pool's default 30 s for a connection while
        the database is away; an HTTP client should hear "retry later" well before.
        """
        try:
            return await asyncio.wait_for(awaitable, self.db_timeout)
        except asyncio.TimeoutError:
            raise database_unavailable() from None

    @asynccontextmanager
    async def _transaction(self) -> AsyncIterator[Conn]:
        # The App's own pool, so the API and the App's producer calls share connections.
        pool = await self.app.async_pool()
        async with pool.connection() as conn, conn.transaction():
            # SET LOCAL: the limit ends with this transaction, so a connection handed
            # back to the pool (and used by the App elsewhere) keeps its own setting.
            await self.app.arun(
                store.set_statement_timeout(round(self.statement_timeout * 1000)), conn
            )
            yield conn

    async def db(self, work: Callable[[Conn], Awaitable[T]]) -> T:
        """Run `work` in one transaction on a pooled connection, under the API's limits.

        Every statement gets `statement_timeout` seconds (SQLSTATE 57014 → 503), and the
        whole call, waiting for a connection included, `db_timeout` seconds. An error
        rolls the transaction back: a 4xx or 5xx answer writes nothing.
        """

        async def run() -> T:
            async with self._transaction() as conn:
                return await work(conn)

        return await self.call(run())

    async def run(self, call: store.Call[T]) -> T:
        """One store call through `db`."""
        return await self.db(lambda conn: self.app.arun(call, conn))

    def uptime(self) -> float:
        return time.monotonic() - self.started


def api_state(request: Request) -> ApiState:
    state: ApiState = request.app.state.api
    return state
