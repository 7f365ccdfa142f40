"""/api/v1/schedules: create (or replace), list, read, enable, disable and delete
recurring schedules; a schedule's name is its id in the URL.

Every field is checked here first, with the checks the workers will apply (croniter for
the expression, zoneinfo for the time zone), so a schedule the API accepts is one the
scheduler can fire; skiplock.create_schedule keeps the last word.
"""

from __future__ import annotations

import re
from datetime import datetime, timezone
from typing import Annotated, Any, Literal

import psycopg.errors
from msgspec import Meta
from starlette.requests import Request
from starlette.responses import JSONResponse, Response

from skiplock import store
from skiplock.api.body import read_json_object
from skiplock.api.fields import decode
from skiplock.api.models import (
    SCHEDULE_FIELDS,
    SCHEDULE_JOB_FIELDS,
    SCHEDULE_RULES,
    CreateSchedule,
    parse_enqueue,
)
from skiplock.api.problems import Problem, invalid_field
from skiplock.api.query import Query
from skiplock.api.responses import Schedule, ScheduleRun, Schedules
from skiplock.api.routing import Answer, Endpoint, Operation, Param, route
from skiplock.api.state import ApiState, Conn, api_state
from skiplock.api.tasks import RegistryCheck, check_jobs_against_registry
from skiplock.errors import ConfigError
from skiplock.jobs import encode_json
from skiplock.options import JobOptions
from skiplock.schedules import next_fire, validate
from skiplock.synonyms import SCHEDULE_SYNONYMS, SynonymError, canonical

# The schedules table's name rule (sql/migrations/0001_baseline.sql) …
STORED_NAME = re.compile(r"[A-Za-z0-9_.:/-]{1,200}")
# … minus "/", for names created here: the name is a URL path segment, and Starlette
# decodes %2F before routing, so a name holding "/" could never be read back by URL.
NEW_NAME = re.compile(r"[A-Za-z0-9_.:-]{1,200}")
# The cron_shape_valid CHECK: croniter also takes a sixth (seconds) field, SQL does not.
CRON_SHAPE = re.compile(
    r"@(yearly|annually|monthly|weekly|daily|midnight|hourly)"
    r"|[0-9A-Za-z*,/?#LW-]+( +[0-9A-Za-z*,/?#LW-]+){4}"
)
# IANA names are at most ~30 characters; the bound keeps zoneinfo from being handed a
# path longer than the filesystem allows (it raises OSError, not ValueError, for that).
MAX_TIMEZONE_CHARS = 100


async def schedule_named(request: Request) -> str:
    """The name of the schedule the URL names, by its name or else by its id; 404 when
    there is none."""
    ref: str = request.path_params["name"]
    name = (
        await api_state(request).run(store.schedule_name(ref))
        if STORED_NAME.fullmatch(ref)
        else None
    )
    if name is None:
        raise not_found(ref)
    return str(name)


def not_found(name: str) -> Problem:
    return Problem(404, "not found", f"schedule {name} not found")


def schedule_json(row: dict[str, Any]) -> dict[str, Any]:
    return {k: v.isoformat() if isinstance(v, datetime) else v for k, v in row.items()}


def _name(value: Any) -> str:
    if not isinstance(value, str) or not NEW_NAME.fullmatch(value) or value in (".", ".."):
        raise invalid_field(
            "name",
            "name must be a string of 1 to 200 characters from A-Z a-z 0-9 _ . : -"
            " (no /: the name is part of the schedule's URL)",
        )
    return value


def _cron(value: Any) -> str:
    detail = (
        "cron must be a 5-field cron expression (minute hour day-of-month month"
        " day-of-week) or one of @hourly @daily @midnight @weekly @monthly @yearly"
    )
    if not isinstance(value, str) or not CRON_SHAPE.fullmatch(value.strip(" ")):
        raise invalid_field("cron", detail)
    cron = value.strip(" ")
    try:
        validate(cron, "UTC")
    except ConfigError as exc:
        raise invalid_field("cron", str(exc)) from None
    return cron


def _timezone(value: Any, cron: str) -> str:
    if not isinstance(value, str) or len(value) > MAX_TIMEZONE_CHARS:
        raise invalid_field("timezone", "timezone must be an IANA name such as Europe/Paris")
    try:
        validate(cron, value)  # the cron already passed alone: a failure is the zone's
    except ConfigError as exc:
        raise invalid_field("timezone", str(exc)) from None
    try:
        # Valid but never due (30 February): the scheduler would only disable it.
        next_fire(cron, value, datetime.now(timezone.utc))
    except (ConfigError, ValueError):  # ValueError: croniter's CroniterBadDateError
        raise invalid_field("cron", f"cron {cron!r} never fires") from None
    return value


async def _found(api: ApiState, conn: Conn, name: str) -> dict[str, Any] | None:
    rows = await api.app.arun(store.list_schedules(name), conn)
    return rows[0] if rows else None


async def list_schedules(request: Request) -> Response:
    """GET /api/v1/schedules → 200 {"schedules": [...]}, by name."""
    api = api_state(request)
    Query(request, ())
    rows = await api.run(store.list_schedules())
    return JSONResponse({"schedules": [schedule_json(row) for row in rows]})


async def create_schedule(request: Request) -> Response:
    """POST /api/v1/schedules[?replace=true] {"name", "cron", "task", "args"?, "queue"?,
    "priority"?, "timezone"?, "max_attempts"?, "enabled"?} → 201 with the schedule and a
    Location; with replace=true, 200 when it replaced one of the same name; 409 when the
    name exists (without replace)."""
    api = api_state(request)
    replace = Query(request, (REPLACE,)).choice("replace", ("true", "false"), "false") == "true"
    body = await read_json_object(request, limit=api.max_body_bytes)
    try:
        body = canonical(body, SCHEDULE_SYNONYMS)
    except SynonymError as exc:
        raise invalid_field(exc.field, str(exc)) from None
    schedule = decode(body, CreateSchedule, SCHEDULE_RULES, fields=SCHEDULE_FIELDS)
    name = _name(schedule.name)
    cron = _cron(schedule.cron)
    tz = _timezone(schedule.timezone if schedule.timezone is not None else "UTC", cron)
    job = parse_enqueue({field: body[field] for field in SCHEDULE_JOB_FIELDS if field in body})
    enabled = schedule.enabled is not False
    # Unset options take the task's defaults when this App registered it, then (in SQL)
    # the published ones, the queue's and the built-in values: as for an enqueue, and as
    # for a schedule declared with @app.schedule.
    registered = api.app.tasks.get(job.task)
    given = JobOptions.checked(job.options)
    options = registered.defaults.merged(given) if registered else given
    allow_unregistered = bool(schedule.allow_unregistered_task)

    async def create(conn: Conn) -> tuple[bool, dict[str, Any] | None]:
        check = RegistryCheck(job.task, job.args, allow_unregistered)
        await check_jobs_against_registry(api, conn, [check])
        # Left out (None): the task's published defaults, the queue's, the built-in
        # values, resolved by skiplock.create_schedule.
        call = store.create_schedule(
            name,
            cron=cron,
            task=job.task,
            args_json=encode_json(job.args, what="args"),
            queue=options.queue,
            priority=options.priority,
            timezone=tz,
            max_attempts=options.max_attempts,
            enabled=enabled,
            replace=replace,
        )
        existed = replace and await _found(api, conn, name) is not None
        await api.app.arun(call, conn)
        return existed, await _found(api, conn, name)

    try:
        existed, created = await api.db(create)
    except psycopg.errors.UniqueViolation:
        raise Problem(
            409,
            "conflict",
            f"schedule {name} already exists; POST with ?replace=true to replace it",
            field="name",
        ) from None
    except psycopg.errors.InvalidParameterValue as exc:
        # A zone Python's tzdata knows and PostgreSQL's does not (or the reverse).
        raise invalid_field("timezone", exc.diag.message_primary or str(exc)) from None
    assert created is not None  # written in the same transaction
    location = request.url_for("get_schedule", name=name).path
    return JSONResponse(
        schedule_json(created), status_code=200 if existed else 201, headers={"Location": location}
    )


async def get_schedule(request: Request) -> Response:
    """GET /api/v1/schedules/{name} → 200 with the schedule; 404 unknown."""
    api = api_state(request)
    name = await schedule_named(request)
    rows = await api.run(store.list_schedules(name))
    if not rows:
        raise not_found(name)
    return JSONResponse(schedule_json(rows[0]))


async def delete_schedule(request: Request) -> Response:
    """DELETE /api/v1/schedules/{name} → 204; 404 unknown. Jobs it already enqueued stay."""
    api = api_state(request)
    name = await schedule_named(request)
    if not await api.run(store.delete_schedule(name)):
        raise not_found(name)
    return Response(status_code=204)


async def _set_enabled(request: Request, enabled: bool) -> Response:
    api = api_state(request)
    name = await schedule_named(request)

    async def change(conn: Conn) -> dict[str, Any] | None:
        if not await api.app.arun(store.set_schedule_enabled(name, enabled), conn):
            return None
        return await _found(api, conn, name)

    schedule = await api.db(change)
    if schedule is None:
        raise not_found(name)
    return JSONResponse(schedule_json(schedule))


async def enable_schedule(request: Request) -> Response:
    """POST /api/v1/schedules/{name}/enable → 200 with the schedule; 404 unknown. Its next
    fire time is computed again from now: no catch-up for the time it was off."""
    return await _set_enabled(request, True)


async def disable_schedule(request: Request) -> Response:
    """POST /api/v1/schedules/{name}/disable → 200 with the schedule; 404 unknown."""
    return await _set_enabled(request, False)


async def run_schedule(request: Request) -> Response:
    """POST /api/v1/schedules/{name}/run → 201 {"name", "job_id"}: its job enqueued now,
    out of its cron; its next run stays. 404 unknown."""
    api = api_state(request)
    name = await schedule_named(request)
    job_id = await api.run(store.run_schedule(name))
    if job_id is None:
        raise not_found(name)
    return JSONResponse({"name": name, "job_id": job_id}, status_code=201)


REPLACE = Param(
    "replace", Literal["true", "false"], "true: replace the schedule of the same name.", "false"
)
SCHEDULE = Param(
    "name",
    Annotated[str, Meta(pattern=f"^{STORED_NAME.pattern}$")],
    "The schedule's name, or its id (a name that reads the same wins).",
)


def _operation(endpoint: Endpoint, id: str, summary: str, answers: Any, **more: Any) -> Operation:
    return Operation(endpoint, id, summary, "schedules", answers, **more)


def _read(endpoint: Endpoint, id: str, summary: str) -> Operation:
    return _operation(
        endpoint, id, summary, {200: Answer(Schedule, "The schedule.")}, errors=(404, 503)
    )


routes = [
    route(
        "/schedules",
        {
            "GET": _operation(
                list_schedules,
                "list_schedules",
                "Recurring schedules, by name.",
                {200: Answer(Schedules, "Schedules.")},
                errors=(422, 503),
            ),
            "POST": _operation(
                create_schedule,
                "create_schedule",
                "Create a schedule (`?replace=true`: or replace the one of the same name).",
                {
                    200: Answer(Schedule, "Replaced."),
                    201: Answer(Schedule, "Created."),
                },
                body=CreateSchedule,
                query=(REPLACE,),
                errors=(409, 422, 503),
            ),
        },
        name="schedules",
    ),
    route(
        "/schedules/{name}",
        {
            "GET": _read(get_schedule, "get_schedule", "Read a schedule."),
            "DELETE": _operation(
                delete_schedule,
                "delete_schedule",
                "Delete a schedule; jobs it already enqueued stay.",
                {204: Answer(None, "Deleted.")},
                errors=(404, 503),
            ),
        },
        name="get_schedule",
        params=(SCHEDULE,),
    ),
    route(
        "/schedules/{name}/enable",
        {
            "POST": _read(
                enable_schedule,
                "enable_schedule",
                "Enable a schedule; its next fire time is computed from now (no catch-up).",
            )
        },
        name="enable_schedule",
        params=(SCHEDULE,),
    ),
    route(
        "/schedules/{name}/disable",
        {
            "POST": _read(
                disable_schedule,
                "disable_schedule",
                "Disable a schedule: it fires no more until enabled.",
            )
        },
        name="disable_schedule",
        params=(SCHEDULE,),
    ),
    route(
        "/schedules/{name}/run",
        {
            "POST": _operation(
                run_schedule,
                "run_schedule",
                "Run a schedule now, out of its cron: its job is enqueued; its next run stays.",
                {201: Answer(ScheduleRun, "Enqueued.")},
                errors=(404, 503),
            )
        },
        name="run_schedule",
        params=(SCHEDULE,),
    ),
]
"""Mounted under /api/v1 by create_app."""
