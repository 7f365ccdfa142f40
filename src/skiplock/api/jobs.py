"""/api/v1/jobs: enqueue jobs (one or a list), list and read them, wait for a result,
cancel, retry and delete.

Every field of an enqueue is checked before the database sees it, by decoding it into
its model (api/models.py), so that a bad request gets a 422 naming its field; the
database's own checks stay the last word (anything that slips past still comes back as
a 422, see problems.py).
"""

from __future__ import annotations

from collections.abc import Mapping
from datetime import datetime
from typing import Annotated, Any, Literal

from msgspec import Meta
from starlette.requests import Request
from starlette.responses import JSONResponse, Response

from skiplock import store
from skiplock.api.auth import principal_of
from skiplock.api.body import read_json
from skiplock.api.fields import BIGINT_MAX, QUEUE_NAME, within
from skiplock.api.models import EnqueueBody, EnqueueJob, parse_enqueue
from skiplock.api.problems import Problem
from skiplock.api.query import CURSOR, LIMIT, Query, bad_cursor, keyset_page, parse_timestamp
from skiplock.api.responses import JobIds, JobPage, JobResult, JobState
from skiplock.api.routing import Answer, Operation, Param, route
from skiplock.api.state import ApiState, Conn, api_state
from skiplock.api.tasks import RegistryCheck, check_jobs_against_registry
from skiplock.job_search import containment
from skiplock.jobs import STATUSES, Job, json_field
from skiplock.store import JOB_SORT_KEYS, JobFilter
from skiplock.synonyms import STATUS_SYNONYMS
from skiplock.webhooks import SECRET_ENV

# The longest a result long-poll may hold a request: past a minute, proxies and load
# balancers start cutting idle connections; clients poll again on 202.
MAX_WAIT_SECONDS = 60.0
# A bulk enqueue is one statement; the body limit bounds it too.
MAX_BULK_JOBS = 10_000


def parse_job_id(text: str) -> int | None:
    """The id in a job URL, or None when it cannot be a job id (not a bigint >= 0)."""
    if not (text.isascii() and text.isdigit()) or len(text) > 19:
        return None
    job_id = int(text)
    return job_id if job_id <= BIGINT_MAX else None


def job_id_of(request: Request) -> int:
    """The job id in the URL; 404 when it cannot be a job id."""
    raw = request.path_params["job_id"]
    job_id = parse_job_id(raw)
    if job_id is None:
        # An id that cannot exist is just another job that is not there.
        raise Problem(404, "not found", f"job {raw} not found")
    return job_id


def parse_bulk(items: list[Any]) -> list[EnqueueBody]:
    """Check every job of a bulk enqueue; a bad one is a 422 naming `[index].field`."""
    if not items:
        raise Problem(422, "invalid field", "a list of jobs must hold at least one job")
    if len(items) > MAX_BULK_JOBS:
        raise Problem(422, "invalid field", f"a list of jobs may hold at most {MAX_BULK_JOBS} jobs")
    checked = []
    for index, item in enumerate(items):
        if not isinstance(item, dict):
            raise Problem(400, "invalid json", f"job {index} of the list must be a JSON object")
        try:
            checked.append(parse_enqueue(item))
        except Problem as problem:
            raise within(f"[{index}]", problem, f"job {index}") from None
    return checked


def queue_pattern(request: Request) -> str | None:
    """The caller's queue pattern (a queue-limited token), or None: every queue."""
    principal = principal_of(request)
    return principal.queue_pattern if principal else None


async def check_job_visible(request: Request, api: ApiState, job_id: int) -> None:
    """404 for a job outside a queue-limited caller's queues, exactly as for a job
    that does not exist: such a token must not learn which ids are taken."""
    principal = principal_of(request)
    if principal is None or principal.queue_pattern is None:
        return
    job = await api.run(store.get_job(job_id))
    if job is None or not principal.sees(job.queue):
        raise Problem(404, "not found", f"job {job_id} not found")


def check_enqueue_queues(request: Request, queues: set[str]) -> None:
    """403 when a queue-limited caller enqueued outside its queues. Checked after the
    INSERT, inside its transaction, so the queue a task's defaults pick counts too; the
    Problem rolls the jobs back. 403, not 404: the caller named the queue itself."""
    principal = principal_of(request)
    if principal is None:
        return
    outside = sorted(queue for queue in queues if not principal.sees(queue))
    if outside:
        raise Problem(
            403,
            "forbidden",
            f"this token may only use queues {principal.queue_pattern}, not {outside[0]}",
            field="queue",
        )


async def check_webhook_signers(
    api: ApiState, conn: Conn, ids: list[int], *, items: bool = False
) -> None:
    """422 naming callback_url when a job that carries one is in a queue whose live
    workers all run without a webhook secret: its delivery would go to the dead letters
    unsent. A queue no live worker serves yet is accepted (see docs/webhooks.md). Checked
    after the INSERT, inside its transaction, so the queue a task's defaults pick
    counts; the Problem rolls the jobs back."""
    unsigned = await api.app.arun(store.unsigned_callbacks(ids), conn)
    if not unsigned:
        return
    index, queue = min((ids.index(job_id), queue) for job_id, queue in unsigned)
    raise Problem(
        422,
        "invalid field",
        f"{f'job {index}: ' if items else ''}no running worker of queue {queue} can sign"
        f" webhook deliveries: set {SECRET_ENV} on the workers",
        field=f"[{index}].callback_url" if items else "callback_url",
    )


async def enqueue_job(request: Request) -> Response:
    """POST /api/v1/jobs: one job (an object) → 201 {"id", "status"} with Location; a list
    of jobs → 201 {"ids"} in input order, one statement, all or nothing."""
    api = api_state(request)
    body = await read_json(request, limit=api.max_body_bytes)
    if isinstance(body, list):
        jobs = parse_bulk(body)
        specs = [{"task": j.task, "args": j.args, **j.options} for j in jobs]

        async def enqueue_many(conn: Conn) -> list[int]:
            await check_jobs_against_registry(api, conn, _registry_view(jobs), items=("", "job"))
            ids = await api.app.enqueue_many_async(specs, conn=conn)
            if queue_pattern(request) is not None:
                check_enqueue_queues(request, await api.app.arun(store.job_queues(ids), conn))
            if any("callback_url" in j.options for j in jobs):
                await check_webhook_signers(api, conn, ids, items=True)
            return ids

        ids = await api.db(enqueue_many)
        return JSONResponse({"ids": ids}, status_code=201)
    if not isinstance(body, dict):
        raise Problem(
            400, "invalid json", "the request body must be a JSON object or a list of them"
        )
    job = parse_enqueue(body)

    async def enqueue(conn: Conn) -> Job:
        await check_jobs_against_registry(api, conn, _registry_view([job]))
        job_id = await api.app.enqueue_async(job.task, job.args, conn=conn, **job.options)
        # The status comes from the database's clock (all_jobs), not ours: "scheduled"
        # when run_at is still ahead of now().
        created = await api.app.get_job_async(job_id, conn=conn)
        check_enqueue_queues(request, {created.queue})
        if "callback_url" in job.options:
            await check_webhook_signers(api, conn, [job_id])
        return created

    created = await api.db(enqueue)
    location = request.url_for("get_job", job_id=str(created.id)).path
    return JSONResponse(
        {"id": created.id, "status": created.status},
        status_code=201,
        headers={"Location": location},
    )


def _registry_view(jobs: list[EnqueueBody]) -> list[RegistryCheck]:
    return [RegistryCheck(job.task, job.args, job.allow_unregistered_task) for job in jobs]


Timestamp = Annotated[datetime, Meta(tz=True)]
LIST_PARAMETERS = (
    Param(
        "status",
        str,
        "One or more statuses, comma-separated; pending (waiting, scheduled, queued,"
        " retrying), processing (running), completed and success (succeeded) as well.",
    ),
    Param("queue", str, "Only this queue."),
    Param("task", str, "Only this task."),
    Param("tag", str, "Only jobs carrying this tag."),
    Param(
        "args",
        str,
        "Only jobs whose args contain this: a JSON object, or key=value pairs separated"
        " by spaces (a value that reads as JSON is that JSON; a dotted key reaches inside).",
    ),
    Param("meta", str, "Only jobs whose meta contain this (as args)."),
    Param("created_after", Timestamp, "created_at >= this (ISO 8601 with timezone)."),
    Param("created_before", Timestamp, "created_at < this."),
    Param("finished_after", Timestamp, "finished_at >= this."),
    Param("finished_before", Timestamp, "finished_at < this."),
    Param("sort", Literal[tuple(JOB_SORT_KEYS)], "Sort key (ties broken by id).", "id"),
    Param("order", Literal["desc", "asc"], "Direction.", "desc"),
    LIMIT,
    CURSOR,
)
WAIT = Param(
    "wait",
    Annotated[float, Meta(ge=0, le=MAX_WAIT_SECONDS)],
    "Seconds to wait for the job to finish.",
    0,
)
JOB_ID = Param("job_id", Annotated[int, Meta(ge=0)], "The job id.")


def _job_filter(query: Query) -> JobFilter:
    statuses: tuple[str, ...] = ()
    raw_status = query.text("status")
    if raw_status is not None:
        named: list[str] = []
        for status in raw_status.split(","):
            if status not in STATUSES and status not in STATUS_SYNONYMS:
                raise invalid_field_parameter(
                    "status",
                    f"status must be one or more (comma-separated) of {', '.join(STATUSES)}"
                    f" (or {', '.join(STATUS_SYNONYMS)})",
                )
            named.extend(STATUS_SYNONYMS.get(status, (status,)))
        statuses = tuple(dict.fromkeys(named))
    queue = query.text("queue")
    if queue is not None and not QUEUE_NAME.fullmatch(queue):
        raise invalid_field_parameter("queue", "queue must be a valid queue name")
    searches: dict[str, dict[str, Any] | None] = {}
    for name in ("args", "meta"):
        raw = query.text(name)
        try:
            searches[name] = None if raw is None else containment(raw, name)
        except ValueError as exc:
            raise invalid_field_parameter(name, str(exc)) from None
    return JobFilter(
        statuses=statuses,
        queue=queue,
        task=query.text("task"),
        tag=query.text("tag"),
        args=searches["args"],
        meta=searches["meta"],
        created_after=query.timestamp("created_after"),
        created_before=query.timestamp("created_before"),
        finished_after=query.timestamp("finished_after"),
        finished_before=query.timestamp("finished_before"),
    )


def invalid_field_parameter(name: str, detail: str) -> Problem:
    return Problem(422, "invalid parameter", detail, field=name)


def _sort_key(job: Mapping[str, Any], sort: str) -> Any:
    value = job[sort]
    return value.isoformat() if isinstance(value, datetime) else value


def _cursor_after(document: dict[str, Any], sort: str, order: str) -> tuple[Any, int]:
    key, last_id = document.get("k"), document.get("i")
    if document.get("s") != sort or document.get("o") != order:
        raise bad_cursor()
    if isinstance(last_id, bool) or not isinstance(last_id, int) or not 0 <= last_id <= BIGINT_MAX:
        raise bad_cursor()
    if sort in ("id", "priority"):
        if isinstance(key, bool) or not isinstance(key, int) or abs(key) > BIGINT_MAX:
            raise bad_cursor()
        return key, last_id
    if key is None and sort == "finished_at":
        return None, last_id
    when = parse_timestamp(key) if isinstance(key, str) else None
    if when is None:
        raise bad_cursor()
    return when, last_id


def list_item_json(row: Mapping[str, Any], url: str) -> dict[str, Any]:
    """A listed row as JSON; each of its `truncated` previews names `url`, where the
    whole value is."""
    item = {name: json_field(value) for name, value in row.items()}
    item["truncated"] = {name: {**cut, "url": url} for name, cut in row["truncated"].items()}
    return item


async def list_jobs(request: Request) -> Response:
    """GET /api/v1/jobs → 200 {"jobs": [...], "next_cursor"}; keyset pages, filtered and
    sorted by an allow-listed field. A JSON value longer than store.PREVIEW_CHARS is
    null, with a preview under "truncated"; GET /api/v1/jobs/{id} has it whole."""
    api = api_state(request)
    query = Query(request, LIST_PARAMETERS)
    filters = _job_filter(query)
    sort = query.choice("sort", tuple(JOB_SORT_KEYS), "id")
    order = query.choice("order", ("desc", "asc"), "desc")
    limit = query.limit()
    cursor = query.cursor()
    after = None if cursor is None else _cursor_after(cursor, sort, order)
    call = store.list_job_previews(
        filters,
        queue_pattern(request),
        sort=sort,
        descending=order == "desc",
        after=after,
        limit=limit + 1,
    )
    jobs, next_cursor = keyset_page(
        await api.run(call),
        limit,
        lambda last: {"s": sort, "o": order, "k": _sort_key(last, sort), "i": last["id"]},
    )
    items = [
        list_item_json(job, request.url_for("get_job", job_id=str(job["id"])).path) for job in jobs
    ]
    return JSONResponse({"jobs": items, "next_cursor": next_cursor})


async def get_job(request: Request) -> Response:
    """GET /api/v1/jobs/{id} → 200 with the job; 404 for an unknown or impossible id."""
    api = api_state(request)
    job_id = job_id_of(request)
    await check_job_visible(request, api, job_id)
    job = await api.db(lambda conn: api.app.get_job_async(job_id, conn=conn))
    return JSONResponse(job.to_json())


async def get_job_result(request: Request) -> Response:
    """GET /api/v1/jobs/{id}/result?wait=SECONDS: 200 {"id", "status", "result"} once the
    job succeeded; 202 {"id", "status"} while it has not finished when `wait` (0..60,
    default 0) runs out; 409 when it failed, expired or was cancelled; 404 unknown."""
    api = api_state(request)
    job_id = job_id_of(request)
    await check_job_visible(request, api, job_id)
    wait = Query(request, (WAIT,)).number("wait", 0.0, 0.0, MAX_WAIT_SECONDS)

    async def read() -> Job:
        return await api.db(lambda conn: api.app.get_job_async(job_id, conn=conn))

    job = await api.finished.wait(job_id, read, wait) if api.finished else await read()
    if job.status == "succeeded":
        return JSONResponse({"id": job.id, "status": job.status, "result": job.result})
    if not job.finished:
        return JSONResponse({"id": job.id, "status": job.status}, status_code=202)
    reason = (job.last_error or {}).get("error") if job.status == "failed" else None
    raise Problem(
        409, f"job {job.status}", f"job {job.id} {job.status}" + (f": {reason}" if reason else "")
    )


async def cancel_job(request: Request) -> Response:
    """POST /api/v1/jobs/{id}/cancel → 200 {"id", "status": "cancelled"} (also when it
    already was), 202 {"id", "status": "running"} when its worker was told to stop it,
    409 when it already finished otherwise, 404 unknown."""
    api = api_state(request)
    job_id = job_id_of(request)
    await check_job_visible(request, api, job_id)
    status = await api.db(lambda conn: api.app.cancel_job_async(job_id, conn=conn))
    if status == "running":
        return JSONResponse({"id": job_id, "status": status}, status_code=202)
    if status != "cancelled":
        raise Problem(409, "conflict", f"job {job_id} already finished ({status})")
    return JSONResponse({"id": job_id, "status": status})


async def retry_job(request: Request) -> Response:
    """POST /api/v1/jobs/{id}/retry → 200 {"id", "status"}; 409 while it runs; 404."""
    api = api_state(request)
    job_id = job_id_of(request)
    await check_job_visible(request, api, job_id)
    status = await api.db(lambda conn: api.app.retry_job_async(job_id, conn=conn))
    return JSONResponse({"id": job_id, "status": status})


async def delete_job(request: Request) -> Response:
    """DELETE /api/v1/jobs/{id} → 204 for a finished job (history or dead letters);
    409 for a job that has not finished; 404 unknown."""
    api = api_state(request)
    job_id = job_id_of(request)
    await check_job_visible(request, api, job_id)
    if await api.run(store.delete_job(job_id)) is None:
        raise Problem(404, "not found", f"job {job_id} not found")
    return Response(status_code=204)


routes = [
    route(
        "/jobs",
        {
            "GET": Operation(
                list_jobs,
                "list_jobs",
                "List jobs: filters, an allow-listed sort, keyset pages.",
                "jobs",
                {200: Answer(JobPage, "A page.")},
                query=LIST_PARAMETERS,
                errors=(422, 503),
            ),
            "POST": Operation(
                enqueue_job,
                "enqueue_job",
                "Enqueue one job (an object) or many (a list, one statement, all or nothing).",
                "jobs",
                {201: Answer((JobState, JobIds), "Created; a single job has a Location header.")},
                body=EnqueueJob
                | Annotated[list[EnqueueJob], Meta(min_length=1, max_length=MAX_BULK_JOBS)],  # type: ignore[valid-type]
                errors=(422, 503),
            ),
        },
        name="jobs",
    ),
    route(
        "/jobs/{job_id}",
        {
            "GET": Operation(
                get_job,
                "get_job",
                "Read a job.",
                "jobs",
                {200: Answer(Job, "The job.")},
                errors=(404, 503),
            ),
            "DELETE": Operation(
                delete_job,
                "delete_job",
                "Delete a finished job (history or dead letters).",
                "jobs",
                {204: Answer(None, "Deleted.")},
                errors=(404, 409, 503),
            ),
        },
        name="get_job",
        params=(JOB_ID,),
    ),
    route(
        "/jobs/{job_id}/result",
        {
            "GET": Operation(
                get_job_result,
                "get_job_result",
                "The job's result, long-polling up to `wait` seconds.",
                "jobs",
                {
                    200: Answer(JobResult, "Succeeded."),
                    202: Answer(JobState, "Not finished yet; ask again."),
                },
                query=(WAIT,),
                errors=(404, 409, 422, 503),
            )
        },
        name="get_job_result",
        params=(JOB_ID,),
    ),
    route(
        "/jobs/{job_id}/cancel",
        {
            "POST": Operation(
                cancel_job,
                "cancel_job",
                "Cancel a job.",
                "jobs",
                {
                    200: Answer(JobState, "Cancelled."),
                    202: Answer(JobState, "Running: its worker was told to stop it."),
                },
                errors=(404, 409, 503),
            )
        },
        name="cancel_job",
        params=(JOB_ID,),
    ),
    route(
        "/jobs/{job_id}/retry",
        {
            "POST": Operation(
                retry_job,
                "retry_job",
                "Run a job again now (failed, finished or waiting).",
                "jobs",
                {200: Answer(JobState, "Queued again.")},
                errors=(404, 409, 503),
            )
        },
        name="retry_job",
        params=(JOB_ID,),
    ),
]
"""Mounted under /api/v1 by create_app."""
