"""The worker says its event loop was blocked only when it was: the lease watch, a loop
that does no I/O, tells it by waking late. A heartbeat that waits on a dead connection
is not a blocked loop; a handler that holds the loop is, whether or not a beat was in
flight meanwhile."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
import uuid
from typing import Any

import pytest

from skiplock.worker.leases import Leases
from skiplock.worker.loops import LoopHealth
from skiplock.worker.settings import WorkerSettings


class Nothing:
    def held_tokens(self) -> list[tuple[int, int]]:
        return []

    def stuck(self) -> int:
        return 0


def leases(call: Any) -> Leases:
    settings = WorkerSettings(lease=0.6, heartbeat_interval=0.2)
    return Leases(
        uuid.uuid4(),
        settings,
        {},
        completer=Nothing(),  # type: ignore[arg-type]
        threads=Nothing(),  # type: ignore[arg-type]
        health=LoopHealth(stall_after=60.0),
        lock=asyncio.Lock(),
        call=call,
        stop_job=lambda *_: None,
        stop_requested=lambda: None,
    )


async def run_for(seconds: float, call: Any) -> None:
    """The heartbeat and the lease watch, as a worker runs them, for `seconds`."""
    lease = leases(call)
    tasks = [
        asyncio.create_task(lease.heartbeat_forever()),
        asyncio.create_task(lease.watch_forever()),
    ]
    await asyncio.sleep(seconds)
    for task in tasks:
        task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await task


def blocked(caplog: pytest.LogCaptureFixture) -> list[str]:
    return [r.getMessage() for r in caplog.records if "event loop was blocked" in r.getMessage()]


async def fine(call: Any, *, wait: float | None = None) -> Any:
    return {}


def test_beats_that_wait_on_a_dead_link_are_not_a_blocked_loop(
    caplog: pytest.LogCaptureFixture,
) -> None:
    async def dead_link(call: Any, *, wait: float | None = None) -> Any:
        # a statement on a connection whose link died: it hangs until TCP gives up,
        # longer than half a lease, while the loop itself runs freely
        await asyncio.sleep(0.8)
        raise OSError("connection timed out")

    with caplog.at_level(logging.WARNING, logger="skiplock"):
        asyncio.run(run_for(2.0, dead_link))
    assert blocked(caplog) == []


def test_a_loop_held_by_a_handler_is_reported(caplog: pytest.LogCaptureFixture) -> None:
    async def hold_the_loop() -> None:
        await asyncio.sleep(0.3)
        time.sleep(0.8)  # noqa: ASYNC251 - a handler that never yields, over half a lease

    async def both() -> None:
        await asyncio.gather(run_for(1.6, fine), hold_the_loop())

    with caplog.at_level(logging.WARNING, logger="skiplock"):
        asyncio.run(both())
    assert len(blocked(caplog)) == 1


def test_a_loop_held_while_a_beat_is_in_flight_is_reported(
    caplog: pytest.LogCaptureFixture,
) -> None:
    async def slow(call: Any, *, wait: float | None = None) -> Any:
        await asyncio.sleep(0.25)  # the beat is waiting for its answer when the loop is held
        return {}

    async def hold_the_loop() -> None:
        await asyncio.sleep(0.1)
        time.sleep(0.8)  # noqa: ASYNC251

    async def both() -> None:
        await asyncio.gather(run_for(1.6, slow), hold_the_loop())

    with caplog.at_level(logging.WARNING, logger="skiplock"):
        asyncio.run(both())
    assert len(blocked(caplog)) == 1
