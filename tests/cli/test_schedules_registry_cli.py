"""`skiplock schedules create` and the task registry: an unknown task is refused unless
--allow-unregistered-task, and options left out take the task's published defaults."""

from __future__ import annotations

import json

import psycopg
from click.testing import CliRunner

from skiplock.cli import main


def run(dsn: str, *args: str) -> tuple[int, str, str]:
    result = CliRunner().invoke(main, ["--dsn", dsn, *args])
    return result.exit_code, result.stdout, result.stderr


def test_an_unknown_task_is_refused_unless_allowed(dsn: str, conn: psycopg.Connection) -> None:
    create = ("schedules", "create", "s", "--cron", "@hourly", "--task", "nobody.serves.this")
    code, out, err = run(dsn, *create)
    assert code != 0 and out == ""
    assert err.startswith("error: unknown task nobody.serves.this: no worker has published it")
    assert err.count("\n") == 1
    assert conn.execute("SELECT count(*) FROM skiplock.schedules").fetchone() == (0,)
    code, out, err = run(dsn, *create, "--allow-unregistered-task")
    assert (code, out) == (0, "schedule s created\n"), err


def test_options_left_out_take_the_published_defaults(dsn: str, conn: psycopg.Connection) -> None:
    task = {
        "name": "mail.digest",
        "queue": "emails",
        "defaults": {"priority": 4, "max_attempts": 2},
    }
    conn.execute("SELECT skiplock.publish_tasks(NULL, %s::jsonb)", (json.dumps([task]),))
    assert run(dsn, "schedules", "create", "d", "--cron", "@daily", "--task", "mail.digest")[0] == 0
    assert (
        run(
            dsn,
            "schedules",
            "create",
            "e",
            "--cron",
            "@daily",
            "--task",
            "mail.digest",
            "--queue",
            "default",
            "--priority",
            "0",
        )[0]
        == 0
    )
    rows = conn.execute(
        "SELECT name, queue, priority, max_attempts FROM skiplock.schedules ORDER BY name"
    ).fetchall()
    assert rows == [("d", "emails", 4, 2), ("e", "default", 0, 2)]


def test_run_enqueues_the_schedules_job_now(dsn: str, conn: psycopg.Connection) -> None:
    create = ("schedules", "create", "s", "--cron", "@hourly", "--task", "t")
    assert run(dsn, *create, "--allow-unregistered-task")[0] == 0
    code, out, err = run(dsn, "schedules", "run", "s")
    row = conn.execute("SELECT id FROM skiplock.jobs WHERE meta->>'schedule' = 's'").fetchone()
    assert row is not None
    assert (code, out, err) == (0, f"schedule s: job {row[0]} enqueued\n", "")
    code, out, err = run(dsn, "schedules", "run", "nope")
    assert (code, out, err) == (1, "", "error: schedule nope not found\n")
