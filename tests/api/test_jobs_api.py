"""The HTTP API (skiplock.api) against a real PostgreSQL, through Starlette's TestClient."""

from __future__ import annotations

import asyncio
import dataclasses
import json
import logging
import re
import time
import uuid
from collections.abc import Iterator
from datetime import datetime, timedelta, timezone
from pathlib import Path
from typing import Any

import psycopg
import pytest
from api_checks import DOCUMENT, publish_tasks
from starlette.testclient import TestClient

import skiplock
from skiplock.api import create_app
from skiplock.api.models import EnqueueJob
from skiplock.jobs import Job
from skiplock.options import NAMES

JSON = {"content-type": "application/json"}  # what a JSON body must be sent as

W1 = uuid.UUID("00000000-0000-4000-8000-0000000000a1")
DOWN_DSN = "host=/nonexistent port=1 connect_timeout=1"
ERROR_KEYS = {"type", "title", "status", "error", "detail", "field"}


@pytest.fixture
def app(dsn: str) -> skiplock.App:
    publish_tasks(dsn, "t", "x", "emails.send")
    return skiplock.App(dsn)


@pytest.fixture
def client(app: skiplock.App) -> Iterator[TestClient]:
    # `with` runs the lifespan and keeps one event loop for every request, which the
    # App's async pool needs.
    with TestClient(create_app(app, max_body_bytes=4096)) as c:
        yield c


def job_count(conn: psycopg.Connection) -> int:
    row = conn.execute("SELECT count(*) FROM skiplock.all_jobs").fetchone()
    assert row is not None
    return int(row[0])


def assert_problem(response: Any, status: int, error: str, field: str | None = None) -> None:
    assert response.status_code == status, response.text
    assert response.headers["content-type"] == "application/problem+json"
    body = response.json()
    assert set(body) <= ERROR_KEYS
    assert body["status"] == status and body["title"] == body["error"]
    assert body["type"].startswith("urn:skiplock:problem:")
    assert body["error"] == error
    assert body.get("field") == field
    assert "Traceback" not in response.text


# ---- happy paths ----------------------------------------------------------------------


def test_health_answers_without_a_database() -> None:
    with TestClient(create_app(skiplock.App(DOWN_DSN))) as client:
        for path in ("/health", "/api/v1/health"):
            response = client.get(path)
            assert response.status_code == 200
            assert response.json() == {"status": "ok"}


def test_health_adds_live_workers_and_queue_depth(
    client: TestClient, conn: psycopg.Connection
) -> None:
    conn.execute("SELECT skiplock.enqueue('t'), skiplock.enqueue('t')")
    conn.execute("SELECT skiplock.enqueue('t', delay => interval '1 hour')")  # not ready yet
    conn.execute(
        "SELECT skiplock.register_worker(%s, 'host', 1, '{default}', 4, 'test')", (str(W1),)
    )
    for path in ("/health", "/api/v1/health"):
        assert client.get(path).json() == {"status": "ok", "workers": 1, "queue_depth": 2}


def test_stats_is_the_json_metrics(client: TestClient, conn: psycopg.Connection) -> None:
    conn.execute("SELECT skiplock.enqueue('t', queue => 'q')")
    stats, metrics = client.get("/api/v1/stats").json(), client.get("/api/v1/metrics").json()
    assert stats["totals"] == metrics["totals"] and stats["totals"]["queued"] == 1
    assert stats.keys() == metrics.keys()


def test_enqueue_then_get_shows_queued_job_with_its_args(client: TestClient) -> None:
    response = client.post(
        "/api/v1/jobs",
        json={
            "task": "emails.send",
            "args": {"to": "a@b.c", "n": [1, 2]},
            "queue": "emails",
            "priority": 5,
            "max_attempts": 3,
            "timeout": 30,
            "tags": ["x", "y"],
            "meta": {"by": "test"},
        },
    )
    assert response.status_code == 201, response.text
    body = response.json()
    assert body == {"id": body["id"], "status": "queued"}
    assert isinstance(body["id"], int)
    assert response.headers["location"] == f"/api/v1/jobs/{body['id']}"

    job = client.get(response.headers["location"])
    assert job.status_code == 200
    got = job.json()
    assert got["id"] == body["id"]
    assert got["status"] == "queued"
    assert got["task"] == "emails.send"
    assert got["args"] == {"to": "a@b.c", "n": [1, 2]}
    assert got["queue"] == "emails"
    assert got["priority"] == 5
    assert got["max_attempts"] == 3
    assert got["timeout"] == 30.0
    assert got["tags"] == ["x", "y"]
    assert got["meta"] == {"by": "test"}
    assert got["attempt"] == 0
    assert got["result"] is None and got["errors"] == [] and got["last_error"] is None
    datetime.fromisoformat(got["created_at"])


def test_defaults_and_nulls(client: TestClient) -> None:
    response = client.post("/api/v1/jobs", json={"task": "t", "queue": None, "args": None})
    assert response.status_code == 201, response.text
    got = client.get(response.headers["location"]).json()
    assert (got["args"], got["queue"], got["priority"], got["tags"]) == ({}, "default", 0, [])


def test_non_ascii_and_surrogate_pairs_round_trip(client: TestClient) -> None:
    raw = b'{"task": "t", "args": {"s": "\\ud83d\\ude00 \xc3\xa9"}, "tags": ["\xc3\xa9"]}'
    response = client.post("/api/v1/jobs", content=raw, headers=JSON)
    assert response.status_code == 201, response.text
    got = client.get(response.headers["location"]).json()
    assert got["args"] == {"s": "\U0001f600 \u00e9"}
    assert got["tags"] == ["\u00e9"]


@pytest.mark.parametrize(
    "timing",
    [
        {"delay": 3600},
        {"delay": 0.5e6},
        {"run_at": (datetime.now(timezone.utc) + timedelta(days=1)).isoformat()},
        {"run_at": "2999-01-01T00:00:00Z"},
    ],
)
def test_future_run_is_scheduled(client: TestClient, timing: dict[str, Any]) -> None:
    response = client.post("/api/v1/jobs", json={"task": "t", **timing})
    assert response.status_code == 201, response.text
    assert response.json()["status"] == "scheduled"
    assert client.get(response.headers["location"]).json()["status"] == "scheduled"


def test_past_run_at_and_zero_delay_are_queued(client: TestClient) -> None:
    for timing in ({"run_at": "2000-01-01T00:00:00+02:00"}, {"delay": 0}):
        response = client.post("/api/v1/jobs", json={"task": "t", **timing})
        assert response.status_code == 201, response.text
        assert response.json()["status"] == "queued"


def test_job_completed_via_sql_shows_succeeded_and_result(
    client: TestClient, conn: psycopg.Connection
) -> None:
    job_id = client.post("/api/v1/jobs", json={"task": "t", "args": {"x": 1}}).json()["id"]
    claimed = conn.execute(
        "SELECT id, attempt FROM skiplock.claim_jobs(%s, ARRAY['default'], 10)", (W1,)
    ).fetchall()
    assert claimed == [(job_id, 1)]
    assert client.get(f"/api/v1/jobs/{job_id}").json()["status"] == "running"
    conn.execute(
        "SELECT skiplock.complete_jobs(%s, ARRAY[%s]::bigint[], ARRAY[1], ARRAY[%s::jsonb])",
        (W1, job_id, json.dumps({"sent": True, "n": 2})),
    )

    got = client.get(f"/api/v1/jobs/{job_id}").json()
    assert got["status"] == "succeeded"
    assert got["result"] == {"sent": True, "n": 2}
    assert got["attempt"] == 1
    assert got["finished_at"] is not None


def test_lifespan_closes_the_pool(app: skiplock.App) -> None:
    with TestClient(create_app(app)) as client:
        assert client.post("/api/v1/jobs", json={"task": "t"}).status_code == 201
        assert app._async_pool is not None
    assert app._async_pool is None


# ---- bad input ------------------------------------------------------------------------

BAD_FIELDS: list[tuple[dict[str, Any], str]] = [
    ({}, "task"),
    ({"task": None}, "task"),
    ({"task": 5}, "task"),
    ({"task": ""}, "task"),
    ({"task": "has space"}, "task"),
    ({"task": "x" * 201}, "task"),
    ({"task": "t", "args": [1]}, "args"),
    ({"task": "t", "args": "{}"}, "args"),
    ({"task": "t", "queue": "no/slash"}, "queue"),
    ({"task": "t", "queue": "q" * 65}, "queue"),
    ({"task": "t", "queue": 1}, "queue"),
    ({"task": "t", "priority": 101}, "priority"),
    ({"task": "t", "priority": -101}, "priority"),
    ({"task": "t", "priority": True}, "priority"),
    ({"task": "t", "priority": 1.5}, "priority"),
    ({"task": "t", "priority": "1"}, "priority"),
    ({"task": "t", "delay": -1}, "delay"),
    ({"task": "t", "delay": "5 minutes"}, "delay"),
    ({"task": "t", "delay": "-5s"}, "delay"),
    ({"task": "t", "delay": False}, "delay"),
    ({"task": "t", "delay": 10**30}, "delay"),
    ({"task": "t", "run_at": "2030-01-01T09:00:00"}, "run_at"),
    ({"task": "t", "run_at": "tomorrow"}, "run_at"),
    ({"task": "t", "run_at": 1700000000}, "run_at"),
    ({"task": "t", "max_attempts": 0}, "max_attempts"),
    ({"task": "t", "max_attempts": True}, "max_attempts"),
    ({"task": "t", "max_attempts": 2**31}, "max_attempts"),
    ({"task": "t", "timeout": 0}, "timeout"),
    ({"task": "t", "timeout": -5}, "timeout"),
    ({"task": "t", "tags": "a,b"}, "tags"),
    ({"task": "t", "tags": ["a", 1]}, "tags"),
    ({"task": "t", "tags": ["a\x00b"]}, "tags"),
    ({"task": "t", "meta": ["m"]}, "meta"),
    ({"task": "t", "args": {"a": "x\x00y"}}, "args"),
    ({"task": "t", "meta": {"a": "\x00"}}, "meta"),
]


@pytest.mark.parametrize(("body", "field"), BAD_FIELDS)
def test_bad_field_is_422_naming_it_and_writes_nothing(
    client: TestClient, conn: psycopg.Connection, body: dict[str, Any], field: str
) -> None:
    response = client.post("/api/v1/jobs", json=body)
    assert_problem(response, 422, "invalid field", field)
    assert field in response.json()["detail"]
    assert job_count(conn) == 0


def test_nul_escape_in_args_is_422_and_no_row(client: TestClient, conn: psycopg.Connection) -> None:
    response = client.post(
        "/api/v1/jobs",
        content=b'{"task": "t", "args": {"a": "\\u0000"}}',
        headers={"content-type": "application/json"},
    )
    assert_problem(response, 422, "invalid field", "args")
    assert "NUL" in response.json()["detail"]
    assert job_count(conn) == 0


@pytest.mark.parametrize(
    ("raw", "field"),
    [
        (b'{"task": "t", "args": {"x": NaN}}', "args"),
        (b'{"task": "t", "meta": {"x": Infinity}}', "meta"),
        (b'{"task": "t", "delay": NaN}', "delay"),
        (b'{"task": "t", "timeout": Infinity}', "timeout"),
        (b'{"task": "t", "priority": NaN}', "priority"),
        # a lone surrogate escape: valid JSON to Python, not to jsonb or UTF-8
        (b'{"task": "t", "args": {"a": "\\ud800"}}', "args"),
        (b'{"task": "t", "meta": {"\\udfff": 1}}', "meta"),
        (b'{"task": "t", "tags": ["\\ud800"]}', "tags"),
    ],
)
def test_values_jsonb_rejects_are_422(
    client: TestClient, conn: psycopg.Connection, raw: bytes, field: str
) -> None:
    assert_problem(
        client.post("/api/v1/jobs", content=raw, headers=JSON), 422, "invalid field", field
    )
    assert job_count(conn) == 0


def test_unknown_fields_are_422_naming_them(client: TestClient, conn: psycopg.Connection) -> None:
    response = client.post("/api/v1/jobs", json={"task": "t", "zeta": 1, "retries": 3})
    assert_problem(response, 422, "unknown field", "retries")
    assert "retries" in response.json()["detail"] and "zeta" in response.json()["detail"]
    assert job_count(conn) == 0


@pytest.mark.parametrize(
    "raw", [b"", b"{", b"not json", b"[1, 2]", b'"task"', b"null", b"\xff\xfe{", b"[" * 4000]
)
def test_body_that_is_not_a_json_object_is_400(
    client: TestClient, conn: psycopg.Connection, raw: bytes
) -> None:
    assert_problem(client.post("/api/v1/jobs", content=raw, headers=JSON), 400, "invalid json")
    assert job_count(conn) == 0


def test_database_rejection_is_422_with_its_primary_message(
    client: TestClient, conn: psycopg.Connection
) -> None:
    # 1e-7 s rounds to a zero interval, which the option's declaration refuses.
    response = client.post("/api/v1/jobs", json={"task": "t", "timeout": 1e-7})
    assert_problem(response, 422, "invalid value")
    assert response.json()["detail"].startswith("timeout: ")
    # This value passes every check but PostgreSQL's, which has the last word:
    # now() + ~2.5 million years is past timestamptz's range, a DataError.
    response = client.post("/api/v1/jobs", json={"task": "t", "delay": 8e13})
    assert_problem(response, 422, "rejected by database")
    assert "out of range" in response.json()["detail"]
    assert "\n" not in response.json()["detail"]
    assert job_count(conn) == 0


# ---- oversized bodies -----------------------------------------------------------------


def big_body(size: int) -> bytes:
    return json.dumps({"task": "t", "args": {"pad": "x" * size}}).encode()


def test_body_under_the_limit_is_accepted(client: TestClient) -> None:
    body = big_body(3000)
    assert len(body) <= 4096
    assert client.post("/api/v1/jobs", content=body, headers=JSON).status_code == 201


def test_oversized_body_with_content_length_is_413(
    client: TestClient, conn: psycopg.Connection
) -> None:
    response = client.post("/api/v1/jobs", content=big_body(5000), headers=JSON)
    assert_problem(response, 413, "body too large")
    assert job_count(conn) == 0


def test_oversized_chunked_body_is_413(client: TestClient, conn: psycopg.Connection) -> None:
    def chunks() -> Iterator[bytes]:
        yield b'{"task": "t", "args": {"pad": "'
        for _ in range(10):
            yield b"x" * 1000
        yield b'"}}'

    response = client.post("/api/v1/jobs", content=chunks(), headers=JSON)
    assert "content-length" not in response.request.headers
    assert_problem(response, 413, "body too large")
    assert job_count(conn) == 0


def test_oversized_body_stops_being_read_once_over_the_limit() -> None:
    # TestClient joins a streamed body before sending it, so this drives the ASGI app
    # directly: it must stop pulling chunks soon after the limit, not drain them all.
    api = create_app(skiplock.App(DOWN_DSN), max_body_bytes=4096)
    pulled = 0
    sent: list[dict[str, Any]] = []

    async def receive() -> dict[str, Any]:
        nonlocal pulled
        pulled += 1
        if pulled > 1000:
            return {"type": "http.request", "body": b"", "more_body": False}
        return {"type": "http.request", "body": b"x" * 1000, "more_body": True}

    async def send(message: dict[str, Any]) -> None:
        sent.append(message)

    scope = {
        "type": "http",
        "http_version": "1.1",
        "method": "POST",
        "path": "/api/v1/jobs",
        "raw_path": b"/api/v1/jobs",
        "root_path": "",
        "scheme": "http",
        "query_string": b"",
        "headers": [
            (b"host", b"test"),
            (b"transfer-encoding", b"chunked"),
            (b"content-type", b"application/json"),
        ],
        "client": ("127.0.0.1", 1),
        "server": ("test", 80),
    }
    asyncio.run(api(scope, receive, send))  # type: ignore[arg-type]
    assert sent[0]["status"] == 413
    assert pulled <= 6


def test_declared_length_over_the_limit_is_refused_before_reading() -> None:
    api = create_app(skiplock.App(DOWN_DSN), max_body_bytes=10)
    pulled = 0
    sent: list[dict[str, Any]] = []

    async def receive() -> dict[str, Any]:
        nonlocal pulled
        pulled += 1
        return {"type": "http.request", "body": b"x" * 11, "more_body": False}

    async def send(message: dict[str, Any]) -> None:
        sent.append(message)

    scope = {
        "type": "http",
        "http_version": "1.1",
        "method": "POST",
        "path": "/api/v1/jobs",
        "raw_path": b"/api/v1/jobs",
        "root_path": "",
        "scheme": "http",
        "query_string": b"",
        "headers": [
            (b"host", b"test"),
            (b"content-length", b"11"),
            (b"content-type", b"application/json"),
        ],
        "client": ("127.0.0.1", 1),
        "server": ("test", 80),
    }
    asyncio.run(api(scope, receive, send))  # type: ignore[arg-type]
    assert sent[0]["status"] == 413
    assert pulled == 0


# ---- reading jobs ---------------------------------------------------------------------


def test_unknown_id_is_404(client: TestClient) -> None:
    response = client.get("/api/v1/jobs/5")
    assert_problem(response, 404, "not found")
    assert response.json() == {
        "type": "urn:skiplock:problem:not-found",
        "title": "not found",
        "status": 404,
        "error": "not found",
        "detail": "job 5 not found",
    }


@pytest.mark.parametrize("raw", ["abc", "-1", "1.5", "9223372036854775808", "9" * 40, "\u0661"])
def test_id_that_cannot_be_a_job_is_404(client: TestClient, raw: str) -> None:
    assert_problem(client.get(f"/api/v1/jobs/{raw}"), 404, "not found")


def test_unknown_route_and_wrong_method_are_json(client: TestClient) -> None:
    assert_problem(client.get("/api/v1/nope"), 404, "not found")
    response = client.put("/api/v1/jobs/1")
    assert_problem(response, 405, "method not allowed")
    assert "GET" in response.headers["allow"] and "DELETE" in response.headers["allow"]


# ---- failures -------------------------------------------------------------------------


def test_database_down_is_503_with_retry_after() -> None:
    started = time.monotonic()
    with TestClient(create_app(skiplock.App(DOWN_DSN), db_timeout=0.5)) as client:
        for response in (
            client.post("/api/v1/jobs", json={"task": "t"}),
            client.get("/api/v1/jobs/1"),
        ):
            assert_problem(response, 503, "database unavailable")
            assert int(response.headers["retry-after"]) > 0
            assert "nonexistent" not in response.text
    # Not a timing assertion on the API, just a guard that nothing waits for the pool's
    # 30 s default (or hangs in shutdown).
    assert time.monotonic() - started < 25


def test_database_connection_error_is_503(
    app: skiplock.App, monkeypatch: pytest.MonkeyPatch
) -> None:
    async def lost(job_id: int, **_: Any) -> skiplock.Job:
        raise psycopg.OperationalError("server closed the connection unexpectedly")

    monkeypatch.setattr(app, "get_job_async", lost)
    with TestClient(create_app(app)) as client:
        response = client.get("/api/v1/jobs/1")
    assert_problem(response, 503, "database unavailable")
    assert response.headers["retry-after"]


def test_unexpected_error_is_500_without_traceback(
    app: skiplock.App, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    async def broken(job_id: int, **_: Any) -> skiplock.Job:
        raise RuntimeError("secret internals")

    monkeypatch.setattr(app, "get_job_async", broken)
    with caplog.at_level(logging.ERROR, logger="skiplock.api"):
        with TestClient(create_app(app)) as client:
            response = client.get("/api/v1/jobs/1")
    assert response.status_code == 500
    assert response.json() == {
        "type": "urn:skiplock:problem:internal-error",
        "title": "internal error",
        "status": 500,
        "error": "internal error",
    }
    assert "secret" not in response.text
    assert any(r.exc_info and "secret internals" in str(r.exc_info[1]) for r in caplog.records)


# ---- one declaration: options, models, document ----------------------------------------


def test_every_job_option_is_a_field_of_the_enqueue_body_and_its_schema() -> None:
    document = DOCUMENT["components"]["schemas"]["EnqueueJob"]
    assert set(NAMES) <= set(EnqueueJob.__struct_fields__)
    assert set(NAMES) <= set(document["properties"])
    assert document["required"] == ["task"] and document["additionalProperties"] is False


def test_docs_list_every_job_option_as_a_field_of_the_enqueue_body() -> None:
    docs = (Path(__file__).parents[2] / "docs" / "api.md").read_text()
    section = docs.split("## `POST /api/v1/jobs`", 1)[1].split("\n### ", 1)[0]
    rows = re.findall(r"^\| `(\w+)` ", section, re.MULTILINE)
    assert rows == ["task", "args", *NAMES, "allow_unregistered_task"]


def test_the_job_schema_has_every_field_of_job_and_requires_them() -> None:
    schema = DOCUMENT["components"]["schemas"]["Job"]
    fields = [field.name for field in dataclasses.fields(Job)]
    assert list(schema["properties"]) == fields and schema["required"] == fields
    for name in ("args", "meta"):
        assert schema["properties"][name]["additionalProperties"] is True


def test_options_declared_since_are_enqueued_from_the_body(
    client: TestClient, conn: psycopg.Connection
) -> None:
    body = {
        "task": "t",
        "retry_policy": {"kind": "fixed", "base": 3},
        "unique_key": "report:1",
        "expires_in": 3600,
    }
    first = client.post("/api/v1/jobs", json=body)
    assert first.status_code == 201, first.text
    assert client.post("/api/v1/jobs", json=body).json()["id"] == first.json()["id"]
    assert conn.execute(
        "SELECT retry_policy->>'kind', expires_at > now() FROM skiplock.jobs WHERE id = %s",
        (first.json()["id"],),
    ).fetchone() == ("fixed", True)
    response = client.post("/api/v1/jobs", json={"task": "t", "unique_scope": "forever"})
    assert_problem(response, 422, "invalid field", "unique_scope")
    assert job_count(conn) == 1


def test_the_longest_duration_is_taken_and_one_second_more_refused(
    client: TestClient, conn: psycopg.Connection
) -> None:
    from skiplock.options import MAX_SECONDS

    longest = client.post("/api/v1/jobs", json={"task": "t", "timeout": MAX_SECONDS})
    assert longest.status_code == 201, longest.text
    assert client.get(f"/api/v1/jobs/{longest.json()['id']}").json()["timeout"] == MAX_SECONDS
    for timeout in (MAX_SECONDS + 1, "P1000000000D"):
        refused = client.post("/api/v1/jobs", json={"task": "t", "timeout": timeout})
        assert refused.status_code == 422 and refused.json()["field"] == "timeout", refused.text
    assert conn.execute("SELECT count(*) FROM skiplock.jobs").fetchone() == (1,)
