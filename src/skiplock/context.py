"""What a handler is given about the job it runs (when it declares a `ctx` parameter)."""

from __future__ import annotations

import logging
import threading
import time
import uuid
from collections.abc import Callable
from datetime import datetime
from typing import Any

from skiplock.jobs import ClaimedJob

ProgressSink = Callable[["JobContext", "float | None", "str | None"], None]
# (context, level number, logger name, message, time.time() of the line)
LogSink = Callable[["JobContext", int, str, str, float], None]

# The logger ctx.log passes its lines to, and the name they are stored under.
JOB_LOGGER = "skiplock.job"
# Set on the records ctx.log passes on: their line is stored already.
STORED_MARK = "skiplock_stored"
LEVEL_NUMBERS = {
    "debug": logging.DEBUG,
    "info": logging.INFO,
    "warning": logging.WARNING,
    "error": logging.ERROR,
    "critical": logging.CRITICAL,
}


class JobContext:
    """The running job: id, attempt, args, a progress reporter, its log and a
    cancellation signal.

    `cancelled` is set when the job is cancelled, its lease is lost or the worker shuts
    down past its grace period; async handlers are also cancelled (CancelledError), sync
    handlers must poll `ctx.cancelled.is_set()` to stop early.
    """

    def __init__(
        self,
        job: ClaimedJob,
        worker_id: uuid.UUID,
        progress_sink: ProgressSink,
        log_sink: LogSink | None = None,
    ) -> None:
        self.job = job
        self.worker_id = worker_id
        self._cancelled: threading.Event | None = None
        self._progress_sink = progress_sink
        self._log_sink = log_sink
        # This attempt's log counters, kept by the sink; None until its first line.
        self.log_state: Any = None

    @property
    def cancelled(self) -> threading.Event:
        # Made on first use: most handlers never look at it, and an Event (with its lock)
        # per job is a visible share of the worker's CPU on short jobs.
        if self._cancelled is None:
            self._cancelled = threading.Event()
        return self._cancelled

    @property
    def id(self) -> int:
        return self.job.id

    @property
    def task(self) -> str:
        return self.job.task

    @property
    def queue(self) -> str:
        return self.job.queue

    @property
    def attempt(self) -> int:
        return self.job.attempt

    @property
    def max_attempts(self) -> int:
        return self.job.max_attempts

    @property
    def args(self) -> dict[str, Any]:
        return self.job.args

    @property
    def created_at(self) -> datetime:
        return self.job.created_at

    def progress(self, fraction: float | None = None, message: str | None = None) -> None:
        """Record progress (fraction 0..1 and/or a message), visible in SQL, API and CLI.

        Returns at once; writes are coalesced, so calling it often is cheap. Safe from
        async handlers and from sync handlers running in threads.
        """
        if fraction is not None and not 0 <= fraction <= 1:
            raise ValueError(f"progress fraction must be between 0 and 1, got {fraction}")
        self._progress_sink(self, fraction, message)

    def log(self, message: str, level: str = "info") -> None:
        """Add a line to this attempt's stored log (`skiplock jobs logs ID`,
        GET /api/v1/jobs/{id}/logs) and pass it to the `skiplock.job` logger.

        Stored whatever the loggers' levels are, up to the attempt's bound (see
        docs/worker.md); returns at once, the worker writes lines in batches. Safe from
        async handlers and from sync handlers running in threads.
        """
        levelno = LEVEL_NUMBERS.get(level)
        if levelno is None:
            raise ValueError(f"log level must be one of {', '.join(LEVEL_NUMBERS)}, got {level!r}")
        text = str(message)
        self.store_log(levelno, JOB_LOGGER, text, time.time())
        logger = logging.getLogger(JOB_LOGGER)
        if logger.isEnabledFor(levelno):
            logger.log(levelno, "%s", text, extra={STORED_MARK: True})

    def store_log(self, levelno: int, logger: str, message: str, created: float) -> None:
        """Hand one line to the worker's log writer; nothing outside a worker."""
        if self._log_sink is not None:
            self._log_sink(self, levelno, logger, message, created)
