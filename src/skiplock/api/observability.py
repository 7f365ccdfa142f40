"""Readiness and metrics: GET /ready, GET /api/v1/metrics (JSON), GET /metrics (Prometheus).

Every figure comes from a cheap source read at request time: the counters in
skiplock.queue_totals and skiplock.job_counts (kept by triggers; by queue and task, with
the run-time and wait histograms), the per-queue counts of the small hot table
(queue_stats), the queues and workers tables, the applied migrations, and the latest
queue depth sample of the metrics history. Nothing counts job_history or dead_jobs, so a
scrape costs the same with ten or ten million finished jobs. These series describe the
whole system (every API replica reports the same); the process_* and python_* series
and skiplock_build_info describe this process (see docs/operations.md, Metrics).
"""

from __future__ import annotations

import functools
import math
from collections import Counter
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any

import psycopg
from prometheus_client import CollectorRegistry, generate_latest
from prometheus_client.core import (
    CounterMetricFamily,
    GaugeMetricFamily,
    HistogramMetricFamily,
    Metric,
)
from prometheus_client.exposition import CONTENT_TYPE_LATEST
from prometheus_client.registry import Collector
from starlette.requests import Request
from starlette.responses import JSONResponse, Response

from skiplock import store
from skiplock.api.problems import Problem
from skiplock.api.responses import Ready
from skiplock.api.routing import Answer, Operation, route
from skiplock.api.state import Conn, api_state
from skiplock.errors import SchemaError
from skiplock.migrate import load_migrations, verify_applied, verify_functions
from skiplock.process_metrics import register_process_metrics

PENDING_STATUSES = ("waiting", "scheduled", "queued", "running", "retrying")
FINISHED_STATUSES = ("succeeded", "failed", "cancelled", "expired")
# The job_counts events exported as counters, with their help text.
JOB_EVENTS = {
    "created": "Jobs created (inserted into the jobs table; a manual retry of a finished "
    "job counts again)",
    "succeeded": "Jobs that succeeded",
    "failed": "Jobs that failed for good (moved to the dead letters)",
    "retried": "Failed attempts that will run again",
    "cancelled": "Jobs cancelled",
    "expired": "Jobs that expired before they started",
    "rescued": "Running jobs whose lease expired (their worker died or lost the database)"
    " and that were failed by the rescue",
}


async def ready(request: Request) -> Response:
    """GET /ready → 200 {"status": "ready", "schema_version"} when the database answers
    and its schema is the one this code knows; 503 otherwise."""
    api = api_state(request)

    async def applied(conn: Conn) -> dict[int, tuple[str, str]]:
        return await api.app.arun(store.applied_migrations(), conn)

    async def functions(conn: Conn) -> str | None:
        return await api.app.arun(store.applied_functions(), conn)

    try:
        versions = await api.db(applied)
    except psycopg.errors.UndefinedTable:
        raise not_ready("skiplock schema not found; run `skiplock migrate`") from None
    try:
        version = verify_applied(versions)
        verify_functions(await api.db(functions))
    except SchemaError as exc:
        raise not_ready(str(exc)) from None
    return JSONResponse({"status": "ready", "schema_version": version})


def not_ready(detail: str) -> Problem:
    return Problem(503, "schema not current", detail, headers={"Retry-After": "30"})


@dataclass(frozen=True)
class Snapshot:
    """Everything one scrape reports, read in one transaction."""

    queues: list[dict[str, Any]]
    totals: list[tuple[str, str, int]]
    workers: list[dict[str, Any]]
    uptime: float
    counts: list[tuple[str, str, str, str | None, float | None, int, float]]
    duration_bounds: list[float]
    # the tasks some worker has published (skiplock.tasks), and the built-in ones
    known_tasks: frozenset[str] = frozenset()
    # the latest per-queue depth sample of the metrics history, when it is recent
    depth_samples: list[store.DepthSample] = field(default_factory=list)
    # the wait histogram's bounds (job_wait_bounds)
    wait_bounds: list[float] = field(default_factory=list)
    # the newest migration applied to the database
    schema_version: int = 0

    def by_task(self) -> list[dict[str, Any]]:
        """{"queue", "task", <event>: n, ...} per queue and task, events as JOB_EVENTS."""
        rows: dict[tuple[str, str], dict[str, Any]] = {}
        for queue, task, event, _, _, n, _ in self.counts:
            if event in JOB_EVENTS:
                row = rows.setdefault(
                    (queue, task), {"queue": queue, "task": task, **dict.fromkeys(JOB_EVENTS, 0)}
                )
                row[event] += n
        return list(rows.values())

    def unknown_task_jobs(self) -> dict[str, int]:
        """Jobs not finished, by task, for the tasks no worker has published: created
        minus finished, from the counters (no COUNT over the jobs)."""
        pending: Counter[str] = Counter()
        for row in self.by_task():
            if row["task"] not in self.known_tasks:
                finished = sum(row[status] for status in FINISHED_STATUSES)
                pending[row["task"]] += row["created"] - finished
        return {task: n for task, n in sorted(pending.items()) if n > 0}


async def snapshot(request: Request) -> Snapshot:
    api = api_state(request)

    async def read(conn: Conn) -> Snapshot:
        applied = await api.app.arun(store.applied_migrations(), conn)
        return Snapshot(
            queues=await api.app.arun(store.queue_stats(), conn),
            totals=await api.app.arun(store.queue_totals(), conn),
            workers=await api.app.arun(store.list_workers(), conn),
            uptime=api.uptime(),
            counts=await api.app.arun(store.read_job_counts(), conn),
            duration_bounds=await api.app.arun(store.job_duration_bounds(), conn),
            known_tasks=frozenset(
                [row["name"] for row in await api.app.arun(store.list_tasks(), conn)]
                + list(api.app.builtin_tasks)
            ),
            depth_samples=await api.app.arun(store.latest_queue_depth(), conn),
            wait_bounds=(await api.app.arun(store.metrics_bounds(), conn))[1],
            schema_version=max(applied, default=0),
        )

    return await api.db(read)


async def metrics_json(request: Request) -> Response:
    """GET /api/v1/metrics (also served at /api/v1/stats) → 200: per-queue counts, totals
    by status, workers, uptime."""
    snap = await snapshot(request)
    totals = {status: 0 for status in (*PENDING_STATUSES, *FINISHED_STATUSES)}
    for queue in snap.queues:
        for status in PENDING_STATUSES:
            totals[status] += queue[status]
    # Finished totals from the counters, including queues that were since deleted.
    for _, status, total in snap.totals:
        totals[status] = totals.get(status, 0) + total
    alive = sum(1 for w in snap.workers if w["alive"])
    return JSONResponse(
        {
            "queues": snap.queues,
            "totals": totals,
            "workers": {
                "registered": len(snap.workers),
                "alive": alive,
                "unhealthy": sum(1 for w in snap.workers if w["alive"] and not w["healthy"]),
                "running_jobs": sum(w["running_jobs"] for w in snap.workers),
                "concurrency": sum(w["concurrency"] for w in snap.workers if w["alive"]),
            },
            "tasks": snap.by_task(),
            "uptime_seconds": round(snap.uptime, 3),
        }
    )


class SnapshotCollector(Collector):
    """A prometheus-client Collector over one Snapshot: the database is read (async)
    before generate_latest calls collect(), which therefore never blocks the loop."""

    def __init__(self, snap: Snapshot) -> None:
        self.snap = snap

    def collect(self) -> Iterator[Metric]:
        snap = self.snap
        finished = CounterMetricFamily(
            "skiplock_jobs_finished",
            "Jobs finished since install, by queue and outcome (skiplock.queue_totals).",
            labels=["queue", "status"],
        )
        for queue, status, total in snap.totals:
            finished.add_metric([queue, status], total)
        yield finished
        yield from self.job_counters()
        yield self.durations()
        yield self.waits()

        depth = GaugeMetricFamily(
            "skiplock_queue_jobs",
            "Jobs that have not finished, by queue and status.",
            labels=["queue", "status"],
        )
        paused = GaugeMetricFamily(
            "skiplock_queue_paused", "1 when the queue is paused.", labels=["queue"]
        )
        for stats in snap.queues:
            for status in PENDING_STATUSES:
                depth.add_metric([stats["queue"], status], stats[status])
            paused.add_metric([stats["queue"]], 1 if stats["paused"] else 0)
        yield depth
        yield paused
        oldest = GaugeMetricFamily(
            "skiplock_queue_oldest_ready_seconds",
            "How long the oldest job ready to run has waited, by queue (0: none ready), as"
            " of the latest once-a-minute sample of the metrics history.",
            labels=["queue"],
        )
        for sample in snap.depth_samples:
            oldest.add_metric([sample.queue], sample.oldest_ready_seconds)
        yield oldest
        unknown = GaugeMetricFamily(
            "skiplock_unknown_task_jobs",
            "Jobs not finished whose task no worker has published, by task: a typo, or a"
            " worker that is not deployed (see docs/worker.md, Unknown tasks).",
            labels=["task"],
        )
        for task, n in snap.unknown_task_jobs().items():
            unknown.add_metric([task], n)
        yield unknown

        alive = [w for w in snap.workers if w["alive"]]
        yield GaugeMetricFamily(
            "skiplock_workers_alive",
            "Worker processes with a heartbeat in the last minute.",
            value=len(alive),
        )
        yield GaugeMetricFamily(
            "skiplock_workers_registered",
            "Worker processes registered (alive or not yet pruned).",
            value=len(snap.workers),
        )
        yield GaugeMetricFamily(
            "skiplock_workers_unhealthy",
            "Live workers that are not healthy: a handler thread they cannot stop, a loop"
            " failing for over a lease, or no heartbeat within the lease.",
            value=sum(1 for w in alive if not w["healthy"]),
        )
        stalled = GaugeMetricFamily(
            "skiplock_worker_stalled_loops",
            "Live workers whose loop has failed for longer than a lease, per loop.",
            labels=["loop"],
        )
        for loop, count in sorted(Counter(lp for w in alive for lp in w["stalled_loops"]).items()):
            stalled.add_metric([loop], count)
        yield stalled
        yield GaugeMetricFamily(
            "skiplock_worker_running_jobs",
            "Jobs running on live workers.",
            value=sum(w["running_jobs"] for w in alive),
        )
        yield GaugeMetricFamily(
            "skiplock_worker_slots",
            "Slots of live workers: the sum of their concurrency.",
            value=sum(w["concurrency"] for w in alive),
        )
        yield from self.slots(alive)
        schema = GaugeMetricFamily(
            "skiplock_database_schema_info",
            "1, labelled with the newest migration applied to the database (compare with"
            " skiplock_build_info's schema_version).",
            labels=["schema_version"],
        )
        schema.add_metric([str(snap.schema_version)], 1)
        yield schema
        yield GaugeMetricFamily(
            "skiplock_api_uptime_seconds",
            "Seconds since this API process started.",
            value=snap.uptime,
        )

    def slots(self, alive: list[dict[str, Any]]) -> Iterator[Metric]:
        """Per queue: the slots of the live workers that serve it (a worker serving two
        queues counts its slots in both) and the busy ones (its running jobs)."""
        slots = GaugeMetricFamily(
            "skiplock_queue_worker_slots",
            "Slots of the live workers serving the queue: the sum of their concurrency.",
            labels=["queue"],
        )
        busy = GaugeMetricFamily(
            "skiplock_queue_busy_slots",
            "Busy slots of the queue: its running jobs.",
            labels=["queue"],
        )
        per_queue: Counter[str] = Counter()
        for worker in alive:
            for queue in worker["queues"]:
                per_queue[queue] += worker["concurrency"]
        for stats in self.snap.queues:
            per_queue.setdefault(stats["queue"], 0)
            busy.add_metric([stats["queue"]], stats["running"])
        for queue, n in sorted(per_queue.items()):
            slots.add_metric([queue], n)
        yield slots
        yield busy

    def job_counters(self) -> Iterator[Metric]:
        families = {
            event: CounterMetricFamily(
                f"skiplock_jobs_{event}", f"{text}, by queue and task.", labels=["queue", "task"]
            )
            for event, text in JOB_EVENTS.items()
        }
        for row in self.snap.by_task():
            for event, family in families.items():
                family.add_metric([row["queue"], row["task"]], row[event])
        yield from families.values()

    def durations(self) -> Metric:
        """The last attempt's run time of finished jobs, as a Prometheus histogram: the
        stored per-bucket counts, made cumulative over every bound."""
        family = HistogramMetricFamily(
            "skiplock_job_duration_seconds",
            "Run time of the last attempt of jobs that succeeded or failed for good.",
            labels=["queue", "task", "status"],
        )
        per_key: dict[tuple[str, str, str], tuple[dict[float, int], list[float]]] = {}
        for queue, task, event, status, le, n, seconds in self.snap.counts:
            if event != "duration" or status is None or le is None:
                continue
            buckets, total = per_key.setdefault((queue, task, status), ({}, [0.0]))
            buckets[le] = buckets.get(le, 0) + n
            total[0] += seconds
        for key, (buckets, total) in per_key.items():
            family.add_metric(
                list(key), cumulative(buckets, self.snap.duration_bounds), sum_value=total[0]
            )
        return family

    def waits(self) -> Metric:
        """How long ready jobs waited to start, by queue, as a Prometheus histogram: the
        wait counters (event 'wait', kept with the metrics history's waits) summed over
        tasks, made cumulative over every bound."""
        family = HistogramMetricFamily(
            "skiplock_queue_wait_seconds",
            "How long jobs waited from ready (run_at, or enqueued) to the start of the"
            " attempt that ended them, by queue.",
            labels=["queue"],
        )
        per_queue: dict[str, tuple[dict[float, int], list[float]]] = {}
        for queue, _, event, _, le, n, seconds in self.snap.counts:
            if event != "wait" or le is None:
                continue
            buckets, total = per_queue.setdefault(queue, ({}, [0.0]))
            buckets[le] = buckets.get(le, 0) + n
            total[0] += seconds
        for queue, (buckets, total) in sorted(per_queue.items()):
            family.add_metric(
                [queue], cumulative(buckets, self.snap.wait_bounds), sum_value=total[0]
            )
        return family


def cumulative(buckets: dict[float, int], bounds: list[float]) -> list[tuple[str, float]]:
    """Per-bucket counts keyed by upper bound, as Prometheus' cumulative `le` buckets."""
    result, running = [], 0
    for bound in [*bounds, math.inf]:
        running += buckets.get(bound, 0)
        result.append(("+Inf" if bound == math.inf else f"{bound:g}", float(running)))
    return result


@functools.cache
def schema_version_shipped() -> int:
    """The newest migration this code knows (what a process that started runs on)."""
    return len(load_migrations())


async def metrics_prometheus(request: Request) -> Response:
    """GET /metrics → 200 Prometheus text exposition (format 0.0.4)."""
    registry = CollectorRegistry(auto_describe=False)
    registry.register(SnapshotCollector(await snapshot(request)))
    register_process_metrics(registry, schema_version=schema_version_shipped())
    return Response(generate_latest(registry), media_type=CONTENT_TYPE_LATEST)


routes = [
    route(
        "/ready",
        {
            "GET": Operation(
                ready,
                "get_ready",
                "Readiness: the database answers and its schema is current.",
                "ops",
                {200: Answer(Ready, "Ready.")},
            )
        },
        name="ready",
    ),
    route(
        "/metrics",
        {
            "GET": Operation(
                metrics_prometheus,
                "get_prometheus_metrics",
                "Prometheus text exposition.",
                "ops",
                {200: Answer(str, "Metrics.", media="text/plain")},
            )
        },
        name="metrics_prometheus",
    ),
]
api_routes = [
    route(
        "/metrics",
        {
            "GET": Operation(
                metrics_json,
                "get_metrics",
                "Counts per queue and status, finished totals, workers, uptime (JSON).",
                "ops",
                {200: Answer(dict[str, Any], "Stats.")},
            )
        },
        name="metrics",
    )
]
