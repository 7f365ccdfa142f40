"""`skiplock dead-letters redrive --all` queues every dead letter again only with --yes,
as `purge` deletes only with it; a redrive by id or filter needs none."""

from __future__ import annotations

import json

import psycopg
from cli_checks import enqueue, kill, ok, refused, run


def dead_count(dsn: str) -> int:
    return len(json.loads(ok(run(dsn, "dead-letters", "list", "--json"))))


def test_redrive_all_wants_yes(dsn: str, conn: psycopg.Connection) -> None:
    enqueue(conn, 3)
    kill(conn)
    line = refused(run(dsn, "dead-letters", "redrive", "--all"), code=2)
    assert line == "error: --all queues every dead letter again: add --yes"
    assert dead_count(dsn) == 3  # nothing moved
    out = ok(run(dsn, "dead-letters", "redrive", "--all", "--yes"))
    assert out.strip() == "3 dead letters queued again"
    assert dead_count(dsn) == 0


def test_redrive_by_id_or_filter_needs_no_yes(dsn: str, conn: psycopg.Connection) -> None:
    first, _ = enqueue(conn, 2, queue="mail")
    kill(conn, "mail")
    assert ok(run(dsn, "dead-letters", "redrive", str(first))).strip() == (
        f"job {first} queued again"
    )
    out = ok(run(dsn, "dead-letters", "redrive", "--queue", "mail"))
    assert out.strip() == "1 dead letters queued again"


def test_usage_refusals_are_one_line(dsn: str) -> None:
    line = refused(run(dsn, "dead-letters", "purge"), code=2)
    assert line == "error: purging deletes dead letters for good: add --yes"
    line = refused(run(dsn, "dead-letters", "redrive"), code=2)
    assert line == "error: give a job id, or --queue/--task/--all (not both)"
    assert refused(run(dsn, "dead-letters", "redrive", "7", "--all", "--yes"), code=2)
