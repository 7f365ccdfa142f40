"""/api/v1/workflows: enqueue a workflow (a graph of steps, one transaction), list
workflows, read one with its steps (or long-poll until it is final), cancel and retry.

A step is an enqueue plus its place in the graph (api/models.py WorkflowStep), and
its task and args against the task registry as a job's are (check_jobs_against_registry,
with "allow_unregistered_task" for the whole workflow or one step), so a bad step gets
the same 422 with its field prefixed `steps[i].`; the graph itself
(unknown step names, cycles) is checked by skiplock.enqueue_workflow and comes back as
a 422 on `steps`. A queue-limited token sees only the steps in its queues (counts and
state are over those), and may enqueue only into its queues.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import Any

import psycopg
import psycopg.errors
from starlette.requests import Request
from starlette.responses import JSONResponse, Response

from skiplock import store
from skiplock.api.body import read_json_object
from skiplock.api.fields import decode, within
from skiplock.api.jobs import (
    JOB_ID,
    MAX_WAIT_SECONDS,
    WAIT,
    check_enqueue_queues,
    parse_job_id,
    queue_pattern,
)
from skiplock.api.models import (
    MAX_STEPS,
    WORKFLOW_RULES,
    EnqueueWorkflow,
    WorkflowFields,
    parse_step,
)
from skiplock.api.problems import Problem, invalid_field
from skiplock.api.query import CURSOR, LIMIT, Query, before_id, keyset_page
from skiplock.api.responses import (
    WorkflowCancelled,
    WorkflowCreated,
    WorkflowPage,
    WorkflowRetried,
)
from skiplock.api.routing import Answer, Endpoint, Operation, Param, route
from skiplock.api.state import ApiState, Conn, api_state
from skiplock.api.tasks import RegistryCheck, check_jobs_against_registry
from skiplock.workflows import STEP_FIELDS as GRAPH_FIELDS
from skiplock.workflows import Step, Workflow

WORKFLOW_FIELDS = tuple(EnqueueWorkflow.__struct_fields__)


def parse_steps(items: Any) -> tuple[list[Step], list[RegistryCheck]]:
    """The steps of a POST body, each checked; 422 naming `steps[i].field`. With each
    step, what to check against the task registry (a step may send its own
    "allow_unregistered_task", as a job does)."""
    if not isinstance(items, list) or not items:
        raise invalid_field("steps", "steps must be a non-empty list of step objects")
    if len(items) > MAX_STEPS:
        raise invalid_field("steps", f"a workflow may hold at most {MAX_STEPS} steps")
    steps, checks = [], []
    for index, item in enumerate(items):
        if not isinstance(item, dict):
            raise invalid_field(f"steps[{index}]", f"step {index} must be a JSON object")
        try:
            step = parse_step(item)
        except Problem as problem:
            raise within(f"steps[{index}]", problem, f"step {index}") from None
        graph = {name: getattr(step, name) for name in GRAPH_FIELDS}
        given = {name: value for name, value in graph.items() if value is not None}
        steps.append(Step(step.task, step.job_args, **given, **step.options()))
        filled_later = tuple(given[key] for key in ("result_arg", "results_arg") if key in given)
        checks.append(
            RegistryCheck(
                step.task, step.job_args, bool(step.allow_unregistered_task), filled_later
            )
        )
    return steps, checks


def workflow_id_of(request: Request) -> int:
    raw = request.path_params["workflow_id"]
    workflow_id = parse_job_id(raw)  # the same shape: a bigint >= 0
    if workflow_id is None:
        raise not_found(raw)
    return workflow_id


def not_found(workflow_id: object) -> Problem:
    return Problem(404, "not found", f"workflow {workflow_id} not found")


async def enqueue_workflow(request: Request) -> Response:
    """POST /api/v1/workflows {"name"?, "meta"?, "steps": [...]} → 201 {"id", "jobs",
    "state"} with Location; all steps in one transaction, or none."""
    api = api_state(request)
    body = await read_json_object(request, limit=api.max_body_bytes)
    header = {name: value for name, value in body.items() if name != "steps"}
    fields = decode(header, WorkflowFields, WORKFLOW_RULES, fields=WORKFLOW_FIELDS)
    fields.check()
    name, meta = fields.name, fields.meta
    steps, checks = parse_steps(body.get("steps"))
    if fields.allow_unregistered_task:
        checks = [check._replace(allow_unregistered_task=True) for check in checks]

    async def enqueue(conn: Conn) -> tuple[int, dict[str, int]]:
        # Each step's task and args, as POST /api/v1/jobs checks a job's.
        await check_jobs_against_registry(api, conn, checks, items=("steps", "step"))
        try:
            handle = await api.app.workflow_async(*steps, name=name, meta=meta, conn=conn)
        except psycopg.errors.InvalidParameterValue as exc:
            # The graph's own rules (unknown names, cycles, result_arg with two parents).
            raise invalid_field("steps", exc.diag.message_primary or str(exc)) from None
        if queue_pattern(request) is not None:
            check_enqueue_queues(
                request, await api.app.arun(store.job_queues(list(handle.jobs.values())), conn)
            )
        return handle.id, handle.jobs

    workflow_id, jobs = await api.db(enqueue)
    location = request.url_for("get_workflow", workflow_id=str(workflow_id)).path
    return JSONResponse(
        {"id": workflow_id, "jobs": jobs, "state": "running"},
        status_code=201,
        headers={"Location": location},
    )


def _summary_json(row: Mapping[str, Any], url: str) -> dict[str, Any]:
    # The step count is in counts["steps"]; the steps themselves are on the workflow's page.
    summary = {k: v for k, v in row.items() if k != "truncated"}
    item = {k: v for k, v in Workflow.from_rows(summary, []).to_json().items() if k != "steps"}
    item["truncated"] = {name: {**cut, "url": url} for name, cut in row["truncated"].items()}
    return item


async def list_workflows(request: Request) -> Response:
    """GET /api/v1/workflows?limit&cursor → 200 {"workflows", "next_cursor"}, newest
    first; each with its state and counts (no steps: read one for those). A meta longer
    than store.PREVIEW_CHARS is null, with a preview under "truncated"."""
    api = api_state(request)
    query = Query(request, (LIMIT, CURSOR))
    limit = query.limit()
    before = before_id(query.cursor())
    rows, next_cursor = keyset_page(
        await api.run(
            store.list_workflow_summaries(queue_pattern(request), before_id=before, limit=limit + 1)
        ),
        limit,
        lambda last: {"b": last["id"]},
    )
    items = [
        _summary_json(r, request.url_for("get_workflow", workflow_id=str(r["id"])).path)
        for r in rows
    ]
    return JSONResponse({"workflows": items, "next_cursor": next_cursor})


async def get_workflow(request: Request) -> Response:
    """GET /api/v1/workflows/{id}?wait=SECONDS → 200 with state, counts and steps; 404
    unknown (or with no step in a queue-limited token's queues). A step's result or error
    longer than store.PREVIEW_CHARS is null, with a preview under its "truncated" (GET
    /api/v1/jobs/{id} has it whole). With `wait` (0..60), a
    long poll: answers as soon as the workflow's state is final (200), or with the
    running workflow and 202 when the wait runs out."""
    api = api_state(request)
    workflow_id = workflow_id_of(request)
    pattern = queue_pattern(request)
    wait = Query(request, (WAIT,)).number("wait", -1.0, 0.0, MAX_WAIT_SECONDS)

    async def read() -> Workflow:
        workflow = await api.db(lambda conn: _read_workflow(api, conn, workflow_id, pattern))
        if workflow is None:
            raise not_found(workflow_id)
        return workflow

    workflow = await read()
    if wait < 0:
        return JSONResponse(_workflow_json(request, workflow))
    if not workflow.finished and api.finished is not None:
        # Woken whenever one of its steps' jobs finishes (skiplock_finished).
        steps = [step.job_id for step in workflow.steps]
        workflow = await api.finished.wait_for(steps, read, lambda w: w.finished, wait)
    return JSONResponse(
        _workflow_json(request, workflow), status_code=200 if workflow.finished else 202
    )


def _workflow_json(request: Request, workflow: Workflow) -> dict[str, Any]:
    """The workflow as JSON; a step's cut result or error names the job's URL."""
    body = workflow.to_json()
    for step in body["steps"]:
        url = request.url_for("get_job", job_id=str(step["job_id"])).path
        step["truncated"] = {name: {**cut, "url": url} for name, cut in step["truncated"].items()}
    return body


async def _read_workflow(
    api: ApiState, conn: Conn, workflow_id: int, pattern: str | None
) -> Workflow | None:
    summary = await api.app.arun(store.get_workflow_summary(workflow_id, pattern), conn)
    if summary is None:
        return None
    # Up to a thousand steps: their results and errors as bounded previews.
    steps = await api.app.arun(store.list_workflow_step_previews(workflow_id, pattern), conn)
    if pattern is not None:
        # Not even the names of steps in other queues: drop them from `after` too.
        visible = {step["step"] for step in steps}
        steps = [{**s, "after": [a for a in s["after"] if a in visible]} for s in steps]
    return Workflow.from_rows(summary, steps)


async def cancel_workflow(request: Request) -> Response:
    """POST /api/v1/workflows/{id}/cancel → {"id", "cancelled", "state"}: every unfinished
    step (a queue-limited token: every one in its queues) cancelled, running ones asked to
    stop. 200 once the workflow is final (`cancelled: 0` when it already was), 202 while
    running steps have yet to stop; 404 unknown (or no step the token can see)."""
    return await _control(request, store.cancel_workflow, "cancelled", accepted_while_running=True)


async def retry_workflow(request: Request) -> Response:
    """POST /api/v1/workflows/{id}/retry → 200 {"id", "retried", "state"}: the steps that
    did not succeed run again, in graph order (a queue-limited token: those in its
    queues); 409 while a step has not finished; 404 unknown."""
    return await _control(request, store.retry_workflow, "retried", accepted_while_running=False)


async def _control(
    request: Request,
    call: Callable[[int, str | None], store.Call[int]],
    counted: str,
    *,
    accepted_while_running: bool,
) -> Response:
    api = api_state(request)
    workflow_id = workflow_id_of(request)
    pattern = queue_pattern(request)

    async def control(conn: Conn) -> tuple[int, Workflow | None]:
        try:
            count = await api.app.arun(call(workflow_id, pattern), conn)
        except psycopg.errors.NoDataFound:
            raise not_found(workflow_id) from None
        return count, await _read_workflow(api, conn, workflow_id, pattern)

    count, workflow = await api.db(control)
    state = workflow.state if workflow else None
    status = 202 if accepted_while_running and state == "running" else 200
    return JSONResponse({"id": workflow_id, counted: count, "state": state}, status_code=status)


WORKFLOW_ID = Param("workflow_id", JOB_ID.type, "The workflow id.")


def _operation(endpoint: Endpoint, id: str, summary: str, answers: Any, **more: Any) -> Operation:
    return Operation(endpoint, id, summary, "workflows", answers, **more)


routes = [
    route(
        "/workflows",
        {
            "GET": _operation(
                list_workflows,
                "list_workflows",
                "List workflows, newest first, with their state and counts.",
                {200: Answer(WorkflowPage, "A page.")},
                query=(LIMIT, CURSOR),
                errors=(422, 503),
            ),
            "POST": _operation(
                enqueue_workflow,
                "enqueue_workflow",
                "Enqueue a workflow: a graph of steps, in one transaction (all or nothing).",
                {201: Answer(WorkflowCreated, "Created, with a Location header.")},
                body=EnqueueWorkflow,
                errors=(422, 503),
            ),
        },
        name="workflows",
    ),
    route(
        "/workflows/{workflow_id}",
        {
            "GET": _operation(
                get_workflow,
                "get_workflow",
                "Read a workflow: its state, counts by status and every step; with `wait`,"
                " long-poll until its state is final.",
                {
                    200: Answer(Workflow, "The workflow."),
                    202: Answer(Workflow, "Still running when `wait` ran out."),
                },
                query=(WAIT,),
                errors=(404, 422, 503),
            )
        },
        name="get_workflow",
        params=(WORKFLOW_ID,),
    ),
    route(
        "/workflows/{workflow_id}/cancel",
        {
            "POST": _operation(
                cancel_workflow,
                "cancel_workflow",
                "Cancel every unfinished step (running ones are asked to stop).",
                {
                    200: Answer(WorkflowCancelled, "Cancelled."),
                    202: Answer(WorkflowCancelled, "Running steps have yet to stop."),
                },
                errors=(404, 503),
            )
        },
        name="cancel_workflow",
        params=(WORKFLOW_ID,),
    ),
    route(
        "/workflows/{workflow_id}/retry",
        {
            "POST": _operation(
                retry_workflow,
                "retry_workflow",
                "Run the steps of a finished workflow that did not succeed again, in graph order.",
                {200: Answer(WorkflowRetried, "Running again.")},
                errors=(404, 409, 503),
            )
        },
        name="retry_workflow",
        params=(WORKFLOW_ID,),
    ),
]
"""Mounted under /api/v1 by create_app."""
