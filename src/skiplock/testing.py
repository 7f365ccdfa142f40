"""Helpers for testing code that uses skiplock, against a real database.

    job_id = send_welcome.enqueue(user_id=7)
    assert run_jobs(app) == 1
    assert app.get_job(job_id).status == "succeeded"

`run_jobs` runs ready jobs inline with a real worker's code path (claim, execute,
record), without a listener, loops or sleeps. `assert_enqueued` finds a job or fails
with the list of what was enqueued instead.
"""

from __future__ import annotations

import asyncio
from collections.abc import Mapping, Sequence
from typing import Any

from skiplock import store
from skiplock.app import App
from skiplock.jobs import Job
from skiplock.worker import Worker

SHOWN_ON_MISMATCH = 20


def run_jobs(app: App, *, queues: Sequence[str] = ("default",), max_rounds: int = 100) -> int:
    """Run every job that is ready in `queues` until none is left; return how many ran.

    Jobs enqueued by the jobs that ran are run too, if ready. A job retried with a delay
    is not ready, so it is not run again (move its run_at in the test to get there).
    Stops after `max_rounds` claims, so a job that re-enqueues itself cannot loop
    forever. For sync tests; from async code use `run_jobs_async`.
    """
    return asyncio.run(run_jobs_async(app, queues=queues, max_rounds=max_rounds))


async def run_jobs_async(
    app: App, *, queues: Sequence[str] = ("default",), max_rounds: int = 100
) -> int:
    """`run_jobs` for async tests."""
    worker = Worker(app, queues=list(queues), listen=False)
    total = 0
    try:
        for _ in range(max_rounds):
            ran = await worker.run_once()
            if ran == 0:
                break
            total += ran
    finally:
        await worker.close()
    return total


def assert_enqueued(
    app: App,
    task: str,
    args: Mapping[str, Any] | None = None,
    *,
    queue: str | None = None,
    status: str | None = None,
) -> Job:
    """Return the newest job of `task` (with exactly these `args`, in `queue`, with
    `status`, for each one given); raise AssertionError listing the jobs there are."""
    candidates = app.run(store.list_jobs(task=task, queue=queue, status=status, limit=1000))
    for job in candidates:
        if args is None or job.args == dict(args):
            return job
    wanted = _describe(task, args, queue, status)
    there = app.run(store.list_jobs(limit=SHOWN_ON_MISMATCH))
    if not there:
        raise AssertionError(f"no job {wanted}: no jobs were enqueued")
    listing = "\n".join(
        f"  #{j.id} {j.task} args={j.args} queue={j.queue} status={j.status}" for j in there
    )
    note = f" (newest {SHOWN_ON_MISMATCH})" if len(there) == SHOWN_ON_MISMATCH else ""
    raise AssertionError(f"no job {wanted}; enqueued{note}:\n{listing}")


def _describe(
    task: str, args: Mapping[str, Any] | None, queue: str | None, status: str | None
) -> str:
    parts = [repr(task)]
    if args is not None:
        parts.append(f"with args {dict(args)}")
    if queue is not None:
        parts.append(f"in queue {queue!r}")
    if status is not None:
        parts.append(f"with status {status!r}")
    return " ".join(parts)
