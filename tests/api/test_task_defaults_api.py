"""POST /api/v1/jobs for a published task takes the task's published defaults (its
queue first) for what the body leaves out, though this API's App does not register it."""

from __future__ import annotations

import json

import psycopg
from starlette.testclient import TestClient


def test_a_job_for_a_published_task_goes_to_its_queue(
    client: TestClient, conn: psycopg.Connection
) -> None:
    task = {"name": "send_email", "queue": "emails", "defaults": {"priority": 3, "tags": ["m"]}}
    conn.execute("SELECT skiplock.publish_tasks(NULL, %s::jsonb)", (json.dumps([task]),))
    left_out = client.post("/api/v1/jobs", json={"task": "send_email", "args": {}})
    given = client.post(
        "/api/v1/jobs", json={"task": "send_email", "args": {}, "queue": "default", "priority": 0}
    )
    assert left_out.status_code == given.status_code == 201, (left_out.text, given.text)
    rows = conn.execute(
        "SELECT queue, priority, tags FROM skiplock.jobs WHERE id = ANY (%s) ORDER BY id",
        ([left_out.json()["id"], given.json()["id"]],),
    ).fetchall()
    assert rows == [("emails", 3, ["m"]), ("default", 0, ["m"])]
    listed = client.get("/api/v1/tasks/send_email").json()
    assert listed["defaults"] == {"priority": 3, "tags": ["m"]}
