"""What the API tests share: the error-shape check and ways to put jobs into each state
with the SQL API (the way a worker would), so tests need no running worker."""

from __future__ import annotations

import json
import uuid
from typing import Any

import psycopg

import skiplock
from skiplock.api import create_app
from skiplock.api.openapi import build_document

# The document /openapi.json serves, generated from the routes (no database needed).
DOCUMENT = build_document(create_app(skiplock.App("postgresql://unused")).routes)
W1 = uuid.UUID("00000000-0000-4000-8000-0000000000a1")
DOWN_DSN = "host=/nonexistent port=1 connect_timeout=1"
ERROR_KEYS = {"type", "title", "status", "error", "detail", "field"}


def assert_problem(response: Any, status: int, error: str, field: str | None = None) -> None:
    assert response.status_code == status, response.text
    assert response.headers["content-type"] == "application/problem+json"
    body = response.json()
    assert set(body) <= ERROR_KEYS
    assert body["status"] == status and body["title"] == body["error"]
    assert body["type"].startswith("urn:skiplock:problem:")
    assert body["error"] == error, body
    assert body.get("field") == field, body
    assert "Traceback" not in response.text


def enqueue(conn: psycopg.Connection, n: int = 1, **options: Any) -> list[int]:
    """n jobs of task `t` in one statement; options are enqueue_many keys."""
    spec = json.dumps([{"task": "t", **options} for _ in range(n)])
    return [row[0] for row in conn.execute("SELECT skiplock.enqueue_many(%s)", (spec,))]


def claim(conn: psycopg.Connection, queue: str = "default", limit: int = 1000) -> list[int]:
    rows = conn.execute(
        "SELECT id FROM skiplock.claim_jobs(%s, ARRAY[%s], %s)", (W1, queue, limit)
    ).fetchall()
    return [row[0] for row in rows]


def succeed(conn: psycopg.Connection, queue: str = "default", result: Any = None) -> list[int]:
    """Claim and complete every ready job of `queue`."""
    ids = claim(conn, queue)
    conn.execute(
        "SELECT skiplock.complete_jobs(%s, %s::bigint[], %s::integer[], %s::jsonb[])",
        (W1, ids, [1] * len(ids), [json.dumps(result)] * len(ids)),
    )
    return ids


def kill(conn: psycopg.Connection, queue: str = "default", error: str = "boom") -> list[int]:
    """Claim every ready job of `queue` and fail it for good: dead letters."""
    ids = claim(conn, queue)
    entry = json.dumps({"error": error, "retry": False})
    conn.execute(
        "SELECT skiplock.fail_jobs(%s, %s::bigint[], %s::integer[], %s::jsonb[])",
        (W1, ids, [1] * len(ids), [entry] * len(ids)),
    )
    return ids


def publish_tasks(dsn: str, *names: str) -> None:
    """Register `names` as a worker would, so POST /api/v1/jobs accepts them."""
    with psycopg.connect(dsn, autocommit=True) as conn:
        tasks = json.dumps([{"name": name} for name in names])
        conn.execute("SELECT skiplock.publish_tasks(NULL, %s::jsonb)", (tasks,))
