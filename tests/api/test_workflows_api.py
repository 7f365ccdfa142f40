"""/api/v1/workflows: enqueue (one transaction), list, read; checks; auth scopes and
queue-limited tokens."""

from __future__ import annotations

import json
from collections.abc import Iterator
from typing import Any

import psycopg
import pytest
from api_checks import W1, assert_problem
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


@pytest.fixture
def client(dsn: str) -> Iterator[TestClient]:
    with TestClient(create_app(skiplock.App(dsn))) as c:
        yield c


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
