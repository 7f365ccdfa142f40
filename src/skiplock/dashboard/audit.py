"""The audit log page (admin): the rows GET /api/v1/audit reads (store.list_audit),
newest first, filtered by actor and action, a page at a time.

store.list_audit pages by id only, so the filter is applied here to the rows it reads,
a batch at a time; one page reads at most SCAN_LIMIT rows, and when that many held too
few matches the page says so and its "Older" link goes on from where the reading stopped.
"""

from __future__ import annotations

from typing import Any

from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from skiplock import store
from skiplock.api.jobs import parse_job_id
from skiplock.dashboard.pages import (
    PageError,
    check_sees_all_queues,
    dashboard_of,
    render,
    viewer,
)

PAGE_SIZE = 50
BATCH = 500
SCAN_LIMIT = 10_000
FILTERS = ("actor", "action")


def matches(row: dict[str, Any], filters: dict[str, str]) -> bool:
    """actor: the same name; action: contained (`login`, `POST /dashboard/`, `retry`)."""
    if "actor" in filters and row["actor"] != filters["actor"]:
        return False
    return "action" not in filters or filters["action"] in row["action"]


async def audit_page(request: Request) -> Response:
    """GET /dashboard/audit?actor&action&before (admin)."""
    who = await viewer(request)
    check_sees_all_queues(who, "The audit log")
    if not who.principal.allows("admin"):
        raise PageError(
            403, "Forbidden", f"the audit log needs the admin scope; you have {who.principal.scope}"
        )
    filters = {n: v.strip() for n in FILTERS if (v := request.query_params.get(n, "")).strip()}
    raw_before = request.query_params.get("before")
    before = parse_job_id(raw_before) if raw_before else None
    if raw_before and before is None:
        raise PageError(422, "Invalid filter", "before must be an audit entry id")
    api = dashboard_of(request).api
    found: list[dict[str, Any]] = []
    scanned, cursor, more = 0, before, False
    while scanned < SCAN_LIMIT:
        rows = await api.run(store.list_audit(limit=BATCH, before_id=cursor))
        for row in rows:
            scanned += 1
            cursor = row["id"]
            if matches(row, filters):
                found.append(row)
                if len(found) > PAGE_SIZE:
                    break
        if len(found) > PAGE_SIZE or len(rows) < BATCH:
            more = len(found) > PAGE_SIZE
            break
    else:
        more = True  # stopped reading: older rows may still match
    entries = found[:PAGE_SIZE]
    next_before = entries[-1]["id"] if len(found) > PAGE_SIZE else (cursor if more else None)
    context = {
        "entries": entries,
        "filters": filters,
        "next_before": next_before,
        "scan_stopped": more and len(found) <= PAGE_SIZE,
        "scan_limit": SCAN_LIMIT,
    }
    return render(request, "audit.html", context, who=who)


routes = [Route("/audit", audit_page, name="audit")]
