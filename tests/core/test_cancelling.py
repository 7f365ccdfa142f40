"""cancel_and_wait ends tasks even when one swallows a cancel, as `asyncio.wait_for` on
Python 3.11 does when the cancel meets what it waited for completing."""

from __future__ import annotations

import asyncio
import gc

import pytest

from skiplock import cancelling
from skiplock.cancelling import cancel_and_wait


async def swallows_cancels(times: int, ended: list[str]) -> None:
    """A loop that goes on after its first `times` cancels, as if they never came (for
    ten seconds at most, so that a test that fails does not hang)."""
    swallowed = 0
    give_up = asyncio.get_running_loop().time() + 10
    while asyncio.get_running_loop().time() < give_up:
        try:
            await asyncio.sleep(0.1)
        except asyncio.CancelledError:
            if swallowed == times:
                ended.append("cancelled")
                raise
            swallowed += 1  # and not re-raised, as wait_for drops it


def test_a_task_that_swallowed_cancels_is_cancelled_until_it_ends(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setattr(cancelling, "RESEND_SECONDS", 0.05)

    async def main() -> list[str]:
        ended: list[str] = []
        task = asyncio.create_task(swallows_cancels(2, ended))
        await asyncio.sleep(0)
        await asyncio.wait_for(cancel_and_wait(task), 5)
        assert task.cancelled()
        return ended

    assert asyncio.run(main()) == ["cancelled"]


def test_tasks_that_end_raising_or_returning_are_waited_for_and_their_errors_retrieved() -> None:
    async def fails() -> None:
        raise RuntimeError("boom")

    async def returns() -> int:
        return 1

    async def main() -> None:
        loop = asyncio.get_running_loop()
        unretrieved: list[dict[str, object]] = []
        loop.set_exception_handler(lambda _loop, context: unretrieved.append(context))
        failed, returned = asyncio.create_task(fails()), asyncio.create_task(returns())
        sleeper = asyncio.create_task(asyncio.sleep(3600))
        await asyncio.sleep(0)
        await asyncio.wait_for(cancel_and_wait(failed, returned, sleeper), 5)
        assert failed.done() and returned.done() and sleeper.cancelled()
        del failed, returned, sleeper
        gc.collect()
        assert unretrieved == []

    asyncio.run(main())


def test_nothing_to_cancel_returns_at_once() -> None:
    asyncio.run(asyncio.wait_for(cancel_and_wait(), 1))
