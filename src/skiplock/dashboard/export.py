"""The jobs list's export: the jobs matching its filter as CSV or JSON Lines, newest
first, streamed a keyset page at a time (store.list_job_previews, as the list reads
them), at most EXPORT_LIMIT rows.

A cut export says so twice: the X-Skiplock-Export-Limit header is always there, and
the last line (JSON Lines) or row (CSV) says the export stopped at the limit, or
after searching EXPORT_SCAN job ids for matches. JSON
values longer than store.PREVIEW_CHARS are cut to a preview, as in the API's list (the
row's "truncated" names them); a job's own page has them whole.
"""

from __future__ import annotations

import csv
import io
import json
from collections.abc import AsyncIterator, Callable
from dataclasses import replace
from datetime import datetime
from typing import Any

from starlette.requests import Request
from starlette.responses import Response, StreamingResponse
from starlette.routing import Route

from skiplock import store
from skiplock.api.state import ApiState
from skiplock.dashboard.jobs import id_window, job_filter
from skiplock.dashboard.pages import HEADERS, dashboard_of, viewer
from skiplock.store import JobFilter

EXPORT_LIMIT = 100_000
# The most ids one export searches (SCAN_WINDOW at a time) for matching jobs.
EXPORT_SCAN = 2_000_000
BATCH = 1000
COLUMNS = (
    "id",
    "task",
    "queue",
    "status",
    "priority",
    "attempt",
    "max_attempts",
    "created_at",
    "run_at",
    "started_at",
    "finished_at",
    "tags",
    "args",
    "result",
    "last_error",
    "truncated",
)


def plain(value: Any) -> Any:
    return value.isoformat() if isinstance(value, datetime) else value


async def job_rows(
    api: ApiState, filters: JobFilter, pattern: str | None, limit: int
) -> AsyncIterator[dict[str, Any]]:
    """Up to `limit` + 1 matching jobs, newest first, at most BATCH a statement, each
    statement reading one window of SCAN_WINDOW ids (as the list does) and in its own
    short transaction (none is held open while the client reads); then, when the search
    stopped at EXPORT_SCAN ids, {"searched_to": the lowest id searched}."""
    span = await api.run(store.job_id_span(filters.statuses))
    window = id_window(span, None)
    top, newest, sent = window.top, window.top, 0
    while sent <= limit:
        batch = min(BATCH, limit + 1 - sent)
        rows = await api.run(
            store.list_job_previews(
                replace(filters, id_above=window.floor, id_below=window.top),
                pattern,
                sort="id",
                descending=True,
                after=(top, top),
                limit=batch,
            )
        )
        for row in rows:
            yield row
        sent += len(rows)
        if len(rows) == batch:
            top = rows[-1]["id"]
            continue
        if not window.older:
            return
        if newest - window.floor - 1 >= EXPORT_SCAN:
            yield {"searched_to": window.floor + 1}
            return
        window = id_window(span, window.floor + 1)
        top = window.top


def json_line(row: dict[str, Any]) -> str:
    return json.dumps({k: plain(v) for k, v in row.items()}, default=str) + "\n"


def csv_line(values: list[Any]) -> str:
    out = io.StringIO()
    csv.writer(out).writerow(values)
    return out.getvalue()


def csv_row(row: dict[str, Any]) -> str:
    def cell(name: str) -> Any:
        value = row.get(name)
        if name == "truncated":
            return " ".join(sorted(value or {}))
        if isinstance(value, (dict, list)):
            return json.dumps(value, default=str)
        return "" if value is None else plain(value)

    return csv_line([cell(name) for name in COLUMNS])


async def export(
    request: Request,
    *,
    media_type: str,
    extension: str,
    header: str,
    line: Callable[[dict[str, Any]], str],
    cut: str,
    searched: Callable[[int], str],
) -> Response:
    who = await viewer(request)
    filters, given = job_filter(request)
    api = dashboard_of(request).api
    limit = EXPORT_LIMIT

    async def body() -> AsyncIterator[str]:
        yield header
        count = 0
        async for row in job_rows(api, filters, who.principal.queue_pattern, limit):
            if "searched_to" in row:
                yield searched(row["searched_to"])
                return
            count += 1
            if count > limit:
                yield cut
                return
            yield line(row)

    suffix = "-".join(f"{k}-{v}" for k, v in given.items() if v.isidentifier())
    filename = f"skiplock-jobs{'-' + suffix if suffix else ''}.{extension}"
    headers = {
        **HEADERS,
        "Content-Disposition": f'attachment; filename="{filename}"',
        "X-Skiplock-Export-Limit": str(limit),
    }
    return StreamingResponse(body(), media_type=media_type, headers=headers)


async def export_csv(request: Request) -> Response:
    """GET /dashboard/jobs.csv?status&queue&task&tag: the list's filter, as CSV."""
    return await export(
        request,
        media_type="text/csv; charset=utf-8",
        extension="csv",
        header=csv_line(list(COLUMNS)),
        line=csv_row,
        cut=csv_line([f"# cut: this export stops at {EXPORT_LIMIT} rows; narrow the filter"]),
        searched=lambda lowest: csv_line(
            [f"# cut: searched {EXPORT_SCAN} job ids, down to {lowest}; narrow the time range"]
        ),
    )


async def export_jsonl(request: Request) -> Response:
    """GET /dashboard/jobs.jsonl?…: the list's filter, one JSON object per line."""
    return await export(
        request,
        media_type="application/jsonl; charset=utf-8",
        extension="jsonl",
        header="",
        line=json_line,
        cut=json.dumps({"cut": True, "limit": EXPORT_LIMIT}) + "\n",
        searched=lambda lowest: json.dumps({"cut": True, "searched_to": lowest}) + "\n",
    )


routes = [
    Route("/jobs.csv", export_csv, name="export_csv"),
    Route("/jobs.jsonl", export_jsonl, name="export_jsonl"),
]
