"""The tasks page (the registry workers publish, as GET /api/v1/tasks reads it) and the
enqueue form each task gets from its args' JSON Schema.

The form posts through POST /api/v1/jobs' path: parse_enqueue checks the options, then
in one transaction check_jobs_against_registry checks the args against the published
schema, the App enqueues, and a job outside a queue-limited login's queues rolls back.
A problem comes back on the form, next to the field it names.
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass
from typing import Any

from starlette.requests import Request
from starlette.responses import RedirectResponse, Response
from starlette.routing import Route

from skiplock import store
from skiplock.api.models import parse_enqueue
from skiplock.api.problems import Problem
from skiplock.api.state import Conn
from skiplock.api.tasks import RegistryCheck, check_jobs_against_registry
from skiplock.dashboard.pages import (
    PageError,
    Viewer,
    acting,
    audit,
    dashboard_of,
    not_found,
    page_url,
    render,
    viewer,
)

# The enqueue options the form offers beside the args (the API's field names).
OPTIONS = ("queue", "priority", "run_at")
# Form field names: an argument's is ARG + its name; args as one JSON text, ARGS_JSON.
ARG = "arg."
ARGS_JSON = "args_json"
# A schema with more properties than this gets one JSON textarea for all of them.
MAX_ARG_FIELDS = 40
REQUIRED = re.compile(r"'(.+)' is a required property")


@dataclass(frozen=True)
class Field:
    """One input of the enqueue form: `kind` is text, number, integer, boolean, enum or
    json (objects, arrays and anything else a plain input cannot hold)."""

    name: str
    kind: str
    required: bool
    description: str | None
    choices: list[str]  # enum: each value as JSON text

    @property
    def input_name(self) -> str:
        return ARG + self.name


def kind_of(schema: Any) -> str:
    if not isinstance(schema, dict):
        return "json"
    if "enum" in schema and isinstance(schema["enum"], list):
        return "enum"
    kind = schema.get("type")
    if kind == "string":
        return "text"
    if kind in ("number", "integer", "boolean"):
        return str(kind)
    return "json"


def form_fields(schema: Any) -> list[Field] | None:
    """One field per property of an object schema; None when the args are better typed
    as one JSON object (no schema, not an object, no properties, too many)."""
    if not isinstance(schema, dict) or schema.get("type", "object") != "object":
        return None
    properties = schema.get("properties")
    if not isinstance(properties, dict) or not properties or len(properties) > MAX_ARG_FIELDS:
        return None
    required = set(schema.get("required", []) if isinstance(schema.get("required"), list) else [])
    fields = [
        Field(
            name=name,
            kind=kind_of(sub),
            required=name in required,
            description=sub.get("description") if isinstance(sub, dict) else None,
            choices=[json.dumps(v) for v in sub["enum"]] if kind_of(sub) == "enum" else [],
        )
        for name, sub in properties.items()
    ]
    # jsonb keeps no key order: the required fields first, each part by name
    return sorted(fields, key=lambda field: (not field.required, field.name))


def arg_value(field: Field, raw: str) -> Any:
    """The JSON value of one form input; a Problem naming `args.NAME` when it is not one."""
    where = f"args.{field.name}"
    try:
        if field.kind == "integer":
            return int(raw)
        if field.kind == "number":
            return float(raw)
        if field.kind == "boolean":
            return {"true": True, "false": False}[raw]
        if field.kind in ("enum", "json"):
            return json.loads(raw)
    except (ValueError, KeyError):
        what = {"integer": "an integer", "number": "a number", "boolean": "true or false"}
        raise Problem(
            422, "invalid args", f"{where} must be {what.get(field.kind, 'JSON')}", field=where
        ) from None
    return raw


def enqueue_body(task: str, fields: list[Field] | None, form: dict[str, str]) -> dict[str, Any]:
    """The POST /api/v1/jobs body the form stands for; empty inputs are left out."""
    args: Any
    if fields is None:
        text = form.get(ARGS_JSON, "").strip() or "{}"
        try:
            args = json.loads(text)
        except ValueError:
            raise Problem(422, "invalid args", "args must be a JSON object", field="args") from None
    else:
        args = {}
        for field in fields:
            raw = form.get(field.input_name, "")
            if raw.strip():
                args[field.name] = arg_value(field, raw.strip() if field.kind != "text" else raw)
    body: dict[str, Any] = {"task": task, "args": args}
    for name in OPTIONS:
        value = form.get(name, "").strip()
        if value:
            body[name] = int(value) if name == "priority" and value.lstrip("-").isdigit() else value
    return body


def placed(field: str, fields: list[Field] | None) -> bool:
    """Whether the form shows a problem on `field` next to an input (else at its top)."""
    if field in OPTIONS:
        return True
    if fields is None:
        return field == "args" or field.startswith("args.")
    return any(
        field == f"args.{f.name}" or field.startswith((f"args.{f.name}.", f"args.{f.name}["))
        for f in fields
    )


def problem_field(problem: Problem) -> str:
    """The form field a problem belongs to: `args.to` also for "'to' is a required
    property", which jsonschema reports on the args as a whole."""
    field = problem.field or ""
    missing = REQUIRED.search(problem.detail)
    if field == "args" and missing:
        return f"args.{missing.group(1)}"
    return field


async def visible_tasks(
    request: Request, who: Viewer, names: list[str] | None = None
) -> list[dict[str, Any]]:
    """store.list_tasks, less the tasks in queues the viewer does not see."""
    rows = await dashboard_of(request).api.run(store.list_tasks(names))
    return [row for row in rows if who.principal.sees(row["queue"])]


async def tasks_page(request: Request) -> Response:
    """GET /dashboard/tasks: name, queue, description, defaults, last seen, schema."""
    who = await viewer(request)
    return render(request, "tasks.html", {"tasks": await visible_tasks(request, who)}, who=who)


async def one_task(request: Request, who: Viewer, name: str) -> dict[str, Any]:
    rows = await visible_tasks(request, who, [name]) if name else []
    if not rows:
        raise not_found(f"task {name}")
    return rows[0]


def form_page(
    request: Request,
    who: Viewer,
    task: dict[str, Any],
    values: dict[str, str],
    problem: Problem | None = None,
) -> Response:
    fields = form_fields(task["args_schema"])
    field = problem_field(problem) if problem else None
    context = {
        "task": task,
        "fields": fields,
        "values": values,
        "arg_json": ARGS_JSON,
        "error_field": field,
        "error_placed": field is not None and placed(field, fields),
        "error": problem.detail if problem else None,
    }
    return render(
        request, "enqueue.html", context, who=who, status=problem.status if problem else 200
    )


async def enqueue_form(request: Request) -> Response:
    """GET /dashboard/tasks/enqueue?task=NAME: the form."""
    who = await viewer(request)
    task = await one_task(request, who, request.query_params.get("task", ""))
    if not who.principal.allows("write"):
        scope = who.principal.scope
        raise PageError(403, "Forbidden", f"enqueueing needs the write scope; you have {scope}")
    return form_page(request, who, task, {})


async def enqueue(request: Request) -> Response:
    """POST /dashboard/tasks/enqueue (write): enqueue, then the job's page (303); a bad
    field shows the form again, its problem next to the field (422 and the like)."""
    who, posted = await acting(request, "write", max_fields=MAX_ARG_FIELDS + 8)
    values = {k: v for k, v in posted.items() if isinstance(v, str)}
    task = await one_task(request, who, values.get("task", ""))
    api = dashboard_of(request).api
    fields = form_fields(task["args_schema"])

    async def add(conn: Conn) -> int:
        job = parse_enqueue(enqueue_body(task["name"], fields, values))
        check = RegistryCheck(job.task, job.args, allow_unregistered_task=False)
        await check_jobs_against_registry(api, conn, [check])
        job_id = await api.app.enqueue_async(job.task, job.args, conn=conn, **job.options)
        created = await api.app.get_job_async(job_id, conn=conn)
        if not who.principal.sees(created.queue):
            # after the INSERT, so the queue the task's defaults pick counts; rolls back
            raise Problem(
                403,
                "forbidden",
                f"you may only use queues {who.principal.queue_pattern}, not {created.queue}",
                field="queue",
            )
        return job_id

    try:
        job_id = await api.db(add)
    except Problem as problem:
        if problem.status >= 500:
            raise
        await audit(request, who, problem.status, f"tasks/{task['name']}", field=problem.field)
        return form_page(request, who, task, values, problem)
    await audit(request, who, 201, f"jobs/{job_id}", task=task["name"])
    return RedirectResponse(page_url(request, f"/jobs/{job_id}?notice=enqueued"), status_code=303)


routes = [
    Route("/tasks", tasks_page, name="tasks"),
    Route("/tasks/enqueue", enqueue_form, name="enqueue_form"),
    Route("/tasks/enqueue", enqueue, methods=["POST"], name="enqueue"),
]
