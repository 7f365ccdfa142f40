"""Readiness and metrics: GET /ready, GET /api/v1/metrics (JSON), GET /metrics (Prometheus).

Every figure comes from a cheap source read at request time: the counters in
skiplock.queue_totals (kept by triggers), the per-queue counts of the small hot table
(queue_stats), the queues and workers tables. Nothing counts job_history or dead_jobs,
so a scrape costs the same with ten or ten million finished jobs.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

import psycopg
from prometheus_client import CollectorRegistry, generate_latest
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, Metric
from prometheus_client.exposition import CONTENT_TYPE_LATEST
from prometheus_client.registry import Collector
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

from skiplock import store
from skiplock.api.problems import Problem
from skiplock.api.state import Conn, api_state
from skiplock.errors import SchemaError
from skiplock.migrate import verify_applied

PENDING_STATUSES = ("waiting", "scheduled", "queued", "running", "retrying")
FINISHED_STATUSES = ("succeeded", "failed", "cancelled", "expired")


async def ready(request: Request) -> Response:
    """GET /ready → 200 {"status": "ready", "schema_version"} when the database answers
    and its schema is the one this code knows; 503 otherwise."""
    api = api_state(request)

    async def applied(conn: Conn) -> dict[int, str]:
        return await api.app.arun(store.applied_migrations(), conn)

    try:
        versions = await api.db(applied)
    except psycopg.errors.UndefinedTable:
        raise not_ready("skiplock schema not found; run `skiplock migrate`") from None
    try:
        version = verify_applied(versions)
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


async def snapshot(request: Request) -> Snapshot:
    api = api_state(request)

    async def read(conn: Conn) -> Snapshot:
        return Snapshot(
            queues=await api.app.arun(store.queue_stats(), conn),
            totals=await api.app.arun(store.queue_totals(), conn),
            workers=await api.app.arun(store.list_workers(), conn),
            uptime=api.uptime(),
        )

    return await api.db(read)


async def metrics_json(request: Request) -> Response:
    """GET /api/v1/metrics → 200: per-queue counts, totals by status, workers, uptime."""
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
                "running_jobs": sum(w["running_jobs"] for w in snap.workers),
                "concurrency": sum(w["concurrency"] for w in snap.workers if w["alive"]),
            },
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

        alive = [w for w in snap.workers if w["alive"]]
        yield GaugeMetricFamily(
            "skiplock_workers_active",
            "Worker processes with a heartbeat in the last minute.",
            value=len(alive),
        )
        yield GaugeMetricFamily(
            "skiplock_workers_registered",
            "Worker processes registered (alive or not yet pruned).",
            value=len(snap.workers),
        )
        yield GaugeMetricFamily(
            "skiplock_worker_running_jobs",
            "Jobs running on live workers.",
            value=sum(w["running_jobs"] for w in alive),
        )
        yield GaugeMetricFamily(
            "skiplock_api_uptime_seconds",
            "Seconds since this API process started.",
            value=snap.uptime,
        )


async def metrics_prometheus(request: Request) -> Response:
    """GET /metrics → 200 Prometheus text exposition (format 0.0.4)."""
    registry = CollectorRegistry(auto_describe=False)
    registry.register(SnapshotCollector(await snapshot(request)))
    return Response(generate_latest(registry), media_type=CONTENT_TYPE_LATEST)


routes = [
    Route("/ready", ready, methods=["GET"], name="ready"),
    Route("/metrics", metrics_prometheus, methods=["GET"], name="metrics_prometheus"),
]
api_routes = [Route("/metrics", metrics_json, methods=["GET"], name="metrics")]
