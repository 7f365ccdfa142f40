"""The task registry and the job counters kept beside it
(sql/functions/110_registry.sql): publish, list and forget tasks; read the counters,
the duration histogram's bounds and a queue's throughput per minute."""

from __future__ import annotations

import json
import uuid
from collections.abc import Mapping, Sequence
from typing import Any

from psycopg.rows import dict_row

from skiplock.store.call import Call, flag, scalar

TASK_COLUMNS = (
    "name",
    "queue",
    "description",
    "args_schema",
    "first_seen_at",
    "last_seen_at",
    "workers",
    "defaults",
)
THROUGHPUT_COLUMNS = ("minute", "succeeded", "failed", "cancelled", "expired")


def publish_tasks(worker_id: uuid.UUID | None, tasks: Sequence[Mapping[str, Any]]) -> Call[int]:
    """Upsert the registry entries of `tasks` ({name, queue, description, args_schema,
    defaults})."""
    return Call(
        "SELECT skiplock.publish_tasks(%s, %s::jsonb)",
        (worker_id, json.dumps(list(tasks))),
        lambda rows: int(scalar(rows) or 0),
    )


def list_tasks(names: Sequence[str] | None = None) -> Call[list[dict[str, Any]]]:
    """Registered tasks (all, or those in `names`), by name."""
    return Call(
        f"SELECT {', '.join(TASK_COLUMNS)} FROM skiplock.list_tasks(%s::text[])",
        (None if names is None else list(names),),
        list,
        dict_row,
    )


def forget_task(name: str) -> Call[bool]:
    """Remove a task from the registry; False when it is not there."""
    return Call("SELECT skiplock.forget_task(%s)", (name,), flag)


def read_job_counts() -> Call[list[tuple[str, str, str, str | None, float | None, int, float]]]:
    """(queue, task, event, status, le, n, seconds) of every job counter (see
    skiplock.read_job_counts): a few rows per queue and task, never a COUNT."""
    return Call(
        "SELECT queue, task, event, status, le, n, seconds FROM skiplock.read_job_counts()",
        (),
        lambda rows: [
            (row[0], row[1], row[2], row[3], row[4], int(row[5]), float(row[6] or 0.0))
            for row in rows
        ],
    )


def job_duration_bounds() -> Call[list[float]]:
    """The duration histogram's bucket bounds in seconds (+Inf implied)."""
    return Call("SELECT skiplock.job_duration_bounds()", (), lambda rows: list(scalar(rows)))


def queue_throughput(queue: str, minutes: int) -> Call[list[dict[str, Any]]]:
    """Jobs of `queue` finished per minute and outcome, over the last `minutes`."""
    return Call(
        f"SELECT {', '.join(THROUGHPUT_COLUMNS)} FROM skiplock.queue_throughput(%s, %s)",
        (queue, minutes),
        list,
        dict_row,
    )
