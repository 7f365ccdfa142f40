"""A worker's settings, checked before it starts."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import timedelta

from skiplock import store
from skiplock.errors import ConfigError


@dataclass
class WorkerSettings:
    queues: Sequence[str] = ("default",)
    concurrency: int = 10
    batch_size: int | None = None  # most jobs per claim; default: all free slots
    poll_interval: float = 1.0
    lease: float = 30.0
    heartbeat_interval: float | None = None  # default: lease / 3
    rescue_interval: float = 5.0
    shutdown_grace: float = 30.0
    probe_interval: float = 30.0
    # Finished jobs (succeeded, cancelled, expired) are deleted this long after they
    # finish; None keeps them. Dead letters are kept until purged.
    history_retention: timedelta | None = timedelta(days=7)
    # audit_log entries (API calls that changed something) are kept longer: who did what
    audit_retention: timedelta | None = timedelta(days=90)
    # The metrics history: per-minute rows are kept this long, hourly rows the second;
    # None keeps them.
    metrics_retention: timedelta | None = timedelta(days=14)
    metrics_hourly_retention: timedelta | None = timedelta(days=90)
    # How often this worker looks for due schedules (0 turns its scheduler off).
    schedule_interval: float = 1.0
    listen: bool = True
    # A job whose task this worker has no handler for goes back to its queue, due again
    # this many seconds later, its attempt not spent.
    unknown_task_delay: float = 60.0
    # HMAC key that signs webhook deliveries; None: SKIPLOCK_WEBHOOK_SECRET.
    webhook_secret: str | None = None
    # Each attempt's stored log keeps at most this many lines and bytes of messages; one
    # marker line counts the rest. Lines wait up to job_log_interval seconds to be
    # written together.
    job_log_max_lines: int = store.JOB_LOG_MAX_LINES
    job_log_max_bytes: int = store.JOB_LOG_MAX_BYTES
    job_log_interval: float = 0.2
    # Leave the objects that exist once the worker is up out of the cyclic garbage
    # collector's walks while it runs (see worker/heap.py).
    freeze_startup_objects: bool = True

    def validate(self) -> None:
        if not self.queues:
            raise ConfigError("queues must name at least one queue, got none")
        for name, value, low in (
            ("concurrency", self.concurrency, 1),
            ("poll_interval", self.poll_interval, 0.01),
            ("lease", self.lease, 1),
            ("rescue_interval", self.rescue_interval, 0.1),
            ("shutdown_grace", self.shutdown_grace, 0),
            ("probe_interval", self.probe_interval, 0.1),
            # shorter, and the workers without the task would pass it round and round
            ("unknown_task_delay", self.unknown_task_delay, 0.1),
            ("job_log_max_lines", self.job_log_max_lines, 0),
            ("job_log_max_bytes", self.job_log_max_bytes, 0),
            ("job_log_interval", self.job_log_interval, 0.01),
        ):
            if value < low:
                raise ConfigError(f"{name} must be >= {low}, got {value}")
        if self.batch_size is not None and self.batch_size < 1:
            raise ConfigError(f"batch_size must be >= 1, got {self.batch_size}")
