"""Stopping asyncio tasks so that they end.

On Python 3.11 `asyncio.wait_for`, which psycopg_pool awaits while a caller waits for a
free connection, drops a cancel that arrives as what it waits for completes: the task
goes on as if it had never been cancelled. A long-lived loop stopped with one `cancel()`
may then never end, and whoever waits for it waits forever. `cancel_and_wait` sends the
cancel again until the task has ended.
"""

from __future__ import annotations

import asyncio
from typing import Any

# How long a cancelled task has to end before it is cancelled again.
RESEND_SECONDS = 1.0


async def cancel_and_wait(*tasks: asyncio.Task[Any]) -> None:
    """Cancel `tasks` and wait until every one has ended, cancelling again any still
    running after RESEND_SECONDS; what they returned or raised is dropped."""
    pending = {task for task in tasks if not task.done()}
    while pending:
        for task in pending:
            task.cancel()
        _, pending = await asyncio.wait(pending, timeout=RESEND_SECONDS)
    for task in tasks:
        if not task.cancelled():
            task.exception()  # retrieved: asyncio does not log it as never retrieved
