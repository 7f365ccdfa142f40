"""Webhook deliveries (sql/functions/130_webhooks.sql enqueues them): which callbacks
no live worker could sign."""

from __future__ import annotations

from collections.abc import Sequence

from skiplock.store.call import Call


def unsigned_callbacks(job_ids: Sequence[int]) -> Call[list[tuple[int, str]]]:
    """(id, queue) of the given jobs that carry a callback URL in a queue whose live
    workers (heartbeat within the last minute) all said they hold no webhook secret: a
    delivery from there would go to the dead letters unsent. A queue no live worker
    serves is left out (a worker that comes later may sign), and so is a worker that
    did not say (signs_webhooks NULL)."""
    return Call(
        "SELECT j.id, j.queue FROM skiplock.all_jobs j"
        " WHERE j.id = ANY (%s::bigint[]) AND j.callback_url IS NOT NULL"
        " AND EXISTS (SELECT 1 FROM skiplock.worker_stats w"
        "             WHERE w.alive AND j.queue = ANY (w.queues))"
        " AND NOT EXISTS (SELECT 1 FROM skiplock.worker_stats w"
        "                 WHERE w.alive AND j.queue = ANY (w.queues)"
        "                   AND w.signs_webhooks IS NOT FALSE)"
        " ORDER BY j.id",
        (list(job_ids),),
        lambda rows: [(job_id, queue) for job_id, queue in rows],
    )
