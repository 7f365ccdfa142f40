"""CLI for queues pause/resume, dead letters and schedules."""

from __future__ import annotations

import json

import psycopg
from click.testing import CliRunner

from skiplock.cli import main

W = "00000000-0000-0000-0000-0000000000ee"


def run(dsn: str, *args: str) -> tuple[int, str, str]:
    result = CliRunner().invoke(main, ["--dsn", dsn, *args])
    return result.exit_code, result.stdout, result.stderr


def make_dead(conn: psycopg.Connection, n: int, queue: str = "default") -> list[int]:
    ids = [
        conn.execute("SELECT skiplock.enqueue('t', queue => %s)", (queue,)).fetchone()[0]
        for _ in range(n)
    ]
    rows = conn.execute(
        "SELECT id, attempt FROM skiplock.claim_jobs(%s, ARRAY[%s], 100)", (W, queue)
    ).fetchall()
    conn.execute(
        "SELECT skiplock.fail_jobs(%s, %s::bigint[], %s::integer[], %s::jsonb[])",
        (
            W,
            [r[0] for r in rows],
            [r[1] for r in rows],
            ['{"error": "boom", "retry": false}'] * len(rows),
        ),
    )
    return ids


def test_queues_pause_and_resume(dsn: str, conn: psycopg.Connection) -> None:
    conn.execute("SELECT skiplock.enqueue('t', queue => 'mail')")
    assert run(dsn, "queues", "pause", "mail")[:2] == (0, "queue mail paused\n")
    code, out, _ = run(dsn, "queues", "--json")
    assert code == 0 and json.loads(out)[0]["paused"] is True
    assert run(dsn, "queues", "resume", "mail")[:2] == (0, "queue mail resumed\n")
    code, _, err = run(dsn, "queues", "pause", "nope")
    assert code == 1 and err.strip() == "error: queue nope not found"


def test_dead_letters_list_redrive_purge(dsn: str, conn: psycopg.Connection) -> None:
    first, *rest = make_dead(conn, 3)
    other = make_dead(conn, 2, queue="mail")
    code, out, _ = run(dsn, "dead-letters", "list", "--json")
    assert code == 0 and len(json.loads(out)) == 5
    assert "boom" in run(dsn, "dead-letters", "list")[1]
    assert run(dsn, "dead-letters", "redrive", str(first))[:2] == (0, f"job {first} queued again\n")
    assert run(dsn, "dead-letters", "redrive", "--queue", "default")[:2] == (
        0,
        "2 dead letters queued again\n",
    )
    assert run(dsn, "dead-letters", "redrive")[0] == 2
    assert run(dsn, "dead-letters", "redrive", "999999")[0] == 1
    assert run(dsn, "dead-letters", "purge")[0] == 2  # --yes is required
    assert run(dsn, "dead-letters", "purge", "--yes")[:2] == (0, "2 dead letters purged\n")
    statuses = dict(conn.execute("SELECT id, status FROM skiplock.all_jobs").fetchall())
    assert [statuses.get(i) for i in (first, *rest)] == ["queued"] * 3
    assert all(i not in statuses for i in other)


def test_schedules_lifecycle(dsn: str, conn: psycopg.Connection) -> None:
    # the tasks as a worker publishes them: schedules of unknown tasks are refused
    conn.execute("""SELECT skiplock.publish_tasks(NULL, '[{"name": "report"}, {"name": "r"}]')""")
    code, out, err = run(
        dsn,
        "schedules",
        "create",
        "nightly",
        "--cron",
        "0 3 * * *",
        "--task",
        "report",
        "--args",
        '{"full": true}',
        "--timezone",
        "Europe/Paris",
    )
    assert (code, out) == (0, "schedule nightly created\n"), err
    code, out, _ = run(dsn, "schedules", "list", "--json")
    (row,) = json.loads(out)
    assert (row["cron"], row["timezone"], row["args"]) == (
        "0 3 * * *",
        "Europe/Paris",
        {"full": True},
    )
    assert "Europe/Paris" in run(dsn, "schedules", "show", "nightly")[1]
    assert run(dsn, "schedules", "disable", "nightly")[:2] == (0, "schedule nightly disabled\n")
    assert run(dsn, "schedules", "enable", "nightly")[0] == 0
    code, _, err = run(dsn, "schedules", "create", "nightly", "--cron", "@daily", "--task", "r")
    assert code == 1 and "already exists" in err
    assert (
        run(dsn, "schedules", "create", "nightly", "--cron", "@daily", "--task", "r", "--replace")[
            0
        ]
        == 0
    )
    code, _, err = run(dsn, "schedules", "create", "bad", "--cron", "61 * * * *", "--task", "r")
    assert code == 1 and err.startswith("error: cron must be") and "Traceback" not in err
    code, _, err = run(
        dsn,
        "schedules",
        "create",
        "bad",
        "--cron",
        "@daily",
        "--task",
        "r",
        "--timezone",
        "Mars/Base",
    )
    assert code == 1 and "timezone" in err
    assert run(dsn, "schedules", "delete", "nightly")[0] == 0
    code, _, err = run(dsn, "schedules", "show", "nightly")
    assert code == 1 and err.strip() == "error: schedule nightly not found"
