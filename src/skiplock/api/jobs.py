"""/api/v1/jobs: enqueue jobs (one or a list), list and read them, wait for a result,
cancel, retry and delete.

Every field of an enqueue is checked here, before the database sees it, so that a bad
request gets a 422 naming its field; the database's own checks stay the last word
(anything that slips past still comes back as a 422, see problems.py).
"""

from __future__ import annotations

import json
import math
import re
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any

from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

from skiplock import store
from skiplock.api.auth import principal_of
from skiplock.api.body import read_json
from skiplock.api.problems import Problem, invalid_field, reject_unknown_fields
from skiplock.api.query import Query, bad_cursor, encode_cursor, parse_timestamp
from skiplock.api.routing import route
from skiplock.api.state import ApiState, Conn, api_state
from skiplock.api.tasks import RegistryCheck, check_jobs_against_registry
from skiplock.jobs import STATUSES, Job, JSONError, encode_json, json_field
from skiplock.store import JOB_SORT_KEYS, JobFilter
from skiplock.webhooks import SECRET_ENV, check_callback_url

# The same rules as the jobs table's CHECK constraints (sql/migrations/0001_baseline.sql).
TASK_NAME = re.compile(r"[A-Za-z0-9_.:/-]{1,200}")
QUEUE_NAME = re.compile(r"[A-Za-z0-9_.:-]{1,64}")
PRIORITY_RANGE = (-100, 100)
INT4_MAX = 2**31 - 1
BIGINT_MAX = 2**63 - 1
MAX_SECONDS = timedelta.max.total_seconds()


@dataclass(frozen=True)
class EnqueueBody:
    """A checked POST /api/v1/jobs body: the arguments of App.enqueue_async."""

    task: str
    args: dict[str, Any]
    options: dict[str, Any] = field(default_factory=dict)
    # true: enqueue even if no worker has published the task (see api/tasks.py)
    allow_unregistered_task: bool = False


def _task(value: Any) -> str:
    if not isinstance(value, str) or not TASK_NAME.fullmatch(value):
        raise invalid_field(
            "task", "task must be a string of 1 to 200 characters from A-Z a-z 0-9 _ . : / -"
        )
    return value


def _json_object(name: str) -> Callable[[Any], dict[str, Any]]:
    def check(value: Any) -> dict[str, Any]:
        if not isinstance(value, dict):
            raise invalid_field(name, f"{name} must be a JSON object")
        try:
            encode_json(value, what=name)
        except JSONError as exc:
            raise invalid_field(name, str(exc)) from None
        except RecursionError:
            raise invalid_field(name, f"{name} is nested too deeply") from None
        if not _is_utf8(json.dumps(value, ensure_ascii=False)):
            # A lone surrogate (a "\ud800" escape with no partner) passes json.dumps
            # but not jsonb's input; say which field holds it.
            raise invalid_field(name, f"{name} contains a lone UTF-16 surrogate escape")
        return value

    return check


def _queue(value: Any) -> str:
    if not isinstance(value, str) or not QUEUE_NAME.fullmatch(value):
        raise invalid_field(
            "queue", "queue must be a string of 1 to 64 characters from A-Z a-z 0-9 _ . : -"
        )
    return value


def _integer(name: str, low: int, high: int) -> Callable[[Any], int]:
    def check(value: Any) -> int:
        # bool is a subclass of int in Python; `true` is not a priority.
        if isinstance(value, bool) or not isinstance(value, int) or not low <= value <= high:
            raise invalid_field(name, f"{name} must be an integer between {low} and {high}")
        return value

    return check


def seconds_field(name: str, *, positive: bool) -> Callable[[Any], timedelta]:
    """A check of a body field in seconds: a finite number (> 0 or >= 0) that fits a
    timedelta; 422 naming the field otherwise."""
    rule = "> 0" if positive else ">= 0"

    def check(value: Any) -> timedelta:
        if (
            isinstance(value, bool)
            or not isinstance(value, (int, float))
            or (isinstance(value, float) and not math.isfinite(value))
            or not (0 < value if positive else 0 <= value)
        ):
            raise invalid_field(name, f"{name} must be a number of seconds {rule}")
        if value > MAX_SECONDS:
            raise invalid_field(name, f"{name} must be at most {MAX_SECONDS:.0f} seconds")
        return timedelta(seconds=value)

    return check


def _run_at(value: Any) -> datetime:
    detail = "run_at must be an ISO 8601 datetime with a timezone, e.g. 2030-01-01T09:00:00Z"
    if not isinstance(value, str):
        raise invalid_field("run_at", detail)
    # Python 3.10's fromisoformat does not read the "Z" suffix.
    text = value[:-1] + "+00:00" if value[-1:] in ("Z", "z") else value
    try:
        parsed = datetime.fromisoformat(text)
    except ValueError:
        raise invalid_field("run_at", detail) from None
    if parsed.tzinfo is None or parsed.utcoffset() is None:
        raise invalid_field("run_at", detail)
    return parsed


def _tags(value: Any) -> tuple[str, ...]:
    detail = "tags must be a list of strings (no NUL characters or lone surrogates)"
    if not isinstance(value, list) or not all(isinstance(tag, str) for tag in value):
        raise invalid_field("tags", detail)
    for tag in value:
        # PostgreSQL text cannot hold NUL, and a lone surrogate cannot be sent as UTF-8.
        if "\x00" in tag or not _is_utf8(tag):
            raise invalid_field("tags", detail)
    return tuple(value)


def _callback_url(value: Any) -> str:
    try:
        return check_callback_url(value)
    except ValueError as exc:
        raise invalid_field("callback_url", str(exc)) from None


def _is_utf8(text: str) -> bool:
    try:
        text.encode("utf-8")
    except UnicodeEncodeError:
        return False
    return True


# Optional fields: body name → check, in the order they are checked. The names are
# App.enqueue_async's options, so a checked body passes straight through.
OPTIONS: dict[str, Callable[[Any], Any]] = {
    "queue": _queue,
    "priority": _integer("priority", *PRIORITY_RANGE),
    "delay": seconds_field("delay", positive=False),
    "run_at": _run_at,
    "max_attempts": _integer("max_attempts", 1, INT4_MAX),
    "timeout": seconds_field("timeout", positive=True),
    "tags": _tags,
    "meta": _json_object("meta"),
    "callback_url": _callback_url,
}
FIELDS = ("task", "args", *OPTIONS, "allow_unregistered_task")


def parse_enqueue(body: Mapping[str, Any]) -> EnqueueBody:
    """Check an enqueue body; raises a 422 Problem naming the first bad field.

    `null` counts as "not given" for every optional field.
    """
    reject_unknown_fields(body, FIELDS)
    if body.get("task") is None:
        raise invalid_field("task", "task is required")
    task = _task(body["task"])
    args = _json_object("args")(body["args"]) if body.get("args") is not None else {}
    options = {
        name: check(body[name]) for name, check in OPTIONS.items() if body.get(name) is not None
    }
    allow = body.get("allow_unregistered_task")
    if allow is not None and not isinstance(allow, bool):
        raise invalid_field("allow_unregistered_task", "allow_unregistered_task must be a boolean")
    return EnqueueBody(task, args, options, allow_unregistered_task=bool(allow))


def parse_job_id(text: str) -> int | None:
    """The id in a job URL, or None when it cannot be a job id (not a bigint >= 0)."""
    if not (text.isascii() and text.isdigit()) or len(text) > 19:
        return None
    job_id = int(text)
    return job_id if job_id <= BIGINT_MAX else None


# The longest a result long-poll may hold a request: past a minute, proxies and load
# balancers start cutting idle connections; clients poll again on 202.
MAX_WAIT_SECONDS = 60.0
# A bulk enqueue is one statement; the body limit bounds it too.
MAX_BULK_JOBS = 10_000


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
            raise Problem(
                problem.status,
                problem.error,
                f"job {index}: {problem.detail}",
                field=f"[{index}].{problem.field}" if problem.field else f"[{index}]",
            ) from None
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


LIST_PARAMETERS = (
    "status",
    "queue",
    "task",
    "tag",
    "created_after",
    "created_before",
    "finished_after",
    "finished_before",
    "sort",
    "order",
    "limit",
    "cursor",
)


def _job_filter(query: Query) -> JobFilter:
    statuses: tuple[str, ...] = ()
    raw_status = query.text("status")
    if raw_status is not None:
        statuses = tuple(raw_status.split(","))
        for status in statuses:
            if status not in STATUSES:
                raise invalid_field_parameter(
                    "status",
                    f"status must be one or more (comma-separated) of {', '.join(STATUSES)}",
                )
    queue = query.text("queue")
    if queue is not None and not QUEUE_NAME.fullmatch(queue):
        raise invalid_field_parameter("queue", "queue must be a valid queue name")
    return JobFilter(
        statuses=statuses,
        queue=queue,
        task=query.text("task"),
        tag=query.text("tag"),
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
    # One row more than asked tells whether there is a next page without a COUNT.
    call = store.list_job_previews(
        filters,
        queue_pattern(request),
        sort=sort,
        descending=order == "desc",
        after=after,
        limit=limit + 1,
    )
    jobs = await api.run(call)
    next_cursor = None
    if len(jobs) > limit:
        jobs = jobs[:limit]
        last = jobs[-1]
        next_cursor = encode_cursor(
            {"s": sort, "o": order, "k": _sort_key(last, sort), "i": last["id"]}
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
    wait = Query(request, ("wait",)).number("wait", 0.0, 0.0, MAX_WAIT_SECONDS)

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
    route("/jobs", {"GET": list_jobs, "POST": enqueue_job}, name="jobs"),
    route("/jobs/{job_id}", {"GET": get_job, "DELETE": delete_job}, name="get_job"),
    Route("/jobs/{job_id}/result", get_job_result, methods=["GET"], name="get_job_result"),
    Route("/jobs/{job_id}/cancel", cancel_job, methods=["POST"], name="cancel_job"),
    Route("/jobs/{job_id}/retry", retry_job, methods=["POST"], name="retry_job"),
]
"""Mounted under /api/v1 by create_app."""
