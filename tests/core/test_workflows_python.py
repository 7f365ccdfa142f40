"""Workflows from Python: chain, group and DAG enqueued in one transaction, run by a real
worker with results passed along, and waited on as a unit."""

from __future__ import annotations

import asyncio
import threading
from typing import Any

import psycopg
import pytest

import skiplock
from skiplock import Step
from skiplock.worker import Worker


def make_app(dsn: str) -> skiplock.App:
    app = skiplock.App(dsn)

    @app.task(name="fetch")
    async def fetch(url: str) -> dict[str, Any]:
        return {"url": url, "size": len(url)}

    @app.task(name="parse")
    async def parse(previous: dict[str, Any]) -> int:
        return int(previous["size"]) * 10

    @app.task(name="store")
    def store(previous: int, table: str) -> str:  # a sync handler, run in a thread
        return f"{table}:{previous}"

    @app.task(name="square")
    async def square(n: int) -> int:
        return n * n

    @app.task(name="total")
    async def total(results: list[int]) -> int:
        return sum(results)

    @app.task(name="boom")
    async def boom() -> None:
        raise skiplock.Discard("no")

    return app


def run_worker_until(app: skiplock.App, done: Any) -> None:
    """Run a real worker in this process until `done()` is true (or 10 s pass)."""

    async def body() -> None:
        worker = Worker(app, poll_interval=0.05)
        runner = asyncio.create_task(worker.run())
        for _ in range(400):
            if await asyncio.to_thread(done):
                break
            await asyncio.sleep(0.025)
        worker.stop()
        await runner

    asyncio.run(body())


def test_a_chain_passes_each_result_to_the_next_step(dsn: str) -> None:
    app = make_app(dsn)
    enqueued: list[tuple[int, str]] = []
    app.on("enqueued")(lambda event, ctx, info: enqueued.append((info["job_id"], info["task"])))
    handle = app.chain(
        Step("fetch", {"url": "https://example.com"}),
        app.tasks["parse"].step(),
        Step("store", {"table": "pages"}),
        name="crawl",
    )
    assert list(handle.jobs) == ["fetch", "parse", "store"]
    assert enqueued == [(handle.jobs[t], t) for t in ("fetch", "parse", "store")]
    assert handle.status().state == "running"
    run_worker_until(app, lambda: handle.status().finished)
    workflow = handle.status()
    assert workflow.state == "succeeded"
    assert workflow.name == "crawl"
    assert workflow.results == {
        "fetch": {"url": "https://example.com", "size": 19},
        "parse": 190,
        "store": "pages:190",
    }
    assert [s.status for s in workflow.steps] == ["succeeded"] * 3
    app.close()


def test_a_group_then_a_callback_with_all_results_in_order(dsn: str) -> None:
    app = make_app(dsn)
    handle = app.group(
        *(Step("square", {"n": n}) for n in (3, 1, 2)),
        then=Step("total"),
    )
    assert list(handle.jobs) == ["square", "square-2", "square-3", "total"]
    waited: list[skiplock.Workflow] = []
    waiter = threading.Thread(target=lambda: waited.append(handle.wait(timeout=20)))
    waiter.start()
    run_worker_until(app, lambda: handle.status().finished)
    waiter.join()
    (workflow,) = waited
    assert workflow.state == "succeeded"
    assert workflow.results["total"] == 14
    (args,) = (
        psycopg.connect(dsn)
        .execute("SELECT args FROM skiplock.all_jobs WHERE id = %s", (handle.jobs["total"],))
        .fetchone()
    )
    assert args == {"results": [9, 1, 4]}
    app.close()


def test_a_failed_step_fails_the_workflow(dsn: str) -> None:
    app = make_app(dsn)
    handle = app.workflow(
        Step("square", {"n": 2}, name="ok"),
        Step("boom", name="bad"),
        Step("total", name="sum", after=["ok", "bad"], results_arg="results"),
        Step(
            "total",
            name="anyway",
            after=["bad"],
            results_arg="results",
            on_dependency_failure="run",
            max_attempts=1,
        ),
    )
    run_worker_until(app, lambda: handle.status().finished)
    workflow = handle.wait(timeout=5)
    assert workflow.state == "failed"
    assert {s.step: s.status for s in workflow.steps} == {
        "ok": "succeeded",
        "bad": "failed",
        "sum": "failed",
        "anyway": "failed",  # ran with [None]: sum() of it raised
    }
    assert workflow.counts["failed"] == 3
    assert "NoneType" in (workflow.steps[3].last_error or "")
    app.close()


def test_workflow_joins_the_callers_transaction(dsn: str) -> None:
    app = make_app(dsn)
    with psycopg.connect(dsn) as conn:
        handle = app.chain(Step("square", {"n": 1}), Step("square", {"n": 2}), conn=conn)
        assert app.get_workflow(handle.id, conn=conn).counts["queued"] == 1
        conn.rollback()
    with pytest.raises(skiplock.WorkflowNotFound):
        app.get_workflow(handle.id)
    assert psycopg.connect(dsn).execute("SELECT count(*) FROM skiplock.all_jobs").fetchone() == (0,)
    app.close()


def test_bad_graphs_and_steps_are_refused(dsn: str) -> None:
    app = make_app(dsn)
    with pytest.raises(psycopg.errors.InvalidParameterValue, match="cycle"):
        app.workflow(Step("square", name="a", after=["b"]), Step("square", name="b", after=["a"]))
    with pytest.raises(skiplock.ConfigError, match="after"):
        app.chain(Step("square"), Step("square", after=["x"]))
    with pytest.raises(skiplock.ConfigError, match="depends_on"):
        Step("square", depends_on=[1])
    with pytest.raises(skiplock.ConfigError, match="at least one"):
        app.group()
    app.close()


def test_async_workflow_with_task_defaults(dsn: str) -> None:
    app = skiplock.App(dsn)

    @app.task(name="slow", queue="slow", priority=3)
    async def slow() -> None:
        return None

    async def body() -> skiplock.Workflow:
        handle = await app.workflow_async(
            *skiplock.chain(Step("slow"), Step("slow"), result_arg=None)
        )
        await app.aclose()
        with pytest.raises(TimeoutError):
            await handle.wait_async(timeout=0.1)
        with pytest.raises(skiplock.WorkflowNotFound):
            await app.wait_for_workflow_async(handle.id + 1, timeout=0.1)
        worker = Worker(app, poll_interval=0.05, queues=["slow"])
        runner = asyncio.create_task(worker.run())
        finished = await handle.wait_async(timeout=20)
        worker.stop()
        await runner
        return finished

    workflow = asyncio.run(body())
    assert [s.queue for s in workflow.steps] == ["slow", "slow"]
    assert workflow.state == "succeeded"
    app.close()


def test_chain_and_group_shapes_without_a_database() -> None:
    a, b, c = Step("t.a"), Step("t.b", results_arg="xs"), Step("t.a", name="last")
    linked = skiplock.chain(a, b, c, result_arg="value")
    assert [(s.name, s.after, s.result_arg, s.results_arg) for s in linked] == [
        ("t.a", (), None, None),
        ("t.b", ("t.a",), None, "xs"),  # its own results_arg kept: a list of one
        ("last", ("t.b",), "value", None),
    ]
    assert [s.after for s in skiplock.chain(a, b, result_arg=None)][1] == ("t.a",)
    assert skiplock.chain(a, b, result_arg=None)[1].result_arg is None

    members = skiplock.group(Step("t.x"), Step("t.x"), then=Step("t.sum", result_arg="one"))
    assert [(s.name, s.after) for s in members] == [
        ("t.x", ()),
        ("t.x-2", ()),
        ("t.sum", ("t.x", "t.x-2")),
    ]
    # the callback's own result_arg wins (the database then insists on one parent)
    assert (members[2].result_arg, members[2].results_arg) == ("one", None)
    assert [s.after for s in skiplock.group(Step("t.x"), Step("t.y"))] == [(), ()]
    with pytest.raises(skiplock.ConfigError, match="list of step names"):
        Step("t", after="a")  # type: ignore[arg-type]
