"""Finishing claimed jobs in batches (sql/functions/050_finish.sql): complete, fail
(retry or dead-letter by policy), release. Each checks the (job id, attempt) token."""

from __future__ import annotations

import uuid
from collections.abc import Sequence
from datetime import timedelta

from skiplock.store.call import Call, column, int_array, text_array


def complete_jobs(
    worker_id: uuid.UUID,
    job_ids: Sequence[int],
    attempts: Sequence[int],
    results_json: Sequence[str],
) -> Call[list[int]]:
    """The ids of the jobs completed (those this worker still held)."""
    return Call(
        "SELECT skiplock.complete_jobs(%s, %s::bigint[], %s::integer[], %s::jsonb[])",
        (worker_id, int_array(job_ids), int_array(attempts), text_array(results_json)),
        column,
    )


def fail_jobs(
    worker_id: uuid.UUID,
    job_ids: Sequence[int],
    attempts: Sequence[int],
    errors_json: Sequence[str],
) -> Call[dict[int, str]]:
    """Returns {job id: retrying | failed | cancelled} for the jobs still held."""
    return Call(
        "SELECT id, status FROM skiplock.fail_jobs(%s, %s::bigint[], %s::integer[], %s::jsonb[])",
        (worker_id, int_array(job_ids), int_array(attempts), text_array(errors_json)),
        lambda rows: {job_id: status for job_id, status in rows},
    )


def release_jobs(
    worker_id: uuid.UUID,
    job_ids: Sequence[int],
    attempts: Sequence[int],
    *,
    delay: timedelta | None = None,
) -> Call[list[int]]:
    """Put held jobs back in their queue unfinished, the attempt not counted: ready at
    once (delay None), or due again after `delay`; the ids released (or cancelled)."""
    return Call(
        "SELECT skiplock.release_jobs(%s, %s::bigint[], %s::integer[], %s::interval)",
        (worker_id, int_array(job_ids), int_array(attempts), delay),
        column,
    )
