"""/api/v1/workflows/{id}/cancel, /retry and the ?wait= long poll; scopes and
queue-limited tokens."""

from __future__ import annotations

import json
import threading
import time
from typing import Any

import psycopg
import pytest
from api_checks import W1, assert_problem, publish_tasks
from starlette.testclient import TestClient

import skiplock
from skiplock import store
from skiplock.api import AuthConfig, create_app
from skiplock.api.auth import hash_token, new_token

CHAIN = {
    "steps": [
        {"name": "extract", "task": "etl.extract"},
        {"name": "load", "task": "etl.load", "after": ["extract"], "result_arg": "rows"},
    ],
}


@pytest.fixture(autouse=True)
def published(dsn: str) -> None:
    """The tasks the steps name, published as a worker would (the API checks steps)."""
    publish_tasks(dsn, "etl.extract", "etl.load")


def finish_ready(conn: psycopg.Connection, result: Any = None, *, fail: bool = False) -> None:
    """Claim every ready job of the default and loads queues and complete (or kill) it."""
    rows = conn.execute(
        "SELECT id, attempt FROM skiplock.claim_jobs(%s, '{default,loads}', 100)", (W1,)
    ).fetchall()
    ids, attempts = [r[0] for r in rows], [r[1] for r in rows]
    if fail:
        conn.execute(
            "SELECT skiplock.fail_jobs(%s, %s::bigint[], %s::integer[], %s::jsonb[])",
            (W1, ids, attempts, ['{"error": "boom", "retry": false}'] * len(rows)),
        )
    else:
        conn.execute(
            "SELECT skiplock.complete_jobs(%s, %s::bigint[], %s::integer[], %s::jsonb[])",
            (W1, ids, attempts, [json.dumps(result)] * len(rows)),
        )


def statuses(client: TestClient, workflow_id: int, **kwargs: Any) -> dict[str, str]:
    body = client.get(f"/api/v1/workflows/{workflow_id}", **kwargs).json()
    return {s["step"]: s["status"] for s in body["steps"]}


def test_cancel_then_retry(client: TestClient, conn: psycopg.Connection) -> None:
    wf = client.post("/api/v1/workflows", json=CHAIN).json()["id"]
    assert_problem(client.post(f"/api/v1/workflows/{wf}/retry"), 409, "conflict")

    response = client.post(f"/api/v1/workflows/{wf}/cancel")
    assert response.status_code == 200, response.text
    assert response.json() == {"id": wf, "cancelled": 2, "state": "cancelled"}
    # already finished: a no-op that says so
    response = client.post(f"/api/v1/workflows/{wf}/cancel")
    assert response.json() == {"id": wf, "cancelled": 0, "state": "cancelled"}

    response = client.post(f"/api/v1/workflows/{wf}/retry")
    assert response.status_code == 200, response.text
    assert response.json() == {"id": wf, "retried": 2, "state": "running"}
    assert statuses(client, wf) == {"extract": "queued", "load": "waiting"}
    finish_ready(conn, [1, 2])
    finish_ready(conn, "loaded")
    body = client.get(f"/api/v1/workflows/{wf}").json()
    assert body["state"] == "succeeded"
    assert body["steps"][1]["result"] == "loaded"
    assert client.post(f"/api/v1/workflows/{wf}/retry").json()["retried"] == 0


def test_cancel_with_a_running_step_is_202_until_it_stops(
    client: TestClient, conn: psycopg.Connection
) -> None:
    wf = client.post("/api/v1/workflows", json=CHAIN).json()["id"]
    conn.execute("SELECT skiplock.claim_jobs(%s, '{default}', 1)", (W1,))
    response = client.post(f"/api/v1/workflows/{wf}/cancel")
    assert response.status_code == 202, response.text
    assert response.json() == {"id": wf, "cancelled": 2, "state": "running"}
    assert statuses(client, wf) == {"extract": "running", "load": "cancelled"}


def test_retry_after_a_failure(client: TestClient, conn: psycopg.Connection) -> None:
    wf = client.post("/api/v1/workflows", json=CHAIN).json()["id"]
    finish_ready(conn, fail=True)
    assert statuses(client, wf) == {"extract": "failed", "load": "failed"}
    assert client.post(f"/api/v1/workflows/{wf}/retry").json()["retried"] == 2
    finish_ready(conn, [7])
    (args,) = conn.execute(
        "SELECT args FROM skiplock.all_jobs WHERE id = (SELECT job_id FROM"
        " skiplock.workflow_steps WHERE workflow_id = %s AND name = 'load')",
        (wf,),
    ).fetchone()
    assert args == {"rows": [7]}


def test_unknown_workflows_are_404(client: TestClient) -> None:
    for action in ("cancel", "retry"):
        for wf in ("999", "abc", "-1"):
            assert_problem(client.post(f"/api/v1/workflows/{wf}/{action}"), 404, "not found")


def test_long_poll_answers_when_the_workflow_is_final(
    client: TestClient, conn: psycopg.Connection, dsn: str
) -> None:
    wf = client.post("/api/v1/workflows", json=CHAIN).json()["id"]

    def finish_soon() -> None:
        with psycopg.connect(dsn, autocommit=True) as other:
            for result in ([1], "done"):
                time.sleep(0.3)
                finish_ready(other, result)

    finisher = threading.Thread(target=finish_soon)
    finisher.start()
    response = client.get(f"/api/v1/workflows/{wf}", params={"wait": "20"})
    finisher.join()
    assert response.status_code == 200, response.text
    assert response.json()["state"] == "succeeded"
    assert [s["result"] for s in response.json()["steps"]] == [[1], "done"]


def test_long_poll_still_running_at_the_deadline_is_202(
    client: TestClient, conn: psycopg.Connection
) -> None:
    wf = client.post("/api/v1/workflows", json=CHAIN).json()["id"]
    response = client.get(f"/api/v1/workflows/{wf}", params={"wait": "0.3"})
    assert response.status_code == 202
    assert response.json()["state"] == "running"
    # without wait, a plain read: 200 whatever the state
    assert client.get(f"/api/v1/workflows/{wf}").status_code == 200
    client.post(f"/api/v1/workflows/{wf}/cancel")
    response = client.get(f"/api/v1/workflows/{wf}", params={"wait": "0"})
    assert (response.status_code, response.json()["state"]) == (200, "cancelled")


def test_long_poll_errors(client: TestClient) -> None:
    assert_problem(client.get("/api/v1/workflows/99?wait=2"), 404, "not found")
    for wait in ("61", "-1", "soon", "nan"):
        response = client.get("/api/v1/workflows/1", params={"wait": wait})
        assert_problem(response, 422, "invalid parameter", "wait")
    assert_problem(client.get("/api/v1/workflows/1?later=1"), 422, "unknown parameter", "later")


def make_token(
    conn: psycopg.Connection, name: str, scope: str, queues: str | None = None
) -> dict[str, str]:
    token = new_token()
    assert store.create_api_token(name, scope, queues, hash_token(token)).run(conn)
    return {"Authorization": f"Bearer {token}"}


def test_scopes_and_queue_limited_tokens(dsn: str, conn: psycopg.Connection) -> None:
    mixed = {
        "steps": [
            {"name": "extract", "task": "etl.extract"},
            {"name": "load", "task": "etl.load", "queue": "loads"},
        ]
    }
    with TestClient(create_app(skiplock.App(dsn), auth=AuthConfig())) as client:
        read = make_token(conn, "reader", "read")
        write = make_token(conn, "writer", "write")
        loads = make_token(conn, "loader", "write", "loads*")
        sms = make_token(conn, "texter", "write", "sms*")
        wf = client.post("/api/v1/workflows", json=mixed, headers=write).json()["id"]
        for action in ("cancel", "retry"):
            response = client.post(f"/api/v1/workflows/{wf}/{action}", headers=read)
            assert_problem(response, 403, "forbidden")
            # sees none of its steps: the workflow does not exist for it
            response = client.post(f"/api/v1/workflows/{wf}/{action}", headers=sms)
            assert_problem(response, 404, "not found")

        # cancels only what it sees, and the answer speaks only of that
        response = client.post(f"/api/v1/workflows/{wf}/cancel", headers=loads)
        assert response.json() == {"id": wf, "cancelled": 1, "state": "cancelled"}
        assert statuses(client, wf, headers=write) == {"extract": "queued", "load": "cancelled"}
        response = client.post(f"/api/v1/workflows/{wf}/retry", headers=loads)
        assert response.json() == {"id": wf, "retried": 1, "state": "running"}
        assert statuses(client, wf, headers=write) == {"extract": "queued", "load": "queued"}
        response = client.post(f"/api/v1/workflows/{wf}/cancel", headers=write)
        assert response.json() == {"id": wf, "cancelled": 2, "state": "cancelled"}
