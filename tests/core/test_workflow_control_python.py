"""Cancelling and retrying a workflow from Python, with a real worker running the steps."""

from __future__ import annotations

import asyncio
import threading
from typing import Any

import psycopg
import pytest

import skiplock
from skiplock import Step
from skiplock.worker import Worker


def make_app(dsn: str, flaky_failures: int = 0) -> tuple[skiplock.App, threading.Event]:
    """An app whose `flaky` task fails (for good) its first `flaky_failures` runs, and
    whose `slow` task runs until its job is cancelled (then `stopped` is set)."""
    app = skiplock.App(dsn)
    failures = [flaky_failures]
    stopped = threading.Event()

    @app.task(name="square")
    async def square(n: int) -> int:
        return n * n

    @app.task(name="flaky")
    async def flaky(previous: int) -> int:
        if failures[0] > 0:
            failures[0] -= 1
            raise skiplock.Discard("not yet")
        return previous + 1

    @app.task(name="total")
    async def total(results: list[int]) -> int:
        return sum(results)

    @app.task(name="slow")
    async def slow() -> None:
        try:
            await asyncio.sleep(60)
        except asyncio.CancelledError:
            stopped.set()
            raise

    return app, stopped


def run_worker_until(app: skiplock.App, done: Any) -> None:
    async def body() -> None:
        worker = Worker(app, poll_interval=0.05, heartbeat_interval=0.1)
        runner = asyncio.create_task(worker.run())
        for _ in range(400):
            if await asyncio.to_thread(done):
                break
            await asyncio.sleep(0.025)
        worker.stop()
        await runner

    asyncio.run(body())


def test_a_failed_workflow_retried_runs_to_completion_with_results(dsn: str) -> None:
    app, _ = make_app(dsn, flaky_failures=1)
    handle = app.workflow(
        Step("square", {"n": 3}, name="a"),
        Step("flaky", name="b", after=["a"], result_arg="previous"),
        Step("square", {"n": 2}, name="c"),
        Step("total", name="sum", after=["b", "c"], results_arg="results"),
    )
    run_worker_until(app, lambda: handle.status().finished)
    first = handle.status()
    assert first.state == "failed"
    assert {s.step: s.status for s in first.steps} == {
        "a": "succeeded",
        "b": "failed",
        "c": "succeeded",
        "sum": "failed",
    }

    assert handle.retry() == 2
    assert handle.status().state == "running"
    run_worker_until(app, lambda: handle.status().finished)
    workflow = handle.wait(timeout=5)
    assert workflow.state == "succeeded"
    assert workflow.results == {"a": 9, "b": 10, "c": 4, "sum": 14}
    assert app.retry_workflow(handle.id) == 0  # nothing left to retry
    app.close()


def test_cancel_stops_the_running_step_and_drops_the_rest(dsn: str) -> None:
    app, stopped = make_app(dsn)
    handle = app.chain(Step("slow"), Step("square", {"n": 2}), result_arg=None)
    cancelled: list[int] = []

    def cancel_once_running() -> bool:
        if not cancelled and handle.status().counts["running"] == 1:
            cancelled.append(handle.cancel())
        return handle.status().finished

    run_worker_until(app, cancel_once_running)
    assert cancelled == [2]
    assert stopped.is_set()
    workflow = handle.status()
    assert workflow.state == "cancelled"
    assert [s.status for s in workflow.steps] == ["cancelled", "cancelled"]
    assert app.cancel_workflow(handle.id) == 0  # already finished: a no-op
    app.close()


def test_unknown_and_unfinished_workflows_are_refused(dsn: str) -> None:
    app, _ = make_app(dsn)
    with pytest.raises(skiplock.WorkflowNotFound, match="workflow 4242 not found"):
        app.cancel_workflow(4242)
    with pytest.raises(skiplock.WorkflowNotFound):
        app.retry_workflow(4242)
    handle = app.chain(Step("square", {"n": 1}), Step("square", {"n": 2}))
    with pytest.raises(psycopg.errors.ObjectNotInPrerequisiteState, match="has not finished"):
        handle.retry()
    app.close()


def test_async_cancel_and_retry_in_the_callers_transaction(dsn: str) -> None:
    app, _ = make_app(dsn)

    async def body() -> None:
        handle = await app.workflow_async(Step("square", {"n": 1}), Step("square", {"n": 2}))
        async with await psycopg.AsyncConnection.connect(dsn) as conn:
            assert await app.cancel_workflow_async(handle.id, conn=conn) == 2
            await conn.rollback()  # the caller's transaction rolled back: nothing cancelled
        assert handle.status().counts["queued"] == 2
        assert await handle.cancel_async() == 2
        assert handle.status().state == "cancelled"
        assert await handle.retry_async() == 2
        assert handle.status().counts["queued"] == 2

    asyncio.run(body())
    app.close()
