"""/api/v1/tasks: the task registry (what workers serve, with the JSON Schema of each
task's args), and the check of an enqueue against it.

Workers publish their tasks when they start (skiplock.publish_tasks). POST /api/v1/jobs,
POST /api/v1/workflows and POST /api/v1/schedules refuse a task no worker has published
(unless the body says "allow_unregistered_task": true, or the API was made with
accept_unknown_tasks) and args that fail the published schema.

A queue-limited token sees only the tasks whose queue it sees; others answer 404, as if
nobody had published them.
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime
from typing import Any, NamedTuple

from starlette.requests import Request
from starlette.responses import JSONResponse, Response

from skiplock import store
from skiplock.api.auth import principal_of
from skiplock.api.fields import TaskName
from skiplock.api.problems import Problem
from skiplock.api.query import Query
from skiplock.api.responses import Task, Tasks
from skiplock.api.routing import Answer, Operation, Param, route
from skiplock.api.state import ApiState, Conn, api_state
from skiplock.errors import ConfigError
from skiplock.validation import Validator, first_error


def task_json(row: dict[str, Any]) -> dict[str, Any]:
    out = dict(row)
    for key in ("first_seen_at", "last_seen_at"):
        value = out[key]
        out[key] = value.isoformat() if isinstance(value, datetime) else value
    out["workers"] = [str(worker) for worker in out["workers"]]
    return out


def task_name_of(request: Request) -> str:
    name: str = request.path_params["name"]
    return name


def visible(request: Request, rows: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """The tasks whose queue the caller sees (all, unless its token is queue-limited)."""
    principal = principal_of(request)
    if principal is None or principal.queue_pattern is None:
        return rows
    return [row for row in rows if principal.sees(row["queue"])]


async def list_tasks(request: Request) -> Response:
    """GET /api/v1/tasks → 200 {"tasks": [...]}: name, queue, description, args_schema,
    first_seen_at, last_seen_at, workers (the live workers serving it), defaults (its
    published default job options)."""
    api = api_state(request)
    Query(request, ())
    rows = visible(request, await api.run(store.list_tasks()))
    return JSONResponse({"tasks": [task_json(row) for row in rows]})


async def _visible_task(request: Request, api: ApiState, name: str) -> dict[str, Any]:
    rows = visible(request, await api.run(store.list_tasks([name])))
    if not rows:
        raise Problem(404, "not found", f"task {name} not found")
    return rows[0]


async def get_task(request: Request) -> Response:
    """GET /api/v1/tasks/{name} → 200 with the task; 404 when no worker published it."""
    api = api_state(request)
    return JSONResponse(task_json(await _visible_task(request, api, task_name_of(request))))


async def forget_task(request: Request) -> Response:
    """DELETE /api/v1/tasks/{name} → 204: drop a task from the registry (jobs are not
    touched; a worker that still serves it publishes it again when it starts); 404."""
    api = api_state(request)
    name = task_name_of(request)
    await _visible_task(request, api, name)
    if not await api.run(store.forget_task(name)):
        raise Problem(404, "not found", f"task {name} not found")
    return Response(status_code=204)


class RegistryCheck(NamedTuple):
    """One job to check against the task registry."""

    task: str
    args: dict[str, Any]
    allow_unregistered_task: bool
    # a workflow step's result_arg/results_arg: filled in when it becomes ready
    filled_later: tuple[str, ...] = ()


async def check_jobs_against_registry(
    api: ApiState,
    conn: Conn,
    jobs: Sequence[RegistryCheck],
    *,
    items: tuple[str, str] | None = None,
) -> None:
    """422 for the first job whose task nobody published (unless it allows that, or the
    API accepts unknown tasks) or whose args fail the task's schema. `field` names the
    spot: `task`, `args.to`; for jobs sent in a list, `items` is (the list's field, what
    one item is called): ("", "job") gives `[3].args.to`, ("steps", "step") gives
    `steps[3].args.to`. One query for all tasks. Used by POST /api/v1/jobs and
    POST /api/v1/workflows."""
    names = sorted({job.task for job in jobs})
    known = {row["name"]: row for row in await api.app.arun(store.list_tasks(names), conn)}
    validators: dict[str, Validator | None] = {}
    for name, entry in known.items():
        try:
            validators[name] = (
                None
                if entry["args_schema"] is None
                else api.schemas.validator(name, entry["args_schema"])
            )
        except ConfigError:
            # A schema this jsonschema cannot compile was published by a worker (which
            # compiled it itself, maybe with another version): the worker still checks.
            validators[name] = None
    for index, (task, args, allow_unregistered, filled_later) in enumerate(jobs):
        prefix = f"{items[0]}[{index}]." if items else ""
        where = f"{items[1]} {index}: " if items else ""
        row = known.get(task)
        if row is None:
            if allow_unregistered or api.accept_unknown_tasks or task in api.app.tasks:
                continue
            raise Problem(
                422,
                "unknown task",
                f"{where}no worker has registered task {task}; check the name, start a "
                'worker that serves it, or send "allow_unregistered_task": true',
                field=prefix + "task",
            )
        validator = validators[task]
        if validator is None:
            continue
        error = first_error(validator, args, filled_later=filled_later)
        if error is not None:
            raise Problem(
                422,
                "invalid args",
                f"{where}{error.path} does not match the schema of task {task}: {error.message}",
                field=prefix + error.path,
            )


TASK_NAME = Param("name", TaskName, "Task name.")

routes = [
    route(
        "/tasks",
        {
            "GET": Operation(
                list_tasks,
                "list_tasks",
                "The task registry: every task a worker has published, with its args schema.",
                "tasks",
                {200: Answer(Tasks, "Tasks.")},
                errors=(422, 503),
            )
        },
        name="list_tasks",
    ),
    # `path`: task names may contain "/" (reports/build)
    route(
        "/tasks/{name:path}",
        {
            "GET": Operation(
                get_task,
                "get_task",
                "One registered task.",
                "tasks",
                {200: Answer(Task, "The task.")},
                errors=(404, 503),
            ),
            "DELETE": Operation(
                forget_task,
                "forget_task",
                "Remove a task from the registry (its jobs are not touched).",
                "tasks",
                {204: Answer(None, "Removed.")},
                errors=(404, 503),
            ),
        },
        name="get_task",
        params=(TASK_NAME,),
    ),
]
"""Mounted under /api/v1 by create_app."""
