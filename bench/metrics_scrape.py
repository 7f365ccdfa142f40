"""How long a GET /metrics takes with a big history: fills job_history (and dead_jobs)
with INSERT ... SELECT generate_series, then times scrapes through the real API.

    python bench/metrics_scrape.py [--dsn DSN] [--history 1000000] [--scrapes 20]

Without --dsn it starts a private PostgreSQL (the `embedded` extra). Rows are inserted
the way a worker's completions are (one statement per batch of 10,000, so the counter
triggers run as they do in production), over 20 tasks in 4 queues.
"""

from __future__ import annotations

import argparse
import statistics
import time

import psycopg
from starlette.testclient import TestClient

import skiplock
from skiplock.api import create_app
from skiplock.bench import embedded_dsn
from skiplock.migrate import migrate

FILL_BATCH = 10_000
# What one scrape reads (api/observability.py snapshot), for the SQL-only timing.
SNAPSHOT_SQL = (
    "SELECT * FROM skiplock.queue_stats",
    "SELECT * FROM skiplock.queue_totals",
    "SELECT * FROM skiplock.worker_stats",
    "SELECT * FROM skiplock.read_job_counts()",
    "SELECT skiplock.job_duration_bounds()",
    "SELECT skiplock.job_duration_bounds(), skiplock.job_wait_bounds()",
    "SELECT version, name, checksum FROM skiplock.schema_migrations",
)
HISTORY_FILL = """
INSERT INTO skiplock.job_history (id, task, args, queue, priority, status, attempt,
    max_attempts, tags, meta, errors, created_at, started_at, finished_at)
SELECT n, 'task_' || (n %% 20), '{}', 'queue_' || (n %% 4), 0,
       CASE WHEN n %% 50 = 0 THEN 'cancelled' ELSE 'succeeded' END::skiplock.finished_status,
       1, 20, '{}', '{}', '[]', now(), now() - (n %% 1000) * interval '1 ms', now()
FROM generate_series(%s::bigint, %s::bigint) AS n
"""
DEAD_FILL = """
INSERT INTO skiplock.dead_jobs (id, task, args, queue, priority, attempt, max_attempts,
    tags, meta, errors, created_at, started_at, failed_at)
SELECT n, 'task_' || (n %% 20), '{}', 'queue_' || (n %% 4), 0, 20, 20, '{}', '{}', '[]',
       now(), now() - interval '2 s', now()
FROM generate_series(%s::bigint, %s::bigint) AS n
"""


def fill(dsn: str, history: int, dead: int) -> None:
    with psycopg.connect(dsn, autocommit=True) as conn:
        for start in range(1, history + 1, FILL_BATCH):
            conn.execute(HISTORY_FILL, (start, min(start + FILL_BATCH - 1, history)))
        first_dead = history + 1
        for start in range(first_dead, first_dead + dead, FILL_BATCH):
            conn.execute(DEAD_FILL, (start, min(start + FILL_BATCH - 1, first_dead + dead - 1)))
        conn.execute("VACUUM ANALYZE skiplock.job_history")
        conn.execute("VACUUM ANALYZE skiplock.dead_jobs")


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--dsn")
    parser.add_argument("--history", type=int, default=1_000_000)
    parser.add_argument("--scrapes", type=int, default=20)
    options = parser.parse_args()
    dsn = options.dsn or embedded_dsn()
    with psycopg.connect(dsn, autocommit=True) as conn:
        migrate(conn)
    started = time.perf_counter()
    fill(dsn, options.history, options.history // 100)
    print(f"filled {options.history:,} history rows in {time.perf_counter() - started:.1f} s")
    with psycopg.connect(dsn) as conn:
        count = conn.execute("SELECT count(*) FROM skiplock.job_history").fetchone()
        print(f"job_history rows: {count[0] if count else 0:,}")
    with TestClient(create_app(skiplock.App(dsn))) as client:
        client.get("/metrics")  # the first scrape compacts what the fill wrote
        timings = []
        for _ in range(options.scrapes):
            began = time.perf_counter()
            response = client.get("/metrics")
            timings.append((time.perf_counter() - began) * 1000)
            assert response.status_code == 200, response.text
        size = len(response.content)
    with psycopg.connect(dsn, autocommit=True) as conn:
        sql_timings = []
        for _ in range(options.scrapes):
            began = time.perf_counter()
            for statement in SNAPSHOT_SQL:
                conn.execute(statement).fetchall()
            sql_timings.append((time.perf_counter() - began) * 1000)
    print(
        f"of which the SQL (same statements, one connection): min {min(sql_timings):.1f} ms,"
        f" median {statistics.median(sql_timings):.1f} ms, max {max(sql_timings):.1f} ms"
    )
    print(
        f"GET /metrics x{options.scrapes} ({size:,} bytes): min {min(timings):.1f} ms, "
        f"median {statistics.median(timings):.1f} ms, max {max(timings):.1f} ms"
    )


if __name__ == "__main__":
    main()
