"""What the finish counters (sql/functions/110_registry.sql) cost per batch, measured in one
database by switching them off and on between rounds, so a noisy machine hits both
sides alike:

    python bench/counter_triggers.py [--dsn DSN] [--batch 500] [--rounds 30]

Each round enqueues a batch with enqueue_many, claims it and completes it with
complete_jobs, timing the completion (the statement the counters ride on). Prints min /
median / max milliseconds per batch with and without them. The created counter is part
of the jobs insert trigger, which also registers queues and wakes workers: what it
costs an insert is in bench/insert_costs.py.
"""

from __future__ import annotations

import argparse
import json
import statistics
import time
import uuid

import psycopg

from skiplock.bench import embedded_dsn
from skiplock.migrate import migrate

COUNTER_TRIGGERS = (
    ("skiplock.job_history", "job_history_counted"),
    ("skiplock.dead_jobs", "dead_jobs_counted"),
)
WORKER = uuid.UUID("00000000-0000-4000-8000-00000000beef")


def set_counters(conn: psycopg.Connection, enabled: bool) -> None:
    verb = "ENABLE" if enabled else "DISABLE"
    for table, trigger in COUNTER_TRIGGERS:
        conn.execute(f"ALTER TABLE {table} {verb} TRIGGER {trigger}")


def one_round(conn: psycopg.Connection, batch: int) -> float:
    spec = json.dumps([{"task": f"task_{i % 5}", "args": {"i": i}} for i in range(batch)])
    conn.execute("SELECT skiplock.enqueue_many(%s::jsonb)", (spec,))
    rows = conn.execute(
        "SELECT id, attempt FROM skiplock.claim_jobs(%s, ARRAY['default'], %s)", (WORKER, batch)
    ).fetchall()
    began = time.perf_counter()
    conn.execute(
        "SELECT skiplock.complete_jobs(%s, %s::bigint[], %s::integer[], %s::jsonb[])",
        (WORKER, [r[0] for r in rows], [r[1] for r in rows], ["null"] * len(rows)),
    )
    return (time.perf_counter() - began) * 1000


def summary(values: list[float]) -> str:
    return f"{min(values):.2f} / {statistics.median(values):.2f} / {max(values):.2f}"


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--dsn")
    parser.add_argument("--batch", type=int, default=500)
    parser.add_argument("--rounds", type=int, default=30)
    options = parser.parse_args()
    dsn = options.dsn or embedded_dsn()
    with psycopg.connect(dsn, autocommit=True) as conn:
        migrate(conn)
        results: dict[bool, list[float]] = {True: [], False: []}
        for _ in range(3):  # warm-up
            one_round(conn, options.batch)
        for i in range(2 * options.rounds):
            enabled = i % 2 == 0
            set_counters(conn, enabled)
            results[enabled].append(one_round(conn, options.batch))
        set_counters(conn, True)
    print(f"batch {options.batch}, {options.rounds} rounds each; ms min / median / max")
    for enabled in (False, True):
        label = "with counters   " if enabled else "without counters"
        print(f"{label}  complete_jobs {summary(results[enabled])}")


if __name__ == "__main__":
    main()
