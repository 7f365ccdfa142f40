"""The metrics history (sql/functions/115_metrics_history.sql): the once-a-minute
sample of queue depth, the fold and retention of the rollups, the series a chart reads
and the latest depth sample /metrics reports."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timedelta

from skiplock.store.call import Call, dataclass_row, scalar

# A sample older than this is not reported as current: no worker has sampled since.
DEPTH_SAMPLE_FRESH = timedelta(minutes=5)


@dataclass(frozen=True)
class MetricsPoint:
    """One period of metrics_series: jobs finished and retried, the run-time and wait
    histograms (per-bucket counts over the bounds of `metrics_bounds`, +Inf last; None:
    nothing measured), and the queue depth sampled (None: no sample, or a task asked)."""

    at: datetime
    succeeded: int
    failed: int
    retried: int
    cancelled: int
    expired: int
    run_buckets: list[int] | None
    run_seconds: float
    wait_buckets: list[int] | None
    wait_seconds: float
    ready: int | None
    ready_estimated: bool | None
    oldest_ready_seconds: float | None


@dataclass(frozen=True)
class DepthSample:
    """A queue's latest depth sample: ready jobs (an estimate past the sampler's cap)
    and how long the oldest ready job has been due."""

    queue: str
    ready: int
    ready_estimated: bool
    oldest_ready_seconds: float


def sample_queue_depth(cap: int = 10_000) -> Call[int | None]:
    """How many queues were sampled; None when this minute was sampled already or
    another process is sampling."""
    return Call("SELECT skiplock.sample_queue_depth(%s)", (cap,), scalar)


def fold_metrics() -> Call[int | None]:
    """How many rows were folded; None when another fold runs."""
    return Call("SELECT skiplock.fold_metrics()", (), scalar)


def prune_metrics(
    minutes_older_than: timedelta | None, hours_older_than: timedelta | None, limit: int
) -> Call[int]:
    """Retention of the history (None keeps that resolution); the most rows deleted
    from one table."""
    return Call(
        "SELECT skiplock.prune_metrics(%s, %s, %s)",
        (minutes_older_than, hours_older_than, limit),
        scalar,
    )


def metrics_series(
    window: timedelta,
    *,
    queue: str | None = None,
    task: str | None = None,
    queue_pattern: str | None = None,
) -> Call[list[MetricsPoint]]:
    """The history over the last `window`, oldest first: by minute up to 6 hours, by
    hour beyond."""
    return Call(
        "SELECT at, succeeded, failed, retried, cancelled, expired, run_buckets, run_seconds,"
        " wait_buckets, wait_seconds, ready, ready_estimated, oldest_ready_seconds"
        " FROM skiplock.metrics_series(%s, %s, %s, %s)",
        (window, queue, task, queue_pattern),
        list,
        dataclass_row(MetricsPoint),
    )


def metrics_bounds() -> Call[tuple[list[float], list[float]]]:
    """(run-time bounds, wait bounds) in seconds, of the histograms' buckets."""
    return Call(
        "SELECT skiplock.job_duration_bounds(), skiplock.job_wait_bounds()",
        (),
        lambda rows: (list(rows[0][0]), list(rows[0][1])),
    )


def latest_queue_depth() -> Call[list[DepthSample]]:
    """Every queue of the latest depth sample, by name; none when that sample is older
    than DEPTH_SAMPLE_FRESH. Two index probes, whatever the history holds."""
    return Call(
        "SELECT queue, ready, ready_estimated, oldest_ready_seconds"
        " FROM skiplock.queue_depth_minutes"
        " WHERE minute = (SELECT max(minute) FROM skiplock.queue_depth_minutes)"
        " AND minute > now() - %s ORDER BY queue",
        (DEPTH_SAMPLE_FRESH,),
        list,
        dataclass_row(DepthSample),
    )
