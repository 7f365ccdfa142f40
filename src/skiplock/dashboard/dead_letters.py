"""The dead letters: the list (queue and task filters), redrive one, and redrive or purge
all matching after a dry run that shows how many would be touched.

Each action is one of the API's: redrive one is retry_job on a dead letter (write, as
POST /api/v1/jobs/{id}/retry would do it); redrive all and purge all are admin, as
POST /api/v1/dead-letters/redrive and /purge are, and run the same store calls in the
same batches.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from skiplock import store
from skiplock.api.dead_letters import REDRIVE_BATCH, REDRIVE_LIMIT_DEFAULT
from skiplock.api.jobs import parse_job_id
from skiplock.api.state import Conn
from skiplock.dashboard.pages import (
    PageError,
    acting,
    audit,
    audit_found,
    back_to,
    check_sees_all_queues,
    dashboard_of,
    not_found,
    page_url,
    render,
    viewer,
)

PAGE_SIZE = 50
# A dry run counts by reading ids a page at a time; past this many it says "at least".
# A redrive of all matching moves at most this many too (the API's default limit).
COUNT_LIMIT = REDRIVE_LIMIT_DEFAULT
ACTIONS = {"redrive": "Redrive", "purge": "Purge"}


def matching(source: Mapping[str, Any]) -> dict[str, str]:
    """The queue and task filters given (query string or form), empty ones left out."""
    found: dict[str, str] = {}
    for name in ("queue", "task"):
        value = source.get(name)
        if isinstance(value, str) and value.strip():
            found[name] = value.strip()
    return found


async def dead_letters_page(request: Request) -> Response:
    """GET /dashboard/dead-letters?queue&task&before: newest first."""
    who = await viewer(request)
    check_sees_all_queues(who, "Dead letters")
    filters = matching(request.query_params)
    raw_before = request.query_params.get("before")
    before = parse_job_id(raw_before) if raw_before else None
    if raw_before and before is None:
        raise PageError(422, "Invalid filter", "before must be a job id")
    rows = await dashboard_of(request).api.run(
        store.list_dead_letters(**filters, before_id=before, limit=PAGE_SIZE + 1)
    )
    context = {
        "dead_letters": rows[:PAGE_SIZE],
        "filters": filters,
        "next_before": rows[PAGE_SIZE - 1]["id"] if len(rows) > PAGE_SIZE else None,
    }
    return render(request, "dead_letters.html", context, who=who)


async def redrive_one(request: Request) -> Response:
    """POST /dashboard/dead-letters/{id}/redrive (write): retry_job on a dead letter."""
    who, _ = await acting(request, "write")
    check_sees_all_queues(who, "Dead letters")
    raw = request.path_params["job_id"]
    job_id = parse_job_id(raw)
    api = dashboard_of(request).api

    async def redrive(conn: Conn) -> str | None:
        if job_id is None or await api.app.arun(store.get_dead_letter(job_id), conn) is None:
            return None
        return await api.app.retry_job_async(job_id, conn=conn)

    status = await api.db(redrive)
    await audit_found(request, who, status, 200, f"dead-letters/{raw}", f"dead letter {raw}")
    return back_to(request, "/dead-letters", "redriven")


async def count_matching(request: Request, filters: dict[str, str]) -> int:
    """How many dead letters match, up to COUNT_LIMIT: ids read a page at a time."""
    api = dashboard_of(request).api
    counted, before = 0, None
    while counted < COUNT_LIMIT:
        batch = min(1000, COUNT_LIMIT - counted)
        rows = await api.run(store.list_dead_letters(**filters, before_id=before, limit=batch))
        counted += len(rows)
        if len(rows) < batch:
            break
        before = rows[-1]["id"]
    return counted


async def bulk_action(request: Request) -> Response:
    """GET /dashboard/dead-letters/{redrive,purge}?queue&task: the dry run, a count and a
    confirm button; POST (admin): do it, and say how many."""
    action: str = request.path_params["action"]
    if action not in ACTIONS:
        raise not_found("page")
    if request.method == "GET":
        who = await viewer(request)
        check_sees_all_queues(who, "Dead letters")
        filters = matching(request.query_params)
        context = {
            "action": action,
            "verb": ACTIONS[action],
            "filters": filters,
            "count": await count_matching(request, filters),
            "count_limit": COUNT_LIMIT,
            "done": None,
        }
        return render(request, "bulk.html", context, who=who)
    who, form = await acting(request, "admin")
    check_sees_all_queues(who, "Dead letters")
    filters = matching(form)
    api = dashboard_of(request).api
    if action == "redrive":
        ids: list[int] = []
        while len(ids) < COUNT_LIMIT:
            batch = min(REDRIVE_BATCH, COUNT_LIMIT - len(ids))
            moved = await api.run(store.redrive_dead_letters(**filters, limit=batch))
            ids += moved
            if len(moved) < batch:
                break
        done = len(ids)
    else:
        done = await api.run(
            store.purge_dead_letters(queue=filters.get("queue"), task=filters.get("task"))
        )
    await audit(request, who, 200, "dead-letters", **filters, count=done)
    context = {
        "action": action,
        "verb": ACTIONS[action],
        "filters": filters,
        "count": done,
        "count_limit": COUNT_LIMIT,
        "done": done,
        "list_url": page_url(request, "/dead-letters"),
    }
    return render(request, "bulk.html", context, who=who)


routes = [
    Route("/dead-letters", dead_letters_page, name="dead_letters"),
    Route("/dead-letters/{action}", bulk_action, methods=["GET", "POST"], name="bulk"),
    Route("/dead-letters/{job_id}/redrive", redrive_one, methods=["POST"], name="redrive"),
]
