"""Waiting for jobs to finish: re-read until done, woken by skiplock_finished.

NOTIFY is only a hint: whoever waits re-reads at least every few seconds, so a lost
notification costs latency, never a wrong answer; with nowhere to LISTEN (a
transaction-mode pooler and no listen DSN, see App.listen_dsn) the re-reads alone do
it. App's wait calls open a connection per call (wait_until_finished); the API shares
one LISTEN connection among its long-polls (skiplock.api.results) around the same
reread_until.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Awaitable, Callable, Collection, Coroutine
from concurrent.futures import ThreadPoolExecutor
from typing import Any, TypeVar

import psycopg

from skiplock.database import Database

T = TypeVar("T")

FINISHED_CHANNEL = "skiplock_finished"
# Re-read at least this often when listening (a notification may be lost), and this
# often when nothing listens: polling alone.
RECHECK_LISTENING = 5.0
RECHECK_POLLING = 1.0


def finished_ids(payload: str) -> frozenset[int] | None:
    """The job ids a skiplock_finished payload names; None for "*", which stands for
    any job (sent when the ids would not fit one NOTIFY)."""
    if payload == "*":
        return None
    ids = set()
    for part in payload.split(","):
        with contextlib.suppress(ValueError):
            ids.add(int(part))
    return frozenset(ids)


def names_any(payload: str, job_ids: Collection[int]) -> bool:
    """Whether a skiplock_finished payload may concern one of `job_ids`."""
    named = finished_ids(payload)
    return named is None or not named.isdisjoint(job_ids)


async def reread_until(
    read: Callable[[], Awaitable[T]],
    done: Callable[[T], bool],
    wake: Callable[[T, float], Awaitable[None]],
    *,
    timeout: float | None,
    recheck: float,
) -> T:
    """Call `read` until `done` says yes of what it returned or `timeout` seconds (None:
    no limit) have passed, and return the last read. Between two reads `wake(last read,
    seconds)` waits at most `seconds` (never more than `recheck`) for a hint that the
    answer may have changed."""
    loop = asyncio.get_running_loop()
    deadline = None if timeout is None else loop.time() + timeout
    while True:
        value = await read()
        if done(value):
            return value
        wait = recheck
        if deadline is not None:
            remaining = deadline - loop.time()
            if remaining <= 0:
                return value
            wait = min(wait, remaining)
        await wake(value, wait)


async def wait_until_finished(
    db: Database,
    read: Callable[[psycopg.AsyncConnection[Any]], Awaitable[T]],
    done: Callable[[T], bool],
    watched: Callable[[T], Collection[int]],
    *,
    timeout: float | None,
    what: str,
) -> T:
    """Re-read with `read` on a connection of its own until `done`, woken when one of the
    jobs `watched` names in the last read finishes; TimeoutError naming `what` after
    `timeout` seconds. Whatever `read` raises (an unknown id) goes to the caller."""
    listen_dsn = db.listen_dsn
    async with await psycopg.AsyncConnection.connect(
        listen_dsn or db.dsn, **db.connection_kwargs
    ) as conn:
        if listen_dsn:
            # Before the first read: a finish between a read and the wait is heard.
            await conn.execute(f"LISTEN {FINISHED_CHANNEL}")

        async def wake(value: T, seconds: float) -> None:
            if not listen_dsn:
                await asyncio.sleep(seconds)
                return
            job_ids = watched(value)
            async for notice in conn.notifies(timeout=seconds):
                if names_any(notice.payload, job_ids):
                    return

        recheck = RECHECK_LISTENING if listen_dsn else RECHECK_POLLING
        value = await reread_until(lambda: read(conn), done, wake, timeout=timeout, recheck=recheck)
    if not done(value):
        raise TimeoutError(f"{what} did not finish within {timeout} s")
    return value


def run_blocking(wait: Coroutine[Any, Any, T]) -> T:
    """Run a wait to its end from sync code, on an event loop of its own (in a thread of
    its own when this thread already runs one, which the wait must not block)."""
    try:
        asyncio.get_running_loop()
    except RuntimeError:
        return asyncio.run(wait)
    with ThreadPoolExecutor(1, thread_name_prefix="skiplock-wait") as thread:
        return thread.submit(asyncio.run, wait).result()
