"""Webhook deliveries (sql/functions/130_webhooks.sql enqueues them and links each to
its job): a job's deliveries, and which callbacks no live worker could sign."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import asdict, dataclass
from datetime import datetime
from typing import Any

from skiplock.store.call import Call, dataclass_row


@dataclass(frozen=True)
class WebhookDelivery:
    """One `skiplock.webhook` job that posts a finished job's outcome to its callback
    URL: its status and attempts, and the message of its last error (None: none yet)."""

    delivery_id: int
    status: str
    attempt: int
    max_attempts: int
    url: str
    last_error: str | None
    created_at: datetime
    run_at: datetime | None
    finished_at: datetime | None

    def to_json(self) -> dict[str, Any]:
        out = asdict(self)
        for name in ("created_at", "run_at", "finished_at"):
            value = getattr(self, name)
            out[name] = None if value is None else value.isoformat()
        return out


def webhook_deliveries(job_id: int) -> Call[list[WebhookDelivery]]:
    """The delivery jobs of `job_id`'s callback, newest first (empty for a job without
    a callback URL, not finished, or unknown)."""
    return Call(
        "SELECT delivery_id, status, attempt, max_attempts, url, last_error, created_at,"
        " run_at, finished_at FROM skiplock.webhook_deliveries(%s)",
        (job_id,),
        list,
        dataclass_row(WebhookDelivery),
    )


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
