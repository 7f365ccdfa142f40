"""GET /api/v1/metrics/history: the metrics history a chart draws (throughput,
failures, retries, run time, how long ready jobs waited, queue depth and the oldest
ready job) over the last hour by minute, or the last day or week by hour, from the
rollups in PostgreSQL (skiplock.metrics_series): the window's rows, never the jobs."""

from __future__ import annotations

from datetime import timedelta
from typing import Any, Literal

from starlette.requests import Request
from starlette.responses import JSONResponse, Response

from skiplock import store
from skiplock.api.auth import principal_of
from skiplock.api.fields import QUEUE_NAME
from skiplock.api.problems import Problem
from skiplock.api.query import Query, invalid_parameter
from skiplock.api.responses import MetricsHistory
from skiplock.api.routing import Answer, Operation, Param, route
from skiplock.api.state import Conn, api_state

RANGES = {"1h": timedelta(hours=1), "24h": timedelta(hours=24), "7d": timedelta(days=7)}
RANGE = Param(
    "range",
    Literal["1h", "24h", "7d"],
    "The window: the last hour by minute, the last 24 hours or 7 days by hour.",
    "1h",
)
QUEUE = Param("queue", str, "Only this queue's jobs and depth.")
TASK = Param("task", str, "Only this task's jobs (no depth: depth is per queue).")


async def metrics_history(request: Request) -> Response:
    """GET /api/v1/metrics/history?range=1h|24h|7d&queue=&task= → 200 MetricsHistory.
    A token limited to some queues sees only theirs: another queue answers 404, and
    without `queue` the figures cover its queues alone."""
    api = api_state(request)
    query = Query(request, (RANGE, QUEUE, TASK))
    window = query.choice("range", tuple(RANGES), "1h")
    queue = query.text("queue")
    task = query.text("task")
    if queue is not None and not QUEUE_NAME.fullmatch(queue):
        raise invalid_parameter("queue", "queue must be a valid queue name")
    principal = principal_of(request)
    if queue is not None and principal is not None and not principal.sees(queue):
        raise Problem(404, "not found", f"queue {queue} not found")
    pattern = principal.queue_pattern if principal is not None else None
    series = store.metrics_series(RANGES[window], queue=queue, task=task, queue_pattern=pattern)

    async def read(conn: Conn) -> tuple[list[store.MetricsPoint], tuple[list[float], list[float]]]:
        return await api.app.arun(series, conn), await api.app.arun(store.metrics_bounds(), conn)

    points, (run_bounds, wait_bounds) = await api.db(read)
    return JSONResponse(
        {
            "range": window,
            "step_seconds": 60 if RANGES[window] <= timedelta(hours=6) else 3600,
            "queue": queue,
            "task": task,
            "run_bounds": run_bounds,
            "wait_bounds": wait_bounds,
            "points": [point_json(point) for point in points],
        }
    )


def point_json(point: store.MetricsPoint) -> dict[str, Any]:
    out = dict(point.__dict__)
    out["at"] = point.at.isoformat()
    return out


routes = [
    route(
        "/metrics/history",
        {
            "GET": Operation(
                metrics_history,
                "get_metrics_history",
                "Metrics history by minute or hour: throughput, failures, retries, run time,"
                " waits, queue depth.",
                "ops",
                {200: Answer(MetricsHistory, "The series, oldest first.")},
                query=(RANGE, QUEUE, TASK),
                errors=(404, 422, 503),
            )
        },
        name="metrics_history",
    )
]
"""Mounted under /api/v1 by create_app."""
