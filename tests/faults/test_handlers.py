"""Scenarios 11-14: unknown tasks, handlers that hang, poison jobs, cancellation."""

from __future__ import annotations

import asyncio
import threading
import time
from typing import Any

import psycopg
import pytest
from click.testing import CliRunner
from fault_fixtures import acked_fixture, ledger_fixture, workers_fixture  # noqa: F401
from harness import (
    AckedIds,
    Figures,
    Workers,
    check_all,
    freeze_backend,
    hot_count,
    listen_backend,
    terminate_backend,
    thaw_backend,
    wait_for,
)
from starlette.testclient import TestClient

import skiplock
from skiplock.api import create_app
from skiplock.cli import main
from skiplock.worker import Worker

pytestmark = pytest.mark.slow
FAST = {"lease": 2, "poll_interval": 0.2, "rescue_interval": 0.5, "schedule_interval": 0}


def status(conn: psycopg.Connection[Any], job_id: int) -> str | None:
    row = conn.execute("SELECT status FROM skiplock.all_jobs WHERE id = %s", (job_id,)).fetchone()
    return str(row[0]) if row else None


def claims(conn: psycopg.Connection[Any], job_id: int) -> int:
    row = conn.execute(
        "SELECT count(*) FROM state_log WHERE job_id = %s AND new_state = 'running'", (job_id,)
    ).fetchone()
    return int(row[0]) if row else 0


def errors(conn: psycopg.Connection[Any], job_id: int) -> list[str]:
    row = conn.execute("SELECT errors FROM skiplock.all_jobs WHERE id = %s", (job_id,)).fetchone()
    return [e.get("type", "") for e in row[0]] if row else []


def test_11_unknown_task_is_handed_back_without_spending_its_attempts(
    dsn: str, ledger: psycopg.Connection[Any], workers: Workers, acked: AckedIds
) -> None:
    app = skiplock.App(dsn)
    unknown = app.enqueue("faults.nobody_knows_me", max_attempts=3)
    others = app.enqueue_many([{"task": "faults.record"}] * 50)
    acked.add([unknown, *others])
    w = workers.start(concurrency=2, unknown_task_delay=0.2, **FAST)
    wait_for(lambda: hot_count(ledger) == 1, 30)
    # Claimed again once per delay, more often than its max_attempts, never spending one:
    # it waits for a worker that serves it. The others were not held up.
    wait_for(lambda: claims(ledger, unknown) > 3, 30)
    assert errors(ledger, unknown) == []
    assert status(ledger, unknown) in ("scheduled", "queued", "running")
    (most,) = ledger.execute(
        "SELECT max(new_attempt) FROM state_log WHERE job_id = %s", (unknown,)
    ).fetchone()
    assert most == 1
    assert all(status(ledger, i) == "succeeded" for i in others)
    assert workers.alive(w)
    assert "no handler for it in this worker" in workers.log(w)
    figures = check_all(
        ledger, acked.read(), rescue_interval=0.5, in_flight=0, figures=Figures("11")
    )
    figures["unknown_task_claims"] = claims(ledger, unknown)
    figures.report()
    app.close()


def test_12a_async_handler_that_never_returns_times_out_and_frees_its_slot(
    dsn: str, ledger: psycopg.Connection[Any], workers: Workers, acked: AckedIds
) -> None:
    app = skiplock.App(dsn)
    hung = app.enqueue("faults.hang_async", timeout=1, max_attempts=2)
    after = app.enqueue("faults.record")
    acked.add([hung, after])
    workers.start(concurrency=1, **FAST)  # one slot: `after` runs only if it is freed
    wait_for(lambda: status(ledger, hung) == "failed", 30)
    wait_for(lambda: status(ledger, after) == "succeeded", 30)
    assert errors(ledger, hung) == ["TimeoutError", "TimeoutError"]
    check_all(
        ledger, acked.read(), rescue_interval=0.5, in_flight=0, figures=Figures("12a")
    ).report()
    app.close()


def test_12b_sync_handler_stuck_in_its_thread(
    dsn: str, ledger: psycopg.Connection[Any], workers: Workers, acked: AckedIds
) -> None:
    app = skiplock.App(dsn)
    hung = app.enqueue("faults.hang_thread", {"seconds": 60}, timeout=1, max_attempts=1)
    acked.add([hung])
    w1 = workers.start(concurrency=1, **FAST)
    wait_for(lambda: status(ledger, hung) == "failed", 30)
    wait_for(lambda: "cannot be stopped" in workers.log(w1), 30)
    # ... and says so in its workers row, written with its heartbeat
    unhealthy = "SELECT stuck_jobs, healthy FROM skiplock.worker_stats WHERE pid = %s"
    wait_for(lambda: ledger.execute(unhealthy, (workers.pid(w1),)).fetchone() == (1, False), 30)
    # w1's only thread is stuck: it must not claim jobs it cannot run (and then hold
    # them, renewing their leases). A healthy worker takes them.
    after = app.enqueue_many([{"task": "faults.sync_sleep", "args": {"seconds": 0.1}}] * 3)
    acked.add(after)
    workers.start(concurrency=1, **FAST)
    wait_for(lambda: all(status(ledger, i) == "succeeded" for i in after), 30)
    assert errors(ledger, hung) == ["TimeoutError"]
    pids = ledger.execute(
        "SELECT DISTINCT pid FROM ledger WHERE job_id = ANY(%s)", (after,)
    ).fetchall()
    assert pids == [(workers.pid("w2"),)]
    check_all(
        ledger, acked.read(), rescue_interval=0.5, in_flight=0, figures=Figures("12b")
    ).report()
    app.close()


def test_12c_cpu_loop_holding_the_event_loop(
    dsn: str, ledger: psycopg.Connection[Any], workers: Workers, acked: AckedIds
) -> None:
    app = skiplock.App(dsn)
    hog = app.enqueue("faults.cpu_loop", {"seconds": 8}, timeout=1, max_attempts=1)
    acked.add([hog])
    w1 = workers.start(concurrency=1, **FAST)
    wait_for(lambda: claims(ledger, hog) == 1, 30)
    w2 = workers.start(concurrency=2, **FAST)
    others = app.enqueue_many([{"task": "faults.record"}] * 20)
    acked.add(others)
    # w1 cannot renew the lease while its loop is held: the job is rescued elsewhere.
    wait_for(lambda: status(ledger, hog) == "failed", 30)
    wait_for(lambda: all(status(ledger, i) == "succeeded" for i in others), 30)
    assert errors(ledger, hog) == ["LeaseExpired"]
    # Once the loop is free again, w1 reports what happened and goes on working.
    wait_for(lambda: "event loop was blocked" in workers.log(w1), 30)
    assert workers.alive(w1) and workers.alive(w2)
    check_all(
        ledger, acked.read(), rescue_interval=0.5, in_flight=1, figures=Figures("12c")
    ).report()
    app.close()


@pytest.mark.parametrize(
    ("task", "prefix"),
    [("faults.exit", ()), ("faults.eat_memory", ("prlimit", f"--as={1536 * 2**20}", "--"))],
    ids=["os_exit", "memory_exhausted"],
)
def test_13_poison_job_reaches_the_dead_letters(
    dsn: str,
    ledger: psycopg.Connection[Any],
    workers: Workers,
    acked: AckedIds,
    task: str,
    prefix: tuple[str, ...],
) -> None:
    app = skiplock.App(dsn)
    poison = app.enqueue(task, max_attempts=3)
    others = app.enqueue_many([{"task": "faults.sleep", "args": {"seconds": 0.05}}] * 40)
    acked.add([poison, *others])
    # A supervisor: whenever the worker dies, start another (as systemd or k8s would).
    current = workers.start(concurrency=4, prefix=prefix, **FAST)
    crashes = 0
    # The jobs running when a worker died, the poison job among them: each may run again
    # (I3 counts distinct jobs, so a job in flight at two crashes counts once).
    in_flight: set[int] = set()

    def supervise() -> bool:
        """Restart a dead worker; True once the poison job is dead and the rest ran."""
        nonlocal current, crashes
        if not workers.alive(current):
            crashes += 1
            running = ledger.execute("SELECT id FROM skiplock.jobs WHERE state = 'running'")
            in_flight.update(row[0] for row in running)
            current = workers.start(concurrency=4, prefix=prefix, **FAST)
        return status(ledger, poison) == "failed" and not hot_count(ledger)

    wait_for(supervise, 120)
    assert claims(ledger, poison) == 3
    assert all(status(ledger, i) == "succeeded" for i in others)
    figures = check_all(
        ledger,
        acked.read(),
        rescue_interval=0.5,
        in_flight=len(in_flight),
        figures=Figures(f"13-{task}"),
    )
    figures["worker_crashes"] = crashes
    figures["poison_errors"] = errors(ledger, poison)
    figures.report()
    app.close()


@pytest.mark.parametrize("listener", ["alive", "frozen"])
def test_14_cancel_running_jobs(
    dsn: str, ledger: psycopg.Connection[Any], workers: Workers, acked: AckedIds, listener: str
) -> None:
    app = skiplock.App(dsn)
    cooperative = app.enqueue("faults.sleep", {"seconds": 60})
    sync = app.enqueue("faults.sync_sleep", {"seconds": 60})
    acked.add([cooperative, sync])
    # Lease 3 s: a heartbeat every second carries the request when the listener is deaf.
    w = workers.start(concurrency=2, **{**FAST, "lease": 3, "probe_interval": 600})
    wait_for(lambda: claims(ledger, cooperative) == claims(ledger, sync) == 1, 30)
    frozen = None
    if listener == "frozen":
        frozen = wait_for(lambda: listen_backend(ledger, w), 30)
        freeze_backend(frozen)
    try:
        assert app.cancel_job(cooperative) == "running"
        assert app.cancel_job(sync) == "running"
        wait_for(lambda: status(ledger, cooperative) == status(ledger, sync) == "cancelled", 30)
        # Past several leases and rescue rounds: neither ever runs again.
        time.sleep(4)
    finally:
        if frozen is not None:
            thaw_backend(frozen)
            terminate_backend(ledger, frozen)
    starts = ledger.execute(
        "SELECT job_id, count(*) FROM ledger WHERE event = 'start' GROUP BY 1 ORDER BY 1"
    ).fetchall()
    assert starts == [(cooperative, 1), (sync, 1)]
    assert status(ledger, cooperative) == status(ledger, sync) == "cancelled"
    assert workers.alive(w)
    check_all(
        ledger, acked.read(), rescue_interval=0.5, in_flight=0, figures=Figures(f"14-{listener}")
    ).report()
    app.close()


def test_12d_a_stuck_handler_thread_shows_in_the_workers_row(dsn: str) -> None:
    """Worker health is visible outside its log: the heartbeat writes how many handler
    threads it cannot stop; the view, the API, /metrics and `skiplock workers` show it."""
    app = skiplock.App(dsn)
    release = threading.Event()

    @app.task(name="stuck", timeout=1, max_attempts=1)
    def stuck(ctx: skiplock.JobContext) -> None:
        release.wait(120)  # ignores ctx.cancelled: Python cannot stop this thread

    job = app.enqueue("stuck")
    worker = Worker(app, concurrency=2, lease=3, poll_interval=0.2, schedule_interval=0)
    loop = asyncio.new_event_loop()
    runner = threading.Thread(target=loop.run_until_complete, args=(worker.run(),))
    runner.start()

    def row() -> tuple[int, bool]:
        with psycopg.connect(dsn) as conn:
            found = conn.execute(
                "SELECT stuck_jobs, healthy FROM skiplock.worker_stats WHERE id = %s",
                (worker.id,),
            ).fetchone()
        return (found[0], found[1]) if found else (-1, False)

    try:
        wait_for(lambda: row() == (1, False), 30)
        assert app.get_job(job).status == "failed"  # the attempt timed out
        with TestClient(create_app(app)) as client:
            (listed,) = client.get("/api/v1/workers").json()["workers"]
            assert (listed["stuck_jobs"], listed["healthy"]) == (1, False)
            assert "skiplock_workers_unhealthy 1.0" in client.get("/metrics").text
            assert client.get("/api/v1/metrics").json()["workers"]["unhealthy"] == 1
        shown = CliRunner().invoke(main, ["--dsn", dsn, "workers"])
        assert shown.exit_code == 0, shown.output
        assert "unhealthy" in shown.output.splitlines()[1]
        release.set()  # the thread returns: the next heartbeat says healthy again
        wait_for(lambda: row() == (0, True), 30)
        with TestClient(create_app(app)) as client:
            assert "skiplock_workers_unhealthy 0.0" in client.get("/metrics").text
    finally:
        release.set()
        loop.call_soon_threadsafe(worker.stop)
        runner.join(30)
        loop.close()
        app.close()
