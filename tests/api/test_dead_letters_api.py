"""/api/v1/dead-letters: list, show, redrive one or by filter, purge."""

from __future__ import annotations

import psycopg
import pytest
from api_checks import assert_problem, enqueue, kill
from starlette.testclient import TestClient

JSON = {"content-type": "application/json"}  # what a JSON body must be sent as


@pytest.fixture
def dead(conn: psycopg.Connection) -> dict[str, list[int]]:
    enqueue(conn, 7, queue="a")
    enqueue(conn, 3, queue="b")
    return {"a": kill(conn, "a", "bad a"), "b": kill(conn, "b", "bad b")}


def test_list_pages_newest_first_with_filters(
    client: TestClient, dead: dict[str, list[int]]
) -> None:
    seen: list[int] = []
    cursor = None
    while True:
        params = {"queue": "a", "limit": "3", **({"cursor": cursor} if cursor else {})}
        body = client.get("/api/v1/dead-letters", params=params).json()
        seen += [row["id"] for row in body["dead_letters"]]
        cursor = body["next_cursor"]
        if not cursor:
            break
    assert seen == sorted(dead["a"], reverse=True)
    rows = client.get("/api/v1/dead-letters", params={"task": "t"}).json()["dead_letters"]
    assert len(rows) == 10
    assert client.get("/api/v1/dead-letters", params={"task": "x"}).json()["dead_letters"] == []
    assert_problem(client.get("/api/v1/dead-letters?sort=id"), 422, "unknown parameter", "sort")
    assert_problem(
        client.get("/api/v1/dead-letters?cursor=e30"), 422, "invalid parameter", "cursor"
    )


def test_show(client: TestClient, dead: dict[str, list[int]]) -> None:
    job_id = dead["b"][0]
    body = client.get(f"/api/v1/dead-letters/{job_id}").json()
    assert body["id"] == job_id and body["queue"] == "b" and body["last_error"] == "bad b"
    assert body["errors"][-1]["error"] == "bad b" and body["failed_at"]
    assert_problem(client.get("/api/v1/dead-letters/999"), 404, "not found")
    assert_problem(client.get("/api/v1/dead-letters/x"), 404, "not found")


def test_redrive_one(client: TestClient, dead: dict[str, list[int]]) -> None:
    job_id = dead["a"][0]
    response = client.post(f"/api/v1/dead-letters/{job_id}/redrive")
    assert (response.status_code, response.json()) == (200, {"id": job_id, "status": "queued"})
    assert client.get(f"/api/v1/jobs/{job_id}").json()["status"] == "queued"
    assert_problem(client.post(f"/api/v1/dead-letters/{job_id}/redrive"), 404, "not found")


def test_redrive_by_filter_in_batches(
    client: TestClient, dead: dict[str, list[int]], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr("skiplock.api.dead_letters.REDRIVE_BATCH", 2)
    response = client.post("/api/v1/dead-letters/redrive", json={"queue": "a", "limit": 5})
    assert response.json() == {"redriven": 5, "ids": sorted(dead["a"])[:5]}
    response = client.post("/api/v1/dead-letters/redrive", json={"queue": "a"})
    assert response.json()["redriven"] == 2
    assert client.post("/api/v1/dead-letters/redrive", json={"task": "nope"}).json() == {
        "redriven": 0,
        "ids": [],
    }
    left = client.get("/api/v1/dead-letters").json()["dead_letters"]
    assert {row["queue"] for row in left} == {"b"}


def test_purge(client: TestClient, conn: psycopg.Connection, dead: dict[str, list[int]]) -> None:
    assert client.post("/api/v1/dead-letters/purge", json={"older_than": 3600}).json() == {
        "purged": 0
    }
    assert client.post("/api/v1/dead-letters/purge", json={"queue": "b"}).json() == {"purged": 3}
    assert client.post("/api/v1/dead-letters/purge", json={}).json() == {"purged": 7}
    assert conn.execute("SELECT count(*) FROM skiplock.dead_jobs").fetchone() == (0,)


@pytest.mark.parametrize("action", ["redrive", "purge"])
@pytest.mark.parametrize(
    ("body", "field", "error"),
    [
        ({"queue": "a b"}, "queue", "invalid field"),
        ({"task": 5}, "task", "invalid field"),
        ({"colour": 1}, "colour", "unknown field"),
    ],
)
def test_bad_filter_is_422(
    client: TestClient,
    dead: dict[str, list[int]],
    action: str,
    body: dict[str, object],
    field: str,
    error: str,
) -> None:
    assert_problem(client.post(f"/api/v1/dead-letters/{action}", json=body), 422, error, field)
    assert len(client.get("/api/v1/dead-letters").json()["dead_letters"]) == 10


def test_bad_limit_and_age(client: TestClient) -> None:
    for limit in (0, 100_001, True, "5"):
        response = client.post("/api/v1/dead-letters/redrive", json={"limit": limit})
        assert_problem(response, 422, "invalid field", "limit")
    response = client.post("/api/v1/dead-letters/purge", json={"older_than": -1})
    assert_problem(response, 422, "invalid field", "older_than")
    assert_problem(
        client.post("/api/v1/dead-letters/purge", content=b"", headers=JSON), 400, "invalid json"
    )
