"""/api/v1/dead-letters: jobs that failed their last attempt; list, show, redrive (one or
by filter) and purge."""

from __future__ import annotations

from datetime import datetime, timedelta
from typing import Any

from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

from skiplock import store
from skiplock.api.body import read_json_object
from skiplock.api.fields import BIGINT_MAX, decode
from skiplock.api.jobs import job_id_of, list_item_json
from skiplock.api.models import DEAD_LETTER_RULES, PurgeDeadLetters, RedriveDeadLetters
from skiplock.api.problems import Problem
from skiplock.api.query import Query, bad_cursor, encode_cursor
from skiplock.api.state import Conn, api_state

# A filtered redrive moves rows in batches of this many, one short transaction each, so
# a million dead letters never sit in one long transaction (or one statement timeout).
REDRIVE_BATCH = 500
REDRIVE_LIMIT_DEFAULT = 10_000
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
    query = Query(request, ("queue", "task", "limit", "cursor"))
    queue, task, limit = query.text("queue"), query.text("task"), query.limit()
    cursor = query.cursor()
    before = None
    if cursor is not None:
        before = cursor.get("b")
        if isinstance(before, bool) or not isinstance(before, int) or not 0 <= before <= BIGINT_MAX:
            raise bad_cursor()
    rows = await api.run(
        store.list_dead_letters(queue=queue, task=task, before_id=before, limit=limit + 1)
    )
    next_cursor = None
    if len(rows) > limit:
        rows = rows[:limit]
        next_cursor = encode_cursor({"b": rows[-1]["id"]})
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
        moved = await api.run(store.redrive_dead_jobs(queue=queue, task=task, limit=batch))
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
    call = store.purge_dead_jobs(queue=given.queue, task=given.task, older_than=older_than)
    purged = await api.run(call)
    return JSONResponse({"purged": purged})


routes = [
    Route("/dead-letters", list_dead_letters, methods=["GET"], name="list_dead_letters"),
    Route(
        "/dead-letters/redrive",
        redrive_dead_letters,
        methods=["POST"],
        name="redrive_dead_letters",
    ),
    Route("/dead-letters/purge", purge_dead_letters, methods=["POST"], name="purge_dead_letters"),
    Route("/dead-letters/{job_id}", get_dead_letter, methods=["GET"], name="get_dead_letter"),
    Route(
        "/dead-letters/{job_id}/redrive",
        redrive_dead_letter,
        methods=["POST"],
        name="redrive_dead_letter",
    ),
]
"""Mounted under /api/v1 by create_app."""
