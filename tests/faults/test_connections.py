"""Scenarios 3, 4 and 8: worker connections that die, loudly or silently."""

from __future__ import annotations

import asyncio
import logging
import os
import time
import uuid
from datetime import timedelta
from pathlib import Path
from typing import Any

import psycopg
import pytest
from fault_fixtures import acked_fixture, ledger_fixture, pg_server_fixture, workers_fixture  # noqa: F401
from harness import (
    AckedIds,
    Figures,
    PgServer,
    Workers,
    backends,
    check_all,
    freeze_backend,
    hot_count,
    listen_backend,
    running_count,
    terminate_backend,
    thaw_backend,
    wait_for,
)
from psycopg_pool import AsyncConnectionPool

import skiplock
from skiplock import store
from skiplock.worker.completer import Completer
from skiplock.worker.executor import Outcome

pytestmark = pytest.mark.slow
FAST = {"lease": 3, "poll_interval": 0.2, "rescue_interval": 0.5, "schedule_interval": 0}


def enqueue(app: skiplock.App, acked: AckedIds, n: int, **options: Any) -> list[int]:
    ids = app.enqueue_many([{"task": "faults.record", **options}] * n)
    acked.add(ids)
    return ids


def test_3_terminated_claim_heartbeat_and_listen_connections(
    dsn: str, ledger: psycopg.Connection[Any], workers: Workers, acked: AckedIds
) -> None:
    app = skiplock.App(dsn)
    w = workers.start(concurrency=4, **FAST)
    enqueue(app, acked, 20)
    wait_for(lambda: hot_count(ledger) == 0)
    terminated = in_flight = 0
    # Each of the worker's connections in turn (the pool's, which claim, complete and
    # heartbeat, then the LISTEN one), with jobs arriving after each.
    for _ in range(4):
        pids = [pid for pid, _ in backends(ledger, w)]
        assert pids, "the worker has no connections"
        for pid in pids:
            in_flight += running_count(ledger)
            terminated += terminate_backend(ledger, pid)
            enqueue(app, acked, 10)
            # Pickup through whatever survives: the poll, a reconnected listener.
            wait_for(lambda: hot_count(ledger) == 0, 30)
    wait_for(lambda: listen_backend(ledger, w) is not None, 30)
    assert workers.alive(w)
    assert "listener reconnected" in workers.log(w)
    figures = check_all(
        ledger, acked.read(), rescue_interval=0.5, in_flight=in_flight, figures=Figures("3")
    )
    assert figures["statuses"] == {"succeeded": len(acked.read())}
    figures["backends_terminated"] = terminated
    figures.report()
    app.close()


def test_4_connection_dies_during_completion_before_and_after_commit(
    pg_server: PgServer, workers: Workers, tmp_path: Path
) -> None:
    dsn = pg_server.dsn
    workers.dsn = dsn
    conn = psycopg.connect(dsn, autocommit=True)
    acked = AckedIds(tmp_path / "acked-4")
    app = skiplock.App(dsn)
    # Long lease: no heartbeat commits get in the way of the completion we catch.
    w = workers.start(concurrency=2, lease=60, poll_interval=0.2, schedule_interval=0)

    # Before COMMIT: the completion blocks on a row lock we hold; its connection dies.
    (before,) = acked_ids = [app.enqueue("faults.sleep", {"seconds": 0.5})]
    acked.add(acked_ids)
    wait_for(lambda: running_count(conn) == 1)
    with psycopg.connect(dsn) as holder:
        holder.execute("SELECT 1 FROM skiplock.jobs WHERE id = %s FOR UPDATE", (before,))
        pid = wait_for(lambda: _backend_waiting(conn, w, "Lock"))
        assert terminate_backend(conn, pid)
    wait_for(lambda: _status(conn, before) == "succeeded", 30)

    # After COMMIT: commits wait for a synchronous standby that does not exist, so the
    # completion is committed locally when its connection dies, and the worker never
    # hears of it. The retry must change nothing.
    after = app.enqueue("faults.sleep", {"seconds": 1.5})
    acked.add([after])
    wait_for(lambda: running_count(conn) == 1)
    conn.execute("ALTER SYSTEM SET synchronous_standby_names = 'nobody'")
    conn.execute("SELECT pg_reload_conf()")
    conn.execute("SET synchronous_commit = local")  # our own statements do not wait
    try:
        pid = wait_for(lambda: _backend_waiting(conn, w, "SyncRep"), 30)
        assert terminate_backend(conn, pid)
    finally:
        conn.execute("ALTER SYSTEM RESET synchronous_standby_names")
        conn.execute("SELECT pg_reload_conf()")
    wait_for(lambda: _status(conn, after) == "succeeded", 30)
    # The worker is alive and goes on working; the replayed completion wrote nothing.
    more = app.enqueue("faults.record")
    acked.add([more])
    wait_for(lambda: _status(conn, more) == "succeeded", 30)
    assert workers.alive(w)
    # The replay found its own committed finish: not a lost lease, no warning. (The job
    # reads succeeded before the worker's retry says so: wait for the line.)
    replayed = f"job {after}: finish already recorded as succeeded (replayed after its commit)"
    wait_for(lambda: replayed in workers.log(w), 30)
    log = workers.log(w)
    assert "writing 1 outcomes failed" in log
    assert f"job {after} faults.sleep lost" not in log
    (result,) = conn.execute(
        "SELECT result FROM skiplock.job_history WHERE id = %s", (after,)
    ).fetchone() or (None,)
    assert result == workers.pid(w)
    figures = check_all(conn, acked.read(), rescue_interval=5, in_flight=0, figures=Figures("4"))
    assert figures["statuses"] == {"succeeded": 3}
    figures.report()
    app.close()
    conn.close()


def test_4_replayed_finish_is_told_from_a_lost_lease(
    dsn: str, conn: psycopg.Connection[Any], caplog: pytest.LogCaptureFixture
) -> None:
    """The completer asks the database why a finish changed nothing: its own finish that
    committed before the connection died is reported with the status it recorded (at
    INFO); a lease that was really lost (rescued) stays "lost"."""
    worker_id = uuid.uuid4()
    app = skiplock.App(dsn)
    ids = app.enqueue_many([{"task": "t", "max_attempts": 3}] * 4)
    claim = store.claim_jobs(worker_id, ["default"], 4, timedelta(seconds=30))
    jobs = {j.id: j for j in claim.run(conn)}
    done, failed, rescued, fresh = (jobs[i] for i in ids)
    # What the first write committed before its connection died:
    store.complete_jobs(worker_id, [done.id], [done.attempt], ["1"]).run(conn)
    error = '{"error": "x", "type": "X"}'
    store.fail_jobs(worker_id, [failed.id], [failed.attempt], [error]).run(conn)
    # A real loss: the lease lapsed and the rescue retried the job.
    conn.execute(
        "UPDATE skiplock.jobs SET lease_expires_at = now() - interval '1 s' WHERE id = %s",
        (rescued.id,),
    )
    assert store.rescue_expired_jobs().run(conn) == {rescued.id: "retrying"}

    written: list[tuple[int, str]] = []

    async def replay() -> None:
        async def on_written(batch: list[tuple[Outcome, str]]) -> None:
            written.extend((o.job.id, status) for o, status in batch)

        async with AsyncConnectionPool(dsn, min_size=1, kwargs={"autocommit": True}) as pool:
            completer = Completer(
                pool, worker_id, on_written, lock=asyncio.Lock(), on_drained=lambda: None
            )
            for job, kind, payload in (
                (done, "succeeded", "1"),
                (failed, "failed", error),
                (rescued, "succeeded", "2"),
                (fresh, "succeeded", "3"),
            ):
                ctx = skiplock.JobContext(job, worker_id, lambda *args: None)
                completer.add(Outcome(job, ctx, kind, payload, 0.0))  # type: ignore[arg-type]
            writer = asyncio.create_task(completer.run())
            await completer.flush()
            writer.cancel()

    with caplog.at_level(logging.INFO, logger="skiplock.worker"):
        asyncio.run(replay())
    assert dict(written) == {
        done.id: "succeeded",
        failed.id: "retrying",
        rescued.id: "lost",
        fresh.id: "succeeded",
    }
    replays = [r for r in caplog.records if "already recorded" in r.getMessage()]
    assert sorted(r.getMessage() for r in replays) == sorted(
        f"job {job_id}: finish already recorded as {status} (replayed after its commit)"
        for job_id, status in ((done.id, "succeeded"), (failed.id, "retrying"))
    )
    assert {r.levelno for r in replays} == {logging.INFO}
    app.close()


def _backend_waiting(conn: psycopg.Connection[Any], worker: str, wait_type: str) -> int | None:
    row = conn.execute(
        "SELECT pid FROM pg_stat_activity WHERE application_name = %s"
        " AND (wait_event_type = %s OR wait_event = %s)",
        (f"faults-{worker}", wait_type, wait_type),
    ).fetchone()
    return int(row[0]) if row else None


def _status(conn: psycopg.Connection[Any], job_id: int) -> str | None:
    row = conn.execute("SELECT status FROM skiplock.all_jobs WHERE id = %s", (job_id,)).fetchone()
    return str(row[0]) if row else None


def _cpu_seconds(pid: int) -> float:
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def test_8_listen_connection_dies_silently(
    dsn: str, ledger: psycopg.Connection[Any], workers: Workers, acked: AckedIds
) -> None:
    app = skiplock.App(dsn)
    w = workers.start(
        concurrency=2, poll_interval=1.0, probe_interval=1.0, rescue_interval=1, lease=5
    )
    frozen = wait_for(lambda: listen_backend(ledger, w), 30)
    freeze_backend(frozen)
    try:
        cpu_before, wall_before = _cpu_seconds(workers.pid(w)), time.monotonic()
        # While the listener is deaf, jobs are still picked up by the poll.
        job = enqueue(app, acked, 1)[0]
        wait_for(lambda: _status(ledger, job) == "succeeded", 30)
        # The probe notices and the listener comes back on a new connection.
        fresh = wait_for(lambda: listen_backend(ledger, w, besides=frozen), 30)
        cpu = _cpu_seconds(workers.pid(w)) - cpu_before
        wall = time.monotonic() - wall_before
    finally:
        thaw_backend(frozen)
        terminate_backend(ledger, frozen)
    # The worker says so once its new LISTEN has succeeded, a moment after the connection
    # shows up: wait for the line rather than read the log once.
    wait_for(lambda: "listener reconnected" in workers.log(w), 30)
    assert "listener missed its probe" in workers.log(w)
    # No busy loop while the listener was deaf: the worker mostly slept.
    assert cpu < 0.5 * wall, f"worker used {cpu:.2f} s CPU in {wall:.2f} s"
    assert fresh != frozen
    job = enqueue(app, acked, 1)[0]
    wait_for(lambda: _status(ledger, job) == "succeeded", 30)
    figures = check_all(ledger, acked.read(), rescue_interval=1, in_flight=0, figures=Figures("8"))
    figures["worker_cpu_share_while_deaf"] = round(cpu / wall, 3)
    figures["deaf_seconds"] = round(wall, 2)
    figures.report()
    app.close()
