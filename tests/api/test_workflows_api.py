"""/api/v1/workflows: enqueue (one transaction), list, read; checks; auth scopes and
queue-limited tokens."""

from __future__ import annotations

import json
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
    "name": "nightly",
    "meta": {"by": "cron"},
    "steps": [
        {"name": "extract", "task": "etl.extract", "args": {"day": "2024-05-01"}},
        {
            "name": "load",
            "task": "etl.load",
            "after": ["extract"],
            "result_arg": "rows",
            "queue": "loads",
            "priority": 5,
        },
    ],
}


@pytest.fixture(autouse=True)
def published(dsn: str) -> None:
    """The tasks the steps name, published as a worker would (the API checks steps)."""
    publish_tasks(dsn, "t", "etl.extract", "etl.load")


def finish_ready(conn: psycopg.Connection, result: Any) -> None:
    rows = conn.execute(
        "SELECT id, attempt FROM skiplock.claim_jobs(%s, '{default,loads}', 100)", (W1,)
    ).fetchall()
    conn.execute(
        "SELECT skiplock.complete_jobs(%s, %s::bigint[], %s::integer[], %s::jsonb[])",
        (W1, [r[0] for r in rows], [r[1] for r in rows], [json.dumps(result)] * len(rows)),
    )


def test_enqueue_read_and_list(client: TestClient, conn: psycopg.Connection) -> None:
    response = client.post("/api/v1/workflows", json=CHAIN)
    assert response.status_code == 201, response.text
    created = response.json()
    assert created["state"] == "running" and list(created["jobs"]) == ["extract", "load"]
    assert response.headers["location"] == f"/api/v1/workflows/{created['id']}"

    finish_ready(conn, [1, 2, 3])
    body = client.get(response.headers["location"]).json()
    assert (body["id"], body["name"], body["meta"], body["state"]) == (
        created["id"],
        "nightly",
        {"by": "cron"},
        "running",
    )
    assert body["counts"]["steps"] == 2 and body["counts"]["succeeded"] == 1
    extract, load = body["steps"]
    assert (extract["status"], extract["result"]) == ("succeeded", [1, 2, 3])
    assert (load["status"], load["queue"], load["after"]) == ("queued", "loads", ["extract"])
    (args,) = conn.execute(
        "SELECT args FROM skiplock.jobs WHERE id = %s", (created["jobs"]["load"],)
    ).fetchone()
    assert args == {"rows": [1, 2, 3]}

    finish_ready(conn, "ok")
    second = client.post("/api/v1/workflows", json={"steps": [{"task": "t"}]}).json()
    page = client.get("/api/v1/workflows", params={"limit": 1}).json()
    assert [w["id"] for w in page["workflows"]] == [second["id"]]
    rest = client.get("/api/v1/workflows", params={"cursor": page["next_cursor"]}).json()
    assert [(w["id"], w["state"]) for w in rest["workflows"]] == [(created["id"], "succeeded")]
    assert rest["next_cursor"] is None and "steps" not in rest["workflows"][0]


@pytest.mark.parametrize(
    ("body", "field"),
    [
        ({}, "steps"),
        ({"steps": []}, "steps"),
        ({"steps": [{"task": "t"}], "colour": 1}, "colour"),
        ({"steps": [{"task": "t"}], "name": "has space"}, "name"),
        ({"steps": [{"task": "t"}], "meta": []}, "meta"),
        ({"steps": [{"task": "t"}] * 1001}, "steps"),
        ({"steps": ["t"]}, "steps[0]"),
        ({"steps": [{"task": "t"}, {"args": {}}]}, "steps[1].task"),
        ({"steps": [{"task": "t", "priority": 500}]}, "steps[0].priority"),
        ({"steps": [{"task": "t", "after": "x"}]}, "steps[0].after"),
        ({"steps": [{"task": "t", "name": "a b"}]}, "steps[0].name"),
        (
            {"steps": [{"task": "t", "on_dependency_failure": "maybe"}]},
            "steps[0].on_dependency_failure",
        ),
        ({"steps": [{"task": "t", "unique_key": "k"}]}, "steps[0].unique_key"),
        # the graph's own rules, checked by the database
        ({"steps": [{"task": "t", "after": ["nope"]}]}, "steps"),
        (
            {
                "steps": [
                    {"name": "a", "task": "t", "after": ["b"]},
                    {"name": "b", "task": "t", "after": ["a"]},
                ]
            },
            "steps",
        ),
    ],
)
def test_bad_bodies_are_422_naming_the_field(
    client: TestClient, conn: psycopg.Connection, body: dict[str, Any], field: str
) -> None:
    response = client.post("/api/v1/workflows", json=body)
    assert_problem(response, 422, response.json()["error"], field)
    assert conn.execute("SELECT count(*) FROM skiplock.workflows").fetchone() == (0,)
    assert conn.execute("SELECT count(*) FROM skiplock.jobs").fetchone() == (0,)


def test_unknown_workflow_is_404(client: TestClient) -> None:
    for path in ("/api/v1/workflows/999", "/api/v1/workflows/abc", "/api/v1/workflows/-1"):
        assert_problem(client.get(path), 404, "not found")
    assert_problem(
        client.get("/api/v1/workflows", params={"cursor": "zzz"}),
        422,
        "invalid parameter",
        "cursor",
    )


def make_token(
    conn: psycopg.Connection, name: str, scope: str, queues: str | None = None
) -> dict[str, str]:
    token = new_token()
    assert store.create_api_token(name, scope, queues, hash_token(token)).run(conn)
    return {"Authorization": f"Bearer {token}"}


def test_scopes_and_queue_limited_tokens(dsn: str, conn: psycopg.Connection) -> None:
    with TestClient(create_app(skiplock.App(dsn), auth=AuthConfig())) as client:
        read = make_token(conn, "reader", "read")
        write = make_token(conn, "writer", "write")
        loads = make_token(conn, "loader", "write", "loads*")
        assert_problem(client.post("/api/v1/workflows", json=CHAIN, headers=read), 403, "forbidden")
        created = client.post("/api/v1/workflows", json=CHAIN, headers=write).json()
        assert client.get("/api/v1/workflows", headers=read).status_code == 200

        # The loads-only token sees the workflow, but only its step in `loads`.
        body = client.get(f"/api/v1/workflows/{created['id']}", headers=loads).json()
        assert [(s["step"], s["after"]) for s in body["steps"]] == [("load", [])]
        assert body["counts"]["steps"] == 1 and body["counts"]["waiting"] == 1
        listed = client.get("/api/v1/workflows", headers=loads).json()["workflows"]
        assert [w["counts"]["steps"] for w in listed] == [1]
        # A workflow with no step in its queues does not exist for it.
        other = client.post(
            "/api/v1/workflows", json={"steps": [{"task": "t"}]}, headers=write
        ).json()
        assert_problem(
            client.get(f"/api/v1/workflows/{other['id']}", headers=loads), 404, "not found"
        )
        assert [
            w["id"] for w in client.get("/api/v1/workflows", headers=loads).json()["workflows"]
        ] == [created["id"]]
        # Enqueueing a step outside its queues: 403, and nothing of the workflow is written.
        before = conn.execute("SELECT count(*) FROM skiplock.workflows").fetchone()
        response = client.post("/api/v1/workflows", json=CHAIN, headers=loads)
        assert_problem(response, 403, "forbidden", "queue")
        assert conn.execute("SELECT count(*) FROM skiplock.workflows").fetchone() == before
        inside = {"steps": [{"task": "t", "queue": "loads.eu"}]}
        assert client.post("/api/v1/workflows", json=inside, headers=loads).status_code == 201


def publish_schema(conn: psycopg.Connection, name: str, schema: dict[str, Any]) -> None:
    tasks = json.dumps([{"name": name, "args_schema": schema}])
    conn.execute("SELECT skiplock.publish_tasks(NULL, %s::jsonb)", (tasks,))


SEND_SCHEMA = {
    "type": "object",
    "properties": {"to": {"type": "string"}, "rows": {"type": "array"}},
    "required": ["to", "rows"],
}


@pytest.mark.parametrize(
    ("steps", "error", "field"),
    [
        ([{"task": "t"}, {"task": "nope"}], "unknown task", "steps[1].task"),
        ([{"task": "send", "args": {"to": 5, "rows": []}}], "invalid args", "steps[0].args.to"),
        ([{"task": "t"}, {"task": "send", "args": {"to": "a"}}], "invalid args", "steps[1].args"),
        # result_arg is filled in later, but the step's other args are still checked
        (
            [{"name": "a", "task": "t"}, {"task": "send", "after": ["a"], "result_arg": "rows"}],
            "invalid args",
            "steps[1].args",
        ),
    ],
)
def test_steps_are_checked_against_the_task_registry(
    client: TestClient, conn: psycopg.Connection, steps: list[Any], error: str, field: str
) -> None:
    publish_schema(conn, "send", SEND_SCHEMA)
    response = client.post("/api/v1/workflows", json={"steps": steps})
    assert_problem(response, 422, error, field)
    assert response.json()["detail"].startswith(f"step {field[6]}: ")
    assert conn.execute("SELECT count(*) FROM skiplock.workflows").fetchone() == (0,)
    assert conn.execute("SELECT count(*) FROM skiplock.jobs").fetchone() == (0,)


def test_result_args_count_as_given_and_unregistered_tasks_can_be_allowed(
    client: TestClient, conn: psycopg.Connection
) -> None:
    publish_schema(conn, "send", SEND_SCHEMA)
    fed = {
        "steps": [
            {"name": "a", "task": "t"},
            {"task": "send", "args": {"to": "x"}, "after": ["a"], "result_arg": "rows"},
            {"task": "send", "args": {"to": "y"}, "after": ["a"], "results_arg": "rows"},
        ]
    }
    assert client.post("/api/v1/workflows", json=fed).status_code == 201
    # the placeholder stands for any value: a wrong type elsewhere is still refused
    fed["steps"][1]["args"] = {"to": 1}
    response = client.post("/api/v1/workflows", json=fed)
    assert_problem(response, 422, "invalid args", "steps[1].args.to")

    unknown = {"steps": [{"task": "t"}, {"task": "not.yet.deployed"}]}
    response = client.post("/api/v1/workflows", json={**unknown, "allow_unregistered_task": True})
    assert response.status_code == 201, response.text
    per_step = {"steps": [{"task": "not.yet.deployed", "allow_unregistered_task": True}]}
    assert client.post("/api/v1/workflows", json=per_step).status_code == 201
    # the opt-out skips the unknown-task check only: published schemas still apply
    bad_args = {"steps": [{"task": "send", "args": {}}], "allow_unregistered_task": True}
    assert_problem(
        client.post("/api/v1/workflows", json=bad_args), 422, "invalid args", "steps[0].args"
    )
    not_bool = {**unknown, "allow_unregistered_task": "yes"}
    assert_problem(
        client.post("/api/v1/workflows", json=not_bool),
        422,
        "invalid field",
        "allow_unregistered_task",
    )
    assert conn.execute("SELECT count(*) FROM skiplock.workflows").fetchone() == (3,)
