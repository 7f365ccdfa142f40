"""GET /api/v1/metrics/history and the oldest-ready-job gauge of /metrics."""

from __future__ import annotations

from typing import Any

import psycopg
import pytest
from api_checks import assert_problem, enqueue, kill, succeed
from prometheus_client.parser import text_string_to_metric_families
from starlette.testclient import TestClient

import skiplock
from skiplock import store
from skiplock.api import AuthConfig, create_app
from skiplock.api.auth import hash_token, new_token


@pytest.fixture
def activity(conn: psycopg.Connection) -> None:
    """Jobs finished now in two queues, and a depth sample of this minute."""
    enqueue(conn, 3, queue="emails")
    succeed(conn, "emails")
    enqueue(conn, 2, queue="emails")
    kill(conn, "emails")
    enqueue(conn, 1, queue="reports")
    succeed(conn, "reports")
    enqueue(conn, 4, queue="emails")
    conn.execute("UPDATE skiplock.jobs SET run_at = now() - interval '90 seconds'")
    assert conn.execute("SELECT skiplock.sample_queue_depth()").fetchone() != (None,)
    conn.execute("SELECT skiplock.fold_metrics()")  # as the worker does once a minute


def test_last_hour_by_minute(client: TestClient, activity: None) -> None:
    response = client.get("/api/v1/metrics/history")
    assert response.status_code == 200, response.text
    body = response.json()
    assert (body["range"], body["step_seconds"], body["queue"], body["task"]) == (
        "1h",
        60,
        None,
        None,
    )
    assert len(body["run_bounds"]) == 16 and len(body["wait_bounds"]) == 15
    points = body["points"]
    assert len(points) == 60
    # everything happened within the last minute or two (the activity may straddle one)
    assert sum(p["succeeded"] for p in points) == 4 and sum(p["failed"] for p in points) == 2
    run = [p["run_buckets"] for p in points if p["run_buckets"] is not None]
    assert sum(map(sum, run)) == 6 and {len(r) for r in run} == {17}
    waits = [p["wait_buckets"] for p in points if p["wait_buckets"] is not None]
    assert sum(map(sum, waits)) == 6 and {len(w) for w in waits} == {16}
    (sample,) = [p for p in points if p["ready"] is not None]
    assert sample["ready"] == 4 and sample["ready_estimated"] is False
    assert sample["oldest_ready_seconds"] >= 90
    assert all(p["succeeded"] == 0 for p in points[:-2])


def test_a_queue_a_task_and_the_longer_ranges(client: TestClient, activity: None) -> None:
    def totals(**params: str) -> dict[str, Any]:
        body = client.get("/api/v1/metrics/history", params=params).json()
        points = body["points"]
        return {
            "succeeded": sum(p["succeeded"] for p in points),
            "ready": [p["ready"] for p in points if p["ready"] is not None],
            "points": len(points),
            "step": body["step_seconds"],
        }

    assert totals(queue="reports") == {"succeeded": 1, "ready": [0], "points": 60, "step": 60}
    assert totals(task="t") == {"succeeded": 4, "ready": [], "points": 60, "step": 60}
    assert totals(range="24h") == {"succeeded": 4, "ready": [4], "points": 24, "step": 3600}
    assert totals(range="7d") == {"succeeded": 4, "ready": [4], "points": 168, "step": 3600}


def test_bad_parameters_are_422_naming_them(client: TestClient) -> None:
    for params, field in (
        ({"range": "2h"}, "range"),
        ({"range": ""}, "range"),
        ({"queue": "bad queue"}, "queue"),
        ({"task": ""}, "task"),
        ({"since": "1h"}, "since"),
    ):
        response = client.get("/api/v1/metrics/history", params=params)
        assert_problem(response, 422, response.json()["error"], field)


def test_queue_limited_token_sees_only_its_queues(dsn: str, activity: None) -> None:
    token = new_token()
    with psycopg.connect(dsn, autocommit=True) as conn:
        assert store.create_api_token("mailer", "read", "email*", hash_token(token)).run(conn)
    headers = {"Authorization": f"Bearer {token}"}
    with TestClient(create_app(skiplock.App(dsn), auth=AuthConfig())) as client:
        mine = client.get("/api/v1/metrics/history", headers=headers)
        assert mine.status_code == 200, mine.text
        points = mine.json()["points"]
        assert sum(p["succeeded"] for p in points) == 3  # reports' job left out
        assert [p["ready"] for p in points if p["ready"] is not None] == [4]
        other = client.get("/api/v1/metrics/history", params={"queue": "reports"}, headers=headers)
        assert_problem(other, 404, "not found")
        assert client.get("/api/v1/metrics/history").status_code == 401


def test_prometheus_gauge_of_the_oldest_ready_job(client: TestClient, activity: None) -> None:
    families = {f.name: f for f in text_string_to_metric_families(client.get("/metrics").text)}
    gauge = families["skiplock_queue_oldest_ready_seconds"]
    ages = {s.labels["queue"]: s.value for s in gauge.samples}
    assert set(ages) == {"emails", "reports"}
    assert ages["emails"] >= 90 and ages["reports"] == 0


def test_prometheus_gauge_leaves_out_a_stale_sample(
    client: TestClient, conn: psycopg.Connection
) -> None:
    conn.execute(
        "INSERT INTO skiplock.queue_depth_minutes (minute, queue, ready, oldest_ready_seconds)"
        " VALUES (date_trunc('minute', now()) - interval '1 hour', 'emails', 3, 60)"
    )
    families = {f.name: f for f in text_string_to_metric_families(client.get("/metrics").text)}
    assert families["skiplock_queue_oldest_ready_seconds"].samples == []
