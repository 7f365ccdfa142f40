"""Requests as other job systems' clients write them (skiplock/synonyms.py): each is
accepted and stored as its canonical form; a synonym beside its own field is a 422
naming both."""

from __future__ import annotations

from datetime import datetime, timedelta, timezone
from pathlib import Path
from typing import Any

import psycopg
import pytest
from api_checks import assert_problem, publish_tasks
from starlette.testclient import TestClient

from skiplock.options import PRIORITY_NAMES
from skiplock.synonyms import (
    FIELD_SYNONYMS,
    QUEUE_SYNONYMS,
    SCHEDULE_SYNONYMS,
    STATUS_SYNONYMS,
)

STORED = (
    "SELECT task, args, queue, priority, max_attempts, retry_policy, timeout, run_at"
    " FROM skiplock.jobs WHERE id = %s"
)


@pytest.fixture(autouse=True)
def tasks(dsn: str) -> None:
    publish_tasks(dsn, "echo", "math", "email", "report", "image_resize")


def stored(client: TestClient, conn: psycopg.Connection, body: dict[str, Any]) -> tuple:
    response = client.post("/api/v1/jobs", json=body)
    assert response.status_code == 201, response.text
    assert response.json()["status"] in ("queued", "scheduled")
    row = conn.execute(STORED, (response.json()["id"],)).fetchone()
    assert row is not None
    return row


def test_type_payload_and_priority(client: TestClient, conn: psycopg.Connection) -> None:
    body = {"type": "echo", "queue": "default", "payload": {"message": "Hello"}, "priority": 1}
    assert stored(client, conn, body)[:4] == ("echo", {"message": "Hello"}, "default", 1)
    body = {"type": "math", "payload": {"operation": "multiply", "a": 42, "b": 2}, "priority": 2}
    assert stored(client, conn, body)[:4] == (
        "math",
        {"operation": "multiply", "a": 42, "b": 2},
        "default",
        2,
    )


def test_retries_strategy_and_a_timeout_as_text(
    client: TestClient, conn: psycopg.Connection
) -> None:
    body = {
        "type": "email",
        "queue": "notifications",
        "payload": {"to": "a@example.com"},
        "max_retries": 5,
        "retry_strategy": "exponential",
        "timeout": "5m",
    }
    row = stored(client, conn, body)
    assert row[2] == "notifications"
    assert row[4] == 6  # the first attempt and five retries
    assert row[5]["kind"] == "exponential"
    assert row[6] == timedelta(minutes=5)
    body = {"type": "email", "retry_strategy": "linear", "retry_delay": 60, "max_retry_delay": "1h"}
    assert stored(client, conn, body)[5] == {
        "kind": "linear",
        "base": 60,
        "max_delay": 3600.0,
        "jitter": 0.1,
    }


def test_scheduled_at_and_a_priority_name(client: TestClient, conn: psycopg.Connection) -> None:
    body = {"type": "report", "queue": "reports", "payload": {"type": "weekly"}}
    row = stored(client, conn, {**body, "scheduled_at": "2034-12-31T23:59:59Z"})
    assert row[7] == datetime(2034, 12, 31, 23, 59, 59, tzinfo=timezone.utc)
    assert row[1] == {"type": "weekly"}  # args keep their own words
    assert stored(client, conn, {"type": "image_resize", "priority": "normal"})[3] == 0
    assert stored(client, conn, {"type": "image_resize", "priority": "critical"})[3] == 100


def test_status_synonyms_filter_the_list(client: TestClient, conn: psycopg.Connection) -> None:
    queued = client.post("/api/v1/jobs", json={"task": "echo"}).json()["id"]
    later = client.post("/api/v1/jobs", json={"task": "echo", "delay": "1h"}).json()["id"]
    pending = client.get("/api/v1/jobs?status=pending&limit=50").json()["jobs"]
    assert sorted(job["id"] for job in pending) == sorted([queued, later])
    assert client.get("/api/v1/jobs?status=success&limit=10").json()["jobs"] == []
    assert client.get("/api/v1/jobs?status=processing,completed").json()["jobs"] == []
    response = client.get("/api/v1/jobs?status=done")
    assert_problem(response, 422, "invalid parameter", "status")
    assert "pending" in response.json()["detail"]


@pytest.mark.parametrize(
    "body, field, words",
    [
        ({"type": "echo", "task": "echo"}, "type", "type and task name the same field"),
        ({"task": "echo", "payload": {}, "args": {}}, "payload", "payload and args"),
        ({"task": "echo", "max_retries": -1}, "max_retries", "max_retries must be an integer"),
        ({"task": "echo", "max_retries": True}, "max_retries", "max_retries must be an integer"),
        (
            {"task": "echo", "retry_strategy": "fixed", "retry_policy": {"kind": "fixed"}},
            "retry_strategy",
            "retry_strategy and retry_policy",
        ),
        ({"task": "echo", "retry_strategy": "random"}, "retry_strategy", "must be one of"),
        ({"task": "echo", "retry_delay": "soon"}, "retry_delay", "a duration such as"),
        ({"task": "echo", "timeout": "5 minutes"}, "timeout", "a duration such as 90s"),
        ({"task": "echo", "priority": "urgent"}, "priority", "low, normal, high or critical"),
    ],
)
def test_conflicts_and_bad_values_are_422_naming_the_field(
    client: TestClient, conn: psycopg.Connection, body: dict[str, Any], field: str, words: str
) -> None:
    response = client.post("/api/v1/jobs", json=body)
    assert_problem(response, 422, "invalid field", field)
    assert words in response.json()["detail"]
    assert conn.execute("SELECT count(*) FROM skiplock.jobs").fetchone() == (0,)


def test_a_list_of_jobs_takes_the_synonyms_too(
    client: TestClient, conn: psycopg.Connection
) -> None:
    response = client.post(
        "/api/v1/jobs",
        json=[{"type": "echo", "payload": {"n": 1}}, {"type": "math", "max_retries": 0}],
    )
    assert response.status_code == 201, response.text
    rows = conn.execute("SELECT task, args, max_attempts FROM skiplock.jobs ORDER BY id").fetchall()
    assert rows == [("echo", {"n": 1}, 20), ("math", {}, 1)]
    response = client.post("/api/v1/jobs", json=[{"task": "echo"}, {"type": "x", "task": "y"}])
    assert_problem(response, 422, "invalid field", "[1].type")


def test_docs_list_every_synonym() -> None:
    docs = (Path(__file__).parents[2] / "docs" / "api.md").read_text()
    table = docs.split("### Coming from another job system", 1)[1].split("\n#", 1)[0]
    for synonym in FIELD_SYNONYMS:
        assert f"| `{synonym.name}` | `{synonym.field}" in table, synonym.name
    row = next(line for line in table.splitlines() if "(a schedule)" in line)
    for synonym in SCHEDULE_SYNONYMS:
        assert f"`{synonym.name}`" in row and f"`{synonym.field}`" in row, synonym.name
    row = next(line for line in table.splitlines() if "(a queue)" in line)
    for synonym in QUEUE_SYNONYMS:
        assert f"`{synonym.name}`" in row and f"`{synonym.field}`" in row, synonym.name
    for status, statuses in STATUS_SYNONYMS.items():
        assert f"`?status={status}`" in table and all(s in table for s in statuses), status
    for name, number in PRIORITY_NAMES.items():
        assert f'`"{name}"`' in table and str(abs(number)) in table, name


def test_job_routes_are_served_at_jobs_and_api_jobs_too(client: TestClient) -> None:
    for path in ("/jobs", "/api/jobs"):
        created = client.post(path, json={"type": "email", "payload": {"to": "a@example.com"}})
        assert created.status_code == 201, created.text
        assert created.json()["status"] == "queued"
        job = client.get(f"{path}/{created.json()['id']}").json()
        assert (job["task"], job["args"]) == ("email", {"to": "a@example.com"})
        assert created.json()["id"] in [j["id"] for j in client.get(path).json()["jobs"]]
    document = client.get("/openapi.json").json()["paths"]
    assert "/jobs" not in document and "/api/jobs" not in document  # aliases, not operations
