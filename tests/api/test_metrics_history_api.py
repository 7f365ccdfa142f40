"""GET /api/v1/metrics/history and the oldest-ready-job gauge of /metrics."""

from __future__ import annotations

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
    now = points[-1]
    assert (now["succeeded"], now["failed"]) == (4, 2)
    assert sum(now["run_buckets"]) == 6 and len(now["run_buckets"]) == 17
    assert sum(now["wait_buckets"]) == 6 and len(now["wait_buckets"]) == 16
    assert now["ready"] == 4 and now["ready_estimated"] is False
    assert now["oldest_ready_seconds"] >= 90
    assert all(p["succeeded"] == 0 and p["ready"] is None for p in points[:-1])


def test_a_queue_a_task_and_the_longer_ranges(client: TestClient, activity: None) -> None:
    reports = client.get("/api/v1/metrics/history", params={"queue": "reports"}).json()
    assert (reports["points"][-1]["succeeded"], reports["points"][-1]["ready"]) == (1, 0)
    by_task = client.get("/api/v1/metrics/history", params={"task": "t"}).json()
    assert by_task["points"][-1]["succeeded"] == 4 and by_task["points"][-1]["ready"] is None
    for window, step, points in (("24h", 3600, 24), ("7d", 3600, 168)):
        body = client.get("/api/v1/metrics/history", params={"range": window}).json()
        assert (body["step_seconds"], len(body["points"])) == (step, points)
        assert body["points"][-1]["succeeded"] == 4


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
        assert mine.json()["points"][-1]["succeeded"] == 3  # reports' job left out
        assert mine.json()["points"][-1]["ready"] == 4
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
