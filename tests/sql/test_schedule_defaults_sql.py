"""create_schedule resolves what it is not given as an enqueue does: the task's published
defaults, then the queue's max_attempts, then the built-in values."""

from __future__ import annotations

from typing import Any

import psycopg


def schedule(conn: psycopg.Connection[Any], name: str) -> tuple[Any, ...]:
    row = conn.execute(
        "SELECT queue, priority, max_attempts FROM skiplock.schedules WHERE name = %s", (name,)
    ).fetchone()
    assert row is not None
    return tuple(row)


def test_left_out_options_come_from_the_task_then_the_queue_then_built_in(
    conn: psycopg.Connection[Any],
) -> None:
    conn.execute("SELECT skiplock.create_schedule('plain', '0 2 * * *', 'unknown.task')")
    assert schedule(conn, "plain") == ("default", 0, 20)

    conn.execute(
        "SELECT skiplock.publish_tasks(NULL, %s::jsonb)",
        ('[{"name": "backup", "queue": "maintenance", "defaults": {"priority": 5}}]',),
    )
    conn.execute("SELECT skiplock.set_queue_defaults('maintenance', max_attempts => 3)")
    conn.execute("SELECT skiplock.create_schedule('nightly', '0 2 * * *', 'backup')")
    assert schedule(conn, "nightly") == ("maintenance", 5, 3)

    conn.execute(
        "SELECT skiplock.create_schedule('given', '0 2 * * *', 'backup', p_queue => 'other',"
        " p_priority => -1, p_max_attempts => 7)"
    )
    assert schedule(conn, "given") == ("other", -1, 7)


def test_run_schedule_enqueues_now_and_keeps_the_next_run(conn: psycopg.Connection[Any]) -> None:
    conn.execute("SELECT skiplock.create_schedule('nightly', '0 2 * * *', 't')")
    conn.execute("SELECT skiplock.set_schedule_next_run('nightly', '2031-01-01 02:00+00')")
    row = conn.execute("SELECT skiplock.run_schedule('nightly'), now()").fetchone()
    assert row is not None
    job_id, now = row
    job = conn.execute(
        "SELECT task, meta->>'schedule', (meta->>'fire_at')::timestamptz FROM skiplock.jobs"
        " WHERE id = %s",
        (job_id,),
    ).fetchone()
    assert job == ("t", "nightly", now)
    schedule = conn.execute(
        "SELECT next_run_at, last_run_at, last_job_id FROM skiplock.schedules"
        " WHERE name = 'nightly'"
    ).fetchone()
    assert schedule is not None
    assert schedule[0].year == 2031 and schedule[1:] == (now, job_id)
    assert conn.execute("SELECT skiplock.run_schedule('nope')").fetchone() == (None,)
