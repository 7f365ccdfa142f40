"""Operator actions (sql/functions/070_operator.sql): cancel, retry and delete a job;
create, pause, resume and delete a queue, change its settings (all at once, or its
limits, defaults or order); redrive and purge the dead letters."""

from __future__ import annotations

import json
from collections.abc import Mapping
from datetime import timedelta
from typing import Any

from skiplock.store.call import Call, column, flag, nothing, scalar


def cancel_job(job_id: int) -> Call[str | None]:
    return Call("SELECT skiplock.cancel_job(%s)", (job_id,), scalar)


def retry_job(job_id: int) -> Call[str | None]:
    return Call("SELECT skiplock.retry_job(%s)", (job_id,), scalar)


def delete_job(job_id: int) -> Call[str | None]:
    """The deleted job's status; None when no job has this id. Raises (SQLSTATE 55000)
    for a job that has not finished."""
    return Call("SELECT skiplock.delete_job(%s)", (job_id,), scalar)


def pause_queue(queue: str) -> Call[bool]:
    return Call("SELECT skiplock.pause_queue(%s)", (queue,), flag)


def resume_queue(queue: str) -> Call[bool]:
    return Call("SELECT skiplock.resume_queue(%s)", (queue,), flag)


def create_queue(queue: str, *, paused: bool = False) -> Call[bool]:
    """True when created, False when a queue of this name already exists."""
    return Call("SELECT skiplock.create_queue(%s, %s)", (queue, paused), flag)


def delete_queue(queue: str) -> Call[bool]:
    """False when no such queue; raises (SQLSTATE 55000) while it still has jobs."""
    return Call("SELECT skiplock.delete_queue(%s)", (queue,), flag)


def configure_queue(queue: str, settings: Mapping[str, Any]) -> Call[None]:
    """Change the settings named in `settings` (queue_settings.py: None clears one) and
    keep the others, in one statement."""
    document = {
        name: value.total_seconds() if isinstance(value, timedelta) else value
        for name, value in settings.items()
    }
    return Call(
        "SELECT skiplock.configure_queue(%s, %s::jsonb)", (queue, json.dumps(document)), nothing
    )


def set_queue_limits(
    queue: str,
    *,
    max_running: int | None = None,
    rate_limit: int | None = None,
    rate_period: timedelta | None = None,
) -> Call[None]:
    return Call(
        "SELECT skiplock.set_queue_limits(%s, %s, %s, %s)",
        (queue, max_running, rate_limit, rate_period),
        nothing,
    )


def set_queue_defaults(
    queue: str,
    *,
    retry_policy: Mapping[str, Any] | None = None,
    timeout: timedelta | None = None,
    max_attempts: int | None = None,
) -> Call[None]:
    policy = json.dumps(retry_policy) if retry_policy is not None else None
    return Call(
        "SELECT skiplock.set_queue_defaults(%s, %s::jsonb, %s, %s)",
        (queue, policy, timeout, max_attempts),
        nothing,
    )


def set_queue_order(queue: str, *, priority: int = 0, weight: int = 1) -> Call[None]:
    return Call("SELECT skiplock.set_queue_order(%s, %s, %s)", (queue, priority, weight), nothing)


def redrive_dead_letters(
    *, queue: str | None = None, task: str | None = None, limit: int = 1000
) -> Call[list[int]]:
    """One batch of up to `limit`; call again until it returns fewer to redrive all."""
    return Call("SELECT skiplock.redrive_dead_letters(%s, %s, %s)", (queue, task, limit), column)


def purge_dead_letters(
    *, queue: str | None = None, task: str | None = None, older_than: timedelta | None = None
) -> Call[int]:
    return Call(
        "SELECT skiplock.purge_dead_letters(%s, %s, %s)",
        (queue, task, older_than),
        lambda rows: int(scalar(rows) or 0),
    )
