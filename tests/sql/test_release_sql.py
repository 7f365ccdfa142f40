"""release_jobs: a running job handed back unfinished, its attempt not counted; ready at
once (a worker shutting down) or due again after a delay (a worker without a handler for
its task), fenced by the claim's token."""

from __future__ import annotations

import uuid
from datetime import timedelta
from typing import Any

import psycopg
import pytest
from psycopg import errors
from test_sql_api import (
    T0,
    W1,
    W2,
    Connect,
    claim,
    enqueue,
    fail,
    listen,
    notifications_until_sentinel,
    one,
)


def release(
    conn: psycopg.Connection,
    worker: uuid.UUID,
    jobs: list[tuple[int, int]],
    delay: timedelta | None = None,
    now: Any = None,
) -> list[int]:
    rows = conn.execute(
        "SELECT * FROM skiplock.release_jobs(%s, %s, %s, %s, %s)",
        (worker, [i for i, _ in jobs], [a for _, a in jobs], delay, now),
    ).fetchall()
    return [r[0] for r in rows]


def job(conn: psycopg.Connection, job_id: int) -> tuple[Any, ...]:
    row = conn.execute(
        "SELECT status, attempt, worker_id, run_at FROM skiplock.all_jobs WHERE id = %s",
        (job_id,),
    ).fetchone()
    assert row is not None
    return tuple(row)


def test_a_delayed_release_is_due_after_the_delay_and_wakes_nobody(
    conn: psycopg.Connection, connect: Connect
) -> None:
    job_id = enqueue(conn, queue="reports")
    token = claim(conn, queues=["reports"], now=T0)
    assert token == [(job_id, 1)]
    listener = listen(connect, "skiplock_jobs")

    assert release(conn, W1, token, timedelta(minutes=5), T0) == [job_id]

    # not yet due: nobody is woken for it, and the attempt was not spent
    assert notifications_until_sentinel(listener, conn, "skiplock_jobs") == []
    assert job(conn, job_id) == ("scheduled", 0, None, T0 + timedelta(minutes=5))
    assert claim(conn, W2, queues=["reports"], now=T0 + timedelta(minutes=4)) == []
    assert claim(conn, W2, queues=["reports"], now=T0 + timedelta(minutes=5)) == [(job_id, 1)]


def test_a_release_without_a_delay_is_ready_at_once_and_wakes_the_workers(
    conn: psycopg.Connection, connect: Connect
) -> None:
    job_id = enqueue(conn, queue="reports")
    token = claim(conn, queues=["reports"])
    listener = listen(connect, "skiplock_jobs")

    assert release(conn, W1, token) == [job_id]

    assert notifications_until_sentinel(listener, conn, "skiplock_jobs") == ["reports"]
    status, attempt, worker, run_at = job(conn, job_id)
    assert (status, attempt, worker) == ("queued", 0, None)
    assert run_at <= one(conn, "SELECT now()")


def test_a_release_after_failed_attempts_reads_retrying_and_keeps_their_count(
    conn: psycopg.Connection,
) -> None:
    job_id = enqueue(conn, max_attempts=5)
    token = claim(conn, now=T0)
    assert fail(conn, W1, token, {"error": "x", "retry_in": 0}, T0) == [(job_id, "retrying")]
    token = claim(conn, now=T0 + timedelta(seconds=1))
    assert token == [(job_id, 2)]

    assert release(conn, W1, token, timedelta(minutes=1), T0 + timedelta(seconds=1)) == [job_id]

    status, attempt, _, _ = job(conn, job_id)
    assert (status, attempt) == ("retrying", 1)


@pytest.mark.parametrize("delay", [None, timedelta(minutes=1)])
def test_a_stale_token_changes_nothing(conn: psycopg.Connection, delay: timedelta | None) -> None:
    job_id = enqueue(conn)
    assert claim(conn, now=T0) == [(job_id, 1)]
    before = conn.execute("SELECT * FROM skiplock.jobs WHERE id = %s", (job_id,)).fetchone()

    for worker, attempt in [(W2, 1), (W1, 2), (W1, 0)]:
        assert release(conn, worker, [(job_id, attempt)], delay, T0) == []

    after = conn.execute("SELECT * FROM skiplock.jobs WHERE id = %s", (job_id,)).fetchone()
    assert after == before
    # and a job that is not running is never released, whoever asks
    assert release(conn, W1, [(job_id, 1)], delay, T0) == [job_id]
    assert release(conn, W1, [(job_id, 1)], delay, T0) == []


@pytest.mark.parametrize("delay", [None, timedelta(minutes=1)])
def test_a_released_job_whose_cancel_was_requested_ends_cancelled(
    conn: psycopg.Connection, delay: timedelta | None
) -> None:
    job_id = enqueue(conn)
    token = claim(conn)
    assert one(conn, "SELECT skiplock.cancel_job(%s)", (job_id,)) == "running"

    assert release(conn, W1, token, delay) == [job_id]

    assert job(conn, job_id)[0] == "cancelled"
    assert one(conn, "SELECT count(*) FROM skiplock.jobs WHERE id = %s", (job_id,)) == 0


def test_a_negative_delay_is_refused(conn: psycopg.Connection) -> None:
    job_id = enqueue(conn)
    token = claim(conn)
    with pytest.raises(errors.InvalidParameterValue, match="p_delay must not be negative"):
        release(conn, W1, token, timedelta(seconds=-1))
    assert job(conn, job_id)[:2] == ("running", 1)
