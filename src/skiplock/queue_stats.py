"""A queue's statistics as one JSON document: what GET /api/v1/queues/{name}/stats and
`skiplock queues stats --json` answer, from the rows the store reads (get_queue,
queue_workers, queue_throughput)."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

from skiplock.jobs import FINISHED, STATUSES

# In STATUSES' order: not started yet, and finished.
PENDING = tuple(status for status in STATUSES if status not in FINISHED and status != "running")
ENDED = tuple(status for status in STATUSES if status in FINISHED)


def stats_document(
    queue: Mapping[str, Any], workers: int, buckets: Sequence[Mapping[str, Any]], minutes: int
) -> dict[str, Any]:
    """Counts by status (finished ones: totals since install), the live workers serving
    the queue, and the jobs that finished per minute over the last `minutes`."""
    per_minute = [
        {"minute": bucket["minute"].isoformat(), **{status: bucket[status] for status in ENDED}}
        for bucket in buckets
    ]
    finished = sum(bucket[status] for bucket in buckets for status in ENDED)
    pending = sum(queue[status] for status in PENDING)
    per_minute_average = round(finished / minutes, 3)
    return {
        "queue": queue["queue"],
        "paused": queue["paused"],
        "counts": {status: queue[status] for status in STATUSES},
        # the statuses whose count is the planner's estimate (past store.COUNT_CAP)
        "estimated": list(queue["estimated"]),
        "pending": pending,
        "running": queue["running"],
        "succeeded": queue["succeeded"],
        "failed": queue["failed"],
        "workers": workers,
        "throughput": {
            "minutes": minutes,
            "finished": finished,
            "per_minute_average": per_minute_average,
            "per_minute": per_minute,
        },
        # the same figures under the names other job systems' dashboards read
        "name": queue["queue"],
        "pending_jobs": pending,
        "running_jobs": queue["running"],
        "completed_jobs": queue["succeeded"],
        "failed_jobs": queue["failed"],
        "throughput_per_min": per_minute_average,
    }
