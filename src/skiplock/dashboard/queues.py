"""The overview, the queues (pause, resume) and the workers (stop): what the API's
/api/v1/stats, /queues, /metrics/history and /workers handlers read, through the same
store calls."""

from __future__ import annotations

import json
import uuid
from datetime import timedelta
from typing import Any

from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from skiplock import store
from skiplock.api.fields import QUEUE_NAME
from skiplock.api.metrics_history import RANGES
from skiplock.api.state import ApiState, Conn
from skiplock.dashboard.charts import PLOT, overview_charts
from skiplock.dashboard.pages import (
    PageError,
    Viewer,
    acting,
    audit_found,
    back_to,
    check_sees_all_queues,
    dashboard_of,
    not_found,
    render,
    viewer,
)
from skiplock.errors import ConfigError
from skiplock.jobs import STATUSES
from skiplock.options import from_cli
from skiplock.queue_settings import SETTINGS, checked_settings

# Every setting but paused (the queues page pauses and resumes), in declaration order.
FORM_SETTINGS = tuple(setting for setting in SETTINGS if setting.name != "paused")


async def visible_queues(request: Request, who: Viewer) -> list[dict[str, Any]]:
    """store.queue_stats, less the queues a queue-limited viewer does not see."""
    rows = await dashboard_of(request).api.run(store.queue_stats())
    return [row for row in rows if who.principal.sees(row["queue"])]


def chart_scope(request: Request, who: Viewer) -> tuple[str, str | None]:
    """The charts' range and queue from the query string (as GET /api/v1/metrics/history
    takes them): a bad one is a 422 page naming it, a queue the viewer does not see 404."""
    window = request.query_params.get("range", "1h")
    if window not in RANGES:
        raise PageError(422, "Invalid filter", f"range must be one of {', '.join(RANGES)}")
    queue = request.query_params.get("queue") or None
    if queue is not None and not QUEUE_NAME.fullmatch(queue):
        raise PageError(422, "Invalid filter", "queue must be a valid queue name")
    if queue is not None and not who.principal.sees(queue):
        raise not_found(f"queue {queue}")
    return window, queue


async def overview(request: Request) -> Response:
    """GET /dashboard/?range=1h|24h|7d&queue=: per queue counts by status, paused queues,
    workers, and the charts of the metrics history (all the viewer's queues, or one)."""
    who = await viewer(request)
    window, queue = chart_scope(request, who)
    api = dashboard_of(request).api
    queues = await visible_queues(request, who)
    workers: list[dict[str, Any]] = []
    if who.principal.queue_pattern is None:
        workers = await api.run(store.list_workers())
    alive = [w for w in workers if w["alive"]]
    series = store.metrics_series(
        RANGES[window], queue=queue, queue_pattern=who.principal.queue_pattern
    )

    async def history(conn: Conn) -> tuple[list[store.MetricsPoint], list[float]]:
        """The series and the wait histogram's bounds in one transaction, as the API reads them."""
        _, wait_bounds = await api.app.arun(store.metrics_bounds(), conn)
        return await api.app.arun(series, conn), wait_bounds

    points, wait_bounds = await api.db(history)
    scope = f"queue {queue}" if queue else "all queues"
    context = {
        "queues": queues,
        "statuses": STATUSES,
        "totals": {s: sum(q[s] for q in queues) for s in STATUSES},
        "estimated": {s for q in queues for s in q["estimated"]},
        "paused": [q["queue"] for q in queues if q["paused"]],
        "workers_alive": len(alive),
        "workers_healthy": sum(1 for w in alive if w["healthy"]),
        "running_jobs": sum(w["running_jobs"] for w in alive),
        "ranges": list(RANGES),
        "range": window,
        "chart_queue": queue,
        "chart_scope": scope,
        "plot": PLOT,
        "history": overview_charts(points, wait_bounds, range_label=window, scope=scope),
    }
    return render(request, "overview.html", context, who=who)


async def finished_last_hour(api: ApiState, queues: list[str]) -> dict[str, int]:
    """Jobs each queue finished over the last hour, from the metrics history."""

    async def read(conn: Conn) -> dict[str, int]:
        finished = {}
        for name in queues:
            points = await api.app.arun(store.metrics_series(timedelta(hours=1), queue=name), conn)
            finished[name] = sum(p.succeeded + p.failed + p.cancelled + p.expired for p in points)
        return finished

    return await api.db(read)


async def queues_page(request: Request) -> Response:
    """GET /dashboard/queues: counts, throughput over the last hour, limits, paused."""
    who = await viewer(request)
    queues = await visible_queues(request, who)
    throughput = await finished_last_hour(dashboard_of(request).api, [q["queue"] for q in queues])
    context = {"queues": queues, "statuses": STATUSES, "throughput": throughput}
    return render(request, "queues.html", context, who=who)


def visible_queue_name(request: Request, who: Viewer) -> str:
    """The queue in the URL; 404 when the name is bad or the viewer does not see it."""
    name: str = request.path_params["name"]
    if not QUEUE_NAME.fullmatch(name) or not who.principal.sees(name):
        raise not_found(f"queue {name}")
    return name


def setting_text(queue: dict[str, Any], name: str) -> str:
    """A setting as its form field shows it (durations in seconds, a policy as JSON)."""
    value = queue[name]
    if value is None:
        return ""
    if isinstance(value, dict):
        return json.dumps(value)
    if isinstance(value, float) and value.is_integer():
        return str(int(value))
    return str(value)


async def queue_page(
    request: Request,
    *,
    status: int = 200,
    error: str | None = None,
    texts: dict[str, str] | None = None,
) -> Response:
    """GET /dashboard/queues/{name}: its counts, its throughput, and its settings (a form
    for an admin)."""
    who = await viewer(request)
    name = visible_queue_name(request, who)
    api = dashboard_of(request).api
    queue = await api.run(store.get_queue(name))
    if queue is None:
        raise not_found(f"queue {name}")
    shown = {setting.name: setting_text(queue, setting.name) for setting in FORM_SETTINGS}
    context = {
        "queue": queue,
        "queues": [queue],
        "statuses": STATUSES,
        "throughput": (await finished_last_hour(api, [name]))[name],
        "settings": FORM_SETTINGS,
        "texts": texts or shown,
        "error": error,
    }
    return render(request, "queue.html", context, who=who, status=status)


async def configure_queue(request: Request) -> Response:
    """POST /dashboard/queues/{name}/settings (admin): every setting of the form, an
    empty field clearing it, through store.configure_queue as PUT /api/v1/queues/{name}
    calls it; a bad one is the form again, 422, naming it, and nothing changes."""
    who, fields = await acting(request, "admin")
    name = visible_queue_name(request, who)
    texts = {s.name: str(fields.get(s.name, "")).strip() for s in FORM_SETTINGS}
    settings: dict[str, Any] = {}
    try:
        for setting in FORM_SETTINGS:
            text = texts[setting.name]
            try:
                settings[setting.name] = from_cli(setting, text) if text else None
            except ConfigError as exc:  # it names the CLI's flag: name the field instead
                raise ConfigError(f"{setting.name}: {str(exc).split(': ', 1)[-1]}") from None
        checked_settings(settings)
    except ConfigError as exc:
        return await queue_page(request, status=422, error=str(exc), texts=texts)
    api = dashboard_of(request).api

    async def update(conn: Conn) -> bool:
        if not await api.app.arun(store.lock_queue(name), conn):
            return False
        await api.app.arun(store.configure_queue(name, settings), conn)
        return True

    found = await api.db(update)
    await audit_found(request, who, found, 200, f"queues/{name}", f"queue {name}")
    return back_to(request, f"/queues/{name}", "configured")


async def set_paused(request: Request, *, paused: bool) -> Response:
    """POST /dashboard/queues/{name}/pause or /resume (admin): store.pause_queue or
    store.resume_queue, as the API's routes call them."""
    who, _ = await acting(request, "admin")
    name = visible_queue_name(request, who)
    call = store.pause_queue(name) if paused else store.resume_queue(name)
    found = await dashboard_of(request).api.run(call)
    await audit_found(request, who, found, 200, f"queues/{name}", f"queue {name}")
    return back_to(request, "/queues", "paused" if paused else "resumed")


async def pause_queue(request: Request) -> Response:
    return await set_paused(request, paused=True)


async def resume_queue(request: Request) -> Response:
    return await set_paused(request, paused=False)


async def workers_page(request: Request) -> Response:
    """GET /dashboard/workers: alive, healthy, stuck, running jobs."""
    who = await viewer(request)
    check_sees_all_queues(who, "Workers")
    workers = await dashboard_of(request).api.run(store.list_workers())
    return render(request, "workers.html", {"workers": workers}, who=who)


async def stop_worker(request: Request) -> Response:
    """POST /dashboard/workers/{id}/stop (admin): store.stop_worker, a graceful stop."""
    who, _ = await acting(request, "admin")
    check_sees_all_queues(who, "Workers")
    raw: str = request.path_params["worker_id"]
    try:
        worker_id: uuid.UUID | None = uuid.UUID(raw)
    except ValueError:
        worker_id = None
    found = worker_id is not None and await dashboard_of(request).api.run(
        store.stop_worker(worker_id)
    )
    await audit_found(request, who, found, 202, f"workers/{raw}", f"worker {raw}")
    return back_to(request, "/workers", "stopping")


routes = [
    Route("/", overview, name="overview"),
    Route("/queues", queues_page, name="queues"),
    Route("/queues/{name}", queue_page, name="queue"),
    Route("/queues/{name}/settings", configure_queue, methods=["POST"], name="configure_queue"),
    Route("/queues/{name}/pause", pause_queue, methods=["POST"], name="pause_queue"),
    Route("/queues/{name}/resume", resume_queue, methods=["POST"], name="resume_queue"),
    Route("/workers", workers_page, name="workers"),
    Route("/workers/{worker_id}/stop", stop_worker, methods=["POST"], name="stop_worker"),
]
