"""POST /api/v1/jobs for a published task takes the task's published defaults (its
queue first) for what the body leaves out, though this API's App does not register it."""

from __future__ import annotations

import json

import psycopg
from prometheus_client.parser import text_string_to_metric_families
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


def unknown_task_jobs(client: TestClient) -> dict[str, float]:
    response = client.get("/metrics")
    assert response.status_code == 200
    return {
        s.labels["task"]: s.value
        for family in text_string_to_metric_families(response.text)
        for s in family.samples
        if s.name == "skiplock_unknown_task_jobs"
    }


def test_jobs_for_a_task_nobody_published_are_a_gauge_at_once(
    client: TestClient, conn: psycopg.Connection
) -> None:
    conn.execute('SELECT skiplock.publish_tasks(NULL, \'[{"name": "known"}]\')')
    conn.execute(
        'SELECT skiplock.enqueue_many(\'[{"task": "tpyo"}, {"task": "tpyo"}, {"task": "known"}]\')'
    )
    assert unknown_task_jobs(client) == {"tpyo": 2}
    # a job that finishes leaves the gauge; publishing the task empties it
    conn.execute("SELECT skiplock.cancel_job(min(id)) FROM skiplock.jobs WHERE task = 'tpyo'")
    assert unknown_task_jobs(client) == {"tpyo": 1}
    conn.execute('SELECT skiplock.publish_tasks(NULL, \'[{"name": "tpyo"}]\')')
    assert unknown_task_jobs(client) == {}
