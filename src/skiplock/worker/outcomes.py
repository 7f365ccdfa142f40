"""What a worker says about the outcomes it wrote: a log line each (INFO when a job
succeeded or was released, WARNING otherwise) and the app's finish hooks; and the
outcome of a job whose handler the worker stopped."""

from __future__ import annotations

import asyncio
import logging

from skiplock.app import App
from skiplock.worker.executor import Outcome, error_json
from skiplock.worker.leases import Running

log = logging.getLogger("skiplock.worker")

FINISH_HOOKS = ("succeeded", "retrying", "failed", "cancelled")


async def report_written(app: App, written: list[tuple[Outcome, str]]) -> None:
    """Log the outcomes the completer wrote (with the status the database gave each)
    and run the app's hooks for them."""
    # Checked once per batch: under load there is usually nothing to log or emit.
    info, warning = log.isEnabledFor(logging.INFO), log.isEnabledFor(logging.WARNING)
    hooked = {status for status in FINISH_HOOKS if app.hooks[status]}
    for outcome, status in written:
        logged = info if status in ("succeeded", "released") else warning
        if logged or status in hooked:
            await _log_outcome(app, outcome, status, status in hooked)


async def _log_outcome(app: App, outcome: Outcome, status: str, hooked: bool) -> None:
    level = logging.INFO if status in ("succeeded", "released") else logging.WARNING
    job = outcome.job
    extra = {
        "job_id": job.id,
        "task": job.task,
        "queue": job.queue,
        "attempt": job.attempt,
        "status": status,
        "duration_ms": round(outcome.duration * 1000, 3),
    }
    if outcome.kind == "failed":
        extra["error"] = outcome.payload_json
    log.log(
        level,
        "job %d %s %s (attempt %d, %.1f ms)",
        job.id,
        job.task,
        status,
        job.attempt,
        outcome.duration * 1000,
        extra={"skiplock": extra},
    )
    if hooked:
        await app.emit(status, outcome.ctx, extra)


def stopped_outcome(running: Running) -> Outcome | None:
    """What to record for a job whose handler was stopped, by why it was stopped."""
    ctx = running.ctx
    if running.stop_reason == "cancel":
        err = error_json(asyncio.CancelledError("cancelled on request"), with_traceback=False)
        return Outcome(ctx.job, ctx, "failed", err, 0.0)
    if running.stop_reason == "shutdown":
        return Outcome(ctx.job, ctx, "released", "null", 0.0)
    return None  # lease lost: the job is someone else's now; write nothing
