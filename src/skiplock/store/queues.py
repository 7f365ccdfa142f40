"""Reading queues: skiplock.queue_counts (sql/functions/020_views.sql, the queue_stats
view's source), the finished-job totals and the live workers serving a queue."""

from __future__ import annotations

from typing import Any

from psycopg.rows import dict_row

from skiplock.jobs import STATUSES
from skiplock.store.call import Call, scalar

QUEUE_STAT_COLUMNS = (
    "queue",
    "paused",
    "max_running",
    "rate_limit",
    "rate_period",
    "retry_policy",
    "timeout",
    "max_attempts",
    "priority",
    "weight",
    *STATUSES,
    "estimated",
)
# Counts of pending jobs are exact up to this many per queue and status, the planner's
# estimate past it (the statuses listed in "estimated"): a page or a scrape reads a
# bounded number of rows however deep the queues are.
COUNT_CAP = 1000
_QUEUE_STATS = (
    f"SELECT {', '.join(QUEUE_STAT_COLUMNS)} FROM skiplock.queue_counts(%s::text[], {COUNT_CAP})"
)


def _queue_stat(stat: dict[str, Any]) -> dict[str, Any]:
    for name in ("rate_period", "timeout"):  # seconds, so the row is plain JSON
        if stat[name] is not None:
            stat[name] = stat[name].total_seconds()
    return stat


def queue_stats() -> Call[list[dict[str, Any]]]:
    """Every queue with its settings and its jobs counted by status, by name."""
    return Call(
        f"{_QUEUE_STATS} ORDER BY queue",
        (None,),
        lambda rows: [_queue_stat(row) for row in rows],
        dict_row,
    )


def get_queue(queue: str) -> Call[dict[str, Any] | None]:
    """One queue_stats row; None when there is no such queue."""
    return Call(
        _QUEUE_STATS,
        ([queue],),
        lambda rows: _queue_stat(rows[0]) if rows else None,
        dict_row,
    )


def lock_queue(queue: str) -> Call[bool]:
    """Lock a queue's row until the transaction ends, for a change that reads its settings
    before it writes them; False when there is no such queue."""
    return Call("SELECT true FROM skiplock.queues WHERE name = %s FOR UPDATE", (queue,), bool)


def health_figures() -> Call[tuple[int, int]]:
    """(live workers, jobs ready to run now in any queue): what /health adds to its
    answer when the database answers in time."""
    return Call(
        "SELECT (SELECT count(*) FROM skiplock.worker_stats WHERE alive),"
        " (SELECT count(*) FROM skiplock.jobs WHERE state = 'queued' AND run_at <= now())",
        (),
        lambda rows: (int(rows[0][0]), int(rows[0][1])),
    )


def queue_workers(queue: str) -> Call[int]:
    """How many live workers (heartbeat within the last minute) serve `queue`."""
    return Call(
        "SELECT count(*) FROM skiplock.worker_stats WHERE alive AND %s = ANY (queues)",
        (queue,),
        lambda rows: int(scalar(rows) or 0),
    )


def queue_totals() -> Call[list[tuple[str, str, int]]]:
    """(queue, status, total) of finished jobs since install: counters, never a COUNT."""
    return Call(
        "SELECT queue, status, total FROM skiplock.queue_totals ORDER BY queue, status",
        (),
        lambda rows: [(row[0], row[1], int(row[2])) for row in rows],
    )
