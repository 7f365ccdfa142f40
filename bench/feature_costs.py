"""What each flow-control feature costs the drain rate, measured in one run.

    python bench/feature_costs.py [--dsn DSN] [--jobs 20000] [--rounds 3]
                                  [--features plain,unique,...] [--json out.json]

Every variant drains the same number of no-op jobs with one worker process, exactly as
`skiplock bench --scenario drain` does (jobs enqueued first, the queue paused, the
worker started, the queue resumed; the time is the last finish minus the resume, by the
database clock). Only what the jobs carry, or how their queue is configured, differs:

- plain          plain jobs (the baseline)
- priorities     priorities spread over -5..5 (the claim orders by them)
- unique         every job has its own unique key, scope 'active' (held until it finishes)
- dependencies   half the jobs depend on one of the other half: finishing a parent queues
                 its child in the same transaction
- workflows      workflows of 10 steps: 9 in parallel, then one callback given their results
- expiry         every job carries a deadline an hour away
- queue-limits   the queue has a concurrency limit and a rate limit, both far above what
                 one worker reaches: the claim takes its limited path
- queue-defaults the queue has a default retry policy and timeout
- schedules      100 enabled schedules exist (none due): the workers' scheduler runs

Rounds are interleaved (every variant once, then again), so a noisy machine weighs on
all variants alike. Prints min / median / max jobs/s per variant and the median's ratio
to plain; --json writes every figure.
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
from collections.abc import Callable
from datetime import timedelta
from typing import Any

import psycopg

from skiplock import store
from skiplock.bench import QUEUE, Bench, BenchSettings, embedded_dsn, load_average
from skiplock.config import resolve_dsn
from skiplock.migrate import migrate

Setup = Callable[[psycopg.Connection[Any], int, str], None]
WORKFLOW_WIDTH = 9  # workflows: 9 parallel steps, then one callback: 10 jobs each


def insert_jobs(conn: psycopg.Connection[Any], n: int, task: str, **columns: str) -> None:
    """n jobs by one INSERT; `columns` maps extra columns to SQL expressions of i."""
    names = "".join(f", {name}" for name in columns)
    values = "".join(f", {expression}" for expression in columns.values())
    conn.execute(
        f"INSERT INTO skiplock.jobs (task, queue{names})"
        f" SELECT %s, %s{values} FROM generate_series(1, %s) AS i",
        (task, QUEUE, n),
    )


def plain(conn: psycopg.Connection[Any], n: int, task: str) -> None:
    insert_jobs(conn, n, task)


def priorities(conn: psycopg.Connection[Any], n: int, task: str) -> None:
    insert_jobs(conn, n, task, priority="mod(i, 11) - 5")


def expiry(conn: psycopg.Connection[Any], n: int, task: str) -> None:
    insert_jobs(conn, n, task, expires_at="now() + interval '1 hour'")


def unique(conn: psycopg.Connection[Any], n: int, task: str) -> None:
    conn.execute(
        "SELECT skiplock.enqueue(%s, queue => %s, unique_key => 'bench-' || i)"
        " FROM generate_series(1, %s) AS i",
        (task, QUEUE, n),
    )


def dependencies(conn: psycopg.Connection[Any], n: int, task: str) -> None:
    pairs = n // 2
    conn.execute(
        "SELECT skiplock.enqueue(%(t)s, queue => %(q)s, depends_on => ARRAY[p.id])"
        " FROM (SELECT skiplock.enqueue(%(t)s, queue => %(q)s) AS id"
        "       FROM generate_series(1, %(n)s)) AS p",
        {"t": task, "q": QUEUE, "n": pairs},
    )
    insert_jobs(conn, n - 2 * pairs, task)


def workflows(conn: psycopg.Connection[Any], n: int, task: str) -> None:
    steps: list[dict[str, Any]] = [
        {"name": f"s{k}", "task": task, "queue": QUEUE} for k in range(WORKFLOW_WIDTH)
    ]
    after = [step["name"] for step in steps]
    steps.append(
        {"name": "done", "task": task, "queue": QUEUE, "after": after, "results_arg": "results"}
    )
    count = n // len(steps)
    conn.execute(
        "SELECT skiplock.enqueue_workflow(%s::jsonb) FROM generate_series(1, %s)",
        (json.dumps({"name": "bench", "steps": steps}), count),
    )
    insert_jobs(conn, n - count * len(steps), task)


def queue_limits(conn: psycopg.Connection[Any], n: int, task: str) -> None:
    limits = store.set_queue_limits(
        QUEUE, max_running=1_000_000, rate_limit=100_000_000, rate_period=timedelta(seconds=1)
    )
    limits.run(conn)
    insert_jobs(conn, n, task)


def queue_defaults(conn: psycopg.Connection[Any], n: int, task: str) -> None:
    policy = {"kind": "exponential", "base": 2, "max_delay": 600}
    store.set_queue_defaults(QUEUE, retry_policy=policy, timeout=timedelta(minutes=10)).run(conn)
    insert_jobs(conn, n, task)


def schedules(conn: psycopg.Connection[Any], n: int, task: str) -> None:
    conn.execute(
        "SELECT skiplock.create_schedule('bench-' || i, '0 0 1 1 *', %s, p_queue => %s,"
        " p_replace => true) FROM generate_series(1, 100) AS i",
        (task, QUEUE),
    )
    insert_jobs(conn, n, task)


FEATURES: dict[str, Setup] = {
    "plain": plain,
    "priorities": priorities,
    "unique": unique,
    "dependencies": dependencies,
    "workflows": workflows,
    "expiry": expiry,
    "queue-limits": queue_limits,
    "queue-defaults": queue_defaults,
    "schedules": schedules,
}


class FeatureBench(Bench):
    """Bench.drain, with the jobs (and queue settings) of one feature variant."""

    setup: Setup = plain

    def enqueue_bulk(self, conn: psycopg.Connection[Any], n: int) -> None:
        self.setup(conn, n, self.task)

    def reset(self) -> None:
        with self.connect() as conn:
            conn.execute("TRUNCATE skiplock.workflows CASCADE")
            conn.execute("DELETE FROM skiplock.schedules WHERE name LIKE 'bench-%'")
            store.set_queue_limits(QUEUE).run(conn)
            store.set_queue_defaults(QUEUE).run(conn)
        super().reset()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--dsn", help="default: SKIPLOCK_DSN, DATABASE_URL, else embedded")
    parser.add_argument("--jobs", type=int, default=20_000)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--features", default=",".join(FEATURES))
    parser.add_argument("--json", dest="json_path")
    opts = parser.parse_args()
    chosen = [name.strip() for name in opts.features.split(",") if name.strip()]
    unknown = sorted(set(chosen) - set(FEATURES))
    if unknown:
        parser.error(f"unknown feature(s) {', '.join(unknown)}; known: {', '.join(FEATURES)}")
    dsn = resolve_dsn(opts.dsn) or embedded_dsn()
    with psycopg.connect(dsn, autocommit=True) as conn:
        migrate(conn)
    bench = FeatureBench(dsn, BenchSettings(jobs=opts.jobs, rounds=1))
    if bench.foreign_jobs():
        sys.exit("this database holds jobs other than the bench's; use an empty one")
    rates: dict[str, list[float]] = {name: [] for name in chosen}
    db_cpu: dict[str, list[float]] = {name: [] for name in chosen}
    loads = [load_average()]
    for number in range(1, opts.rounds + 1):
        for name in chosen:
            bench.setup = FEATURES[name]
            bench.reset()
            measured = bench.drain()
            rates[name].append(measured.figures["jobs_per_s"])
            if "db_cpu_ms_per_1k_jobs" in measured.figures:
                db_cpu[name].append(measured.figures["db_cpu_ms_per_1k_jobs"])
            print(f"round {number} {name}: {measured.figures}", file=sys.stderr, flush=True)
        loads.append(load_average())
    bench.reset()
    base = statistics.median(rates[chosen[0]])
    print(f"drain of {opts.jobs:,} no-op jobs, one worker process; jobs/s min / median / max")
    print(f"load average at start and after each round: {' | '.join(loads)}")
    print(f"{'feature':16} {'min':>8} {'median':>8} {'max':>8} {'vs ' + chosen[0]:>10} db ms/1k")
    for name in chosen:
        low, mid, high = min(rates[name]), statistics.median(rates[name]), max(rates[name])
        cpu = f"{statistics.median(db_cpu[name]):.1f}" if db_cpu[name] else "n/a"
        print(f"{name:16} {low:8,.0f} {mid:8,.0f} {high:8,.0f} {mid / base:10.2f} {cpu:>8}")
    if opts.json_path:
        with open(opts.json_path, "w") as out:
            json.dump({"jobs": opts.jobs, "rates": rates, "db_cpu": db_cpu, "loads": loads}, out)


if __name__ == "__main__":
    main()
