"""JSON request bodies: media type, duplicate keys, nesting, and the bytes all bodies in
flight may hold at once."""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator, Iterator

import httpx
import psycopg
import pytest
from api_checks import assert_problem, publish_tasks
from starlette.testclient import TestClient

import skiplock
from skiplock.api import api_lifespan, create_app
from skiplock.errors import ConfigError

JOB = b'{"task": "t", "args": {"to": "a@b.c"}}'
JSON = {"content-type": "application/json"}


@pytest.fixture
def client(dsn: str) -> Iterator[TestClient]:
    publish_tasks(dsn, "t")
    with TestClient(create_app(skiplock.App(dsn))) as c:
        yield c


def job_count(conn: psycopg.Connection) -> int:
    row = conn.execute("SELECT count(*) FROM skiplock.jobs").fetchone()
    assert row is not None
    count: int = row[0]
    return count


@pytest.mark.parametrize(
    "content_type",
    [
        None,
        "text/plain",
        "application/x-www-form-urlencoded",
        "multipart/form-data; boundary=x",
        "application/xml",
        "text/json",
        "application/json; charset=utf-16",
        "application/json; charset=latin-1",
    ],
)
def test_a_body_not_declared_utf8_json_is_415(
    client: TestClient, conn: psycopg.Connection, content_type: str | None
) -> None:
    headers = {"content-type": content_type} if content_type else {}
    response = client.post("/api/v1/jobs", content=JOB, headers=headers)
    assert_problem(response, 415, "unsupported media type")
    assert job_count(conn) == 0


def test_forms_and_multipart_are_415(client: TestClient, conn: psycopg.Connection) -> None:
    response = client.post("/api/v1/jobs", data={"task": "t"})
    assert_problem(response, 415, "unsupported media type")
    response = client.post("/api/v1/jobs", files={"task": ("t.json", JOB, "application/json")})
    assert_problem(response, 415, "unsupported media type")
    response = client.post("/api/v1/queues", data={"name": "q"})
    assert_problem(response, 415, "unsupported media type")
    assert job_count(conn) == 0


@pytest.mark.parametrize(
    "content_type",
    [
        "application/json",
        "Application/JSON; charset=UTF-8",
        'application/json;charset="utf-8"',
        "application/vnd.skiplock+json",
    ],
)
def test_json_media_types_are_read(client: TestClient, content_type: str) -> None:
    response = client.post("/api/v1/jobs", content=JOB, headers={"content-type": content_type})
    assert response.status_code == 201, response.text


def test_utf16_json_is_400(client: TestClient, conn: psycopg.Connection) -> None:
    for encoding in ("utf-16", "utf-16-le", "utf-32"):
        body = JOB.decode().encode(encoding)
        response = client.post("/api/v1/jobs", content=body, headers=JSON)
        assert_problem(response, 400, "invalid json")
        if encoding != "utf-16-le":  # without a BOM, ASCII in UTF-16 is UTF-8 with NULs
            assert "not UTF-8" in response.json()["detail"]
    assert job_count(conn) == 0


@pytest.mark.parametrize(
    ("body", "key"),
    [
        (b'{"task": "t", "task": "u"}', "task"),
        (b'{"task": "t", "args": {"to": "a", "cc": "b", "to": "c"}}', "to"),
        (b'[{"task": "t"}, {"task": "t", "priority": 1, "priority": 2}]', "priority"),
    ],
)
def test_duplicate_keys_are_422_naming_the_key(
    client: TestClient, conn: psycopg.Connection, body: bytes, key: str
) -> None:
    response = client.post(
        "/api/v1/jobs", content=body, headers={"content-type": "application/json"}
    )
    assert_problem(response, 422, "duplicate key", key)
    assert key in response.json()["detail"]
    assert job_count(conn) == 0


def test_a_deeply_nested_body_is_400(client: TestClient, conn: psycopg.Connection) -> None:
    depth = 100_000
    body = b'{"task": "t", "args": {"a": ' + b"[" * depth + b"]" * depth + b"}}"
    response = client.post(
        "/api/v1/jobs", content=body, headers={"content-type": "application/json"}
    )
    assert_problem(response, 400, "invalid json")
    assert "nested too deeply" in response.json()["detail"]
    assert job_count(conn) == 0


def test_bodies_in_flight_are_capped(dsn: str, conn: psycopg.Connection) -> None:
    """While one request holds 500 of the 1,000 body bytes allowed in flight, a 600-byte
    body is turned away with 503; once the first is answered, it goes through."""
    publish_tasks(dsn, "t")
    api = create_app(skiplock.App(dsn), max_body_bytes=800, max_body_bytes_in_flight=1_000)
    job = json.dumps({"task": "t", "args": {"pad": "x" * 566}}).encode()
    assert len(job) == 600

    async def scenario() -> None:
        first_chunk_read = asyncio.Event()
        release = asyncio.Event()

        async def slow_body() -> AsyncIterator[bytes]:
            yield job[:500]
            first_chunk_read.set()
            await release.wait()
            yield job[500:]

        transport = httpx.ASGITransport(app=api)
        async with (
            api_lifespan(api),
            httpx.AsyncClient(transport=transport, base_url="http://testserver") as client,
        ):
            slow = asyncio.create_task(
                client.post("/api/v1/jobs", content=slow_body(), headers=JSON)
            )
            await first_chunk_read.wait()
            turned_away = await client.post("/api/v1/jobs", content=job, headers=JSON)
            assert_problem(turned_away, 503, "server busy")
            assert turned_away.headers["retry-after"] == "1"
            # 500 + 15 bytes fit: the budget refuses only what would pass it
            small = json.dumps({"task": "t"}).encode()
            fits = await client.post("/api/v1/jobs", content=small, headers=JSON)
            assert fits.status_code == 201, fits.text
            release.set()
            assert (await slow).status_code == 201
            # everything answered has been given back: the whole budget is free again
            for _ in range(3):
                retried = await client.post("/api/v1/jobs", content=job, headers=JSON)
                assert retried.status_code == 201, retried.text

    asyncio.run(scenario())
    assert job_count(conn) == 5


def test_the_budget_must_hold_one_body(dsn: str) -> None:
    with pytest.raises(ConfigError, match="max_body_bytes_in_flight must be >= max_body_bytes"):
        create_app(skiplock.App(dsn), max_body_bytes=2048, max_body_bytes_in_flight=1024)
