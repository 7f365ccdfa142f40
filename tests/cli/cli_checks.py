"""What the CLI tests of the admin groups share: run `skiplock` on a test's database and
check its answer (exit code, one line on stderr, never a traceback)."""

from __future__ import annotations

import json
import uuid
from typing import Any

import psycopg
from click.testing import CliRunner, Result

from skiplock.cli import main

WORKER = uuid.UUID("00000000-0000-4000-8000-0000000000c2")


def run(dsn: str, *args: str) -> Result:
    """`skiplock --dsn DSN ARGS...`, in process."""
    return CliRunner().invoke(main, ["--dsn", dsn, *args])


def ok(result: Result) -> str:
    """Assert success; stdout."""
    assert result.exit_code == 0, (result.exit_code, result.output, result.exception)
    return result.stdout


def refused(result: Result, code: int = 1) -> str:
    """Assert a refusal: exit `code`, exactly one line on stderr, no traceback; that line."""
    assert result.exit_code == code, (result.exit_code, result.output)
    assert "Traceback" not in result.output
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1, result.stderr
    return lines[0]


def enqueue(conn: psycopg.Connection, n: int = 1, **options: Any) -> list[int]:
    """n jobs of task `t` in one statement; options are enqueue_many keys."""
    spec = json.dumps([{"task": "t", **options} for _ in range(n)])
    return [row[0] for row in conn.execute("SELECT skiplock.enqueue_many(%s)", (spec,))]


def claim(conn: psycopg.Connection, queue: str = "default") -> list[int]:
    rows = conn.execute(
        "SELECT id FROM skiplock.claim_jobs(%s, ARRAY[%s], 1000)", (WORKER, queue)
    ).fetchall()
    return [row[0] for row in rows]


def succeed(conn: psycopg.Connection, queue: str = "default") -> list[int]:
    """Claim and complete every ready job of `queue`, as a worker would."""
    ids = claim(conn, queue)
    conn.execute(
        "SELECT skiplock.complete_jobs(%s, %s::bigint[], %s::integer[], %s::jsonb[])",
        (WORKER, ids, [1] * len(ids), ["null"] * len(ids)),
    )
    return ids


def kill(conn: psycopg.Connection, queue: str = "default") -> list[int]:
    """Claim every ready job of `queue` and fail it for good: dead letters."""
    ids = claim(conn, queue)
    entry = json.dumps({"error": "boom", "retry": False})
    conn.execute(
        "SELECT skiplock.fail_jobs(%s, %s::bigint[], %s::integer[], %s::jsonb[])",
        (WORKER, ids, [1] * len(ids), [entry] * len(ids)),
    )
    return ids
