"""/api/v1/queues: create, list, read, settings, pause/resume, delete, stats."""

from __future__ import annotations

import threading
from collections.abc import Callable
from datetime import timedelta
from typing import Any

import psycopg
from api_checks import W1, assert_problem, enqueue, kill, succeed
from starlette.testclient import TestClient

from conftest import wait_until

JSON = {"content-type": "application/json"}  # what a JSON body must be sent as


def test_create_list_get(client: TestClient) -> None:
    response = client.post("/api/v1/queues", json={"name": "emails", "paused": True})
    assert response.status_code == 201, response.text
    assert response.headers["location"] == "/api/v1/queues/emails"
    assert response.json()["paused"] is True and response.json()["queued"] == 0
    assert client.post("/api/v1/queues", json={"name": "reports"}).json()["paused"] is False
    names = [q["queue"] for q in client.get("/api/v1/queues").json()["queues"]]
    assert names == ["emails", "reports"]
    got = client.get("/api/v1/queues/emails").json()
    assert got["queue"] == "emails" and got["paused"] is True


def test_create_errors(client: TestClient, conn: psycopg.Connection) -> None:
    client.post("/api/v1/queues", json={"name": "q"})
    assert_problem(client.post("/api/v1/queues", json={"name": "q"}), 409, "conflict", "name")
    for bad in ({}, {"name": "a b"}, {"name": "x" * 65}, {"name": 5}):
        assert_problem(client.post("/api/v1/queues", json=bad), 422, "invalid field", "name")
    response = client.post("/api/v1/queues", json={"name": "z", "paused": "yes"})
    assert_problem(response, 422, "invalid field", "paused")
    response = client.post("/api/v1/queues", json={"name": "z", "size": 1})
    assert_problem(response, 422, "unknown field", "size")
    assert_problem(client.post("/api/v1/queues", content=b"[1]", headers=JSON), 400, "invalid json")
    assert conn.execute("SELECT count(*) FROM skiplock.queues").fetchone() == (1,)


def test_unknown_or_impossible_queue_is_404(client: TestClient) -> None:
    for path in ("/api/v1/queues/nope", "/api/v1/queues/a%20b", "/api/v1/queues/nope/stats"):
        assert_problem(client.get(path), 404, "not found")
    for action in ("pause", "resume"):
        assert_problem(client.post(f"/api/v1/queues/nope/{action}"), 404, "not found")
    assert_problem(client.put("/api/v1/queues/nope", json={"paused": True}), 404, "not found")
    assert_problem(client.delete("/api/v1/queues/nope"), 404, "not found")


def test_pause_resume_and_put(client: TestClient, conn: psycopg.Connection) -> None:
    enqueue(conn, 1, queue="q")
    response = client.post("/api/v1/queues/q/pause")
    assert (response.status_code, response.json()) == (200, {"queue": "q", "paused": True})
    assert client.get("/api/v1/queues/q").json()["paused"] is True
    assert client.post("/api/v1/queues/q/resume").json() == {"queue": "q", "paused": False}
    response = client.put("/api/v1/queues/q", json={"paused": True})
    assert response.status_code == 200 and response.json()["paused"] is True
    assert client.put("/api/v1/queues/q", json={}).json()["paused"] is True
    assert client.put("/api/v1/queues/q", json={"paused": False}).json()["paused"] is False
    response = client.put("/api/v1/queues/q", json={"paused": 1})
    assert_problem(response, 422, "invalid field", "paused")
    response = client.put("/api/v1/queues/q", json={"concurrency": 3})
    assert_problem(response, 422, "unknown field", "concurrency")


def test_put_sets_and_clears_defaults(client: TestClient, conn: psycopg.Connection) -> None:
    assert client.post("/api/v1/queues", json={"name": "q"}).status_code == 201
    policy = {"kind": "linear", "base": 5}
    response = client.put("/api/v1/queues/q", json={"retry_policy": policy, "timeout": 2.5})
    assert response.status_code == 200
    assert (response.json()["retry_policy"], response.json()["timeout"]) == (policy, 2.5)
    # a field left out stays; null clears
    response = client.put("/api/v1/queues/q", json={"timeout": None, "paused": True})
    assert (response.json()["retry_policy"], response.json()["timeout"]) == (policy, None)
    assert response.json()["paused"] is True
    listed = client.get("/api/v1/queues").json()["queues"]
    assert [(q["queue"], q["retry_policy"]) for q in listed] == [("q", policy)]
    row = conn.execute("SELECT retry_policy, timeout FROM skiplock.queues WHERE name = 'q'")
    assert row.fetchone() == (policy, None)
    assert_problem(client.put("/api/v1/queues/nope", json={"timeout": 1}), 404, "not found")
    for field, value in (
        ("retry_policy", {"kind": "random"}),
        ("retry_policy", {"base": -1}),
        ("retry_policy", [1]),
        ("timeout", 0),
        ("timeout", "5 minutes"),  # durations are numbers or texts such as "5m", as for jobs
        ("timeout", True),
        ("timeout", 10**300),  # beyond any interval: 422, not an overflow
        ("timeout", 1e300),
    ):
        response = client.put("/api/v1/queues/q", json={field: value, "paused": False})
        assert_problem(response, 422, "invalid field", field)
    # nothing of a refused request is written
    assert client.get("/api/v1/queues/q").json()["paused"] is True
    assert conn.execute("SELECT count(*) FROM skiplock.queues WHERE name = 'nope'").fetchone() == (
        0,
    )


def test_put_keeps_a_concurrent_change_to_the_default_it_leaves_out(
    client: TestClient, conn: psycopg.Connection, connect: Callable[..., psycopg.Connection]
) -> None:
    client.post("/api/v1/queues", json={"name": "q"})
    client.put("/api/v1/queues/q", json={"timeout": 10})
    # Another session changes the timeout and has not committed when the PUT of the
    # retry policy alone arrives: the PUT waits, then keeps the new timeout.
    other = connect()
    other.execute("UPDATE skiplock.queues SET timeout = '20 seconds' WHERE name = 'q'")
    policy = {"kind": "fixed", "base": 3}
    answers: list[Any] = []
    put = threading.Thread(
        target=lambda: answers.append(client.put("/api/v1/queues/q", json={"retry_policy": policy}))
    )
    put.start()
    wait_until(
        lambda: (
            conn.execute(
                "SELECT count(*) FROM pg_stat_activity"
                " WHERE wait_event_type = 'Lock' AND datname = current_database()"
            ).fetchone()
            == (1,)
        )
    )
    other.commit()
    put.join(10)
    assert answers and answers[0].status_code == 200, answers
    assert (answers[0].json()["retry_policy"], answers[0].json()["timeout"]) == (policy, 20.0)
    row = conn.execute("SELECT retry_policy, timeout FROM skiplock.queues WHERE name = 'q'")
    assert row.fetchone() == (policy, timedelta(seconds=20))


def test_delete_only_an_empty_queue(client: TestClient, conn: psycopg.Connection) -> None:
    enqueue(conn, 1, queue="busy")
    client.post("/api/v1/queues", json={"name": "empty"})
    assert_problem(client.delete("/api/v1/queues/busy"), 409, "conflict")
    assert client.delete("/api/v1/queues/empty").status_code == 204
    assert_problem(client.get("/api/v1/queues/empty"), 404, "not found")
    succeed(conn, "busy")  # finished jobs do not keep a queue alive
    assert client.delete("/api/v1/queues/busy").status_code == 204


def test_stats(client: TestClient, conn: psycopg.Connection) -> None:
    enqueue(conn, 3, queue="q")
    succeed(conn, "q")
    enqueue(conn, 2, queue="q")
    kill(conn, "q")
    enqueue(conn, 4, queue="q")
    enqueue(conn, 1, queue="q", delay=3600)
    conn.execute("SELECT skiplock.register_worker(%s, 'h', 1, ARRAY['q', 'other'], 4, 'v')", (W1,))
    body = client.get("/api/v1/queues/q/stats", params={"minutes": "5"}).json()
    assert body["queue"] == "q" and body["paused"] is False
    assert body["counts"]["queued"] == 4 and body["counts"]["scheduled"] == 1
    assert (body["pending"], body["running"], body["succeeded"], body["failed"]) == (5, 0, 3, 2)
    assert body["workers"] == 1
    throughput = body["throughput"]
    assert throughput["minutes"] == 5 and len(throughput["per_minute"]) == 5
    assert throughput["finished"] == 5
    assert sum(m["succeeded"] for m in throughput["per_minute"]) == 3
    assert sum(m["failed"] for m in throughput["per_minute"]) == 2
    assert throughput["per_minute_average"] == 1.0
    # the same figures under the names other job systems' dashboards read
    assert {k: body[k] for k in ("name", "pending_jobs", "running_jobs", "completed_jobs")} == {
        "name": "q",
        "pending_jobs": 5,
        "running_jobs": 0,
        "completed_jobs": 3,
    }
    assert (body["failed_jobs"], body["workers"], body["throughput_per_min"]) == (2, 1, 1.0)
    assert len(client.get("/api/v1/queues/q/stats").json()["throughput"]["per_minute"]) == 60
    for minutes in ("0", "1441", "x"):
        response = client.get("/api/v1/queues/q/stats", params={"minutes": minutes})
        assert_problem(response, 422, "invalid parameter", "minutes")


def test_throughput_reads_the_finished_at_index(conn: psycopg.Connection) -> None:
    conn.execute("SET enable_seqscan = off")  # a tiny table would be scanned anyway
    plan = "\n".join(
        row[0]
        for row in conn.execute(
            "EXPLAIN SELECT * FROM skiplock.queue_throughput('q', 60)"
        ).fetchall()
    )
    assert "job_history_finished_at_idx" in plan, plan
    assert "Seq Scan" not in plan, plan
