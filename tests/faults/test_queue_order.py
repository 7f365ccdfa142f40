"""Queue priority and weight across worker processes: two real workers serving the same
queues take a higher-priority queue's jobs first, and split equal-priority queues by their
weights (sql/functions/040_claim.sql)."""

from __future__ import annotations

from typing import Any

import psycopg
from fault_fixtures import ledger_fixture, workers_fixture  # noqa: F401
from harness import Workers, hot_count, wait_for

import skiplock


def fill(app: skiplock.App, queue: str, n: int) -> None:
    app.enqueue_many([{"task": "faults.record", "queue": queue}] * n)


def set_order(conn: psycopg.Connection[Any], queue: str, priority: int, weight: int) -> None:
    conn.execute("SELECT skiplock.set_queue_order(%s, %s, %s)", (queue, priority, weight))


def start(workers: Workers, queues: list[str]) -> None:
    for _ in range(2):
        workers.start(queues=queues, concurrency=5, lease=30, schedule_interval=0)


def test_workers_empty_the_higher_priority_queue_first(
    dsn: str, ledger: psycopg.Connection[Any], workers: Workers
) -> None:
    set_order(ledger, "urgent", 10, 1)
    app = skiplock.App(dsn)
    fill(app, "bulk", 300)
    fill(app, "urgent", 300)
    start(workers, ["bulk", "urgent"])
    wait_for(lambda: hot_count(ledger) == 0, 120, 0.2)
    # Claims running at the same moment lock in their own order whatever their start
    # times: a bulk job counts as early only if it started over 100 ms before the last
    # urgent one.
    row = ledger.execute(
        """SELECT count(*) FROM skiplock.job_history b
           WHERE b.queue = 'bulk'
             AND b.started_at < (SELECT max(u.started_at) FROM skiplock.job_history u
                                 WHERE u.queue = 'urgent') - interval '100 milliseconds'"""
    ).fetchone()
    assert row == (0,)


def test_workers_split_equal_priority_queues_by_weight(
    dsn: str, ledger: psycopg.Connection[Any], workers: Workers
) -> None:
    set_order(ledger, "heavy", 0, 3)
    set_order(ledger, "light", 0, 1)
    app = skiplock.App(dsn)
    fill(app, "heavy", 1500)
    fill(app, "light", 1500)
    start(workers, ["heavy", "light"])
    # both queues stay backlogged through the first 800 starts (heavy's 1,500 last to
    # about the 2,000th)
    wait_for(lambda: hot_count(ledger) <= 3000 - 1000, 120, 0.2)
    workers.stop_all()
    first = ledger.execute(
        """SELECT queue, count(*) FROM (SELECT queue FROM skiplock.job_history
                                        ORDER BY started_at, id LIMIT 800) f
           GROUP BY queue"""
    ).fetchall()
    counts = dict(first)
    # 3:1 is 600 and 200; a share of 3/4 over 800 draws has a standard deviation of 12
    assert 560 <= counts["heavy"] <= 640, counts
