"""Worker processes (sql/functions/140_workers.sql, the worker_stats view): register,
unregister, stop and prune workers, list them, and ask which finishes a worker has
already recorded."""

from __future__ import annotations

import uuid
from collections.abc import Sequence
from datetime import timedelta
from typing import Any

from psycopg.rows import dict_row

from skiplock.store.call import Call, flag, int_array, nothing, scalar

WORKER_COLUMNS = (
    "id",
    "host",
    "pid",
    "queues",
    "concurrency",
    "version",
    "started_at",
    "last_heartbeat_at",
    "running_jobs",
    "alive",
    "stuck_jobs",
    "healthy",
    "stalled_loops",
    "signs_webhooks",
)


def register_worker(
    worker_id: uuid.UUID,
    *,
    host: str,
    pid: int,
    queues: Sequence[str],
    concurrency: int,
    version: str,
    signs_webhooks: bool,
) -> Call[None]:
    return Call(
        "SELECT skiplock.register_worker(%s, %s, %s, %s::text[], %s, %s, %s)",
        (worker_id, host, pid, list(queues), concurrency, version, signs_webhooks),
        nothing,
    )


def unregister_worker(worker_id: uuid.UUID) -> Call[None]:
    return Call("SELECT skiplock.unregister_worker(%s)", (worker_id,), nothing)


def prune_workers(older_than: timedelta) -> Call[int]:
    return Call("SELECT skiplock.prune_workers(%s)", (older_than,), scalar)


def stop_worker(worker_id: uuid.UUID) -> Call[bool]:
    """Ask a worker to stop gracefully (NOTIFY skiplock_control); False if unknown."""
    return Call("SELECT skiplock.stop_worker(%s)", (worker_id,), flag)


def list_workers() -> Call[list[dict[str, Any]]]:
    """Every registered worker with its running jobs and health, oldest first."""
    return Call(
        f"SELECT {', '.join(WORKER_COLUMNS)} FROM skiplock.worker_stats ORDER BY started_at, id",
        (),
        list,
        dict_row,
    )


def recorded_attempts(
    worker_id: uuid.UUID, tokens: Sequence[tuple[int, int]]
) -> Call[dict[int, str]]:
    """{job id: status} for the (job id, attempt) tokens whose outcome this worker has
    already recorded (a replayed finish), the others are absent: lost leases."""
    return Call(
        "SELECT id, status FROM skiplock.recorded_attempts(%s, %s::bigint[], %s::integer[])",
        (worker_id, int_array([t[0] for t in tokens]), int_array([t[1] for t in tokens])),
        lambda rows: {job_id: status for job_id, status in rows},
    )
