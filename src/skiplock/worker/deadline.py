"""Awaiting with a deadline, without the extra task `asyncio.wait_for` makes.

On Python 3.11+ `wait_for` runs what it waits for in a task of its own (a task to make,
and one more loop iteration before the waiter resumes); `asyncio.timeout` puts the
deadline on the current task instead, at a fraction of the cost. The worker awaits with
a deadline on its hot paths: once per job with a timeout, and once per wake-up of the
fetch loop.
"""

from __future__ import annotations

import asyncio
import sys
from collections.abc import Awaitable, Callable
from typing import TypeVar

T = TypeVar("T")

if sys.version_info >= (3, 11):

    async def within(seconds: float, call: Callable[[], Awaitable[T]]) -> T:
        """`await call()`, raising TimeoutError after `seconds`."""
        async with asyncio.timeout(seconds):
            return await call()

else:

    async def within(seconds: float, call: Callable[[], Awaitable[T]]) -> T:
        return await asyncio.wait_for(call(), seconds)


async def wait_event(event: asyncio.Event, seconds: float) -> bool:
    """Wait until `event` is set or `seconds` pass; True when it was set."""
    try:
        await within(seconds, event.wait)
    except asyncio.TimeoutError:  # TimeoutError itself from 3.11 on
        return False
    return True
