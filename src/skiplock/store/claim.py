"""Claiming and holding jobs (sql/functions/040_claim.sql): the claim, the claim
session's settings, heartbeats and progress."""

from __future__ import annotations

import uuid
from collections.abc import Mapping, Sequence
from datetime import datetime, timedelta

from skiplock.jobs import ClaimedJob
from skiplock.store.call import Call, flag, int_array, named_tuple_row, nothing

# Built once: the claim's row factory checks the column names once per statement.
_CLAIMED_JOB_ROW = named_tuple_row(ClaimedJob)
_CLAIM_SQL = (
    f"SELECT {', '.join(ClaimedJob._fields)} FROM skiplock.claim_jobs(%s, %s::text[], %s, %s,"
    " p_run_after => %s::timestamptz[], p_priority_floor => %s::smallint[])"
)

# A claim's bound per queue: (the lowest priority, the oldest run_at) it may take.
ClaimBounds = Mapping[str, tuple[int, datetime]]


def claim_jobs(
    worker_id: uuid.UUID,
    queues: Sequence[str],
    limit: int,
    lease: timedelta,
    bounds: ClaimBounds | None = None,
) -> Call[list[ClaimedJob]]:
    """Claim up to `limit` jobs of `queues` for `worker_id`, each leased for `lease`.
    With `bounds`, a queue gives only jobs of at least its priority and run_at, and a
    queue without one gives none (see skiplock.claim_jobs)."""
    floors: list[int | None] | None = None
    run_after: list[datetime | None] | None = None
    if bounds is not None:
        floors = [bounds[q][0] if q in bounds else None for q in queues]
        run_after = [bounds[q][1] if q in bounds else None for q in queues]
    return Call(
        _CLAIM_SQL,
        (worker_id, list(queues), limit, lease, run_after, floors),
        list,
        _CLAIMED_JOB_ROW,
    )


# The worker's claim session, set once per connection: synchronous_commit off, so its
# commits stop waiting for the WAL flush. Only for statements whose loss in a crash is
# harmless: the worker's claims. It cannot move into claim_jobs' own SET clause (a
# function's setting is reverted before the commit it was meant for). claim_jobs plans
# itself once per session without seq scans in its own SET clause (sql/functions/
# 040_claim.sql), so that holds behind a transaction-mode pooler too.
CLAIM_SESSION_SETTINGS = {"synchronous_commit": "off"}


def set_claim_session() -> Call[None]:
    """Apply CLAIM_SESSION_SETTINGS to this session (one round trip)."""
    names = list(CLAIM_SESSION_SETTINGS)
    return Call(
        "SELECT set_config(name, value, false)"
        " FROM unnest(%s::text[], %s::text[]) AS s(name, value)",
        (names, [CLAIM_SESSION_SETTINGS[n] for n in names]),
        nothing,
    )


def heartbeat_jobs(
    worker_id: uuid.UUID,
    tokens: Sequence[tuple[int, int]],
    lease: timedelta,
    stuck_jobs: int | None = None,
    stalled_loops: Sequence[str] | None = None,
) -> Call[dict[int | None, bool]]:
    """Extend the leases of (job id, attempt) tokens and record how many handler threads
    cannot be stopped and which loops are stalled (None: leave them); returns {job id
    still held: cancel requested?}, and the key None when the worker was asked to stop."""
    return Call(
        "SELECT id, cancel_requested FROM skiplock.heartbeat_jobs(%s, %s::bigint[],"
        " %s::integer[], %s, p_stuck_jobs => %s, p_stalled_loops => %s::text[])",
        (
            worker_id,
            int_array([t[0] for t in tokens]),
            int_array([t[1] for t in tokens]),
            lease,
            stuck_jobs,
            None if stalled_loops is None else list(stalled_loops),
        ),
        lambda rows: {job_id: cancel_requested for job_id, cancel_requested in rows},
    )


def set_job_progress(
    worker_id: uuid.UUID, job_id: int, attempt: int, fraction: float | None, message: str | None
) -> Call[bool]:
    return Call(
        "SELECT skiplock.set_job_progress(%s, %s, %s, %s, %s)",
        (worker_id, job_id, attempt, fraction, message),
        flag,
    )
