"""Maintenance passes (sql/functions/080_maintenance.sql): rescue expired leases,
expire jobs past their deadline, prune the history and the unique keys."""

from __future__ import annotations

from datetime import timedelta

from skiplock.store.call import Call, column, scalar


def rescue_expired_jobs(limit: int = 1000) -> Call[dict[int, str]]:
    """{job id: its new status} of the running jobs whose lease had expired."""
    return Call(
        "SELECT id, status FROM skiplock.rescue_expired_jobs(%s)",
        (limit,),
        lambda rows: {job_id: status for job_id, status in rows},
    )


def expire_jobs(limit: int = 1000) -> Call[list[int]]:
    return Call("SELECT skiplock.expire_jobs(%s)", (limit,), column)


def prune_job_history(older_than: timedelta, limit: int) -> Call[int]:
    return Call("SELECT skiplock.prune_job_history(%s, %s)", (older_than, limit), scalar)


def prune_unique_keys() -> Call[int]:
    return Call("SELECT skiplock.prune_unique_keys()", (), scalar)
