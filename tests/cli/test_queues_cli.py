"""`skiplock queues create|delete|stats`: the same store calls, refusals and answers as
POST /api/v1/queues, DELETE /api/v1/queues/{name} and GET /api/v1/queues/{name}/stats."""

from __future__ import annotations

import json
from typing import Any

import psycopg
from cli_checks import enqueue, kill, ok, refused, run, succeed
from starlette.testclient import TestClient

import skiplock
from skiplock.api import create_app
from skiplock.api import queues as api_queues
from skiplock.cli import queues as cli_queues
from skiplock.options import PATTERN_WORDS, QUEUE_PATTERN


def queue_row(dsn: str, name: str) -> Any:
    """The `queues --json` row of queue `name`; None when there is no such queue."""
    rows = {row["queue"]: row for row in json.loads(ok(run(dsn, "queues", "--json")))}
    return rows.get(name)


def test_create(dsn: str) -> None:
    assert ok(run(dsn, "queues", "create", "reports")).strip() == "queue reports created"
    assert ok(run(dsn, "queues", "create", "emails", "--paused")).strip() == (
        "queue emails created (paused)"
    )
    assert queue_row(dsn, "reports")["paused"] is False
    assert queue_row(dsn, "emails")["paused"] is True
    created = json.loads(ok(run(dsn, "queues", "create", "more", "--json")))
    assert created == queue_row(dsn, "more") and created["queued"] == 0


def test_create_refusals(dsn: str) -> None:
    ok(run(dsn, "queues", "create", "reports", "--paused"))
    line = refused(run(dsn, "queues", "create", "reports"))
    assert line == "error: queue reports already exists"
    assert queue_row(dsn, "reports")["paused"] is True  # unchanged
    line = refused(run(dsn, "queues", "create", "no spaces"), code=2)
    assert line == f"error: NAME: must be {PATTERN_WORDS[QUEUE_PATTERN]}, got 'no spaces'"
    assert refused(run(dsn, "queues", "create", "x" * 65), code=2).startswith("error: NAME:")
    assert queue_row(dsn, "no spaces") is None
    assert run(dsn, "queues", "create").exit_code == 2


def test_delete(dsn: str, conn: psycopg.Connection) -> None:
    ok(run(dsn, "queues", "create", "reports"))
    assert ok(run(dsn, "queues", "delete", "reports")).strip() == "queue reports deleted"
    assert queue_row(dsn, "reports") is None
    assert refused(run(dsn, "queues", "delete", "reports")) == "error: queue reports not found"
    assert refused(run(dsn, "queues", "delete", "a b")) == "error: queue a b not found"


def test_delete_refuses_a_queue_with_jobs_as_the_api_does(
    dsn: str, conn: psycopg.Connection
) -> None:
    (job,) = enqueue(conn, queue="busy")
    line = refused(run(dsn, "queues", "delete", "busy"))
    assert line == "error: queue busy still has jobs; cancel or finish them first"
    assert queue_row(dsn, "busy")["queued"] == 1
    ok(run(dsn, "jobs", "cancel", str(job)))
    ok(run(dsn, "queues", "delete", "busy"))
    assert queue_row(dsn, "busy") is None


def test_stats(dsn: str, conn: psycopg.Connection) -> None:
    enqueue(conn, 3, queue="q")
    succeed(conn, "q")
    enqueue(conn, 2, queue="q")
    kill(conn, "q")
    enqueue(conn, 4, queue="q")
    enqueue(conn, 1, queue="q", delay=3600)
    conn.execute("SELECT skiplock.register_worker(gen_random_uuid(), 'h', 1, ARRAY['q'], 4, 'v')")
    stats = json.loads(ok(run(dsn, "queues", "stats", "q", "--minutes", "5", "--json")))
    assert stats["counts"] == {
        "waiting": 0,
        "scheduled": 1,
        "queued": 4,
        "running": 0,
        "retrying": 0,
        "succeeded": 3,
        "failed": 2,
        "cancelled": 0,
        "expired": 0,
    }
    assert (stats["pending"], stats["workers"]) == (5, 1)
    throughput = stats["throughput"]
    assert (throughput["minutes"], throughput["finished"]) == (5, 5)
    assert throughput["per_minute_average"] == 1.0 and len(throughput["per_minute"]) == 5
    text = ok(run(dsn, "queues", "stats", "q", "--minutes", "5"))
    assert "workers:  1 live" in text
    assert "finished in the last 5 min: 5 (1 per minute)" in text
    lines = text.splitlines()
    counts = lines.index(next(line for line in lines if line.startswith("WAITING")))
    assert lines[counts + 1].split() == ["0", "1", "4", "0", "0", "3", "2", "0", "0"]
    # The minutes they finished in (one, unless a minute ended between succeed and kill).
    header = next(i for i, line in enumerate(lines) if line.startswith("MINUTE"))
    assert lines[header].split() == ["MINUTE", "SUCCEEDED", "FAILED", "CANCELLED", "EXPIRED"]
    rows = [[int(v) for v in line.split()[-4:]] for line in lines[header + 1 :]]
    assert [sum(column) for column in zip(*rows, strict=True)] == [3, 2, 0, 0]


def test_stats_json_is_the_apis_body(dsn: str, conn: psycopg.Connection) -> None:
    enqueue(conn, 2, queue="q")
    succeed(conn, "q")
    enqueue(conn, 1, queue="q")
    kill(conn, "q")
    enqueue(conn, 1, queue="q")
    with TestClient(create_app(skiplock.App(dsn))) as client:

        def api() -> Any:
            return client.get("/api/v1/queues/q/stats", params={"minutes": "3"}).json()

        # Both windows end at the current minute: compare within one minute.
        while True:
            before = api()
            cli = json.loads(ok(run(dsn, "queues", "stats", "q", "--minutes", "3", "--json")))
            if api() == before:
                break
    assert cli == before


def test_stats_window_is_the_apis(dsn: str) -> None:
    assert (cli_queues.MINUTES_DEFAULT, cli_queues.MINUTES_MAX) == (
        api_queues.MINUTES_DEFAULT,
        api_queues.MINUTES_MAX,
    )


def test_stats_refusals(dsn: str) -> None:
    assert refused(run(dsn, "queues", "stats", "nope")) == "error: queue nope not found"
    assert run(dsn, "queues", "stats", "nope", "--minutes", "0").exit_code == 2
    assert run(dsn, "queues", "stats", "nope", "--minutes", "1441").exit_code == 2
    ok(run(dsn, "queues", "create", "idle"))
    text = ok(run(dsn, "queues", "stats", "idle"))
    assert "finished in the last 60 min: 0 (0 per minute)" in text
