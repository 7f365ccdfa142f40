"""Deadlines: a job not started by its expires_at is never started and ends `expired`."""

from __future__ import annotations

import asyncio
from datetime import timedelta

import psycopg

import skiplock
from skiplock.worker import Worker

W = "00000000-0000-0000-0000-0000000000cc"


def statuses(conn: psycopg.Connection) -> dict[int, str]:
    return dict(conn.execute("SELECT id, status FROM skiplock.all_jobs").fetchall())


def test_claim_skips_jobs_past_their_deadline_and_expire_ends_them(
    conn: psycopg.Connection,
) -> None:
    late = conn.execute("SELECT skiplock.enqueue('t', expires_in => '1 minute')").fetchone()[0]
    fine = conn.execute("SELECT skiplock.enqueue('t', expires_in => '1 hour')").fetchone()[0]
    plain = conn.execute("SELECT skiplock.enqueue('t')").fetchone()[0]
    later = "now() + interval '10 minutes'"
    claimed = conn.execute(
        f"SELECT id FROM skiplock.claim_jobs(%s, '{{default}}', 10, p_now => {later})", (W,)
    ).fetchall()
    assert sorted(r[0] for r in claimed) == [fine, plain]
    expired = conn.execute(f"SELECT * FROM skiplock.expire_jobs(p_now => {later})").fetchall()
    assert expired == [(late,)]
    assert statuses(conn) == {late: "expired", fine: "running", plain: "running"}
    totals = conn.execute("SELECT expired FROM skiplock.queue_stats").fetchone()
    assert totals == (1,)


def test_running_jobs_are_not_expired(conn: psycopg.Connection) -> None:
    job = conn.execute("SELECT skiplock.enqueue('t', expires_in => '1 minute')").fetchone()[0]
    conn.execute("SELECT skiplock.claim_jobs(%s, '{default}', 1)", (W,))
    later = "now() + interval '10 minutes'"
    assert conn.execute(f"SELECT * FROM skiplock.expire_jobs(p_now => {later})").fetchall() == []
    assert statuses(conn) == {job: "running"}


def test_python_deadline_and_the_worker_expires_it(dsn: str, conn: psycopg.Connection) -> None:
    app = skiplock.App(dsn)
    job = app.enqueue("t", expires_in=60, delay=3600)  # scheduled past its own deadline
    row = conn.execute(
        "SELECT expires_at - created_at, status FROM skiplock.all_jobs WHERE id = %s", (job,)
    ).fetchone()
    assert row == (timedelta(seconds=60), "scheduled")
    ids = app.enqueue_many([{"task": "t", "expires_in": 30}])
    conn.execute("UPDATE skiplock.jobs SET expires_at = now() - interval '1 second'")

    async def one_round() -> None:
        worker = Worker(app, listen=False, rescue_interval=0.1)
        runner = asyncio.create_task(worker.run())
        await asyncio.wait_for(worker.started.wait(), 30)
        for _ in range(200):
            if statuses(conn) == {job: "expired", ids[0]: "expired"}:
                break
            await asyncio.sleep(0.05)
        worker.stop()
        await runner

    asyncio.run(one_round())
    assert statuses(conn) == {job: "expired", ids[0]: "expired"}
    app.close()
