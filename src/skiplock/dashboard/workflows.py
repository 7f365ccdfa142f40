"""The workflows pages: the list (the API's GET /api/v1/workflows read), one workflow
with its steps drawn as a graph, and its cancel and retry actions (write).

The graph is inline SVG made on the server: a step's column is its dependency depth
(the longest chain of `after` above it), its row its place among the steps of that
depth; each step is a link to its job, coloured by the job's status. A queue-limited
login sees only the steps in its queues, as a queue-limited token does.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import psycopg
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from skiplock import store
from skiplock.api.jobs import parse_job_id
from skiplock.api.state import Conn
from skiplock.dashboard.pages import (
    PageError,
    Viewer,
    acting,
    audit,
    back_to,
    dashboard_of,
    not_found,
    render,
    viewer,
)
from skiplock.jobs import STATUSES
from skiplock.workflows import Workflow, WorkflowStep

PAGE_SIZE = 50
# The graph's geometry, in SVG user units.
NODE_WIDTH, NODE_HEIGHT = 180, 44
COLUMN_GAP, ROW_GAP, MARGIN = 60, 16, 8
# Fill and text colours per status: SVG presentation attributes (the page's CSP allows
# no inline style), readable on a light and a dark page alike.
COLOURS = {
    "waiting": ("#d0d7de", "#1b1f24"),
    "scheduled": ("#c8d1f0", "#1b1f24"),
    "queued": ("#b6e3ff", "#1b1f24"),
    "running": ("#0a58ca", "#ffffff"),
    "retrying": ("#f2cc60", "#1b1f24"),
    "succeeded": ("#1a7f37", "#ffffff"),
    "failed": ("#cf222e", "#ffffff"),
    "cancelled": ("#6e7781", "#ffffff"),
    "expired": ("#9a6700", "#ffffff"),
}
PRUNED = ("#f6f8fa", "#57606a")  # the step's job record is gone from the history


@dataclass(frozen=True)
class Node:
    step: WorkflowStep
    x: int
    y: int
    fill: str
    text: str


@dataclass(frozen=True)
class Edge:
    x1: int
    y1: int
    x2: int
    y2: int


@dataclass(frozen=True)
class Graph:
    nodes: list[Node]
    edges: list[Edge]
    width: int
    height: int


def depths(steps: list[WorkflowStep]) -> dict[str, int]:
    """Each step's dependency depth: 0 without `after`, else one more than its deepest
    parent (the graph has no cycles: skiplock.enqueue_workflow refuses them)."""
    parents = {step.step: list(step.after) for step in steps}
    found: dict[str, int] = {}

    def depth(name: str) -> int:
        if name not in found:
            above = [p for p in parents.get(name, []) if p in parents]
            found[name] = 1 + max(map(depth, above)) if above else 0
        return found[name]

    for step in steps:
        depth(step.step)
    return found


def layout(steps: list[WorkflowStep]) -> Graph:
    """Columns by depth, rows in declaration order; an edge from each parent's right
    side to its child's left side."""
    level = depths(steps)
    rows: dict[int, int] = {}
    nodes: dict[str, Node] = {}
    for step in steps:
        column = level[step.step]
        row = rows.get(column, 0)
        rows[column] = row + 1
        fill, text = COLOURS.get(step.status or "", PRUNED)
        nodes[step.step] = Node(
            step,
            MARGIN + column * (NODE_WIDTH + COLUMN_GAP),
            MARGIN + row * (NODE_HEIGHT + ROW_GAP),
            fill,
            text,
        )
    edges = [
        Edge(
            nodes[parent].x + NODE_WIDTH,
            nodes[parent].y + NODE_HEIGHT // 2,
            node.x,
            node.y + NODE_HEIGHT // 2,
        )
        for node in nodes.values()
        for parent in node.step.after
        if parent in nodes
    ]
    columns = max(level.values(), default=0) + 1
    height_rows = max(rows.values(), default=1)
    return Graph(
        list(nodes.values()),
        edges,
        2 * MARGIN + columns * NODE_WIDTH + (columns - 1) * COLUMN_GAP,
        2 * MARGIN + height_rows * NODE_HEIGHT + (height_rows - 1) * ROW_GAP,
    )


def workflow_id_of(request: Request) -> int:
    raw = request.path_params["workflow_id"]
    workflow_id = parse_job_id(raw)  # the same shape as a job id
    if workflow_id is None:
        raise not_found(f"workflow {raw}")
    return workflow_id


async def read_workflow(conn: Conn, request: Request, who: Viewer, workflow_id: int) -> Workflow:
    """The workflow with its steps, as GET /api/v1/workflows/{id} reads it; 404 when
    there is none or none of its steps is in the viewer's queues."""
    api = dashboard_of(request).api
    pattern = who.principal.queue_pattern
    summary = await api.app.arun(store.get_workflow_summary(workflow_id, pattern), conn)
    if summary is None:
        raise not_found(f"workflow {workflow_id}")
    steps = await api.app.arun(store.list_workflow_step_previews(workflow_id, pattern), conn)
    if pattern is not None:
        # not even the names of steps in other queues
        visible = {step["step"] for step in steps}
        steps = [{**s, "after": [a for a in s["after"] if a in visible]} for s in steps]
    return Workflow.from_rows(summary, steps)


async def workflows_page(request: Request) -> Response:
    """GET /dashboard/workflows?before: newest first, with state and counts."""
    who = await viewer(request)
    raw_before = request.query_params.get("before")
    before = parse_job_id(raw_before) if raw_before else None
    if raw_before and before is None:
        raise PageError(422, "Invalid filter", "before must be a workflow id")
    rows = await dashboard_of(request).api.run(
        store.list_workflow_summaries(
            who.principal.queue_pattern, before_id=before, limit=PAGE_SIZE + 1
        )
    )
    context = {
        "workflows": rows[:PAGE_SIZE],
        "statuses": STATUSES,
        "next_before": rows[PAGE_SIZE - 1]["id"] if len(rows) > PAGE_SIZE else None,
    }
    return render(request, "workflows.html", context, who=who)


async def workflow_page(request: Request) -> Response:
    """GET /dashboard/workflows/{id}: state, counts, the graph and a table of steps."""
    who = await viewer(request)
    workflow_id = workflow_id_of(request)
    workflow = await dashboard_of(request).api.db(
        lambda conn: read_workflow(conn, request, who, workflow_id)
    )
    context = {
        "workflow": workflow,
        "graph": layout(workflow.steps),
        "node_width": NODE_WIDTH,
        "node_height": NODE_HEIGHT,
        "statuses": STATUSES,
        "colours": COLOURS,
    }
    return render(request, "workflow.html", context, who=who)


async def control(
    request: Request, call: Callable[[int, str | None], store.Call[int]], notice: str
) -> Response:
    """POST /dashboard/workflows/{id}/cancel or /retry (write): store.cancel_workflow or
    store.retry_workflow, as the API's routes call them, over the viewer's queues."""
    who, _ = await acting(request, "write")
    workflow_id = workflow_id_of(request)
    api = dashboard_of(request).api
    pattern = who.principal.queue_pattern

    async def act(conn: Conn) -> int:
        await read_workflow(conn, request, who, workflow_id)  # 404 unless visible
        return await api.app.arun(call(workflow_id, pattern), conn)

    try:
        await api.db(act)
    except PageError as exc:
        await audit(request, who, exc.status, f"workflows/{workflow_id}")
        raise
    except psycopg.errors.DatabaseError as exc:
        # retrying a workflow with a step still running: the SQL function says why
        await audit(request, who, 409, f"workflows/{workflow_id}")
        raise PageError(409, "Conflict", exc.diag.message_primary or str(exc)) from None
    await audit(request, who, 200, f"workflows/{workflow_id}")
    return back_to(request, f"/workflows/{workflow_id}", notice)


async def cancel_workflow(request: Request) -> Response:
    return await control(request, store.cancel_workflow, "workflow_cancelled")


async def retry_workflow(request: Request) -> Response:
    return await control(request, store.retry_workflow, "workflow_retried")


routes = [
    Route("/workflows", workflows_page, name="workflows"),
    Route("/workflows/{workflow_id}", workflow_page, name="workflow"),
    Route(
        "/workflows/{workflow_id}/cancel", cancel_workflow, methods=["POST"], name="cancel_workflow"
    ),
    Route(
        "/workflows/{workflow_id}/retry", retry_workflow, methods=["POST"], name="retry_workflow"
    ),
]
