"""What a worker says about the jobs it handed back because it has no handler for their
task: one WARNING per task at most once a minute, however many such jobs it claims."""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Collection

from skiplock.jobs import ClaimedJob

log = logging.getLogger("skiplock.worker")

WARN_EVERY = 60.0  # seconds between two warnings about the same task
# the worker's own task names shown in a warning; more are counted, not listed
TASKS_SHOWN = 10


class UnknownTaskWarnings:
    """Rate-limits the warning per task; `clock` (monotonic seconds) for tests."""

    def __init__(
        self,
        served: Callable[[], Collection[str]],
        *,
        every: float = WARN_EVERY,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self._served = served
        self._every = every
        self._clock = clock
        self._warned_at: dict[str, float] = {}
        self._since: dict[str, int] = {}  # handed back since the last warning, per task

    def handed_back(self, job: ClaimedJob, delay: float) -> None:
        """Note that `job` went back to its queue, due again in `delay` seconds."""
        now = self._clock()
        last = self._warned_at.get(job.task)
        if last is not None and now - last < self._every:
            self._since[job.task] = self._since.get(job.task, 0) + 1
            return
        more = self._since.pop(job.task, 0)
        self._warned_at[job.task] = now
        log.warning(
            "job %d of task %r: no handler for it in this worker (tasks: %s); handed back,"
            " due again in %g s, no attempt spent%s",
            job.id,
            job.task,
            self._tasks_text(),
            delay,
            f" ({more} more of its jobs since the last warning)" if more else "",
            extra={
                "skiplock": {
                    "job_id": job.id,
                    "task": job.task,
                    "queue": job.queue,
                    "status": "unknown_task",
                }
            },
        )

    def _tasks_text(self) -> str:
        names = sorted(self._served())
        if not names:
            return "none"
        shown = ", ".join(names[:TASKS_SHOWN])
        return shown if len(names) <= TASKS_SHOWN else f"{shown}, … {len(names)} in all"
