"""A published task's defaults apply however a job arrives: enqueue, enqueue_many,
insert_jobs, COPY and a plain INSERT (sql/functions/030_enqueue.sql)."""

from __future__ import annotations

import json
from datetime import timedelta
from typing import Any

import psycopg
import pytest

from skiplock import store
from skiplock.store import EnqueueRequest

DEFAULTS = {
    "priority": 7,
    "max_attempts": 3,
    "retry_policy": {"kind": "fixed", "base": 5},
    "timeout": 30,
    "tags": ["mail"],
    "meta": {"team": "growth"},
    "callback_url": "https://example.com/done",
}
COLUMNS = "queue, priority, max_attempts, retry_policy, timeout, tags, meta, callback_url"
PUBLISHED = (
    "emails",
    7,
    3,
    {"kind": "fixed", "base": 5},
    timedelta(seconds=30),
    ["mail"],
    {"team": "growth"},
    "https://example.com/done",
)
BUILT_IN = ("default", 0, 20, None, None, [], {}, None)


def publish(conn: psycopg.Connection, defaults: dict[str, Any] = DEFAULTS) -> None:
    task = {"name": "send_email", "queue": "emails", "defaults": defaults}
    conn.execute("SELECT skiplock.publish_tasks(NULL, %s::jsonb)", (json.dumps([task]),))


def job(conn: psycopg.Connection, job_id: int) -> tuple[Any, ...]:
    row = conn.execute(f"SELECT {COLUMNS} FROM skiplock.jobs WHERE id = %s", (job_id,)).fetchone()
    assert row is not None
    return tuple(row)


def test_enqueue_takes_the_published_defaults(conn: psycopg.Connection) -> None:
    publish(conn)
    job_id = conn.execute("SELECT skiplock.enqueue('send_email', '{}')").fetchone()[0]
    assert job(conn, job_id) == PUBLISHED
    assert conn.execute(
        "SELECT defaults FROM skiplock.list_tasks(ARRAY['send_email'])"
    ).fetchone() == (DEFAULTS,)


def test_a_plain_insert_takes_the_published_defaults(conn: psycopg.Connection) -> None:
    publish(conn)
    conn.execute("INSERT INTO skiplock.jobs (task, args) VALUES ('send_email', '{}'), ('x', '{}')")
    rows = conn.execute(f"SELECT task, {COLUMNS} FROM skiplock.jobs ORDER BY id").fetchall()
    assert [tuple(r[1:]) for r in rows] == [PUBLISHED, BUILT_IN]
    # counted and registered under the resolved queue
    counts = conn.execute(
        "SELECT queue, task, n FROM skiplock.read_job_counts() WHERE event = 'created'"
        " ORDER BY task"
    ).fetchall()
    assert counts == [("emails", "send_email", 1), ("default", "x", 1)]
    assert conn.execute("SELECT 1 FROM skiplock.queues WHERE name = 'emails'").fetchone()


def test_enqueue_many_insert_jobs_and_copy_take_the_published_defaults(
    conn: psycopg.Connection,
) -> None:
    publish(conn)
    many = conn.execute(
        'SELECT skiplock.enqueue_many(\'[{"task": "send_email"}, {"task": "x"}]\')'
    ).fetchall()
    assert [job(conn, i) for (i,) in many] == [PUBLISHED, BUILT_IN]
    one_task = store.insert_jobs([EnqueueRequest("send_email")] * 2, []).run(conn)
    pairs = store.insert_jobs([EnqueueRequest("x"), EnqueueRequest("send_email")], []).run(conn)
    assert [job(conn, i) for i in one_task + pairs] == [PUBLISHED, PUBLISHED, BUILT_IN, PUBLISHED]
    copied = store.copy_jobs([EnqueueRequest("send_email")] * 3, []).run(conn)
    assert [job(conn, i) for i in copied] == [PUBLISHED] * 3


def test_given_beats_the_task_which_beats_the_queue(conn: psycopg.Connection) -> None:
    publish(conn, {"max_attempts": 3})
    conn.execute("SELECT skiplock.set_queue_defaults('emails', retry_policy => '{\"base\": 9}')")
    given = conn.execute(
        "SELECT skiplock.enqueue('send_email', '{}', queue => 'default', priority => 0,"
        " max_attempts => 20, tags => ARRAY['own'])"
    ).fetchone()[0]
    assert job(conn, given)[:3] == ("default", 0, 20)
    left_out = conn.execute("SELECT skiplock.enqueue('send_email', '{}')").fetchone()[0]
    # the task's max_attempts; its unset retry policy falls back to the queue's at use
    assert job(conn, left_out)[:4] == ("emails", 0, 3, None)
    plain = conn.execute(
        "INSERT INTO skiplock.jobs (task, queue, priority) VALUES ('send_email', 'default', 0)"
        " RETURNING id"
    ).fetchone()[0]
    assert job(conn, plain)[:3] == ("default", 0, 3)


@pytest.mark.parametrize("queue", ["emails", None])
def test_a_plain_insert_that_names_every_marker_is_taken_as_written(
    conn: psycopg.Connection, queue: str | None
) -> None:
    publish(conn)
    row = conn.execute(
        "INSERT INTO skiplock.jobs (task, queue, priority, max_attempts)"
        " VALUES ('send_email', coalesce(%s, 'q'), 1, 2) RETURNING id",
        (queue,),
    ).fetchone()
    assert row is not None
    assert job(conn, row[0])[:5] == (queue or "q", 1, 2, None, None)
