"""The chaos tier (`pytest -m chaos`): long scenarios with real worker processes under
load. Sizes follow SKIPLOCK_FAULT_SIZE (ci by default; full for docs/reliability.md)."""

from __future__ import annotations

import random
import signal
import time
from typing import Any

import psycopg
import pytest
from fault_fixtures import acked_fixture, ledger_fixture, workers_fixture  # noqa: F401
from harness import (
    AckedIds,
    Figures,
    Workers,
    check_all,
    hot_count,
    running_count,
    sized,
    wait_for,
)

import skiplock

pytestmark = [pytest.mark.chaos, pytest.mark.slow, pytest.mark.timeout(900)]


def owned_running(conn: psycopg.Connection[Any], pid: int) -> int:
    row = conn.execute(
        "SELECT count(*) FROM skiplock.jobs j JOIN skiplock.workers w ON w.id = j.worker_id"
        " WHERE j.state = 'running' AND w.pid = %s",
        (pid,),
    ).fetchone()
    return int(row[0]) if row else 0


def test_1_sigkill_random_workers_during_a_run(
    dsn: str, ledger: psycopg.Connection[Any], workers: Workers, acked: AckedIds
) -> None:
    settings = {"concurrency": 20, "lease": 5, "rescue_interval": 0.5, "schedule_interval": 0}
    total = int(sized(10_000, 10_000))
    app = skiplock.App(dsn)
    names = [workers.start(**settings) for _ in range(3)]
    kills = in_flight = 0
    started = time.monotonic()
    for _ in range(total // 500):
        acked.add(app.enqueue_many([{"task": "faults.sleep", "args": {"seconds": 0.02}}] * 500))
    last_kill = time.monotonic()
    while hot_count(ledger):
        if time.monotonic() - last_kill > 3:
            victim = random.choice(names)
            pid = workers.pid(victim)
            workers.kill(victim)
            in_flight += owned_running(ledger, pid)
            kills += 1
            names[names.index(victim)] = workers.start(**settings)
            last_kill = time.monotonic()
        assert time.monotonic() - started < 600, "run did not finish in 600 s"
        time.sleep(0.1)
    elapsed = time.monotonic() - started
    figures = check_all(
        ledger, acked.read(), rescue_interval=0.5, in_flight=in_flight, figures=Figures("1")
    )
    figures["jobs"], figures["kills"], figures["seconds"] = total, kills, round(elapsed, 1)
    # How fast a killed worker's jobs came back: first start to the next start.
    comeback = ledger.execute(
        """SELECT min(s), percentile_cont(0.5) WITHIN GROUP (ORDER BY s), max(s) FROM (
               SELECT extract(epoch FROM (array_agg(at ORDER BY at))[2]
                                       - (array_agg(at ORDER BY at))[1]) AS s
               FROM ledger WHERE event = 'start' GROUP BY job_id HAVING count(*) > 1) r"""
    ).fetchone()
    figures["comeback_s_min_median_max"] = [round(float(v), 2) for v in comeback or () if v]
    figures.report()
    assert figures["statuses"] == {"succeeded": total}
    workers.stop_all()
    app.close()


def test_2_sigterm_with_short_and_long_jobs(
    dsn: str, ledger: psycopg.Connection[Any], workers: Workers, acked: AckedIds
) -> None:
    app = skiplock.App(dsn)
    short = app.enqueue_many([{"task": "faults.sleep", "args": {"seconds": 0.5}}] * 30)
    long = app.enqueue_many([{"task": "faults.sleep", "args": {"seconds": 120}}] * 5)
    acked.add(short + long)
    w = workers.start(concurrency=40, lease=5, shutdown_grace=3, schedule_interval=0)
    wait_for(lambda: running_count(ledger) == 35, 60)
    pid = workers.pid(w)
    started = time.monotonic()
    workers.signal(w, signal.SIGTERM)
    assert workers.wait(w, 60) == 0
    exit_seconds = time.monotonic() - started
    statuses = dict(
        ledger.execute(
            "SELECT id, status FROM skiplock.all_jobs WHERE id = ANY(%s)", (short + long,)
        ).fetchall()
    )
    assert all(statuses[i] == "succeeded" for i in short)
    assert all(statuses[i] == "queued" for i in long)  # released, attempt not counted
    assert owned_running(ledger, pid) == 0
    assert running_count(ledger) == 0
    # Another worker picks the released jobs up (shortened so the test ends).
    ledger.execute(
        "UPDATE skiplock.jobs SET args = '{\"seconds\": 0.1}' WHERE id = ANY(%s)", (long,)
    )
    workers.start(concurrency=10, lease=5, schedule_interval=0)
    wait_for(lambda: hot_count(ledger) == 0, 60)
    figures = check_all(
        ledger, acked.read(), rescue_interval=5, in_flight=len(long), figures=Figures("2")
    )
    figures["exit_seconds"] = round(exit_seconds, 2)
    figures.report()
    app.close()


def test_5_rescuer_races_completions(
    dsn: str, ledger: psycopg.Connection[Any], workers: Workers, acked: AckedIds
) -> None:
    # Leases of 1 s renewed only every second, handlers that run about as long, and a
    # rescue pass every 0.1 s: completions, heartbeats and rescues collide all the time.
    settings = {
        "concurrency": 20,
        "lease": 1,
        "heartbeat_interval": 1.0,
        "rescue_interval": 0.1,
        "schedule_interval": 0,
        "poll_interval": 0.2,
    }
    app = skiplock.App(dsn)
    total = int(sized(600, 2_000))
    jobs = [
        {"task": "faults.sleep", "args": {"seconds": random.uniform(0.7, 1.3)}, "max_attempts": 20}
        for _ in range(total)
    ]
    acked.add(app.enqueue_many(jobs))
    for _ in range(3):
        workers.start(**settings)
    wait_for(lambda: hot_count(ledger) == 0, 600, 0.5)
    (rescued,) = ledger.execute(
        "SELECT count(*) FROM skiplock.all_jobs, jsonb_array_elements(errors) e"
        " WHERE e->>'type' = 'LeaseExpired'"
    ).fetchone() or (0,)
    (late,) = ledger.execute(
        "SELECT count(*) FROM ledger f WHERE f.event = 'finish' AND NOT EXISTS ("
        " SELECT 1 FROM skiplock.job_history h WHERE h.id = f.job_id"
        " AND h.attempt = f.attempt AND h.worker_id = f.worker_id)"
    ).fetchone() or (0,)
    # Every rescue put a running job back: at most that many jobs ran again.
    figures = check_all(
        ledger, acked.read(), rescue_interval=0.1, in_flight=int(rescued), figures=Figures("5")
    )
    figures["rescues"], figures["fenced_out_finishes"] = rescued, late
    figures.report()
    app.close()


def test_9_backlog_across_queues_and_priorities(
    dsn: str, ledger: psycopg.Connection[Any], workers: Workers, acked: AckedIds
) -> None:
    total = int(sized(20_000, 100_000))
    queues = [f"q{i}" for i in range(10)]
    app = skiplock.App(dsn)
    rng = random.Random(9)
    for start in range(0, total, 10_000):
        batch = [
            {
                "task": "faults.record",
                "queue": rng.choice(queues),
                "priority": rng.choice([-10, 0, 5, 10]),
            }
            for _ in range(min(10_000, total - start))
        ]
        acked.add(app.enqueue_many(batch))
    started = time.monotonic()
    for _ in range(4):
        workers.start(queues=queues, concurrency=50, lease=30, schedule_interval=0)
    wait_for(lambda: hot_count(ledger) == 0, 800, 0.5)
    elapsed = time.monotonic() - started
    runs = ledger.execute(
        "SELECT count(*), count(DISTINCT job_id) FROM ledger WHERE event = 'finish'"
    ).fetchone()
    assert runs == (total, total), f"finishes, distinct jobs: {runs}"

    # Within a queue, no job started while a higher-priority job of that queue was still
    # waiting. Claims running at the same moment lock in their own order whatever their
    # start times, so a job counts as inverted only if a higher-priority job of its queue
    # started more than `slack` after it (raw: no slack at all).
    def inversions(slack: str) -> int:
        row = ledger.execute(
            """SELECT count(*) FROM (
                   SELECT priority, max(priority) OVER (
                       PARTITION BY queue ORDER BY started_at DESC
                       RANGE BETWEEN UNBOUNDED PRECEDING AND %s::interval PRECEDING) AS later
                   FROM skiplock.job_history) h
               WHERE later > priority""",
            (slack,),
        ).fetchone()
        return int(row[0]) if row else 0

    figures = check_all(ledger, acked.read(), rescue_interval=5, in_flight=0, figures=Figures("9"))
    figures["jobs"], figures["seconds"] = total, round(elapsed, 1)
    figures["jobs_per_s"] = round(total / elapsed)
    figures["priority_inversions_raw"] = inversions("1 microsecond")
    figures["priority_inversions_beyond_100ms"] = inversions("100 milliseconds")
    figures.report()
    assert figures["priority_inversions_beyond_100ms"] == 0
    workers.stop_all()
    app.close()


def test_15_concurrency_storm(
    dsn: str, ledger: psycopg.Connection[Any], workers: Workers, acked: AckedIds
) -> None:
    from starlette.testclient import TestClient

    from skiplock.api import create_app

    seconds = sized(60, 300)
    settings = {
        "concurrency": 5,
        "lease": 2,
        "rescue_interval": 0.2,
        "schedule_interval": 0,
        "poll_interval": 0.2,
    }
    for _ in range(8):
        workers.start(**settings)
    app = skiplock.App(dsn)
    rng = random.Random(15)
    codes: dict[int, int] = {}
    calls = retried = 0
    end = time.monotonic() + seconds
    with TestClient(create_app(app)) as client:
        while time.monotonic() < end:
            ids = app.enqueue_many(
                [
                    {"task": "faults.sleep", "args": {"seconds": rng.uniform(0.01, 0.5)}}
                    for _ in range(5)
                ]
            )
            acked.add(ids)
            # A cancel and a retry of random jobs, wherever they are, and a rescue pass.
            candidates = [
                row[0]
                for row in ledger.execute(
                    "SELECT id FROM skiplock.all_jobs ORDER BY random() LIMIT 2"
                ).fetchall()
            ]
            for job_id, action in zip(candidates, ("cancel", "retry"), strict=False):
                response = client.post(f"/api/v1/jobs/{job_id}/{action}")
                codes[response.status_code] = codes.get(response.status_code, 0) + 1
                assert response.status_code < 500, response.text
                retried += action == "retry" and response.status_code == 200
                calls += 1
            ledger.execute("SELECT skiplock.rescue_expired_jobs()")
            time.sleep(0.1)
        wait_for(lambda: hot_count(ledger) == 0, 120, 0.5)
    workers.stop_all()
    # No deadlock or serialization failure surfaced as a failed attempt.
    surfaced = ledger.execute(
        "SELECT id, e->>'type' FROM skiplock.all_jobs, jsonb_array_elements(errors) e"
        " WHERE e->>'type' IN ('DeadlockDetected', 'SerializationFailure')"
    ).fetchall()
    assert not surfaced, surfaced
    logs = "".join(workers.log(name) for name in workers.procs)
    (rescued,) = ledger.execute(
        "SELECT count(*) FROM skiplock.all_jobs, jsonb_array_elements(errors) e"
        " WHERE e->>'type' = 'LeaseExpired'"
    ).fetchone() or (0,)
    figures = check_all(
        ledger,
        acked.read(),
        rescue_interval=0.2,
        in_flight=retried + int(rescued),
        figures=Figures("15"),
    )
    figures["seconds"], figures["api_calls"], figures["api_codes"] = seconds, calls, codes
    figures["deadlocks_retried_in_workers"] = logs.count("deadlock detected")
    figures["rescues"] = rescued
    figures.report()
    assert "failed" not in figures["statuses"]
    app.close()
