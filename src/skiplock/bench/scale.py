"""A database the size of a busy install, built in a minute or two: `history` finished
jobs over the last 14 days, `queued` ready jobs in three queues, and around them running,
waiting, scheduled and dead jobs, workers, schedules, a workflow, audit rows, a job's
log and 7 days of metrics history. The dashboard's row-and-buffer budget tests
(tests/dashboard/test_page_budgets.py) and bench/dashboard_pages.py read it.

Rows are written with set-based INSERTs under session_replication_role = replica, so
no trigger fires (counters, NOTIFY, webhooks, the defaults of a job's priority and
attempts): every column a trigger would fill is given, and the counters that matter
(queue_totals) are written directly."""

from __future__ import annotations

from typing import Any

import psycopg

QUEUES = ("default", "emails", "media")
TASKS = ("send_email", "resize_image", "export_csv", "call_webhook", "build_report")
DEAD = 10_000


def dashboard_pages(history: int) -> list[str]:
    """The dashboard's pages as a busy install's operator opens them: every page, the
    jobs list under each kind of filter (one that matches nothing searches a whole
    window), jobs in the history, the hot table and the dead letters."""
    return [
        "/",
        "/?range=24h",
        "/?range=7d",
        "/?range=7d&queue=media",
        "/jobs",
        "/jobs?status=succeeded",
        "/jobs?status=cancelled&queue=media",
        "/jobs?status=failed",
        "/jobs?status=queued&queue=emails",
        "/jobs?task=export_csv",
        "/jobs?tag=nightly",
        "/jobs?tag=no-such-tag",
        "/jobs?args=user_id%3D4242",
        "/jobs?meta=%7B%22no%22%3A+%22such%22%7D",
        "/jobs?created_after=2000-01-01T00:00&created_before=2000-01-02T00:00",
        f"/jobs?before={history // 2}",
        f"/jobs?before={history // 2}&task=no_such_task",
        f"/jobs/{history}",
        f"/jobs/{history // 2}",
        f"/jobs/{history + 1}",
        "/queues",
        "/dead-letters",
        "/dead-letters?queue=media",
        "/workers",
        "/schedules",
        "/workflows",
        "/tasks",
        "/audit",
    ]


def load_scale_data(conn: psycopg.Connection[Any], *, history: int, queued: int) -> None:
    """Fill a migrated, empty skiplock schema (see the module's docstring)."""
    run = conn.execute
    run("SET session_replication_role = replica")
    run("INSERT INTO skiplock.queues (name) SELECT unnest(%s::text[])", (list(QUEUES),))
    run(
        # one finished job every few hundred ms over 14 days, ids 1..history
        "INSERT INTO skiplock.job_history (id, task, args, queue, priority, status, attempt,"
        " max_attempts, tags, meta, errors, created_at, started_at, finished_at, result)"
        " SELECT g, (%(tasks)s::text[])[1 + g %% 5],"
        "        jsonb_build_object('user_id', g %% 100000, 'n', g),"
        "        (%(queues)s::text[])[1 + g %% 3], 0,"
        "        CASE WHEN g %% 50 = 0 THEN 'cancelled'::skiplock.finished_status"
        "             ELSE 'succeeded' END,"
        "        1, 3, CASE WHEN g %% 10 = 0 THEN '{nightly}'::text[] ELSE '{}' END,"
        "        '{}', '[]', t - interval '2 s', t - interval '1 s', t, '{\"ok\": true}'"
        " FROM generate_series(1, %(n)s) g,"
        "      LATERAL (SELECT now() - interval '14 days'"
        "                      + (g::float8 / %(n)s) * interval '14 days' AS t) at",
        {"tasks": list(TASKS), "queues": list(QUEUES), "n": history},
    )
    run(
        "INSERT INTO skiplock.dead_jobs (id, task, args, queue, priority, attempt,"
        " max_attempts, tags, meta, errors, created_at, started_at, failed_at)"
        " SELECT %(base)s + g, (%(tasks)s::text[])[1 + g %% 5], jsonb_build_object('n', g),"
        "        (%(queues)s::text[])[1 + g %% 3], 0, 3, 3, '{}', '{}',"
        "        jsonb_build_array(jsonb_build_object('attempt', 3, 'error', 'boom')),"
        "        now() - interval '1 day', now() - interval '1 day', now() - g * interval '1 s'"
        " FROM generate_series(1, %(dead)s) g",
        {"dead": DEAD, "base": history, "tasks": list(TASKS), "queues": list(QUEUES)},
    )
    run(
        "SELECT setval(pg_get_serial_sequence('skiplock.jobs', 'id'), %s)",
        (history + DEAD,),
    )
    worker = run(
        "INSERT INTO skiplock.workers (id, host, pid, queues, concurrency, version)"
        " VALUES (gen_random_uuid(), 'scale', 1, %s, 100, 'scale') RETURNING id",
        (list(QUEUES),),
    ).fetchone()
    assert worker is not None
    run(
        "INSERT INTO skiplock.jobs (task, args, queue, priority, max_attempts, run_at,"
        " created_at)"
        " SELECT (%(tasks)s::text[])[1 + g %% 5], jsonb_build_object('user_id', g %% 100000),"
        "        (%(queues)s::text[])[1 + g %% 3], (g %% 3)::smallint, 20,"
        "        now() - interval '1 hour' + (g::float8 / %(n)s) * interval '50 minutes',"
        "        now() - interval '1 hour'"
        " FROM generate_series(1, %(n)s) g",
        {"tasks": list(TASKS), "queues": list(QUEUES), "n": queued},
    )
    run(
        "INSERT INTO skiplock.jobs (task, queue, priority, max_attempts, run_at, attempt,"
        " errors)"
        " SELECT 'send_email', 'emails', 0, 20, now() + g * interval '1 s', g % 2,"
        '        CASE WHEN g % 2 = 1 THEN \'[{"attempt": 1, "error": "later"}]\'::jsonb'
        "             ELSE '[]' END"
        " FROM generate_series(1, 10000) g"
    )
    run(
        "INSERT INTO skiplock.jobs (task, queue, priority, max_attempts, state, attempt,"
        " started_at, worker_id, lease_expires_at)"
        " SELECT 'resize_image', 'media', 0, 20, 'running', 1, now(), %s,"
        "        now() + interval '1 hour'"
        " FROM generate_series(1, 100) g",
        (worker[0],),
    )
    run(
        "INSERT INTO skiplock.jobs (task, queue, priority, max_attempts, state, depends_on)"
        " SELECT 'build_report', 'default', 0, 20, 'waiting', ARRAY[%s::bigint]"
        " FROM generate_series(1, 5000) g",
        (history + 1,),
    )
    run(
        "INSERT INTO skiplock.queue_totals (queue, status, total)"
        " SELECT queue, status::text, count(*) FROM skiplock.job_history"
        " WHERE id > %s GROUP BY 1, 2",
        (max(0, history - 100_000),),
    )
    run(
        "INSERT INTO skiplock.audit_log (actor, action, target, status, detail)"
        " SELECT 'admin', 'POST /queues/default/pause', 'queues/default', 200, '{}'"
        " FROM generate_series(1, 1000)"
    )
    run(
        "INSERT INTO skiplock.job_logs (job_id, attempt, worker_id, at, level, logger, message)"
        " SELECT %s, 1, %s, now(), 'info', 'app', 'line ' || g FROM generate_series(1, 500) g",
        (history, worker[0]),
    )
    _metrics_history(conn)
    run("SET session_replication_role = DEFAULT")
    for table in ("jobs", "job_history", "dead_jobs", "job_metrics_minutes", "queue_depth_minutes"):
        run(f"ANALYZE skiplock.{table}")


def _metrics_history(conn: psycopg.Connection[Any]) -> None:
    """7 days of folded per-minute job metrics and depth samples, and their hours."""
    conn.execute(
        "INSERT INTO skiplock.job_metrics_minutes (minute, queue, task, folded, succeeded,"
        " failed, run_buckets, run_seconds, wait_buckets, wait_seconds)"
        " SELECT m, q, t, true, 40, 1, %(runs)s, 12.5, %(waits)s, 0.8"
        " FROM generate_series(date_trunc('minute', now()) - interval '7 days',"
        "                      date_trunc('minute', now()), interval '1 minute') m,"
        "      unnest(%(queues)s::text[]) q, unnest(%(tasks)s::text[]) t",
        {
            "queues": list(QUEUES),
            "tasks": list(TASKS),
            "runs": _buckets(conn, "skiplock.job_duration_bounds()"),
            "waits": _buckets(conn, "skiplock.job_wait_bounds()"),
        },
    )
    conn.execute(
        "INSERT INTO skiplock.job_metrics_hours (hour, queue, task, succeeded, failed,"
        " run_buckets, run_seconds, wait_buckets, wait_seconds)"
        " SELECT date_trunc('hour', minute), queue, task, sum(succeeded), sum(failed),"
        "        max(run_buckets), sum(run_seconds), max(wait_buckets),"
        "        sum(wait_seconds)"
        " FROM skiplock.job_metrics_minutes GROUP BY 1, 2, 3"
    )
    conn.execute(
        "INSERT INTO skiplock.queue_depth_minutes (minute, queue, ready, oldest_ready_seconds)"
        " SELECT m, q, 333333, 3600"
        " FROM generate_series(date_trunc('minute', now()) - interval '7 days',"
        "                      date_trunc('minute', now()), interval '1 minute') m,"
        "      unnest(%s::text[]) q",
        (list(QUEUES),),
    )
    conn.execute(
        "INSERT INTO skiplock.queue_depth_hours (hour, queue, ready, oldest_ready_seconds)"
        " SELECT date_trunc('hour', minute), queue, max(ready), max(oldest_ready_seconds)"
        " FROM skiplock.queue_depth_minutes GROUP BY 1, 2"
    )


def _buckets(conn: psycopg.Connection[Any], bounds: str) -> list[int]:
    """A histogram over `bounds` with every observation in its middle bucket."""
    row = conn.execute(f"SELECT cardinality({bounds})").fetchone()
    assert row is not None
    size = row[0] + 1
    return [40 if i == size // 2 else 0 for i in range(size)]
