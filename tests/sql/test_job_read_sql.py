"""A job read by id carries `task_published` from one primary-key probe of
skiplock.tasks in the same statement; the list reads do not touch the registry."""

from __future__ import annotations

import json

import psycopg

from skiplock import store
from skiplock.store import JobFilter


def plan(conn: psycopg.Connection, call: store.Call[object]) -> str:
    rows = conn.execute(f"EXPLAIN (COSTS OFF) {call.sql}".encode(), call.params).fetchall()
    return "\n".join(row[0] for row in rows)


def test_get_job_probes_the_task_registry_by_its_primary_key(conn: psycopg.Connection) -> None:
    tasks = [{"name": f"task{i}"} for i in range(1000)]
    conn.execute("SELECT skiplock.publish_tasks(NULL, %s::jsonb)", (json.dumps(tasks),))
    specs = [{"task": f"task{i % 2000}"} for i in range(2000)]
    conn.execute("SELECT skiplock.enqueue_many(%s)", (json.dumps(specs),))
    conn.execute("ANALYZE")

    read = plan(conn, store.get_job(1500))

    assert "tasks_pkey on tasks" in read, read
    assert "Seq Scan on tasks" not in read, read
    assert store.get_job(1).run(conn).task_published is True  # type: ignore[union-attr]
    assert store.get_job(1999).run(conn).task_published is False  # type: ignore[union-attr]


def test_list_reads_leave_the_registry_alone(conn: psycopg.Connection) -> None:
    for call in (
        store.list_jobs(),
        store.list_jobs_page(JobFilter()),
        store.list_job_previews(JobFilter()),
    ):
        assert "skiplock.tasks" not in call.sql
    conn.execute("SELECT skiplock.enqueue('ghost')")
    (listed,) = store.list_jobs().run(conn)
    assert listed.task_published is None
