"""Retention: finished jobs and spent unique keys are pruned in batches, by anyone."""

from __future__ import annotations

import asyncio
import json
from collections.abc import Callable
from datetime import timedelta

import psycopg

import skiplock
from skiplock.worker import Worker

W = "00000000-0000-0000-0000-0000000000bb"


def finish_all(conn: psycopg.Connection, n: int) -> None:
    conn.execute(
        "SELECT skiplock.enqueue_many((SELECT jsonb_agg(jsonb_build_object('task', 't'))"
        " FROM generate_series(1, %s)))",
        (n,),
    )
    rows = conn.execute(
        "SELECT id, attempt FROM skiplock.claim_jobs(%s, '{default}', %s)", (W, n)
    ).fetchall()
    conn.execute(
        "SELECT skiplock.complete_jobs(%s, %s::bigint[], %s::integer[], %s::jsonb[])",
        (W, [r[0] for r in rows], [r[1] for r in rows], ["null"] * n),
    )


def history(conn: psycopg.Connection) -> int:
    return conn.execute("SELECT count(*) FROM skiplock.job_history").fetchone()[0]


def test_prune_deletes_only_old_finished_jobs_in_batches(conn: psycopg.Connection) -> None:
    finish_all(conn, 25)
    conn.execute(
        "UPDATE skiplock.job_history SET finished_at = now() - interval '8 days' WHERE id <= 20"
    )
    dead = conn.execute("SELECT skiplock.enqueue('t', max_attempts => 1)").fetchone()[0]
    (token,) = conn.execute(
        "SELECT id, attempt FROM skiplock.claim_jobs(%s, '{default}', 1)", (W,)
    ).fetchall()
    conn.execute(
        "SELECT skiplock.fail_jobs(%s, ARRAY[%s]::bigint[], ARRAY[%s], '{\"{}\"}')",
        (W, *token),
    )
    conn.execute("UPDATE skiplock.dead_jobs SET failed_at = now() - interval '90 days'")

    one = "SELECT skiplock.prune_job_history(interval '7 days', 8)"
    assert [conn.execute(one).fetchone()[0] for _ in range(4)] == [8, 8, 4, 0]
    assert history(conn) == 5
    # dead letters are kept until purged, however old
    assert conn.execute("SELECT id FROM skiplock.dead_jobs").fetchall() == [(dead,)]


def test_concurrent_pruners_never_block_each_other(
    conn: psycopg.Connection, connect: Callable[..., psycopg.Connection]
) -> None:
    finish_all(conn, 30)
    conn.execute("UPDATE skiplock.job_history SET finished_at = now() - interval '8 days'")
    first = connect()
    taken = first.execute("SELECT skiplock.prune_job_history(interval '7 days', 10)").fetchone()[0]
    other = connect(autocommit=True)
    other.execute("SET lock_timeout = '1s'")  # a block would raise instead of waiting
    rest = other.execute("SELECT skiplock.prune_job_history(interval '7 days', 100)").fetchone()[0]
    first.commit()
    assert (taken, rest) == (10, 20)
    assert history(conn) == 0


def test_spent_unique_keys_are_pruned(conn: psycopg.Connection) -> None:
    conn.execute("SELECT skiplock.enqueue('t', unique_key => 'a', unique_for => '1 hour')")
    conn.execute("SELECT skiplock.enqueue('t', unique_key => 'b')")
    conn.execute(
        "UPDATE skiplock.unique_keys SET holds_until = now() - interval '1 s' WHERE key = 'a'"
    )
    assert conn.execute("SELECT skiplock.prune_unique_keys()").fetchone() == (1,)
    assert conn.execute("SELECT key FROM skiplock.unique_keys").fetchall() == [("b",)]


def test_the_worker_prunes_with_its_retention_setting(dsn: str, conn: psycopg.Connection) -> None:
    finish_all(conn, 1500)
    conn.execute(
        "UPDATE skiplock.job_history SET finished_at = now() - interval '2 days' WHERE id <= 1200"
    )
    app = skiplock.App(dsn)

    async def prune(retention: timedelta | None) -> int:
        worker = Worker(app, listen=False, history_retention=retention)
        try:
            await worker.run_once()  # opens its pool
            return await worker.maintenance.prune_once()
        finally:
            await worker.close()

    conn.execute(
        "INSERT INTO skiplock.audit_log (at, actor, action, status)"
        " VALUES (now() - interval '100 days', 'ci', 'POST /api/v1/jobs', 201),"
        "        (now() - interval '10 days', 'ci', 'POST /api/v1/jobs', 201)"
    )
    # two finished workflows, one of them old enough to go
    for name in ("old", "new"):
        conn.execute(
            "SELECT skiplock.enqueue_workflow(%s::jsonb)",
            (json.dumps({"name": name, "steps": [{"name": "a", "task": "t", "queue": "wf"}]}),),
        )
    steps = conn.execute("SELECT id, attempt FROM skiplock.claim_jobs(%s, '{wf}', 10)", (W,))
    claimed = steps.fetchall()
    conn.execute(
        "SELECT skiplock.complete_jobs(%s, %s, %s, %s::jsonb[])",
        (W, [i for i, _ in claimed], [a for _, a in claimed], [None] * len(claimed)),
    )
    conn.execute(
        "UPDATE skiplock.workflows SET created_at = now() - interval '2 days' WHERE name = 'old'"
    )

    assert asyncio.run(prune(None)) == 0
    # the audit log has its own retention (90 days by default)
    assert conn.execute("SELECT count(*) FROM skiplock.audit_log").fetchone() == (1,)
    assert asyncio.run(prune(timedelta(days=1))) == 1200
    assert history(conn) == 300 + 2
    assert conn.execute("SELECT name FROM skiplock.workflows").fetchall() == [("new",)]
    app.close()
