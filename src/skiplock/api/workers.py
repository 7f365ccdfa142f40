"""/api/v1/workers: the registered worker processes, and a graceful stop for one."""

from __future__ import annotations

import uuid
from datetime import datetime
from typing import Any

from starlette.requests import Request
from starlette.responses import JSONResponse, Response

from skiplock import store
from skiplock.api.problems import Problem
from skiplock.api.query import Query
from skiplock.api.responses import Workers, WorkerStopping
from skiplock.api.routing import Answer, Operation, Param, route
from skiplock.api.state import api_state


def worker_json(row: dict[str, Any]) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for key, value in row.items():
        if isinstance(value, datetime):
            value = value.isoformat()
        elif isinstance(value, uuid.UUID):
            value = str(value)
        out[key] = value
    return out


async def list_workers(request: Request) -> Response:
    """GET /api/v1/workers → 200 {"workers": [...]}: id, host, pid, queues, concurrency,
    version, started_at, last_heartbeat_at, running_jobs, alive, stuck_jobs (handler
    threads the worker cannot stop, as of its last heartbeat), stalled_loops (its loops
    failing for longer than a lease), healthy (neither, and a heartbeat within the
    lease), signs_webhooks (holds a webhook secret; null: the worker did not say)."""
    api = api_state(request)
    Query(request, ())
    rows = await api.run(store.list_workers())
    return JSONResponse({"workers": [worker_json(row) for row in rows]})


async def stop_worker(request: Request) -> Response:
    """POST /api/v1/workers/{id}/stop → 202 {"id", "stopping": true}: the worker is told
    (NOTIFY) to stop claiming, finish its jobs and exit; 404 for an unknown worker."""
    api = api_state(request)
    raw = request.path_params["worker_id"]
    try:
        worker_id = uuid.UUID(raw)
    except ValueError:
        worker_id = None
    if worker_id is None or not await api.run(store.stop_worker(worker_id)):
        raise Problem(404, "not found", f"worker {raw} not found")
    return JSONResponse({"id": str(worker_id), "stopping": True}, status_code=202)


routes = [
    route(
        "/workers",
        {
            "GET": Operation(
                list_workers,
                "list_workers",
                "Registered worker processes.",
                "workers",
                {200: Answer(Workers, "Workers.")},
                errors=(422, 503),
            )
        },
        name="list_workers",
    ),
    route(
        "/workers/{worker_id}/stop",
        {
            "POST": Operation(
                stop_worker,
                "stop_worker",
                "Ask a worker to stop gracefully (NOTIFY skiplock_control).",
                "workers",
                {202: Answer(WorkerStopping, "Told to stop.")},
                errors=(404, 503),
            )
        },
        name="stop_worker",
        params=(Param("worker_id", uuid.UUID, "Worker id."),),
    ),
]
"""Mounted under /api/v1 by create_app."""
