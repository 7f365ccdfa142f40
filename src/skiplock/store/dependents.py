"""Settling jobs that wait on others (sql/functions/060_dependents.sql)."""

from __future__ import annotations

from skiplock.store.call import Call, scalar


def sweep_waiting_jobs(limit: int = 100) -> Call[int]:
    """Settle up to `limit` waiting jobs that still list a dependency which has left the
    hot table (a finish their enqueue did not see); how many it looked at."""
    return Call("SELECT skiplock.sweep_waiting_jobs(%s)", (limit,), scalar)
