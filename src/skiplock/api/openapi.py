"""GET /openapi.json (OpenAPI 3.1, written by hand) and GET /docs (a page listing it).

The document is kept next to the routes and checked against them by a test: a route
added without its entry here fails tests/api/test_openapi.py.
"""

from __future__ import annotations

from collections.abc import Collection
from typing import Any

from starlette.requests import Request
from starlette.responses import HTMLResponse, JSONResponse, Response
from starlette.routing import Route

from skiplock.api.auth import required_scope
from skiplock.jobs import STATUSES as JOB_STATUSES
from skiplock.store import DEAD_LETTER_PREVIEWS, JOB_PREVIEWS, PREVIEW_CHARS, WORKFLOW_PREVIEWS
from skiplock.version import __version__

JSON = "application/json"
PROBLEM_JSON = "application/problem+json"
STATUSES = list(JOB_STATUSES)

ERRORS = {
    400: "The body is not JSON of the expected shape (`invalid json`).",
    401: "No bearer token, or one that is unknown, revoked, expired or badly signed"
    " (`unauthorized`); only when the API runs with auth.",
    403: "The token lacks the scope this call needs, or is limited to other queues (`forbidden`).",
    404: "No such job, queue, schedule, worker or dead letter (`not found`).",
    409: "The resource is not in a state that allows this (`conflict`, `job failed`, …).",
    413: "The body is larger than the API's limit (`body too large`).",
    415: "The body is not sent as `Content-Type: application/json` in UTF-8"
    " (`unsupported media type`).",
    422: "A parameter or field fails its check; `field` names it (for job args, the path"
    " in them: `args.to`; `unknown task` when no worker published the task; `duplicate key`"
    " when a key appears twice in one object).",
    429: "Too many failed authentication attempts from this address; see Retry-After.",
    503: "The database is unreachable or too slow, or the API holds as many request bodies"
    " as it may (`server busy`); see Retry-After.",
}


def _ref(name: str) -> dict[str, str]:
    return {"$ref": f"#/components/schemas/{name}"}


def _json(schema: dict[str, Any], description: str) -> dict[str, Any]:
    return {"description": description, "content": {JSON: {"schema": schema}}}


def _param(name: str, where: str, schema: dict[str, Any], description: str) -> dict[str, Any]:
    return {
        "name": name,
        "in": where,
        "required": where == "path",
        "schema": schema,
        "description": description,
    }


JOB_ID = _param("job_id", "path", {"type": "integer", "minimum": 0}, "The job id.")
WORKFLOW_ID = _param("workflow_id", "path", {"type": "integer", "minimum": 0}, "Workflow.")
QUEUE = _param("name", "path", {"type": "string", "pattern": "^[A-Za-z0-9_.:-]{1,64}$"}, "Queue.")
SCHEDULE = _param(
    "name", "path", {"type": "string", "pattern": "^[A-Za-z0-9_.:-]{1,200}$"}, "Schedule name."
)
WORKER = _param("worker_id", "path", {"type": "string", "format": "uuid"}, "Worker id.")
TASK = _param(
    "name", "path", {"type": "string", "pattern": "^[A-Za-z0-9_.:/-]{1,200}$"}, "Task name."
)
LIMIT = _param(
    "limit", "query", {"type": "integer", "default": 50}, "Page size, clamped to 1..500."
)
CURSOR = _param("cursor", "query", {"type": "string"}, "`next_cursor` of the previous page.")


def _op(
    summary: str,
    ok: dict[int, dict[str, Any]],
    *,
    tag: str,
    params: list[dict[str, Any]] | None = None,
    body: dict[str, Any] | None = None,
    errors: tuple[int, ...] = (503,),
) -> dict[str, Any]:
    responses: dict[str, Any] = {str(status): value for status, value in ok.items()}
    if body is not None:
        # every body goes through api/body.py, which answers 415 for a non-JSON one
        errors = tuple(sorted({*errors, 415}))
    for status in errors:
        responses[str(status)] = {
            "description": ERRORS[status],
            "content": {PROBLEM_JSON: {"schema": _ref("Problem")}},
        }
    operation: dict[str, Any] = {"summary": summary, "tags": [tag], "responses": responses}
    if params:
        operation["parameters"] = params
    if body is not None:
        operation["requestBody"] = {"required": True, "content": {JSON: {"schema": body}}}
    return operation


def _obj(**properties: Any) -> dict[str, Any]:
    return {"type": "object", "properties": properties}


def workflow_control(counted: str) -> dict[str, Any]:
    """The answer of a workflow's cancel or retry: how many steps, and its state after."""
    return _obj(
        id={"type": "integer"},
        **{counted: {"type": "integer", "minimum": 0}},
        state={"enum": ["running", "succeeded", "failed", "cancelled"]},
    )


def _document() -> dict[str, Any]:
    job_list_params = [
        _param("status", "query", {"type": "string"}, "One or more statuses, comma-separated."),
        _param("queue", "query", {"type": "string"}, "Only this queue."),
        _param("task", "query", {"type": "string"}, "Only this task."),
        _param("tag", "query", {"type": "string"}, "Only jobs carrying this tag."),
        *(
            _param(name, "query", {"type": "string", "format": "date-time"}, text)
            for name, text in (
                ("created_after", "created_at >= this (ISO 8601 with timezone)."),
                ("created_before", "created_at < this."),
                ("finished_after", "finished_at >= this."),
                ("finished_before", "finished_at < this."),
            )
        ),
        _param(
            "sort",
            "query",
            {"enum": ["id", "created_at", "finished_at", "priority"], "default": "id"},
            "Sort key (ties broken by id).",
        ),
        _param("order", "query", {"enum": ["desc", "asc"], "default": "desc"}, "Direction."),
        LIMIT,
        CURSOR,
    ]
    id_status = _obj(id={"type": "integer"}, status={"enum": STATUSES})
    filter_body = _obj(
        queue={"type": ["string", "null"]},
        task={"type": ["string", "null"]},
    )
    paths: dict[str, dict[str, Any]] = {
        "/health": {
            "get": _op(
                "Liveness; never touches the database.",
                {200: _json(_obj(status={"const": "ok"}), "Alive.")},
                tag="ops",
                errors=(),
            )
        },
        "/ready": {
            "get": _op(
                "Readiness: the database answers and its schema is current.",
                {
                    200: _json(
                        _obj(status={"const": "ready"}, schema_version={"type": "integer"}),
                        "Ready.",
                    )
                },
                tag="ops",
            )
        },
        "/metrics": {
            "get": _op(
                "Prometheus text exposition.",
                {
                    200: {
                        "description": "Metrics.",
                        "content": {"text/plain": {"schema": {"type": "string"}}},
                    }
                },
                tag="ops",
            )
        },
        "/openapi.json": {
            "get": _op(
                "This document.",
                {200: _json({"type": "object"}, "OpenAPI 3.1.")},
                tag="ops",
                errors=(),
            )
        },
        "/docs": {
            "get": _op(
                "A browsable page listing these operations.",
                {
                    200: {
                        "description": "HTML.",
                        "content": {"text/html": {"schema": {"type": "string"}}},
                    }
                },
                tag="ops",
                errors=(),
            )
        },
        "/api/v1/metrics": {
            "get": _op(
                "Counts per queue and status, finished totals, workers, uptime (JSON).",
                {200: _json({"type": "object"}, "Stats.")},
                tag="ops",
            )
        },
        "/api/v1/jobs": {
            "post": _op(
                "Enqueue one job (an object) or many (a list, one statement, all or nothing).",
                {
                    201: _json(
                        {
                            # `required` keeps the two answers apart: without it, an
                            # {"id", "status"} object is also a valid {"ids"} one.
                            "oneOf": [
                                {**id_status, "required": ["id", "status"]},
                                {
                                    **_obj(ids={"type": "array", "items": {"type": "integer"}}),
                                    "required": ["ids"],
                                },
                            ]
                        },
                        "Created; a single job has a Location header.",
                    )
                },
                tag="jobs",
                body={
                    "oneOf": [
                        _ref("EnqueueJob"),
                        {
                            "type": "array",
                            "items": _ref("EnqueueJob"),
                            "minItems": 1,
                            "maxItems": 10_000,
                        },
                    ]
                },
                errors=(400, 413, 422, 503),
            ),
            "get": _op(
                "List jobs: filters, an allow-listed sort, keyset pages.",
                {
                    200: _json(
                        _obj(
                            jobs={"type": "array", "items": _ref("JobListItem")},
                            next_cursor={"type": ["string", "null"]},
                        ),
                        "A page.",
                    )
                },
                tag="jobs",
                params=job_list_params,
                errors=(422, 503),
            ),
        },
        "/api/v1/jobs/{job_id}": {
            "get": _op(
                "Read a job.",
                {200: _json(_ref("Job"), "The job.")},
                tag="jobs",
                params=[JOB_ID],
                errors=(404, 503),
            ),
            "delete": _op(
                "Delete a finished job (history or dead letters).",
                {204: {"description": "Deleted."}},
                tag="jobs",
                params=[JOB_ID],
                errors=(404, 409, 503),
            ),
        },
        "/api/v1/jobs/{job_id}/result": {
            "get": _op(
                "The job's result, long-polling up to `wait` seconds.",
                {
                    200: _json(
                        _obj(id={"type": "integer"}, status={"const": "succeeded"}, result={}),
                        "Succeeded.",
                    ),
                    202: _json(id_status, "Not finished yet; ask again."),
                },
                tag="jobs",
                params=[
                    JOB_ID,
                    _param(
                        "wait",
                        "query",
                        {"type": "number", "minimum": 0, "maximum": 60, "default": 0},
                        "Seconds to wait for the job to finish.",
                    ),
                ],
                errors=(404, 409, 422, 503),
            )
        },
        "/api/v1/jobs/{job_id}/cancel": {
            "post": _op(
                "Cancel a job.",
                {
                    200: _json(id_status, "Cancelled."),
                    202: _json(id_status, "Running: its worker was told to stop it."),
                },
                tag="jobs",
                params=[JOB_ID],
                errors=(404, 409, 503),
            )
        },
        "/api/v1/jobs/{job_id}/retry": {
            "post": _op(
                "Run a job again now (failed, finished or waiting).",
                {200: _json(id_status, "Queued again.")},
                tag="jobs",
                params=[JOB_ID],
                errors=(404, 409, 503),
            )
        },
        "/api/v1/queues": {
            "get": _op(
                "Queues with counts by status.",
                {200: _json(_obj(queues={"type": "array", "items": _ref("Queue")}), "Queues.")},
                tag="queues",
                errors=(422, 503),
            ),
            "post": _op(
                "Create a queue.",
                {201: _json(_ref("Queue"), "Created.")},
                tag="queues",
                body={
                    **_obj(name={"type": "string"}, paused={"type": "boolean", "default": False}),
                    "required": ["name"],
                },
                errors=(400, 409, 413, 422, 503),
            ),
        },
        "/api/v1/queues/{name}": {
            "get": _op(
                "A queue's counts.",
                {200: _json(_ref("Queue"), "The queue.")},
                tag="queues",
                params=[QUEUE],
                errors=(404, 503),
            ),
            "put": _op(
                "Change a queue's settings: `paused`, and the `retry_policy` and `timeout`"
                " (seconds) its jobs take when they set none (null clears one; a field left"
                " out is unchanged).",
                {200: _json(_ref("Queue"), "The queue.")},
                tag="queues",
                params=[QUEUE],
                body=_obj(
                    paused={"type": "boolean"},
                    retry_policy={"type": ["object", "null"]},
                    timeout={"type": ["number", "null"], "exclusiveMinimum": 0},
                ),
                errors=(400, 404, 413, 422, 503),
            ),
            "delete": _op(
                "Delete an empty queue.",
                {204: {"description": "Deleted."}},
                tag="queues",
                params=[QUEUE],
                errors=(404, 409, 503),
            ),
        },
        "/api/v1/queues/{name}/pause": {
            "post": _op(
                "Pause a queue: its jobs stay, none is claimed.",
                {200: _json(_obj(queue={"type": "string"}, paused={"const": True}), "Paused.")},
                tag="queues",
                params=[QUEUE],
                errors=(404, 503),
            )
        },
        "/api/v1/queues/{name}/resume": {
            "post": _op(
                "Resume a paused queue.",
                {200: _json(_obj(queue={"type": "string"}, paused={"const": False}), "Resumed.")},
                tag="queues",
                params=[QUEUE],
                errors=(404, 503),
            )
        },
        "/api/v1/queues/{name}/stats": {
            "get": _op(
                "Counts, live workers and per-minute throughput of a queue.",
                {200: _json({"type": "object"}, "Stats.")},
                tag="queues",
                params=[
                    QUEUE,
                    _param(
                        "minutes",
                        "query",
                        {"type": "integer", "minimum": 1, "maximum": 1440, "default": 60},
                        "The throughput window.",
                    ),
                ],
                errors=(404, 422, 503),
            )
        },
        "/api/v1/workflows": {
            "post": _op(
                "Enqueue a workflow: a graph of steps, in one transaction (all or nothing).",
                {
                    201: _json(
                        _obj(
                            id={"type": "integer"},
                            jobs={"type": "object", "additionalProperties": {"type": "integer"}},
                            state={"const": "running"},
                        ),
                        "Created; a Location header names it. `jobs` maps step names to job ids.",
                    )
                },
                tag="workflows",
                body=_ref("EnqueueWorkflow"),
                errors=(400, 413, 422, 503),
            ),
            "get": _op(
                "List workflows, newest first, with their state and counts.",
                {
                    200: _json(
                        _obj(
                            workflows={"type": "array", "items": _ref("WorkflowSummary")},
                            next_cursor={"type": ["string", "null"]},
                        ),
                        "A page.",
                    )
                },
                tag="workflows",
                params=[LIMIT, CURSOR],
                errors=(422, 503),
            ),
        },
        "/api/v1/workflows/{workflow_id}": {
            "get": _op(
                "Read a workflow: its state, counts by status and every step; with `wait`,"
                " long-poll until its state is final.",
                {
                    200: _json(_ref("Workflow"), "The workflow."),
                    202: _json(_ref("Workflow"), "Still running when `wait` ran out."),
                },
                tag="workflows",
                params=[
                    WORKFLOW_ID,
                    _param(
                        "wait",
                        "query",
                        {"type": "number", "minimum": 0, "maximum": 60},
                        "Seconds to wait for the workflow's state to be final.",
                    ),
                ],
                errors=(404, 422, 503),
            )
        },
        "/api/v1/workflows/{workflow_id}/cancel": {
            "post": _op(
                "Cancel every unfinished step (running ones are asked to stop).",
                {
                    200: _json(workflow_control("cancelled"), "Final (cancelled: 0 if it was)."),
                    202: _json(workflow_control("cancelled"), "Running steps were told to stop."),
                },
                tag="workflows",
                params=[WORKFLOW_ID],
                errors=(404, 503),
            )
        },
        "/api/v1/workflows/{workflow_id}/retry": {
            "post": _op(
                "Run the steps of a finished workflow that did not succeed again, in graph order.",
                {200: _json(workflow_control("retried"), "Retried (0 if none needed it).")},
                tag="workflows",
                params=[WORKFLOW_ID],
                errors=(404, 409, 503),
            )
        },
        "/api/v1/dead-letters": {
            "get": _op(
                "List dead letters, newest first.",
                {
                    200: _json(
                        _obj(
                            dead_letters={
                                "type": "array",
                                "items": _ref("DeadLetterListItem"),
                            },
                            next_cursor={"type": ["string", "null"]},
                        ),
                        "A page.",
                    )
                },
                tag="dead letters",
                params=[
                    _param("queue", "query", {"type": "string"}, "Only this queue."),
                    _param("task", "query", {"type": "string"}, "Only this task."),
                    LIMIT,
                    CURSOR,
                ],
                errors=(422, 503),
            )
        },
        "/api/v1/dead-letters/{job_id}": {
            "get": _op(
                "Read a dead letter.",
                {200: _json(_ref("DeadLetter"), "The dead letter.")},
                tag="dead letters",
                params=[JOB_ID],
                errors=(404, 503),
            )
        },
        "/api/v1/dead-letters/{job_id}/redrive": {
            "post": _op(
                "Send one dead letter back to its queue.",
                {200: _json(id_status, "Queued again.")},
                tag="dead letters",
                params=[JOB_ID],
                errors=(404, 503),
            )
        },
        "/api/v1/dead-letters/redrive": {
            "post": _op(
                "Send matching dead letters back, oldest first, in batches.",
                {
                    200: _json(
                        _obj(
                            redriven={"type": "integer"},
                            ids={"type": "array", "items": {"type": "integer"}},
                        ),
                        "Redriven.",
                    )
                },
                tag="dead letters",
                body={
                    **filter_body,
                    "properties": {
                        **filter_body["properties"],
                        "limit": {
                            "type": "integer",
                            "minimum": 1,
                            "maximum": 100000,
                            "default": 10000,
                        },
                    },
                },
                errors=(400, 413, 422, 503),
            )
        },
        "/api/v1/dead-letters/purge": {
            "post": _op(
                "Delete matching dead letters for good.",
                {200: _json(_obj(purged={"type": "integer"}), "Purged.")},
                tag="dead letters",
                body={
                    **filter_body,
                    "properties": {
                        **filter_body["properties"],
                        "older_than": {"type": ["number", "null"], "minimum": 0},
                    },
                },
                errors=(400, 413, 422, 503),
            )
        },
        "/api/v1/schedules": {
            "get": _op(
                "Recurring schedules, by name.",
                {
                    200: _json(
                        _obj(schedules={"type": "array", "items": _ref("Schedule")}), "Schedules."
                    )
                },
                tag="schedules",
                errors=(422, 503),
            ),
            "post": _op(
                "Create a schedule (`?replace=true`: or replace the one of the same name).",
                {
                    200: _json(_ref("Schedule"), "Replaced (only with `replace=true`)."),
                    201: _json(_ref("Schedule"), "Created; a Location header names it."),
                },
                tag="schedules",
                params=[
                    _param(
                        "replace",
                        "query",
                        {"enum": ["true", "false"], "default": "false"},
                        "Replace a schedule of the same name instead of answering 409.",
                    )
                ],
                body=_ref("CreateSchedule"),
                errors=(400, 409, 413, 422, 503),
            ),
        },
        "/api/v1/schedules/{name}": {
            "get": _op(
                "Read a schedule.",
                {200: _json(_ref("Schedule"), "The schedule.")},
                tag="schedules",
                params=[SCHEDULE],
                errors=(404, 503),
            ),
            "delete": _op(
                "Delete a schedule; jobs it already enqueued stay.",
                {204: {"description": "Deleted."}},
                tag="schedules",
                params=[SCHEDULE],
                errors=(404, 503),
            ),
        },
        "/api/v1/schedules/{name}/enable": {
            "post": _op(
                "Enable a schedule; its next fire time is computed from now (no catch-up).",
                {200: _json(_ref("Schedule"), "Enabled.")},
                tag="schedules",
                params=[SCHEDULE],
                errors=(404, 503),
            )
        },
        "/api/v1/schedules/{name}/disable": {
            "post": _op(
                "Disable a schedule: it fires no more until enabled.",
                {200: _json(_ref("Schedule"), "Disabled.")},
                tag="schedules",
                params=[SCHEDULE],
                errors=(404, 503),
            )
        },
        "/api/v1/audit": {
            "get": _op(
                "The audit log of mutating calls, newest first (admin).",
                {
                    200: _json(
                        _obj(
                            entries={"type": "array", "items": _ref("AuditEntry")},
                            next_before={"type": ["integer", "null"]},
                        ),
                        "Entries.",
                    )
                },
                tag="auth",
                params=[
                    LIMIT,
                    _param(
                        "before",
                        "query",
                        {"type": "integer", "minimum": 1},
                        "`next_before` of the previous page.",
                    ),
                ],
                errors=(422, 503),
            )
        },
        "/api/v1/workers": {
            "get": _op(
                "Registered worker processes.",
                {200: _json(_obj(workers={"type": "array", "items": _ref("Worker")}), "Workers.")},
                tag="workers",
                errors=(422, 503),
            )
        },
        "/api/v1/tasks": {
            "get": _op(
                "The task registry: every task a worker has published, with its args schema.",
                {200: _json(_obj(tasks={"type": "array", "items": _ref("Task")}), "Tasks.")},
                tag="tasks",
                errors=(422, 503),
            )
        },
        "/api/v1/tasks/{name}": {
            "get": _op(
                "One registered task.",
                {200: _json(_ref("Task"), "The task.")},
                tag="tasks",
                params=[TASK],
                errors=(404, 503),
            ),
            "delete": _op(
                "Remove a task from the registry (its jobs are not touched).",
                {204: {"description": "Removed."}},
                tag="tasks",
                params=[TASK],
                errors=(404, 503),
            ),
        },
        "/api/v1/workers/{worker_id}/stop": {
            "post": _op(
                "Ask a worker to stop gracefully (NOTIFY skiplock_control).",
                {
                    202: _json(
                        _obj(id={"type": "string"}, stopping={"const": True}), "Told to stop."
                    )
                },
                tag="workers",
                params=[WORKER],
                errors=(404, 503),
            )
        },
    }
    counts = {s: {"type": "integer"} for s in STATUSES}
    schemas = {
        "Problem": {
            **_obj(
                type={"type": "string", "format": "uri"},
                title={"type": "string"},
                status={"type": "integer"},
                error={"type": "string"},
                detail={"type": "string"},
                field={"type": "string"},
            ),
            "required": ["type", "title", "status", "error"],
        },
        "EnqueueJob": {
            **_obj(
                task={"type": "string", "pattern": "^[A-Za-z0-9_.:/-]{1,200}$"},
                args={"type": ["object", "null"]},
                queue={"type": ["string", "null"]},
                priority={"type": ["integer", "null"], "minimum": -100, "maximum": 100},
                delay={"type": ["number", "null"], "minimum": 0},
                run_at={"type": ["string", "null"], "format": "date-time"},
                max_attempts={"type": ["integer", "null"], "minimum": 1},
                timeout={"type": ["number", "null"], "exclusiveMinimum": 0},
                tags={"type": ["array", "null"], "items": {"type": "string"}},
                meta={"type": ["object", "null"]},
                callback_url={
                    "type": ["string", "null"],
                    "pattern": r"^[Hh][Tt][Tt][Pp][Ss]?://[^/?#\s\x00-\x1f\x7f]+([/?#][^\s\x00-\x1f\x7f]*)?$",
                    "maxLength": 2048,
                    "description": "POST the outcome here, signed, when the job finishes"
                    " (docs/webhooks.md).",
                },
                allow_unregistered_task={
                    "type": ["boolean", "null"],
                    "description": "Enqueue even if no worker has published the task.",
                },
            ),
            "required": ["task"],
            "additionalProperties": False,
        },
        "Task": _obj(
            name={"type": "string"},
            queue={"type": "string"},
            description={"type": "string"},
            args_schema={"type": ["object", "boolean", "null"]},
            first_seen_at={"type": "string", "format": "date-time"},
            last_seen_at={"type": "string", "format": "date-time"},
            workers={"type": "array", "items": {"type": "string", "format": "uuid"}},
        ),
        "Job": _obj(
            id={"type": "integer"},
            task={"type": "string"},
            args={"type": "object"},
            queue={"type": "string"},
            priority={"type": "integer"},
            status={"enum": STATUSES},
            attempt={"type": "integer"},
            max_attempts={"type": "integer"},
            run_at={"type": ["string", "null"]},
            created_at={"type": "string"},
            started_at={"type": ["string", "null"]},
            finished_at={"type": ["string", "null"]},
            progress={"type": ["object", "null"]},
            result={},
            last_error={"type": ["object", "null"]},
            errors={"type": "array"},
            tags={"type": "array", "items": {"type": "string"}},
            meta={"type": "object"},
            callback_url={"type": ["string", "null"]},
        ),
        "CreateSchedule": {
            **_obj(
                name={"type": "string", "pattern": "^[A-Za-z0-9_.:-]{1,200}$"},
                cron={
                    "type": "string",
                    "description": "5 fields (minute hour day-of-month month day-of-week)"
                    " or @hourly, @daily, @midnight, @weekly, @monthly, @yearly.",
                },
                task={"type": "string", "pattern": "^[A-Za-z0-9_.:/-]{1,200}$"},
                args={"type": ["object", "null"]},
                queue={"type": ["string", "null"]},
                priority={"type": ["integer", "null"], "minimum": -100, "maximum": 100},
                timezone={"type": ["string", "null"], "default": "UTC"},
                max_attempts={"type": ["integer", "null"], "minimum": 1},
                enabled={"type": ["boolean", "null"], "default": True},
            ),
            "required": ["name", "cron", "task"],
            "additionalProperties": False,
        },
        "Schedule": _obj(
            name={"type": "string"},
            cron={"type": "string"},
            timezone={"type": "string"},
            task={"type": "string"},
            args={"type": "object"},
            queue={"type": "string"},
            priority={"type": "integer"},
            max_attempts={"type": "integer"},
            enabled={"type": "boolean"},
            next_run_at={"type": ["string", "null"], "format": "date-time"},
            last_run_at={"type": ["string", "null"], "format": "date-time"},
            last_job_id={"type": ["integer", "null"]},
            last_error={"type": ["string", "null"]},
        ),
        "Queue": _obj(
            queue={"type": "string"},
            paused={"type": "boolean"},
            retry_policy={"type": ["object", "null"]},
            timeout={"type": ["number", "null"]},
            **counts,
        ),
        "DeadLetter": _obj(
            id={"type": "integer"},
            task={"type": "string"},
            queue={"type": "string"},
            attempt={"type": "integer"},
            max_attempts={"type": "integer"},
            last_error={"type": ["string", "null"]},
            failed_at={"type": "string"},
            args={"type": "object"},
            errors={"type": "array"},
            created_at={"type": "string"},
        ),
        "AuditEntry": _obj(
            id={"type": "integer"},
            at={"type": "string", "format": "date-time"},
            actor={"type": "string"},
            action={"type": "string"},
            target={"type": ["string", "null"]},
            status={"type": "integer"},
            detail={"type": "object"},
        ),
        "Worker": _obj(
            id={"type": "string"},
            host={"type": "string"},
            pid={"type": "integer"},
            queues={"type": "array", "items": {"type": "string"}},
            concurrency={"type": "integer"},
            version={"type": "string"},
            started_at={"type": "string"},
            last_heartbeat_at={"type": "string"},
            running_jobs={"type": "integer"},
            alive={"type": "boolean"},
            stuck_jobs={"type": "integer"},
            healthy={"type": "boolean"},
            stalled_loops={"type": "array", "items": {"type": "string"}},
            signs_webhooks={"type": ["boolean", "null"]},
        ),
    }
    schemas["JobListItem"] = _list_item(schemas["Job"], JOB_PREVIEWS)
    schemas["DeadLetterListItem"] = _list_item(schemas["DeadLetter"], DEAD_LETTER_PREVIEWS)
    schemas.update(_workflow_schemas(schemas["EnqueueJob"], counts, STATUSES))
    _secure(paths)
    return {
        "openapi": "3.1.0",
        "info": {
            "title": "skiplock",
            "version": __version__,
            "description": "Background jobs on PostgreSQL. Errors: {error, detail, field}.",
        },
        "paths": paths,
        "components": {
            "schemas": schemas,
            "securitySchemes": {
                "bearer": {
                    "type": "http",
                    "scheme": "bearer",
                    "description": "A skiplock API token (`sk_…`) or a JWT; see docs/api.md."
                    " Each operation lists the scope it needs.",
                }
            },
        },
    }


def _list_item(schema: dict[str, Any], previewed: Collection[str]) -> dict[str, Any]:
    """`schema` as a list shows it: a previewed property may be null (cut for its size),
    and `truncated` says what was cut (store.PREVIEW_CHARS)."""
    properties = {
        name: _or_null(value) if name in previewed else value
        for name, value in schema["properties"].items()
    }
    return {**schema, "properties": {**properties, "truncated": TRUNCATED}}


def _or_null(schema: dict[str, Any]) -> dict[str, Any]:
    kind = schema.get("type")
    if kind is None or kind == "null" or (isinstance(kind, list) and "null" in kind):
        return schema
    return {**schema, "type": [*(kind if isinstance(kind, list) else [kind]), "null"]}


TRUNCATED = {
    "type": "object",
    "description": f"The values this list left out, each null above: a value is listed whole"
    f" only while its JSON text is at most {PREVIEW_CHARS} bytes. Per name, the size of its"
    f" JSON text in bytes, its first {PREVIEW_CHARS} characters, and the URL that has it"
    " whole.",
    "additionalProperties": {
        **_obj(
            bytes={"type": "integer", "minimum": 0},
            preview={"type": "string"},
            url={"type": "string"},
        ),
        "required": ["bytes", "preview", "url"],
    },
}


def _workflow_schemas(
    enqueue_job: dict[str, Any], counts: dict[str, Any], statuses: list[str]
) -> dict[str, Any]:
    """EnqueueWorkflow (a step is an EnqueueJob plus its place in the graph),
    WorkflowSummary and Workflow."""
    state = {"enum": ["running", "succeeded", "failed", "cancelled"]}
    return {
        "EnqueueWorkflow": {
            **_obj(
                name={"type": ["string", "null"], "pattern": "^[A-Za-z0-9_.:/-]{1,200}$"},
                meta={"type": ["object", "null"]},
                allow_unregistered_task={
                    "type": ["boolean", "null"],
                    "description": "Enqueue every step even if no worker has published its task.",
                },
                steps={
                    "type": "array",
                    "minItems": 1,
                    "items": {
                        "description": "An EnqueueJob plus the step's place in the graph.",
                        **_obj(
                            name={"type": ["string", "null"], "description": "Default: task."},
                            after={
                                "type": ["array", "null"],
                                "items": {"type": "string"},
                                "description": "Steps that must succeed first.",
                            },
                            result_arg={
                                "type": ["string", "null"],
                                "description": "Receives the one parent's result.",
                            },
                            results_arg={
                                "type": ["string", "null"],
                                "description": "Receives all parents' results, in after order.",
                            },
                            on_dependency_failure={"enum": ["fail", "cancel", "run", None]},
                            **{
                                name: schema
                                for name, schema in enqueue_job["properties"].items()
                                if name != "callback_url"  # a job's, not a step's
                            },
                        ),
                        "required": ["task"],
                    },
                },
            ),
            "required": ["steps"],
            "additionalProperties": False,
        },
        "WorkflowSummary": _list_item(
            _obj(
                id={"type": "integer"},
                name={"type": ["string", "null"]},
                meta={"type": "object"},
                created_at={"type": "string"},
                state=state,
                counts=_obj(steps={"type": "integer"}, **counts),
                finished_at={"type": ["string", "null"]},
            ),
            WORKFLOW_PREVIEWS,
        ),
        "Workflow": _obj(
            id={"type": "integer"},
            name={"type": ["string", "null"]},
            meta={"type": "object"},
            created_at={"type": "string"},
            state=state,
            counts=_obj(steps={"type": "integer"}, **counts),
            finished_at={"type": ["string", "null"]},
            steps={
                "type": "array",
                "items": _obj(
                    step={"type": "string"},
                    job_id={"type": "integer"},
                    after={"type": "array", "items": {"type": "string"}},
                    task={"type": ["string", "null"]},
                    queue={"type": ["string", "null"]},
                    status={"enum": [*statuses, None]},
                    attempt={"type": ["integer", "null"]},
                    max_attempts={"type": ["integer", "null"]},
                    created_at={"type": ["string", "null"]},
                    started_at={"type": ["string", "null"]},
                    finished_at={"type": ["string", "null"]},
                    result={},
                    last_error={"type": ["string", "null"]},
                    truncated=TRUNCATED,
                ),
            },
        ),
    }


def _secure(paths: dict[str, dict[str, Any]]) -> None:
    """Each operation's security requirement and auth errors, from the same rule the
    middleware applies (auth.required_scope), so the two cannot disagree."""
    for path, item in paths.items():
        for method, operation in item.items():
            scope = required_scope(method.upper(), path)
            if scope is None:
                operation["security"] = []
                continue
            operation["security"] = [{"bearer": [scope]}]
            for status in (401, 403, 429):
                operation["responses"][str(status)] = {
                    "description": ERRORS[status],
                    "content": {PROBLEM_JSON: {"schema": _ref("Problem")}},
                }


DOCUMENT = _document()


async def openapi_json(request: Request) -> Response:
    """GET /openapi.json → 200 with the OpenAPI document; mounted under a prefix, its
    `servers` names that prefix, so clients built from it call the mounted API."""
    root_path = request.scope.get("root_path", "")
    if not root_path:
        return JSONResponse(DOCUMENT)
    return JSONResponse({**DOCUMENT, "servers": [{"url": root_path}]})


# No CDN assets (the docs must work offline): a few lines of JS render the document.
DOCS_PAGE = """<!doctype html>
<html lang="en"><head><meta charset="utf-8"><title>skiplock API</title>
<style>
body{font:15px/1.45 system-ui,sans-serif;max-width:60rem;margin:2rem auto;padding:0 1rem}
h2{margin-top:2rem;text-transform:capitalize}
details{border:1px solid #ddd;border-radius:6px;margin:.4rem 0;padding:.4rem .7rem}
summary{cursor:pointer} code{background:#f4f4f4;padding:0 .25rem;border-radius:3px}
.m{display:inline-block;width:4.2rem;font-weight:600;font-family:monospace}
.get{color:#06c}.post{color:#080}.put{color:#a60}.delete{color:#c00}
pre{background:#f7f7f7;padding:.5rem;overflow:auto;font-size:13px}
</style></head>
<body><h1>skiplock API</h1>
<p>Machine-readable: <a href="openapi.json">openapi.json</a>.
Examples: <code>docs/api.md</code>.</p><div id="ops">Loading…</div>
<script>
// Relative: the page and the document sit side by side, at the root or under a mount.
fetch("openapi.json").then(r => r.json()).then(doc => {
  const byTag = {};
  for (const [path, item] of Object.entries(doc.paths))
    for (const [method, op] of Object.entries(item))
      (byTag[op.tags[0]] = byTag[op.tags[0]] || []).push([method, path, op]);
  const esc = s => String(s).replace(/[&<>]/g, c => ({"&":"&amp;","<":"&lt;",">":"&gt;"})[c]);
  let html = "";
  for (const [tag, ops] of Object.entries(byTag)) {
    html += "<h2>" + esc(tag) + "</h2>";
    for (const [method, path, op] of ops) {
      const params = (op.parameters || []).map(p =>
        "<li><code>" + esc(p.name) + "</code> (" + p.in + ") " +
        esc(p.description || "") + "</li>").join("");
      const codes = Object.entries(op.responses).map(([c, r]) =>
        "<li><b>" + c + "</b> " + esc(r.description) + "</li>").join("");
      const schema = op.requestBody && op.requestBody.content["application/json"].schema;
      const body = schema ? "<p>Body:</p><pre>" +
        esc(JSON.stringify(schema, null, 1)) + "</pre>" : "";
      html += "<details><summary><span class='m " + method + "'>" + method.toUpperCase() +
        "</span> <code>" + esc(path) + "</code> — " + esc(op.summary) + "</summary>" +
        (params ? "<p>Parameters:</p><ul>" + params + "</ul>" : "") + body +
        "<p>Responses:</p><ul>" + codes + "</ul></details>";
    }
  }
  document.getElementById("ops").innerHTML = html;
});
</script></body></html>
"""


async def docs_page(request: Request) -> Response:
    """GET /docs → 200 HTML listing the operations of /openapi.json."""
    return HTMLResponse(DOCS_PAGE)


routes = [
    Route("/openapi.json", openapi_json, methods=["GET"], name="openapi"),
    Route("/docs", docs_page, methods=["GET"], name="docs"),
]
