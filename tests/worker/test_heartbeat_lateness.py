"""The heartbeat says the event loop was blocked only when it was: a beat that waits on
a dead connection and fails is not the loop being blocked (the next beat comes sooner,
after the failure's short backoff)."""

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


async def beat_for(seconds: float, call: Any) -> None:
    task = asyncio.create_task(leases(call).heartbeat_forever())
    await asyncio.sleep(seconds)
    task.cancel()
    with contextlib.suppress(asyncio.CancelledError):
        await task


def blocked(caplog: pytest.LogCaptureFixture) -> list[str]:
    return [r.getMessage() for r in caplog.records if "event loop was blocked" in r.getMessage()]


def test_beats_that_wait_on_a_dead_link_are_not_a_blocked_loop(
    caplog: pytest.LogCaptureFixture,
) -> None:
    async def dead_link(call: Any, *, wait: float | None = None) -> Any:
        # a statement on a connection whose link died: it hangs until TCP gives up,
        # longer than half a lease, while the loop itself runs freely
        await asyncio.sleep(0.8)
        raise OSError("connection timed out")

    with caplog.at_level(logging.WARNING, logger="skiplock"):
        asyncio.run(beat_for(2.0, dead_link))
    assert blocked(caplog) == []


def test_a_loop_held_by_a_handler_is_reported(caplog: pytest.LogCaptureFixture) -> None:
    async def fine(call: Any, *, wait: float | None = None) -> Any:
        return {}

    async def hold_the_loop() -> None:
        await asyncio.sleep(0.3)
        time.sleep(0.8)  # noqa: ASYNC251 - a handler that never yields, over half a lease

    async def both() -> None:
        await asyncio.gather(beat_for(1.6, fine), hold_the_loop())

    with caplog.at_level(logging.WARNING, logger="skiplock"):
        asyncio.run(both())
    assert len(blocked(caplog)) == 1
