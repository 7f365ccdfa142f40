"""What every route needs from the Starlette app: the skiplock App and the API's limits."""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable
from dataclasses import dataclass
from typing import TypeVar

from starlette.requests import Request

from skiplock.api.problems import database_unavailable
from skiplock.registry import App

T = TypeVar("T")


@dataclass(frozen=True)
class ApiState:
    """The App the routes call into and the limits they apply; kept on app.state.api."""

    app: App
    max_body_bytes: int
    db_timeout: float

    async def call(self, awaitable: Awaitable[T]) -> T:
        """Await one App call; 503 if it takes longer than `db_timeout` seconds.

        The App's pool waits up to psycopg_pool's default 30 s for a connection while
        the database is away; an HTTP client should hear "retry later" well before.
        """
        try:
            return await asyncio.wait_for(awaitable, self.db_timeout)
        except asyncio.TimeoutError:
            raise database_unavailable() from None


def api_state(request: Request) -> ApiState:
    state: ApiState = request.app.state.api
    return state
