"""The jobs pages: the list (filters, keyset pages) and one job (args, result, progress,
errors per attempt, dependencies, an attempt's log), with its retry and cancel actions."""

from __future__ import annotations

from dataclasses import dataclass, replace
from datetime import datetime, timezone
from typing import Any

import psycopg
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from skiplock import store
from skiplock.api.fields import BIGINT_MAX, INT4_MAX, QUEUE_NAME
from skiplock.api.jobs import parse_job_id
from skiplock.api.state import Conn
from skiplock.dashboard.job_relations import job_relations
from skiplock.dashboard.pages import (
    PageError,
    Viewer,
    acting,
    audit,
    back_to,
    dashboard_of,
    not_found,
    render,
    viewer,
)
from skiplock.job_search import containment
from skiplock.jobs import STATUSES, Job
from skiplock.store import JobFilter

PAGE_SIZE = 50
# The most log lines the job page shows at once; a "more" link pages on by seq.
LOG_LINES = 200
# The ids one request searches, newest first: a page (or an export's statement) reads at
# most this many jobs whatever the filter, and a filter that matches few jobs offers to
# search on below them. Counts are exact while every id fits in one window, else the
# planner's estimate, marked as such.
SCAN_WINDOW = 20_000
TEXT_FILTERS = ("queue", "task", "tag")
SEARCH_FILTERS = ("args", "meta")
TIME_FILTERS = ("created_after", "created_before")
FILTERS = ("status", *TEXT_FILTERS, *SEARCH_FILTERS, *TIME_FILTERS)


def invalid(detail: str) -> PageError:
    return PageError(422, "Invalid filter", detail)


def filter_time(name: str, raw: str) -> datetime:
    """A time filter as a browser's datetime-local field sends it (taken as UTC) or
    ISO 8601 with an offset."""
    try:
        value = datetime.fromisoformat(raw)
    except ValueError:
        raise invalid(f"{name} must be a date and time (ISO 8601)") from None
    return value if value.tzinfo else value.replace(tzinfo=timezone.utc)


def job_filter(request: Request) -> tuple[JobFilter, dict[str, str]]:
    """The list's filters from the query string (the fields GET /api/v1/jobs takes);
    a bad one is a 422 page naming it."""
    given = {name: request.query_params.get(name, "").strip() for name in FILTERS}
    given = {name: value for name, value in given.items() if value}
    status = given.get("status")
    if status is not None and status not in STATUSES:
        raise invalid(f"status must be one of {', '.join(STATUSES)}")
    queue = given.get("queue")
    if queue is not None and not QUEUE_NAME.fullmatch(queue):
        raise invalid("queue must be a valid queue name")
    searches: dict[str, dict[str, Any] | None] = dict.fromkeys(SEARCH_FILTERS)
    for name in SEARCH_FILTERS:
        if name in given:
            try:
                searches[name] = containment(given[name], name)
            except ValueError as exc:
                raise invalid(str(exc)) from None
    times = {
        name: filter_time(name, given[name]) if name in given else None for name in TIME_FILTERS
    }
    filters = JobFilter(
        statuses=(status,) if status else (),
        queue=queue,
        task=given.get("task"),
        tag=given.get("tag"),
        args=searches["args"],
        meta=searches["meta"],
        created_after=times["created_after"],
        created_before=times["created_before"],
    )
    return filters, given


def before_of(request: Request) -> int | None:
    raw = request.query_params.get("before")
    if raw is None:
        return None
    before = parse_job_id(raw)
    if before is None:
        raise invalid("before must be a job id")
    return before


@dataclass(frozen=True)
class Window:
    """The ids one search reads, floor < id < top (bounded on every table, whatever the
    filter); `older` when ids below it were left for a next search."""

    top: int
    floor: int
    older: bool


def id_window(span: tuple[int, int] | None, before: int | None) -> Window:
    """SCAN_WINDOW ids below `before` (or above the newest of `span`, the lowest and
    highest id of the tables the filter can match)."""
    if span is None:  # no job there: an empty window
        return Window(top=1, floor=0, older=False)
    lowest, highest = span
    top = highest + 1 if before is None else min(before, highest + 1)
    floor = top - SCAN_WINDOW - 1
    if floor < lowest:
        return Window(top=top, floor=lowest - 1, older=False)
    return Window(top=top, floor=floor, older=True)


async def jobs_page(request: Request) -> Response:
    """GET /dashboard/jobs?status&queue&task&tag&args&meta&created_after&created_before
    &before: newest first, PAGE_SIZE a page, searching SCAN_WINDOW ids below `before`
    (the last id of the previous page, or where the last search stopped)."""
    who = await viewer(request)
    filters, given = job_filter(request)
    api = dashboard_of(request).api
    pattern = who.principal.queue_pattern
    span = await api.run(store.job_id_span(filters.statuses))
    window = id_window(span, before_of(request))
    call = store.list_job_previews(
        replace(filters, id_above=window.floor, id_below=window.top),
        pattern,
        sort="id",
        descending=True,
        after=(window.top, window.top),
        limit=PAGE_SIZE + 1,
    )
    rows = await api.run(call)
    more = len(rows) > PAGE_SIZE
    rows = rows[:PAGE_SIZE]
    # every id the filter can match fits in one window: count them, within those ids
    exact = span is None or span[1] - span[0] < SCAN_WINDOW
    if span is not None and exact:
        filters = replace(filters, id_above=span[0] - 1, id_below=span[1] + 1)
    matching = await api.run(store.count_jobs(filters, pattern, exact=exact))
    context = {
        "jobs": rows,
        "filters": given,
        "statuses": STATUSES,
        "matching": matching,
        "exact": exact,
        "next_before": rows[-1]["id"] if more else None,
        # nothing more in this window, but older jobs were not searched yet
        "searched_to": window.floor + 1 if not more and window.older else None,
    }
    return render(request, "jobs.html", context, who=who)


async def visible_job(request: Request, who: Viewer) -> Job:
    """The job in the URL; 404 when there is none or it is in a queue the viewer does
    not see (as the API answers a queue-limited token)."""
    raw = request.path_params["job_id"]
    job_id = parse_job_id(raw)
    job = None if job_id is None else await dashboard_of(request).api.run(store.get_job(job_id))
    if job is None or not who.principal.sees(job.queue):
        raise not_found(f"job {raw}")
    return job


def log_attempts(job: Job) -> list[int]:
    """The attempts a log may be kept for, oldest first: the job's current one and those
    its errors name (a dead job queued again starts counting anew, its errors stay)."""
    named = {e.get("attempt") for e in job.errors}
    return sorted({job.attempt, *(a for a in named if isinstance(a, int))} - {0}) or [1]


def log_position(request: Request, attempts: list[int]) -> tuple[int, int]:
    """The attempt whose log the job page shows (the newest by default) and the seq it
    starts after, from the query string (as GET /api/v1/jobs/{id}/logs takes them); a bad
    one is a 422 page naming it."""
    numbers = {"attempt": attempts[-1], "after": 0}
    for name, top in (("attempt", INT4_MAX), ("after", BIGINT_MAX)):
        raw = request.query_params.get(name)
        if raw is None:
            continue
        if not (raw.isascii() and raw.isdigit() and len(raw) <= 19 and int(raw) <= top):
            raise PageError(422, "Invalid filter", f"{name} must be a whole number up to {top}")
        numbers[name] = int(raw)
    if numbers["attempt"] < 1:
        raise PageError(422, "Invalid filter", "attempt must be 1 or more")
    return numbers["attempt"], numbers["after"]


async def job_page(request: Request) -> Response:
    """GET /dashboard/jobs/{id}?attempt=&after=: the job, and LOG_LINES of one attempt's
    log after seq `after` (the store call the API's logs route makes)."""
    who = await viewer(request)
    job = await visible_job(request, who)
    attempts = log_attempts(job)
    attempt, after = log_position(request, attempts)
    call = store.job_logs(job.id, attempt=attempt, after=after, limit=LOG_LINES + 1)
    lines = await dashboard_of(request).api.run(call)
    workflow = job.meta.get("workflow_id")
    context: dict[str, Any] = {
        "job": job,
        "workflow": workflow,
        "workflow_step": job.meta.get("workflow_step"),
        "errors": list(reversed(job.errors)),
        "log_attempts": sorted({*attempts, attempt}),
        "log_attempt": attempt,
        "log_after": after,
        "log_lines": lines[:LOG_LINES],
        "log_next": lines[LOG_LINES - 1].seq if len(lines) > LOG_LINES else None,
    }
    context.update(await job_relations(request, who, job))
    return render(request, "job.html", context, who=who)


async def job_action(request: Request, action: str) -> Response:
    """POST /dashboard/jobs/{id}/retry or /cancel (write): the App's retry_job or
    cancel_job, the calls the API's routes make."""
    who, _ = await acting(request, "write")
    job = await visible_job(request, who)
    api = dashboard_of(request).api

    async def act(conn: Conn) -> str:
        if action == "retry":
            return await api.app.retry_job_async(job.id, conn=conn)
        return await api.app.cancel_job_async(job.id, conn=conn)

    try:
        status = await api.db(act)
    except psycopg.errors.DatabaseError as exc:
        # e.g. retrying a job that is running: the SQL function says why
        await audit(request, who, 409, f"jobs/{job.id}")
        detail = exc.diag.message_primary or str(exc)
        raise PageError(409, "Conflict", detail) from None
    if action == "cancel" and status not in ("cancelled", "running"):
        await audit(request, who, 409, f"jobs/{job.id}")
        raise PageError(409, "Conflict", f"job {job.id} already finished ({status})")
    await audit(request, who, 200, f"jobs/{job.id}")
    if action == "retry":
        notice = "retried"
    else:
        notice = "cancelling" if status == "running" else "cancelled"
    return back_to(request, f"/jobs/{job.id}", notice)


async def retry_job(request: Request) -> Response:
    return await job_action(request, "retry")


async def cancel_job(request: Request) -> Response:
    return await job_action(request, "cancel")


routes = [
    Route("/jobs", jobs_page, name="jobs"),
    Route("/jobs/{job_id}", job_page, name="job"),
    Route("/jobs/{job_id}/retry", retry_job, methods=["POST"], name="retry_job"),
    Route("/jobs/{job_id}/cancel", cancel_job, methods=["POST"], name="cancel_job"),
]
