"""The workflows pages: the list, a workflow's graph (inline SVG by dependency depth,
each step a link to its job, coloured by status), cancel and retry (write)."""

from __future__ import annotations

import re
from collections.abc import Callable

import psycopg
from pages_checks import audit_actions, diamond, logged_in
from starlette.testclient import TestClient

from skiplock import store
from skiplock.dashboard.workflows import COLOURS, NODE_WIDTH, layout
from skiplock.workflows import WorkflowStep


def step(name: str, after: list[str], status: str | None = "queued") -> WorkflowStep:
    return WorkflowStep(
        step=name, job_id=len(name), after=after, task="t", queue="q", status=status,
        attempt=0, max_attempts=1, created_at=None, started_at=None, finished_at=None,
        result=None, last_error=None,
    )  # fmt: skip


def test_the_layout_puts_each_step_one_column_right_of_its_deepest_parent() -> None:
    graph = layout(
        [step("a", []), step("b", ["a"]), step("c", ["a", "b"]), step("d", []), step("e", ["x"])]
    )
    x = {node.step.step: node.x for node in graph.nodes}
    column = NODE_WIDTH + 60
    assert x["b"] - x["a"] == column and x["c"] - x["a"] == 2 * column
    # no parent, or only parents not shown (a queue-limited login): the first column
    assert x["d"] == x["a"] == x["e"]
    assert len(graph.edges) == 3  # a→b, a→c, b→c; nothing for the unseen x
    assert graph.width >= x["c"] + NODE_WIDTH


def test_the_list_and_the_graph(client: TestClient, conn: psycopg.Connection, dsn: str) -> None:
    workflow_id, jobs = diamond(dsn, fail=True)
    logged_in(client, conn, "ada", "read")
    listing = client.get("/dashboard/workflows")
    assert listing.status_code == 200
    assert (
        f'href="/dashboard/workflows/{workflow_id}"' in listing.text and "diamond" in listing.text
    )
    page = client.get(f"/dashboard/workflows/{workflow_id}")
    assert page.status_code == 200
    svg = page.text[page.text.index("<svg") : page.text.index("</svg>")]
    for name, job_id in jobs.items():
        assert f'href="/dashboard/jobs/{job_id}"' in svg
        assert f'data-step="{name}"' in svg
    statuses = dict(re.findall(r'data-step="(\w+)" data-status="(\w+)"', svg))
    assert statuses == {
        "fetch": "succeeded",
        "left": "succeeded",
        "right": "failed",
        "merge": "failed",  # a failed parent fails its dependents by default
    }
    assert f'fill="{COLOURS["failed"][0]}"' in svg and f'fill="{COLOURS["succeeded"][0]}"' in svg
    assert svg.count('class="edge"') == 4  # fetch→left, fetch→right, left→merge, right→merge
    assert "Retry workflow" not in page.text  # read scope: no action


def test_retry_then_cancel_a_workflow(
    client: TestClient, conn: psycopg.Connection, dsn: str
) -> None:
    workflow_id, jobs = diamond(dsn, fail=True)
    csrf = logged_in(client, conn, "wes", "write")
    assert "Retry workflow" in client.get(f"/dashboard/workflows/{workflow_id}").text
    answer = client.post(
        f"/dashboard/workflows/{workflow_id}/retry", data={"csrf": csrf}, follow_redirects=False
    )
    assert answer.status_code == 303
    assert (
        answer.headers["location"] == f"/dashboard/workflows/{workflow_id}?notice=workflow_retried"
    )
    summary = store.get_workflow_summary(workflow_id).run(conn)
    assert summary is not None and summary["state"] == "running"
    page = client.get(answer.headers["location"])
    assert "run again" in page.text and "Cancel workflow" in page.text
    # retrying a running workflow is refused by its SQL function
    conflict = client.post(f"/dashboard/workflows/{workflow_id}/retry", data={"csrf": csrf})
    assert conflict.status_code == 409 and "has not finished" in conflict.text
    client.post(f"/dashboard/workflows/{workflow_id}/cancel", data={"csrf": csrf})
    summary = store.get_workflow_summary(workflow_id).run(conn)
    assert summary is not None and summary["state"] == "cancelled"
    job = store.get_job(jobs["merge"]).run(conn)
    assert job is not None and job.status == "cancelled"
    actions = [row[1:] for row in audit_actions(conn) if row[0] == "wes" and row[1] != "login"]
    target = f"workflows/{workflow_id}"
    assert actions == [
        (f"POST /dashboard/workflows/{workflow_id}/retry", target, 200),
        (f"POST /dashboard/workflows/{workflow_id}/retry", target, 409),
        (f"POST /dashboard/workflows/{workflow_id}/cancel", target, 200),
    ]


def test_scopes_csrf_queue_limits_and_read_only(
    make_client: Callable[..., TestClient], conn: psycopg.Connection, dsn: str
) -> None:
    workflow_id, _ = diamond(dsn)
    other_id, _ = diamond(dsn, queue="emails")
    reader = make_client()
    csrf = logged_in(reader, conn, "ada", "read")
    answer = reader.post(f"/dashboard/workflows/{workflow_id}/cancel", data={"csrf": csrf})
    assert answer.status_code == 403 and "needs the write scope" in answer.text
    writer = make_client()
    logged_in(writer, conn, "wes", "write")
    forged = writer.post(f"/dashboard/workflows/{workflow_id}/cancel", data={"csrf": "x"})
    assert forged.status_code == 403
    limited = make_client()
    csrf = logged_in(limited, conn, "lim", "write", "emails")
    assert f"/workflows/{workflow_id}" not in limited.get("/dashboard/workflows").text
    assert f"/workflows/{other_id}" in limited.get("/dashboard/workflows").text
    assert limited.get(f"/dashboard/workflows/{workflow_id}").status_code == 404
    hidden = limited.post(f"/dashboard/workflows/{workflow_id}/cancel", data={"csrf": csrf})
    assert hidden.status_code == 404
    frozen = make_client(read_only=True)
    csrf = logged_in(frozen, conn, "boss", "admin")
    assert "Cancel workflow" not in frozen.get(f"/dashboard/workflows/{workflow_id}").text
    refused = frozen.post(f"/dashboard/workflows/{workflow_id}/cancel", data={"csrf": csrf})
    assert refused.status_code == 403
    summary = store.get_workflow_summary(workflow_id).run(conn)
    assert summary is not None and summary["state"] == "running"
    assert client_404(reader)


def client_404(client: TestClient) -> bool:
    return (
        client.get("/dashboard/workflows/999999").status_code == 404
        and client.get("/dashboard/workflows/abc").status_code == 404
        and client.get("/dashboard/workflows?before=x").status_code == 422
    )
