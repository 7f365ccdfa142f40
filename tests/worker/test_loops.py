"""Every long-lived loop of the worker survives any exception: it logs it at ERROR with
the traceback (rate-limited), backs off and goes on; a loop that running jobs depend on
failing for longer than a lease makes the worker unhealthy and stop claiming."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import threading
from collections.abc import Callable, Iterator
from typing import Any

import psycopg
import pytest
from starlette.testclient import TestClient
from test_worker import run_worker

import skiplock
from conftest import async_wait_until
from skiplock import store
from skiplock.api import create_app
from skiplock.worker import Worker
from skiplock.worker.loops import LoopHealth
from skiplock.worker.maintenance import Maintenance


@contextlib.contextmanager
def renamed(dsn: str, *functions: str) -> Iterator[None]:
    """Rename skiplock functions away (a schema change half-applied) until the block ends:
    calls fail with undefined_function, an error that is not a lost connection."""
    with psycopg.connect(dsn, autocommit=True) as c:
        oids = [
            oid
            for name in functions
            for (oid,) in c.execute(
                "SELECT oid FROM pg_proc"
                " WHERE pronamespace = 'skiplock'::regnamespace AND proname = %s",
                (name,),
            ).fetchall()
        ]
        assert oids, functions

        def rename(suffix_from: str, suffix_to: str) -> None:
            for oid in oids:
                (name,) = c.execute("SELECT proname FROM pg_proc WHERE oid = %s", (oid,)).fetchone()
                base = name.removesuffix(suffix_from)
                (signature,) = c.execute("SELECT %s::regprocedure::text", (oid,)).fetchone()
                c.execute(f"ALTER FUNCTION {signature} RENAME TO {base}{suffix_to}")

        rename("", "_away")
        try:
            yield
        finally:
            rename("_away", "")


class Flaky:
    """Wraps a callable so that it raises while `broken` is set."""

    def __init__(self, target: Callable[..., Any]) -> None:
        self.target = target
        self.broken = True

    def __call__(self, *args: Any, **kwargs: Any) -> Any:
        if self.broken:
            raise RuntimeError("injected fault")
        return self.target(*args, **kwargs)


def loop_errors(caplog: pytest.LogCaptureFixture, what: str) -> list[logging.LogRecord]:
    return [
        r
        for r in caplog.records
        if r.levelno == logging.ERROR and r.getMessage().startswith(what) and r.exc_info
    ]


def recovered(caplog: pytest.LogCaptureFixture, loop: str) -> bool:
    return any(r.getMessage().startswith(f"{loop} recovered after") for r in caplog.records)


# loop -> (how it is broken, the ERROR line's start)
FAULTS = {
    "claim": ("claim_jobs", "claim failed"),
    "completer": ("complete_jobs", "writing 1 outcomes failed"),
    "heartbeat": ("heartbeat_jobs", "heartbeat failed"),
    "maintenance": ("rescue_expired_jobs", "maintenance failed"),
    "scheduler": ("lock_due_schedules", "scheduler failed"),
    "progress": ("set_job_progress", "progress of job"),
    "listener": ("dispatch", "listener connection lost"),
    "probe": ("probe_once", "probe failed"),
}


@pytest.mark.parametrize("loop", sorted(FAULTS))
def test_each_loop_survives_a_non_connection_error(
    loop: str, dsn: str, caplog: pytest.LogCaptureFixture
) -> None:
    app = skiplock.App(dsn)
    reported = threading.Event()
    go_on = threading.Event()

    @app.task(name="work")
    def work(ctx: skiplock.JobContext, report: bool = False) -> str:
        while report and not go_on.is_set():
            ctx.progress(0.5, "working")
            reported.set()
            go_on.wait(0.05)
        return "done"

    broken, what = FAULTS[loop]

    def status(job_id: int) -> str | None:
        with psycopg.connect(dsn) as c:
            row = c.execute(
                "SELECT status FROM skiplock.all_jobs WHERE id = %s", (job_id,)
            ).fetchone()
        return row[0] if row else None

    def progress(job_id: int) -> Any:
        with psycopg.connect(dsn) as c:
            return c.execute(
                "SELECT progress FROM skiplock.jobs WHERE id = %s", (job_id,)
            ).fetchone()

    async def body(worker: Worker) -> None:
        assert worker.listener is not None
        await async_wait_until(worker.listener.connected.is_set, timeout=20)
        if broken in ("dispatch", "probe_once"):
            owner = worker.listener
            attribute = "_dispatch" if broken == "dispatch" else broken
            fault = Flaky(getattr(owner, attribute))
            setattr(owner, attribute, fault)
            job_id = app.enqueue("work")  # its NOTIFY meets the broken dispatch
            await async_wait_until(lambda: loop_errors(caplog, what), timeout=20)
            fault.broken = False
        else:
            with renamed(dsn, broken):
                job_id = app.enqueue("work", {"report": loop == "progress"})
                await async_wait_until(lambda: len(loop_errors(caplog, what)) >= 1, timeout=20)
                if loop == "progress":
                    # nothing retries a progress write: the next report carries the value
                    assert progress(job_id) == (None,)
            if loop == "progress":
                await async_wait_until(lambda: progress(job_id) != (None,), timeout=20)
                go_on.set()
        await async_wait_until(lambda: status(job_id) == "succeeded", timeout=20)
        if loop not in ("progress", "listener"):
            await async_wait_until(lambda: recovered(caplog, loop), timeout=20)
        if loop == "listener":
            await async_wait_until(worker.listener.connected.is_set, timeout=20)
        loops = {t.get_name(): t for t in asyncio.all_tasks()}
        background = ("completer", "heartbeat", "leases", "maintenance", "scheduler", "listener")
        for name in (*background, "probe"):
            assert not loops[name].done(), name
        assert worker.loops.stalled() == []
        go_on.set()

    with caplog.at_level(logging.INFO, logger="skiplock.worker"):
        run_worker(
            app, body, lease=3, rescue_interval=0.1, schedule_interval=0.1, probe_interval=0.1
        )
    app.close()
    assert loop_errors(caplog, what)[0].exc_info is not None


def test_the_worker_stops_when_a_loop_swallowed_the_cancel(
    dsn: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A loop's step returns as if never cancelled (asyncio.wait_for on Python 3.11, in
    psycopg_pool's wait for a free connection, drops a cancel that meets the connection
    arriving): the worker cancels it again and stops."""
    app = skiplock.App(dsn)
    inside = asyncio.Event()
    swallowed: list[str] = []

    async def swallows_the_first_cancel(self: Maintenance) -> list[int]:
        if not swallowed:
            inside.set()
            try:
                await asyncio.sleep(3600)
            except asyncio.CancelledError:
                swallowed.append("cancel")  # and returns, as wait_for does
        return []

    monkeypatch.setattr(Maintenance, "schedule_once", swallows_the_first_cancel)

    async def body(worker: Worker) -> None:
        await asyncio.wait_for(inside.wait(), 20)

    run_worker(app, body, schedule_interval=0.1)
    app.close()
    assert swallowed == ["cancel"]


def test_a_stalled_completer_makes_the_worker_unhealthy_and_stop_claiming(
    dsn: str, conn: psycopg.Connection, caplog: pytest.LogCaptureFixture
) -> None:
    app = skiplock.App(dsn)

    @app.task(name="work")
    def work() -> str:
        return "done"

    def status(job_id: int) -> str | None:
        row = conn.execute(
            "SELECT status FROM skiplock.all_jobs WHERE id = %s", (job_id,)
        ).fetchone()
        return row[0] if row else None

    def reported() -> dict[str, Any]:
        (row,) = store.list_workers().run(conn)
        return row

    async def body(worker: Worker) -> None:
        with renamed(dsn, "complete_jobs"):
            first = app.enqueue("work")
            await async_wait_until(lambda: worker.loops.stalled() == ["completer"], timeout=20)
            await async_wait_until(lambda: reported()["stalled_loops"] == ["completer"], 20)
            assert not reported()["healthy"] and reported()["alive"] and not worker.healthy
            second = app.enqueue("work")
            # Another beat or two: the worker claims nothing while it cannot record outcomes.
            beats = reported()["last_heartbeat_at"]
            await async_wait_until(lambda: reported()["last_heartbeat_at"] > beats, 20)
            assert status(second) == "queued"
            with TestClient(create_app(skiplock.App(dsn))) as client:
                (seen,) = client.get("/api/v1/workers").json()["workers"]
                assert seen["healthy"] is False and seen["stalled_loops"] == ["completer"]
                metrics = client.get("/metrics").text
            assert 'skiplock_worker_stalled_loops{loop="completer"} 1.0' in metrics
            assert "skiplock_workers_unhealthy 1.0" in metrics
        await async_wait_until(lambda: status(first) == status(second) == "succeeded", 20)
        await async_wait_until(lambda: reported()["healthy"], 20)
        assert reported()["stalled_loops"] == []

    with caplog.at_level(logging.INFO, logger="skiplock.worker"):
        run_worker(app, body, lease=1, rescue_interval=0.1)
    app.close()
    messages = [r.getMessage() for r in caplog.records]
    assert any("unhealthy: completer failing" in m for m in messages)
    assert any("healthy again: claiming jobs" in m for m in messages)


def test_failing_heartbeats_stop_the_handler_before_the_job_can_run_twice(
    dsn: str, conn: psycopg.Connection, caplog: pytest.LogCaptureFixture
) -> None:
    """Heartbeats and rescues fail (their functions renamed) for longer than the lease:
    the handler is stopped once its lease may have lapsed, the worker claims nothing and
    shows unhealthy (no heartbeat within the lease); afterwards the job runs again, never
    two attempts at once."""
    app = skiplock.App(dsn)
    events: list[tuple[str, int, int]] = []  # (start | end, job id, attempt)
    lock = threading.Lock()

    @app.task(name="long")
    async def long(ctx: skiplock.JobContext, seconds: float) -> None:
        with lock:
            events.append(("start", ctx.id, ctx.attempt))
        try:
            await asyncio.sleep(seconds)
        finally:
            with lock:
                events.append(("end", ctx.id, ctx.attempt))

    def reported() -> dict[str, Any]:
        (row,) = store.list_workers().run(conn)
        return row

    job_id = other = 0

    async def body(worker: Worker) -> None:
        nonlocal job_id, other
        job_id = app.enqueue("long", {"seconds": 600})
        await async_wait_until(lambda: ("start", job_id, 1) in events, 20)
        with renamed(dsn, "heartbeat_jobs", "rescue_expired_jobs"):
            # the handler stops once its lease may have ended without a renewal
            await async_wait_until(lambda: ("end", job_id, 1) in events, 20)
            await async_wait_until(lambda: worker.loops.stalled() == ["heartbeat", "maintenance"])
            await async_wait_until(lambda: not reported()["healthy"], 20)
            assert reported()["alive"]
            other = app.enqueue("long", {"seconds": 0})
            await asyncio.sleep(0.5)  # a few poll intervals: nothing is claimed
            (state,) = conn.execute(
                "SELECT state FROM skiplock.jobs WHERE id = %s", (other,)
            ).fetchone()
            assert state == "queued"
        # The rescue retries the job (the attempt counts); both jobs run.
        await async_wait_until(lambda: ("start", job_id, 2) in events, 30)
        await async_wait_until(lambda: ("end", other, 1) in events, 30)
        await async_wait_until(lambda: reported()["healthy"], 20)

    with caplog.at_level(logging.INFO, logger="skiplock.worker"):
        run_worker(app, body, lease=2, rescue_interval=0.1, shutdown_grace=0)
    app.close()
    assert events.index(("end", job_id, 1)) < events.index(("start", job_id, 2))
    assert any("lease lost" in r.getMessage() for r in caplog.records)


# ---- LoopHealth alone ------------------------------------------------------------------


class Clock:
    def __init__(self) -> None:
        self.now = 100.0

    def __call__(self) -> float:
        return self.now


def test_errors_are_logged_with_traceback_at_most_once_a_minute(
    caplog: pytest.LogCaptureFixture,
) -> None:
    clock = Clock()
    health = LoopHealth(stall_after=30, clock=clock)
    with caplog.at_level(logging.INFO, logger="skiplock.worker"):
        for _ in range(6):
            health.failed("heartbeat", ValueError("boom"))
            clock.now += 10
        health.failed("heartbeat", ValueError("boom"))  # 60 s after the first report
    errors = [r for r in caplog.records if r.levelno == logging.ERROR]
    assert [r.getMessage().split(";")[0] for r in errors] == [
        "heartbeat failed (ValueError: boom)",
        "heartbeat failed (ValueError: boom)",
    ]
    assert all(r.exc_info for r in errors)
    assert errors[1].getMessage().endswith("(5 more since the last report)")


def test_a_lost_connection_is_one_warning_line(caplog: pytest.LogCaptureFixture) -> None:
    health = LoopHealth(stall_after=30)
    with caplog.at_level(logging.INFO, logger="skiplock.worker"):
        health.failed("claim", psycopg.OperationalError("server closed the connection"))
    (record,) = caplog.records
    assert record.levelno == logging.WARNING and not record.exc_info
    assert record.getMessage().startswith("claim failed (server closed the connection)")


def test_a_lost_prepared_statement_names_the_pooler_setting(
    caplog: pytest.LogCaptureFixture,
) -> None:
    health = LoopHealth(stall_after=30)
    with caplog.at_level(logging.INFO, logger="skiplock.worker"):
        health.failed(
            "claim",
            psycopg.errors.DuplicatePreparedStatement('prepared statement "_pg3_0" already exists'),
        )
    (record,) = caplog.records
    assert "set SKIPLOCK_POOLER=transaction" in record.getMessage()


def test_a_loop_stalls_after_failing_longer_than_the_lease_and_recovers() -> None:
    clock = Clock()
    health = LoopHealth(stall_after=30, clock=clock)
    health.failed("completer", RuntimeError("x"))
    health.failed("progress", RuntimeError("x"), retried=False)
    clock.now += 30
    assert health.stalled() == []
    health.failed("completer", RuntimeError("x"))
    clock.now += 0.5
    # progress writes are not retried: a failed one never stalls the worker
    assert health.stalled() == ["completer"]
    health.succeeded("completer")
    assert health.stalled() == []
    health.failed("completer", RuntimeError("x"))
    clock.now += 31
    assert health.stalled() == ["completer"]
