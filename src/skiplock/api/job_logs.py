"""/api/v1/jobs/{id}/logs: a job's stored log (what its handler logged, per attempt),
paged by seq: a client that follows a running job asks again with `after` set to the
last page's `next_after`."""

from __future__ import annotations

from typing import Annotated

from msgspec import Meta
from starlette.requests import Request
from starlette.responses import JSONResponse, Response

from skiplock import store
from skiplock.api.auth import principal_of
from skiplock.api.fields import BIGINT_MAX, INT4_MAX
from skiplock.api.jobs import JOB_ID, job_id_of
from skiplock.api.problems import Problem
from skiplock.api.query import Query
from skiplock.api.responses import JobLogPage
from skiplock.api.routing import Answer, Operation, Param, route
from skiplock.api.state import Conn, api_state
from skiplock.jobs import Job

# The most lines one page holds: an attempt keeps 1,000 by default, so one page.
LOG_PAGE_MAX = 1000
LOG_PARAMETERS = (
    Param("attempt", Annotated[int, Meta(ge=1, le=INT4_MAX)], "Only this attempt's lines."),
    Param(
        "after",
        Annotated[int, Meta(ge=0, le=BIGINT_MAX)],
        "Only lines after this seq: the previous page's `next_after`.",
        0,
    ),
    Param(
        "limit",
        Annotated[int, Meta(ge=1, le=LOG_PAGE_MAX)],
        "At most this many lines.",
        LOG_PAGE_MAX,
    ),
)


async def get_job_logs(request: Request) -> Response:
    """GET /api/v1/jobs/{id}/logs?attempt=&after=&limit= → 200 {"job_id", "status",
    "lines", "next_after", "more"}, oldest line first; 404 for an unknown job or one
    outside a queue-limited token's queues."""
    api = api_state(request)
    job_id = job_id_of(request)
    query = Query(request, LOG_PARAMETERS)
    attempt = query.integer("attempt", 0, 1, INT4_MAX) or None
    after = query.integer("after", 0, 0, BIGINT_MAX)
    limit = query.integer("limit", LOG_PAGE_MAX, 1, LOG_PAGE_MAX)
    principal = principal_of(request)

    async def read(conn: Conn) -> tuple[Job, list[store.JobLogLine]]:
        job = await api.app.arun(store.get_job(job_id), conn)
        # outside a queue-limited token's queues: as if it did not exist
        if job is None or (principal is not None and not principal.sees(job.queue)):
            raise Problem(404, "not found", f"job {job_id} not found")
        call = store.job_logs(job_id, attempt=attempt, after=after, limit=limit + 1)
        return job, await api.app.arun(call, conn)

    job, lines = await api.db(read)
    page = lines[:limit]
    return JSONResponse(
        {
            "job_id": job_id,
            "status": job.status,
            "lines": [line.to_json() for line in page],
            "next_after": page[-1].seq if page else after,
            "more": len(lines) > limit,
        }
    )


routes = [
    route(
        "/jobs/{job_id}/logs",
        {
            "GET": Operation(
                get_job_logs,
                "get_job_logs",
                "A job's stored log, oldest line first, paged by seq.",
                "jobs",
                {200: Answer(JobLogPage, "A page of the job's log.")},
                query=LOG_PARAMETERS,
                errors=(404, 422, 503),
            )
        },
        name="get_job_logs",
        params=(JOB_ID,),
    ),
]
"""Mounted under /api/v1 by create_app, beside the jobs routes."""
