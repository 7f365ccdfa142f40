"""/api/v1/queues: create, list, read, change, delete, pause and resume queues, and a
queue's recent stats."""

from __future__ import annotations

from typing import Annotated, Any, TypeVar

from msgspec import Meta
from starlette.requests import Request
from starlette.responses import JSONResponse, Response

from skiplock import store
from skiplock.api.auth import principal_of
from skiplock.api.body import read_json_object
from skiplock.api.fields import QUEUE_NAME, QueueName, decode
from skiplock.api.models import QUEUE_RULES, CreateQueue, QueueSettings, UpdateQueue
from skiplock.api.problems import Problem, invalid_field
from skiplock.api.query import Query
from skiplock.api.responses import Queue, QueuePaused, Queues, QueueStats
from skiplock.api.routing import Answer, Endpoint, Operation, Param, route
from skiplock.api.state import ApiState, Conn, api_state
from skiplock.queue_stats import stats_document
from skiplock.synonyms import QUEUE_SYNONYMS, SynonymError, canonical

M = TypeVar("M", bound=QueueSettings)
# The stats window: up to a day of per-minute buckets, read through the finished_at index.
MINUTES_DEFAULT = 60
MINUTES_MAX = 1440


def queue_of(request: Request) -> str:
    """The queue name in the URL; 404 when it cannot be a queue name."""
    name: str = request.path_params["name"]
    principal = principal_of(request)
    # A queue-limited token sees other queues as absent (404, not 403).
    if not QUEUE_NAME.fullmatch(name) or (principal is not None and not principal.sees(name)):
        raise not_found(name)
    return name


def not_found(name: str) -> Problem:
    return Problem(404, "not found", f"queue {name} not found")


async def _found(api: ApiState, name: str) -> dict[str, Any]:
    queue = await api.run(store.get_queue(name))
    if queue is None:
        raise not_found(name)
    return queue


async def list_queues(request: Request) -> Response:
    """GET /api/v1/queues → 200 {"queues": [...]}: counts by status per queue."""
    api = api_state(request)
    Query(request, ())
    principal = principal_of(request)
    rows = await api.run(store.queue_stats())
    if principal is not None:
        rows = [row for row in rows if principal.sees(row["queue"])]
    return JSONResponse({"queues": rows})


def _settings_body(body: dict[str, Any], model: type[M]) -> M:
    """A queue body, in skiplock's words (synonyms.QUEUE_SYNONYMS), decoded; a 422
    naming the first bad field."""
    try:
        body = canonical(body, QUEUE_SYNONYMS)
    except SynonymError as exc:
        raise invalid_field(exc.field, str(exc)) from None
    return decode(body, model, QUEUE_RULES, fields=model.__struct_fields__)


async def create_queue(request: Request) -> Response:
    """POST /api/v1/queues {"name", and any setting} → 201 with the queue; 409 if it
    exists."""
    api = api_state(request)
    body = await read_json_object(request, limit=api.max_body_bytes)
    new = _settings_body(body, CreateQueue)
    new.check()
    name, settings = new.name, new.settings()
    principal = principal_of(request)
    if principal is not None and not principal.sees(name):
        raise Problem(
            403,
            "forbidden",
            f"this token may only use queues {principal.queue_pattern}, not {name}",
            field="name",
        )

    async def create(conn: Conn) -> dict[str, Any] | None:
        if not await api.app.arun(store.create_queue(name), conn):
            return None
        if settings:
            await api.app.arun(store.configure_queue(name, settings), conn)
        return await api.app.arun(store.get_queue(name), conn)

    created = await api.db(create)
    if created is None:
        raise Problem(409, "conflict", f"queue {name} already exists", field="name")
    location = request.url_for("get_queue", name=name).path
    return JSONResponse(created, status_code=201, headers={"Location": location})


async def get_queue(request: Request) -> Response:
    """GET /api/v1/queues/{name} → 200 with its counts; 404 unknown."""
    api = api_state(request)
    return JSONResponse(await _found(api, queue_of(request)))


async def update_queue(request: Request) -> Response:
    """PUT /api/v1/queues/{name} {any setting} → 200 with the queue; 404 unknown. A
    setting left out is unchanged, one set to null is cleared."""
    api = api_state(request)
    name = queue_of(request)
    body = await read_json_object(request, limit=api.max_body_bytes)
    settings = _settings_body(body, UpdateQueue).settings()

    async def update(conn: Conn) -> dict[str, Any] | None:
        if not await api.app.arun(store.lock_queue(name), conn):
            return None
        if settings:
            await api.app.arun(store.configure_queue(name, settings), conn)
        return await api.app.arun(store.get_queue(name), conn)

    queue = await api.db(update)
    if queue is None:
        raise not_found(name)
    return JSONResponse(queue)


async def delete_queue(request: Request) -> Response:
    """DELETE /api/v1/queues/{name} → 204; 409 while it has jobs; 404 unknown."""
    api = api_state(request)
    name = queue_of(request)
    if not await api.run(store.delete_queue(name)):
        raise not_found(name)
    return Response(status_code=204)


async def pause_queue(request: Request) -> Response:
    """POST /api/v1/queues/{name}/pause → 200 {"queue", "paused": true}; 404 unknown."""
    return await _set_paused(request, paused=True)


async def resume_queue(request: Request) -> Response:
    """POST /api/v1/queues/{name}/resume → 200 {"queue", "paused": false}; 404 unknown."""
    return await _set_paused(request, paused=False)


async def _set_paused(request: Request, *, paused: bool) -> Response:
    api = api_state(request)
    name = queue_of(request)
    call = store.pause_queue(name) if paused else store.resume_queue(name)
    if not await api.run(call):
        raise not_found(name)
    return JSONResponse({"queue": name, "paused": paused})


async def queue_stats(request: Request) -> Response:
    """GET /api/v1/queues/{name}/stats?minutes=N → 200: counts by status, live workers
    serving it, and finished jobs per minute over the last N minutes; 404 unknown."""
    api = api_state(request)
    name = queue_of(request)
    minutes = Query(request, (MINUTES,)).integer("minutes", MINUTES_DEFAULT, 1, MINUTES_MAX)

    async def read(conn: Conn) -> dict[str, Any] | None:
        queue = await api.app.arun(store.get_queue(name), conn)
        if queue is None:
            return None
        workers = await api.app.arun(store.queue_workers(name), conn)
        buckets = await api.app.arun(store.queue_throughput(name, minutes), conn)
        return {"queue": queue, "workers": workers, "buckets": buckets}

    found = await api.db(read)
    if found is None:
        raise not_found(name)
    return JSONResponse(stats_document(found["queue"], found["workers"], found["buckets"], minutes))


MINUTES = Param(
    "minutes",
    Annotated[int, Meta(ge=1, le=MINUTES_MAX)],
    "The window of the throughput, in minutes.",
    MINUTES_DEFAULT,
)
QUEUE = Param("name", QueueName, "Queue.")


def _operation(endpoint: Endpoint, id: str, summary: str, answers: Any, **more: Any) -> Operation:
    return Operation(endpoint, id, summary, "queues", answers, **more)


routes = [
    route(
        "/queues",
        {
            "GET": _operation(
                list_queues,
                "list_queues",
                "Queues with counts by status.",
                {200: Answer(Queues, "Queues.")},
                errors=(422, 503),
            ),
            "POST": _operation(
                create_queue,
                "create_queue",
                "Create a queue, with any of its settings.",
                {201: Answer(Queue, "Created.")},
                body=CreateQueue,
                errors=(409, 422, 503),
            ),
        },
        name="queues",
    ),
    route(
        "/queues/{name}",
        {
            "GET": _operation(
                get_queue,
                "get_queue",
                "A queue's counts.",
                {200: Answer(Queue, "The queue.")},
                errors=(404, 503),
            ),
            "PUT": _operation(
                update_queue,
                "update_queue",
                "Change a queue's settings: a field left out is unchanged, null clears one.",
                {200: Answer(Queue, "The queue, changed.")},
                body=UpdateQueue,
                errors=(404, 422, 503),
            ),
            "DELETE": _operation(
                delete_queue,
                "delete_queue",
                "Delete an empty queue.",
                {204: Answer(None, "Deleted.")},
                errors=(404, 409, 503),
            ),
        },
        name="get_queue",
        params=(QUEUE,),
    ),
    route(
        "/queues/{name}/pause",
        {
            "POST": _operation(
                pause_queue,
                "pause_queue",
                "Pause a queue: its jobs stay, none is claimed.",
                {200: Answer(QueuePaused, "Paused.")},
                errors=(404, 503),
            )
        },
        name="pause_queue",
        params=(QUEUE,),
    ),
    route(
        "/queues/{name}/resume",
        {
            "POST": _operation(
                resume_queue,
                "resume_queue",
                "Resume a paused queue.",
                {200: Answer(QueuePaused, "Resumed.")},
                errors=(404, 503),
            )
        },
        name="resume_queue",
        params=(QUEUE,),
    ),
    route(
        "/queues/{name}/stats",
        {
            "GET": _operation(
                queue_stats,
                "get_queue_stats",
                "Counts, live workers and per-minute throughput of a queue.",
                {200: Answer(QueueStats, "Stats.")},
                query=(MINUTES,),
                errors=(404, 422, 503),
            )
        },
        name="queue_stats",
        params=(QUEUE,),
    ),
]
"""Mounted under /api/v1 by create_app."""
