"""/api/v1/dead-letters: jobs that failed their last attempt; list, show, redrive (one or
by filter) and purge."""

from __future__ import annotations

from datetime import datetime, timedelta
from typing import Any

from starlette.requests import Request
from starlette.responses import JSONResponse, Response

from skiplock import store
from skiplock.api.body import read_json_object
from skiplock.api.fields import decode
from skiplock.api.jobs import JOB_ID, job_id_of, list_item_json
from skiplock.api.models import DEAD_LETTER_RULES, PurgeDeadLetters, RedriveDeadLetters
from skiplock.api.problems import Problem
from skiplock.api.query import CURSOR, LIMIT, Query, before_id, keyset_page
from skiplock.api.responses import DeadLetter, DeadLetterPage, JobState, Purged, Redriven
from skiplock.api.routing import Answer, Endpoint, Operation, Param, route
from skiplock.api.state import Conn, api_state

# A filtered redrive moves rows in batches of this many, one short transaction each, so
# a million dead letters never sit in one long transaction (or one statement timeout).
REDRIVE_BATCH = 500
REDRIVE_LIMIT_DEFAULT = 10_000
LIST_PARAMETERS = (
    Param("queue", str, "Only this queue."),
    Param("task", str, "Only this task."),
    LIMIT,
    CURSOR,
)
REDRIVE_FIELDS = RedriveDeadLetters.__struct_fields__
PURGE_FIELDS = PurgeDeadLetters.__struct_fields__


def dead_letter_json(row: dict[str, Any]) -> dict[str, Any]:
    return {k: v.isoformat() if isinstance(v, datetime) else v for k, v in row.items()}


def not_found(job_id: int) -> Problem:
    return Problem(404, "not found", f"dead letter {job_id} not found")


async def list_dead_letters(request: Request) -> Response:
    """GET /api/v1/dead-letters?queue&task&limit&cursor → 200 {"dead_letters", "next_cursor"},
    newest first; args, errors and last_error longer than store.PREVIEW_CHARS are null,
    with a preview under "truncated" (GET /api/v1/dead-letters/{id} has them whole)."""
    api = api_state(request)
    query = Query(request, LIST_PARAMETERS)
    queue, task, limit = query.text("queue"), query.text("task"), query.limit()
    before = before_id(query.cursor())
    rows, next_cursor = keyset_page(
        await api.run(
            store.list_dead_letters(queue=queue, task=task, before_id=before, limit=limit + 1)
        ),
        limit,
        lambda last: {"b": last["id"]},
    )
    items = [
        list_item_json(r, request.url_for("get_dead_letter", job_id=str(r["id"])).path)
        for r in rows
    ]
    return JSONResponse({"dead_letters": items, "next_cursor": next_cursor})


async def get_dead_letter(request: Request) -> Response:
    """GET /api/v1/dead-letters/{id} → 200 with the dead letter and its errors; 404."""
    api = api_state(request)
    job_id = job_id_of(request)
    row = await api.run(store.get_dead_letter(job_id))
    if row is None:
        raise not_found(job_id)
    return JSONResponse(dead_letter_json(row))


async def redrive_dead_letter(request: Request) -> Response:
    """POST /api/v1/dead-letters/{id}/redrive → 200 {"id", "status": "queued"}: retry_job
    for a dead letter; 404 when the job is not a dead letter."""
    api = api_state(request)
    job_id = job_id_of(request)

    async def redrive(conn: Conn) -> str | None:
        if await api.app.arun(store.get_dead_letter(job_id), conn) is None:
            return None
        return await api.app.retry_job_async(job_id, conn=conn)

    status = await api.db(redrive)
    if status is None:
        raise not_found(job_id)
    return JSONResponse({"id": job_id, "status": status})


async def redrive_dead_letters(request: Request) -> Response:
    """POST /api/v1/dead-letters/redrive {"queue"?, "task"?, "limit"?} → 200
    {"redriven", "ids"}: up to `limit` (default 10000) matching dead letters, oldest
    first, in batches."""
    api = api_state(request)
    body = await read_json_object(request, limit=api.max_body_bytes)
    given = decode(body, RedriveDeadLetters, DEAD_LETTER_RULES, fields=REDRIVE_FIELDS)
    given.check()
    queue, task = given.queue, given.task
    limit = REDRIVE_LIMIT_DEFAULT if given.limit is None else given.limit
    ids: list[int] = []
    while len(ids) < limit:
        batch = min(REDRIVE_BATCH, limit - len(ids))
        moved = await api.run(store.redrive_dead_letters(queue=queue, task=task, limit=batch))
        ids += moved
        if len(moved) < batch:
            break
    return JSONResponse({"redriven": len(ids), "ids": ids})


async def purge_dead_letters(request: Request) -> Response:
    """POST /api/v1/dead-letters/purge {"queue"?, "task"?, "older_than"?} → 200
    {"purged"}: deletes matching dead letters for good."""
    api = api_state(request)
    body = await read_json_object(request, limit=api.max_body_bytes)
    given = decode(body, PurgeDeadLetters, DEAD_LETTER_RULES, fields=PURGE_FIELDS)
    given.check()
    older_than = None if given.older_than is None else timedelta(seconds=given.older_than)
    call = store.purge_dead_letters(queue=given.queue, task=given.task, older_than=older_than)
    purged = await api.run(call)
    return JSONResponse({"purged": purged})


def _operation(endpoint: Endpoint, id: str, summary: str, answer: Answer, **more: Any) -> Operation:
    return Operation(endpoint, id, summary, "dead letters", {200: answer}, **more)


routes = [
    route(
        "/dead-letters",
        {
            "GET": _operation(
                list_dead_letters,
                "list_dead_letters",
                "List dead letters, newest first.",
                Answer(DeadLetterPage, "A page."),
                query=LIST_PARAMETERS,
                errors=(422, 503),
            )
        },
        name="list_dead_letters",
    ),
    route(
        "/dead-letters/redrive",
        {
            "POST": _operation(
                redrive_dead_letters,
                "redrive_dead_letters",
                "Send matching dead letters back, oldest first, in batches.",
                Answer(Redriven, "Redriven."),
                body=RedriveDeadLetters,
                errors=(422, 503),
            )
        },
        name="redrive_dead_letters",
    ),
    route(
        "/dead-letters/purge",
        {
            "POST": _operation(
                purge_dead_letters,
                "purge_dead_letters",
                "Delete matching dead letters for good.",
                Answer(Purged, "Purged."),
                body=PurgeDeadLetters,
                errors=(422, 503),
            )
        },
        name="purge_dead_letters",
    ),
    route(
        "/dead-letters/{job_id}",
        {
            "GET": _operation(
                get_dead_letter,
                "get_dead_letter",
                "Read a dead letter.",
                Answer(DeadLetter, "The dead letter."),
                errors=(404, 503),
            )
        },
        name="get_dead_letter",
        params=(JOB_ID,),
    ),
    route(
        "/dead-letters/{job_id}/redrive",
        {
            "POST": _operation(
                redrive_dead_letter,
                "redrive_dead_letter",
                "Send one dead letter back to its queue.",
                Answer(JobState, "Queued again."),
                errors=(404, 503),
            )
        },
        name="redrive_dead_letter",
        params=(JOB_ID,),
    ),
]
"""Mounted under /api/v1 by create_app."""
