"""/api/v1/tasks and the checks of POST /api/v1/jobs against the task registry."""

from __future__ import annotations

import json
import uuid
from collections.abc import Iterator

import psycopg
import pytest
from api_checks import assert_problem
from starlette.testclient import TestClient

import skiplock
from skiplock import store
from skiplock.api import AuthConfig, create_app
from skiplock.api.auth import hash_token, new_token

W = uuid.UUID("00000000-0000-4000-8000-0000000000c1")
EMAIL = {
    "type": "object",
    "properties": {"to": {"type": "string"}, "cc": {"type": "array", "items": {"type": "string"}}},
    "required": ["to"],
}


@pytest.fixture
def client(dsn: str, conn: psycopg.Connection) -> Iterator[TestClient]:
    conn.execute("SELECT skiplock.register_worker(%s, 'h', 1, ARRAY['emails'], 1, 'v')", (W,))
    tasks = [
        {"name": "send_email", "queue": "emails", "description": "Send.", "args_schema": EMAIL},
        {"name": "plain"},
    ]
    conn.execute("SELECT skiplock.publish_tasks(%s, %s::jsonb)", (W, json.dumps(tasks)))
    with TestClient(create_app(skiplock.App(dsn))) as c:
        yield c


def jobs(conn: psycopg.Connection) -> int:
    return int(conn.execute("SELECT count(*) FROM skiplock.jobs").fetchone()[0])


def test_list_and_get_tasks(client: TestClient) -> None:
    listed = client.get("/api/v1/tasks").json()["tasks"]
    assert [t["name"] for t in listed] == ["plain", "send_email"]
    task = client.get("/api/v1/tasks/send_email").json()
    assert task["queue"] == "emails" and task["description"] == "Send."
    assert task["args_schema"] == EMAIL and task["workers"] == [str(W)]
    assert task["first_seen_at"] and task["last_seen_at"]
    assert_problem(client.get("/api/v1/tasks/nope"), 404, "not found")
    assert_problem(client.get("/api/v1/tasks", params={"x": "1"}), 422, "unknown parameter", "x")


def test_forget_task(client: TestClient) -> None:
    assert client.delete("/api/v1/tasks/plain").status_code == 204
    assert_problem(client.delete("/api/v1/tasks/plain"), 404, "not found")
    assert [t["name"] for t in client.get("/api/v1/tasks").json()["tasks"]] == ["send_email"]


def test_task_names_with_a_slash_are_addressable(
    client: TestClient, conn: psycopg.Connection
) -> None:
    tasks = [{"name": "reports/monthly/build", "queue": "reports"}, {"name": "reports"}]
    conn.execute("SELECT skiplock.publish_tasks(NULL, %s::jsonb)", (json.dumps(tasks),))
    task = client.get("/api/v1/tasks/reports/monthly/build").json()
    assert task["name"] == "reports/monthly/build" and task["queue"] == "reports"
    assert client.get("/api/v1/tasks/reports").json()["name"] == "reports"
    assert_problem(client.get("/api/v1/tasks/reports/monthly"), 404, "not found")
    assert client.delete("/api/v1/tasks/reports/monthly/build").status_code == 204
    assert_problem(client.get("/api/v1/tasks/reports/monthly/build"), 404, "not found")
    assert client.get("/api/v1/tasks/reports").status_code == 200


def test_a_queue_limited_token_sees_only_the_tasks_of_its_queues(
    dsn: str, conn: psycopg.Connection
) -> None:
    tasks = [{"name": "send_email", "queue": "emails"}, {"name": "reports/build"}]
    conn.execute("SELECT skiplock.publish_tasks(NULL, %s::jsonb)", (json.dumps(tasks),))

    def token(name: str, scope: str, queues: str | None) -> dict[str, str]:
        secret = new_token()
        assert store.create_api_token(name, scope, queues, hash_token(secret)).run(conn)
        return {"Authorization": f"Bearer {secret}"}

    mailer = token("mailer", "admin", "emails*")
    everyone = token("ops", "admin", None)
    with TestClient(create_app(skiplock.App(dsn), auth=AuthConfig())) as c:
        listed = c.get("/api/v1/tasks", headers=mailer).json()["tasks"]
        assert [t["name"] for t in listed] == ["send_email"]
        assert c.get("/api/v1/tasks/send_email", headers=mailer).status_code == 200
        # another queue's task is absent, not forbidden, and stays published
        assert_problem(c.get("/api/v1/tasks/reports/build", headers=mailer), 404, "not found")
        assert_problem(c.delete("/api/v1/tasks/reports/build", headers=mailer), 404, "not found")
        assert c.get("/api/v1/tasks/reports/build", headers=everyone).status_code == 200
        assert c.delete("/api/v1/tasks/send_email", headers=mailer).status_code == 204
        names = [t["name"] for t in c.get("/api/v1/tasks", headers=everyone).json()["tasks"]]
        assert names == ["reports/build"]


def test_args_are_checked_against_the_published_schema(
    client: TestClient, conn: psycopg.Connection
) -> None:
    response = client.post("/api/v1/jobs", json={"task": "send_email", "args": {"cc": ["a"]}})
    assert_problem(response, 422, "invalid args", "args")
    assert "'to' is a required property" in response.json()["detail"]
    response = client.post(
        "/api/v1/jobs", json={"task": "send_email", "args": {"to": "a", "cc": ["b", 7]}}
    )
    assert_problem(response, 422, "invalid args", "args.cc[1]")
    assert jobs(conn) == 0
    response = client.post("/api/v1/jobs", json={"task": "send_email", "args": {"to": "a"}})
    assert response.status_code == 201
    assert (
        client.post("/api/v1/jobs", json={"task": "plain", "args": {"any": 1}}).status_code == 201
    )


def test_bulk_names_the_job_and_the_path_and_writes_nothing(
    client: TestClient, conn: psycopg.Connection
) -> None:
    body = [
        {"task": "send_email", "args": {"to": "a"}},
        {"task": "send_email", "args": {"to": 5}},
    ]
    response = client.post("/api/v1/jobs", json=body)
    assert_problem(response, 422, "invalid args", "[1].args.to")
    assert response.json()["detail"].startswith("job 1: ")
    response = client.post("/api/v1/jobs", json=[{"task": "plain"}, {"task": "ghost"}])
    assert_problem(response, 422, "unknown task", "[1].task")
    assert jobs(conn) == 0


def test_unregistered_task_is_refused_unless_the_body_opts_out(
    client: TestClient, conn: psycopg.Connection
) -> None:
    response = client.post("/api/v1/jobs", json={"task": "ghost"})
    assert_problem(response, 422, "unknown task", "task")
    assert "allow_unregistered_task" in response.json()["detail"]
    response = client.post("/api/v1/jobs", json={"task": "ghost", "allow_unregistered_task": 1})
    assert_problem(response, 422, "invalid field", "allow_unregistered_task")
    assert jobs(conn) == 0
    ok = client.post("/api/v1/jobs", json={"task": "ghost", "allow_unregistered_task": True})
    assert ok.status_code == 201
    assert jobs(conn) == 1


def test_a_task_the_api_app_serves_itself_is_known_and_checked(dsn: str) -> None:
    app = skiplock.App(dsn)

    @app.task(name="local", args_schema={"type": "object", "required": ["n"]})
    def local(n: int) -> None: ...

    with TestClient(create_app(app)) as client:
        assert (
            client.post("/api/v1/jobs", json={"task": "local", "args": {"n": 1}}).status_code == 201
        )
        response = client.post("/api/v1/jobs", json={"task": "local", "args": {}})
        assert_problem(response, 422, "invalid args", "args")
