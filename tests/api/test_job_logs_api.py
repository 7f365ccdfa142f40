"""GET /api/v1/jobs/{id}/logs: a job's stored log, paged by seq, read scope, 404 for an
unknown job and for one outside a queue-limited token's queues; in /openapi.json."""

from __future__ import annotations

import uuid
from datetime import datetime, timezone

import psycopg
from starlette.testclient import TestClient

import skiplock
from skiplock import store
from skiplock.api import create_app
from skiplock.api.auth import AuthConfig, hash_token, new_token

WORKER = uuid.UUID("6f1c1d2e-3b4a-4c5d-8e6f-7a8b9c0d1e2f")


def job_with_lines(conn: psycopg.Connection, n: int, *, queue: str = "default") -> int:
    """A job whose first attempt logged n lines (line 0 … line n-1)."""
    job_id = conn.execute("SELECT skiplock.enqueue('t', '{}', queue => %s)", (queue,)).fetchone()
    assert job_id is not None
    now = datetime.now(timezone.utc)
    lines = [store.LogLine(job_id[0], 1, now, "info", "app", f"line {i}") for i in range(n)]
    assert store.append_job_logs(WORKER, lines).run(conn) == n
    return int(job_id[0])


def test_a_job_log_page_by_page(client: TestClient, conn: psycopg.Connection) -> None:
    job_id = job_with_lines(conn, 5)
    body = client.get(f"/api/v1/jobs/{job_id}/logs", params={"limit": 2}).json()
    assert body["job_id"] == job_id and body["status"] == "queued" and body["more"] is True
    first = body["lines"][0]
    assert set(first) == {
        "seq", "attempt", "worker_id", "at", "level", "logger", "message",
        "dropped_lines", "dropped_bytes",
    }  # fmt: skip
    assert (first["attempt"], first["level"], first["logger"]) == (1, "info", "app")
    assert first["worker_id"] == str(WORKER) and first["dropped_lines"] is None
    assert datetime.fromisoformat(first["at"]).tzinfo is not None
    seen = [line["message"] for line in body["lines"]]
    while body["more"]:
        body = client.get(
            f"/api/v1/jobs/{job_id}/logs", params={"after": body["next_after"], "limit": 2}
        ).json()
        seen += [line["message"] for line in body["lines"]]
    assert seen == [f"line {i}" for i in range(5)]
    # nothing new: the same cursor comes back, for the next poll
    again = client.get(f"/api/v1/jobs/{job_id}/logs", params={"after": body["next_after"]})
    assert again.json()["lines"] == [] and again.json()["next_after"] == body["next_after"]


def test_one_attempt_only(client: TestClient, conn: psycopg.Connection) -> None:
    job_id = job_with_lines(conn, 2)
    second = store.LogLine(job_id, 2, datetime.now(timezone.utc), "error", "app", "again")
    store.append_job_logs(WORKER, [second]).run(conn)
    body = client.get(f"/api/v1/jobs/{job_id}/logs", params={"attempt": 2}).json()
    assert [(line["attempt"], line["message"]) for line in body["lines"]] == [(2, "again")]
    assert len(client.get(f"/api/v1/jobs/{job_id}/logs").json()["lines"]) == 3


def test_unknown_jobs_and_bad_parameters(client: TestClient, conn: psycopg.Connection) -> None:
    assert client.get("/api/v1/jobs/999999/logs").status_code == 404
    assert client.get("/api/v1/jobs/nope/logs").status_code == 404
    job_id = conn.execute("SELECT skiplock.enqueue('t', '{}')").fetchone()
    assert job_id is not None
    empty = client.get(f"/api/v1/jobs/{job_id[0]}/logs").json()
    assert (empty["lines"], empty["next_after"], empty["more"]) == ([], 0, False)
    for params in ({"attempt": 0}, {"after": -1}, {"limit": 1001}, {"limit": "x"}, {"page": 1}):
        response = client.get(f"/api/v1/jobs/{job_id[0]}/logs", params=params)
        assert response.status_code == 422, params
        assert response.json()["field"] == next(iter(params))


def test_read_scope_and_queue_limited_tokens(dsn: str, conn: psycopg.Connection) -> None:
    mine = job_with_lines(conn, 1, queue="mine")
    other = job_with_lines(conn, 1, queue="other")
    limited, reader = new_token(), new_token()
    assert store.create_api_token("mine", "read", "mine", hash_token(limited)).run(conn)
    assert store.create_api_token("all", "read", None, hash_token(reader)).run(conn)
    with TestClient(create_app(skiplock.App(dsn), auth=AuthConfig())) as client:
        as_limited = {"Authorization": f"Bearer {limited}"}
        assert client.get(f"/api/v1/jobs/{mine}/logs", headers=as_limited).status_code == 200
        response = client.get(f"/api/v1/jobs/{other}/logs", headers=as_limited)
        assert response.status_code == 404
        assert response.json()["detail"] == f"job {other} not found"
        as_reader = {"Authorization": f"Bearer {reader}"}
        assert client.get(f"/api/v1/jobs/{other}/logs", headers=as_reader).status_code == 200
        assert client.get(f"/api/v1/jobs/{other}/logs").status_code == 401


def test_in_the_openapi_document(client: TestClient) -> None:
    document = client.get("/openapi.json").json()
    operation = document["paths"]["/api/v1/jobs/{job_id}/logs"]["get"]
    assert operation["operationId"] == "get_job_logs"
    assert {p["name"] for p in operation["parameters"]} == {"job_id", "attempt", "after", "limit"}
    schema = operation["responses"]["200"]["content"]["application/json"]["schema"]
    assert schema["$ref"].endswith("/JobLogPage")
