"""`skiplock jobs delete ID`: the store call of DELETE /api/v1/jobs/{id}, with its
refusals (a job that has not finished, an unknown id)."""

from __future__ import annotations

import json

import psycopg
from cli_checks import enqueue, kill, ok, refused, run, succeed


def status_of(conn: psycopg.Connection, job_id: int) -> str | None:
    row = conn.execute("SELECT status FROM skiplock.all_jobs WHERE id = %s", (job_id,)).fetchone()
    return row[0] if row else None


def test_delete_finished_jobs(dsn: str, conn: psycopg.Connection) -> None:
    (done,) = enqueue(conn)
    succeed(conn)
    (dead,) = enqueue(conn)
    kill(conn)
    (cancelled,) = enqueue(conn)
    ok(run(dsn, "jobs", "cancel", str(cancelled)))
    for job_id, status in ((done, "succeeded"), (dead, "failed"), (cancelled, "cancelled")):
        out = ok(run(dsn, "jobs", "delete", str(job_id)))
        assert out.strip() == f"job {job_id} deleted (it had {status})"
        assert status_of(conn, job_id) is None
    assert ok(run(dsn, "dead-letters", "list")).strip() == "no dead letters"


def test_delete_refusals(dsn: str, conn: psycopg.Connection) -> None:
    (waiting,) = enqueue(conn)
    line = refused(run(dsn, "jobs", "delete", str(waiting)))
    assert line == f"error: job {waiting} has not finished; cancel it first"
    assert status_of(conn, waiting) == "queued"
    assert refused(run(dsn, "jobs", "delete", "424242")) == "error: job 424242 not found"
    assert run(dsn, "jobs", "delete", "abc").exit_code == 2
    assert run(dsn, "jobs", "delete").exit_code == 2


def test_list_searches_args_meta_and_tags(dsn: str, conn: psycopg.Connection) -> None:
    conn.execute(
        "SELECT skiplock.enqueue('t', '{\"user_id\": 5}', tags => '{vip}')"
        " UNION ALL SELECT skiplock.enqueue('t', '{\"user_id\": 6}', meta => '{\"a\": 1}')"
    )
    found = json.loads(ok(run(dsn, "jobs", "list", "--args", "user_id=5", "--json")))
    assert [job["args"] for job in found] == [{"user_id": 5}]
    found = json.loads(ok(run(dsn, "jobs", "list", "--meta", '{"a": 1}', "--json")))
    assert [job["args"] for job in found] == [{"user_id": 6}]
    found = json.loads(ok(run(dsn, "jobs", "list", "--tag", "vip", "--json")))
    assert [job["args"] for job in found] == [{"user_id": 5}]
    result = run(dsn, "jobs", "list", "--args", "user_id")
    assert result.exit_code == 2
    assert "--args search must be a JSON object or key=value pairs" in result.output
