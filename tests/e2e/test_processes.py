"""Real `skiplock worker` processes and real signals: graceful SIGTERM, SIGKILL
mid-job, and four processes draining one queue with every execution in a ledger."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
from collections.abc import Callable, Iterator
from pathlib import Path

import psycopg
import pytest

import skiplock
from conftest import wait_until

pytestmark = pytest.mark.slow
TESTS = Path(__file__).resolve().parents[1]


@pytest.fixture
def ledger(conn: psycopg.Connection) -> psycopg.Connection:
    from ledger_app import LEDGER_DDL

    conn.execute(LEDGER_DDL)
    return conn


@pytest.fixture
def start_worker(dsn: str, tmp_path: Path) -> Iterator[Callable[..., subprocess.Popen[bytes]]]:
    procs: list[subprocess.Popen[bytes]] = []

    def start(*extra: str) -> subprocess.Popen[bytes]:
        env = {
            **os.environ,
            "SKIPLOCK_DSN": dsn,
            "PYTHONPATH": os.pathsep.join([str(TESTS / "e2e"), os.environ.get("PYTHONPATH", "")]),
        }
        # A file, not a pipe: a pipe nobody reads fills up and blocks the worker's logging.
        with (tmp_path / f"worker-{len(procs)}.log").open("wb") as log:
            proc = subprocess.Popen(
                [sys.executable, "-m", "skiplock", "worker", "--app", "ledger_app:app", *extra],
                stdout=log,
                stderr=subprocess.STDOUT,
                env=env,
            )
        procs.append(proc)
        return proc

    yield start
    for proc in procs:
        if proc.poll() is None:
            proc.kill()
        proc.wait(10)


def ledger_events(conn: psycopg.Connection, job_id: int) -> list[tuple[int, str, int]]:
    return conn.execute(
        "SELECT attempt, event, pid FROM ledger WHERE job_id = %s ORDER BY at", (job_id,)
    ).fetchall()


def status_of(conn: psycopg.Connection, job_id: int) -> str:
    return conn.execute("SELECT status FROM skiplock.all_jobs WHERE id = %s", (job_id,)).fetchone()[
        0
    ]


def test_sigterm_finishes_short_jobs_and_releases_long_ones(dsn, ledger, start_worker):
    app = skiplock.App(dsn)
    short = [app.enqueue("ledger.sleep", {"seconds": 1}) for _ in range(3)]
    long = app.enqueue("ledger.sleep", {"seconds": 120})
    proc = start_worker("--concurrency", "4", "--shutdown-grace", "3")
    wait_until(lambda: ledger.execute("SELECT count(*) FROM ledger").fetchone()[0] == 4, 30)

    proc.send_signal(signal.SIGTERM)
    assert proc.wait(30) == 0
    assert [status_of(ledger, i) for i in short] == ["succeeded"] * 3
    # The long job went back to the queue at the grace deadline, attempt not counted.
    row = ledger.execute(
        "SELECT status, attempt, worker_id FROM skiplock.all_jobs WHERE id = %s", (long,)
    ).fetchone()
    assert row == ("queued", 0, None)
    assert ledger.execute(
        "SELECT count(*) FROM skiplock.jobs WHERE state = 'running'"
    ).fetchone() == (0,)
    assert ledger.execute("SELECT count(*) FROM skiplock.workers").fetchone() == (0,)
    app.close()


def test_without_queue_options_a_worker_serves_every_queue_its_tasks_name(
    dsn, ledger, start_worker
):
    app = skiplock.App(dsn)
    side, plain = app.enqueue("ledger.side", queue="side"), app.enqueue("ledger.record")
    start_worker()
    wait_until(lambda: status_of(ledger, side) == status_of(ledger, plain) == "succeeded", 30)
    app.close()


def test_sigkill_mid_job_another_worker_finishes_it(dsn, ledger, start_worker):
    app = skiplock.App(dsn)
    job_id = app.enqueue("ledger.sleep", {"seconds": 2})
    first = start_worker("--lease", "2")
    wait_until(lambda: ledger_events(ledger, job_id), 30)

    first.send_signal(signal.SIGKILL)
    first.wait(10)
    second = start_worker("--lease", "2")
    wait_until(lambda: status_of(ledger, job_id) == "succeeded", 60)

    events = ledger_events(ledger, job_id)
    assert [(attempt, event) for attempt, event, _ in events] == [
        (1, "start"),
        (2, "start"),
        (2, "finish"),
    ]
    assert events[0][2] == first.pid and events[2][2] == second.pid
    (errors,) = ledger.execute(
        "SELECT errors FROM skiplock.all_jobs WHERE id = %s", (job_id,)
    ).fetchone()
    assert [e["type"] for e in errors] == ["LeaseExpired"]
    app.close()


def test_four_processes_drain_twenty_thousand_jobs_with_none_lost(dsn, ledger, start_worker):
    app = skiplock.App(dsn)
    ids = app.enqueue_many([{"task": "ledger.record"}] * 20_000)
    workers = [start_worker("--concurrency", "50") for _ in range(4)]

    def drained() -> bool:
        return ledger.execute("SELECT count(*) FROM skiplock.jobs").fetchone()[0] == 0

    wait_until(drained, 240, interval=0.5)
    for proc in workers:
        proc.send_signal(signal.SIGTERM)
    for proc in workers:
        assert proc.wait(30) == 0

    succeeded = ledger.execute(
        "SELECT count(*) FROM skiplock.job_history WHERE status = 'succeeded'"
    ).fetchone()[0]
    assert succeeded == len(ids)
    # Every job ran, and with no fault injected none ran twice.
    runs = ledger.execute(
        "SELECT count(*), count(DISTINCT job_id) FROM ledger WHERE event = 'finish'"
    ).fetchone()
    assert runs == (len(ids), len(ids))
    pids = {row[0] for row in ledger.execute("SELECT DISTINCT pid FROM ledger").fetchall()}
    assert pids <= {p.pid for p in workers} and len(pids) >= 2
    app.close()


def test_max_running_holds_across_worker_processes(dsn, ledger, start_worker):
    app = skiplock.App(dsn)
    app.set_queue_limits("default", max_running=2)
    ids = [app.enqueue("ledger.sleep", {"seconds": 0.3}) for _ in range(8)]
    workers = [start_worker("--concurrency", "5", "--poll-interval", "0.05") for _ in range(3)]
    wait_until(lambda: all(status_of(ledger, i) == "succeeded" for i in ids), 120, 0.2)
    for proc in workers:
        proc.send_signal(signal.SIGTERM)
    for proc in workers:
        assert proc.wait(30) == 0
    # Most handlers running at the same moment, from the ledger's start/finish times.
    events = ledger.execute(
        "SELECT at, CASE event WHEN 'start' THEN 1 ELSE -1 END FROM ledger ORDER BY at, event DESC"
    ).fetchall()
    running, most = 0, 0
    for _, step in events:
        running += step
        most = max(most, running)
    assert most == 2
    app.close()
