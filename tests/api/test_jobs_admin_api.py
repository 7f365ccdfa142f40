"""/api/v1/jobs beyond enqueue-one and read-one: bulk enqueue, listing with filters,
sorts and cursors, long-poll results, cancel, retry, delete."""

from __future__ import annotations

import threading
import time
from collections.abc import Iterator
from datetime import datetime, timedelta, timezone
from typing import Any

import psycopg
import pytest
from api_checks import assert_problem, claim, enqueue, kill, publish_tasks, succeed
from starlette.testclient import TestClient

import skiplock
from skiplock.api import create_app


@pytest.fixture
def client(dsn: str) -> Iterator[TestClient]:
    publish_tasks(dsn, "t", "a", "b", "c")
    with TestClient(create_app(skiplock.App(dsn))) as c:
        yield c


def count(conn: psycopg.Connection) -> int:
    row = conn.execute("SELECT count(*) FROM skiplock.all_jobs").fetchone()
    assert row is not None
    return int(row[0])


# ---- bulk enqueue ---------------------------------------------------------------------


def test_bulk_enqueue_returns_ids_in_order(client: TestClient, conn: psycopg.Connection) -> None:
    response = client.post(
        "/api/v1/jobs",
        json=[
            {"task": "a", "args": {"n": 1}},
            {"task": "b", "queue": "q2", "priority": 3, "tags": ["x"]},
            {"task": "c", "delay": 3600},
        ],
    )
    assert response.status_code == 201, response.text
    ids = response.json()["ids"]
    assert ids == sorted(ids) and len(ids) == 3
    rows = conn.execute(
        "SELECT task, queue, priority, status FROM skiplock.all_jobs ORDER BY id"
    ).fetchall()
    assert rows == [
        ("a", "default", 0, "queued"),
        ("b", "q2", 3, "queued"),
        ("c", "default", 0, "scheduled"),
    ]


def test_bulk_enqueue_bad_item_is_422_naming_index_and_field(
    client: TestClient, conn: psycopg.Connection
) -> None:
    response = client.post("/api/v1/jobs", json=[{"task": "a"}, {"task": "b", "priority": 500}])
    assert_problem(response, 422, "invalid field", "[1].priority")
    assert response.json()["detail"].startswith("job 1:")
    response = client.post("/api/v1/jobs", json=[{"task": "a"}, {"task": "b", "bogus": 1}])
    assert_problem(response, 422, "unknown field", "[1].bogus")
    assert_problem(client.post("/api/v1/jobs", json=[]), 422, "invalid field")
    assert_problem(client.post("/api/v1/jobs", json=[{"task": "a"}, 5]), 400, "invalid json")
    assert count(conn) == 0


# ---- listing --------------------------------------------------------------------------


def walk(client: TestClient, params: dict[str, Any]) -> list[dict[str, Any]]:
    """Every job of a listing, following next_cursor; checks each page's size."""
    jobs: list[dict[str, Any]] = []
    cursor = None
    for _ in range(100):
        page = client.get(
            "/api/v1/jobs", params={**params, **({"cursor": cursor} if cursor else {})}
        )
        assert page.status_code == 200, page.text
        body = page.json()
        assert len(body["jobs"]) <= int(params["limit"])
        jobs += body["jobs"]
        cursor = body["next_cursor"]
        if cursor is None:
            return jobs
    raise AssertionError("pagination did not end")


@pytest.fixture
def mixed(conn: psycopg.Connection) -> list[int]:
    """120 jobs: 40 succeeded (finished one by one), 20 dead, 60 pending, priorities mixed."""
    ids = []
    for i in range(40):
        ids += enqueue(conn, 1, queue="done", priority=i % 7)
        succeed(conn, "done")
    ids += enqueue(conn, 20, queue="bad", tags=["red"])
    kill(conn, "bad")
    for p in range(6):
        ids += enqueue(conn, 10, priority=p - 3)
    return ids


@pytest.mark.parametrize(
    ("sort", "order"),
    [
        ("id", "desc"),
        ("id", "asc"),
        ("created_at", "asc"),
        ("finished_at", "desc"),
        ("finished_at", "asc"),
        ("priority", "desc"),
    ],
)
def test_pagination_round_trip_visits_every_job_once_in_order(
    client: TestClient, mixed: list[int], sort: str, order: str
) -> None:
    jobs = walk(client, {"sort": sort, "order": order, "limit": "17"})
    assert sorted(j["id"] for j in jobs) == sorted(mixed)

    def key(job: dict[str, Any]) -> tuple[Any, int]:
        value = job[sort]
        if sort == "finished_at":
            value = (
                datetime.fromisoformat(value)
                if value
                else datetime.max.replace(tzinfo=timezone.utc)
            )
        elif sort == "created_at":
            value = datetime.fromisoformat(value)
        return value, job["id"]

    assert [key(j) for j in jobs] == sorted(map(key, jobs), reverse=order == "desc")


def test_filters(client: TestClient, conn: psycopg.Connection, mixed: list[int]) -> None:
    def ids(**params: str) -> set[int]:
        return {j["id"] for j in walk(client, {"limit": "500", **params})}

    assert len(ids(status="succeeded")) == 40
    assert len(ids(status="failed,succeeded")) == 60
    assert len(ids(queue="bad")) == 20 and ids(queue="bad") == ids(tag="red")
    assert len(ids(status="queued", queue="default")) == 60
    assert ids(task="nope") == set()
    later = (datetime.now(timezone.utc) + timedelta(hours=1)).isoformat()
    assert ids(created_before=later) == set(mixed)
    assert ids(created_after=later) == set()
    assert len(ids(finished_before=later)) == 60
    assert ids(finished_after=later.replace("+00:00", "Z")) == set()


def test_limit_is_clamped(client: TestClient, conn: psycopg.Connection) -> None:
    enqueue(conn, 3)
    assert len(client.get("/api/v1/jobs", params={"limit": "0"}).json()["jobs"]) == 1
    assert len(client.get("/api/v1/jobs", params={"limit": "-5"}).json()["jobs"]) == 1
    body = client.get("/api/v1/jobs", params={"limit": "100000"}).json()
    assert len(body["jobs"]) == 3 and body["next_cursor"] is None


@pytest.mark.parametrize(
    ("params", "field"),
    [
        ({"colour": "red"}, "colour"),
        ({"status": "done"}, "status"),
        ({"status": "queued,zzz"}, "status"),
        ({"sort": "args"}, "sort"),
        ({"order": "up"}, "order"),
        ({"limit": "ten"}, "limit"),
        ({"created_after": "yesterday"}, "created_after"),
        ({"finished_before": "2030-01-01T00:00:00"}, "finished_before"),
        ({"cursor": "!!!"}, "cursor"),
        ({"cursor": "e30"}, "cursor"),  # {} base64url
        ({"queue": "a b"}, "queue"),
    ],
)
def test_bad_list_parameter_is_422_naming_it(
    client: TestClient, params: dict[str, str], field: str
) -> None:
    assert_problem(client.get("/api/v1/jobs", params=params), 422, field and _error(field), field)


def _error(field: str) -> str:
    return "unknown parameter" if field == "colour" else "invalid parameter"


def test_cursor_of_another_sort_is_422(client: TestClient, conn: psycopg.Connection) -> None:
    enqueue(conn, 3)
    cursor = client.get("/api/v1/jobs", params={"limit": "1"}).json()["next_cursor"]
    assert cursor
    response = client.get("/api/v1/jobs", params={"limit": "1", "cursor": cursor, "order": "asc"})
    assert_problem(response, 422, "invalid parameter", "cursor")


# ---- results --------------------------------------------------------------------------


def test_result_of_succeeded_job(client: TestClient, conn: psycopg.Connection) -> None:
    (job_id,) = enqueue(conn)
    assert client.get(f"/api/v1/jobs/{job_id}/result").status_code == 202
    assert client.get(f"/api/v1/jobs/{job_id}/result").json() == {"id": job_id, "status": "queued"}
    succeed(conn, result={"ok": 1})
    response = client.get(f"/api/v1/jobs/{job_id}/result", params={"wait": "5"})
    assert response.status_code == 200
    assert response.json() == {"id": job_id, "status": "succeeded", "result": {"ok": 1}}


def test_result_long_poll_wakes_when_the_job_finishes(
    client: TestClient, conn: psycopg.Connection, dsn: str
) -> None:
    (job_id,) = enqueue(conn)

    def finish_soon() -> None:
        time.sleep(0.5)
        with psycopg.connect(dsn, autocommit=True) as other:
            succeed(other, result=42)

    finisher = threading.Thread(target=finish_soon)
    finisher.start()
    response = client.get(f"/api/v1/jobs/{job_id}/result", params={"wait": "20"})
    finisher.join()
    assert response.status_code == 200, response.text
    assert response.json()["result"] == 42


def test_result_still_pending_at_the_deadline_is_202(
    client: TestClient, conn: psycopg.Connection
) -> None:
    (job_id,) = enqueue(conn)
    claim(conn)
    response = client.get(f"/api/v1/jobs/{job_id}/result", params={"wait": "0.3"})
    assert response.status_code == 202
    assert response.json() == {"id": job_id, "status": "running"}


def test_result_of_failed_or_cancelled_job_is_409(
    client: TestClient, conn: psycopg.Connection
) -> None:
    (dead,) = enqueue(conn)
    kill(conn, error="it broke")
    response = client.get(f"/api/v1/jobs/{dead}/result", params={"wait": "1"})
    assert_problem(response, 409, "job failed")
    assert "it broke" in response.json()["detail"]
    (cancelled,) = enqueue(conn)
    assert client.post(f"/api/v1/jobs/{cancelled}/cancel").status_code == 200
    assert_problem(client.get(f"/api/v1/jobs/{cancelled}/result"), 409, "job cancelled")


def test_result_errors(client: TestClient) -> None:
    assert_problem(client.get("/api/v1/jobs/99/result"), 404, "not found")
    assert_problem(client.get("/api/v1/jobs/99/result?wait=2"), 404, "not found")
    for wait in ("61", "-1", "soon", "nan"):
        response = client.get("/api/v1/jobs/1/result", params={"wait": wait})
        assert_problem(response, 422, "invalid parameter", "wait")


# ---- cancel, retry, delete ------------------------------------------------------------


def test_cancel(client: TestClient, conn: psycopg.Connection) -> None:
    queued, running, done = enqueue(conn, 3)
    response = client.post(f"/api/v1/jobs/{queued}/cancel")
    assert (response.status_code, response.json()) == (200, {"id": queued, "status": "cancelled"})
    assert client.post(f"/api/v1/jobs/{queued}/cancel").status_code == 200  # idempotent
    claim(conn, limit=1)
    response = client.post(f"/api/v1/jobs/{running}/cancel")
    assert (response.status_code, response.json()["status"]) == (202, "running")
    succeed(conn)
    assert_problem(client.post(f"/api/v1/jobs/{done}/cancel"), 409, "conflict")
    assert_problem(client.post("/api/v1/jobs/999/cancel"), 404, "not found")


def test_retry(client: TestClient, conn: psycopg.Connection) -> None:
    (dead,) = enqueue(conn)
    kill(conn)
    (running,) = enqueue(conn)
    claim(conn)
    response = client.post(f"/api/v1/jobs/{dead}/retry")
    assert (response.status_code, response.json()) == (200, {"id": dead, "status": "queued"})
    assert_problem(client.post(f"/api/v1/jobs/{running}/retry"), 409, "conflict")
    assert_problem(client.post("/api/v1/jobs/999/retry"), 404, "not found")


def test_delete_finished_job(client: TestClient, conn: psycopg.Connection) -> None:
    (done,) = enqueue(conn)
    succeed(conn)
    assert client.delete(f"/api/v1/jobs/{done}").status_code == 204
    assert_problem(client.get(f"/api/v1/jobs/{done}"), 404, "not found")
    assert_problem(client.delete(f"/api/v1/jobs/{done}"), 404, "not found")
    assert_problem(client.delete("/api/v1/jobs/abc"), 404, "not found")


def test_delete_dead_letter_and_refuse_live_job(
    client: TestClient, conn: psycopg.Connection
) -> None:
    (dead,) = enqueue(conn)
    kill(conn)
    (live,) = enqueue(conn)
    assert client.delete(f"/api/v1/jobs/{dead}").status_code == 204
    assert client.get(f"/api/v1/dead-letters/{dead}").status_code == 404
    response = client.delete(f"/api/v1/jobs/{live}")
    assert_problem(response, 409, "conflict")
    assert client.get(f"/api/v1/jobs/{live}").json()["status"] == "queued"
