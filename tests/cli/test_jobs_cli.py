"""`skiplock jobs delete ID`: the store call of DELETE /api/v1/jobs/{id}, with its
refusals (a job that has not finished, an unknown id)."""

from __future__ import annotations

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
