"""A queue's settings from SQL (sql/functions/070_operator.sql): configure_queue changes
some and keeps the others, set_queue_order and set_queue_defaults set theirs, and the
queue's max_attempts is what its jobs get at enqueue when neither they nor their task
give one, whichever way they come in (sql/functions/030_enqueue.sql)."""

from __future__ import annotations

import json
from datetime import timedelta
from pathlib import Path

import psycopg
import pytest

from skiplock import store
from skiplock.store import EnqueueRequest

SETTINGS = (
    "SELECT paused, max_running, rate_limit, rate_period, retry_policy, timeout,"
    " max_attempts, priority, weight FROM skiplock.queue_stats WHERE queue = %s"
)


def settings(conn: psycopg.Connection, queue: str) -> tuple:
    row = conn.execute(SETTINGS, (queue,)).fetchone()
    assert row is not None
    return tuple(row)


def test_configure_queue_changes_what_it_names_and_keeps_the_rest(
    conn: psycopg.Connection,
) -> None:
    conn.execute(
        'SELECT skiplock.configure_queue(\'critical\', \'{"max_running": 20, "rate_limit": 5,'
        ' "rate_period": 60, "retry_policy": {"kind": "fixed", "base": 3}, "timeout": "2 minutes",'
        ' "max_attempts": 6, "priority": 10, "weight": 3, "paused": true}\')'
    )
    assert settings(conn, "critical") == (
        True,
        20,
        5,
        timedelta(minutes=1),
        {"kind": "fixed", "base": 3},
        timedelta(minutes=2),
        6,
        10,
        3,
    )
    # left out: kept; null: cleared (priority, weight and paused to their built-in values)
    conn.execute(
        'SELECT skiplock.configure_queue(\'critical\', \'{"weight": null, "timeout": null,'
        ' "max_attempts": 2, "paused": null}\')'
    )
    assert settings(conn, "critical") == (
        False,
        20,
        5,
        timedelta(minutes=1),
        {"kind": "fixed", "base": 3},
        None,
        2,
        10,
        1,
    )


def test_configure_queue_resets_the_rate_window_only_when_the_rate_changes(
    conn: psycopg.Connection,
) -> None:
    conn.execute("SELECT skiplock.set_queue_limits('q', NULL, 10, interval '1 minute')")
    conn.execute(
        "UPDATE skiplock.queues SET rate_window_start = now(), rate_window_count = 4"
        " WHERE name = 'q'"
    )
    window = "SELECT rate_window_count FROM skiplock.queues WHERE name = 'q'"
    conn.execute("SELECT skiplock.configure_queue('q', '{\"priority\": 5}')")
    assert conn.execute(window).fetchone() == (4,)
    conn.execute("SELECT skiplock.configure_queue('q', '{\"rate_limit\": 20}')")
    assert conn.execute(window).fetchone() == (0,)


@pytest.mark.parametrize(
    ("given", "error", "message"),
    [
        ('{"size": 1, "colour": 2}', psycopg.errors.InvalidParameterValue, "colour, size"),
        ("[1]", psycopg.errors.InvalidParameterValue, "JSON object"),
        ('{"weight": 0}', psycopg.errors.CheckViolation, "queue_weight_in_range"),
        ('{"priority": 101}', psycopg.errors.CheckViolation, "queue_priority_in_range"),
        ('{"max_attempts": 0}', psycopg.errors.CheckViolation, "queue_max_attempts_positive"),
        ('{"rate_limit": 5}', psycopg.errors.CheckViolation, "rate_limit_complete"),
        ('{"retry_policy": {"kind": "random"}}', psycopg.errors.CheckViolation, "retry_policy"),
    ],
)
def test_configure_queue_refuses_bad_settings_and_writes_nothing(
    conn: psycopg.Connection, given: str, error: type[Exception], message: str
) -> None:
    with pytest.raises(error, match=message):
        conn.execute("SELECT skiplock.configure_queue('q', %s::jsonb)", (given,))
    conn.rollback()
    assert conn.execute("SELECT count(*) FROM skiplock.queues").fetchone() == (0,)


def test_set_queue_order_sets_both_and_null_gives_the_built_in_values(
    conn: psycopg.Connection,
) -> None:
    conn.execute("SELECT skiplock.set_queue_order('critical', p_priority => 10, p_weight => 3)")
    assert settings(conn, "critical")[-2:] == (10, 3)
    conn.execute("SELECT skiplock.set_queue_order('critical', p_weight => 2)")
    assert settings(conn, "critical")[-2:] == (0, 2)
    conn.execute("SELECT skiplock.set_queue_order('critical', NULL, NULL)")
    assert settings(conn, "critical")[-2:] == (0, 1)
    with pytest.raises(psycopg.errors.CheckViolation, match="queue_weight_in_range"):
        conn.execute("SELECT skiplock.set_queue_order('critical', 0, 1001)")


def test_queue_setters_wake_the_workers(conn: psycopg.Connection, dsn: str) -> None:
    with psycopg.connect(dsn, autocommit=True) as listener:
        listener.execute("LISTEN skiplock_jobs")
        conn.execute("SELECT skiplock.set_queue_order('q', 5, 2)")
        conn.execute("SELECT skiplock.set_queue_defaults('q', max_attempts => 4)")
        conn.execute("SELECT skiplock.configure_queue('r', '{\"paused\": false}')")
        conn.commit()
        payloads = [n.payload for n in listener.notifies(timeout=5, stop_after=3)]
    assert payloads == ["q", "q", "r"]


def test_set_queue_defaults_sets_all_three(conn: psycopg.Connection) -> None:
    conn.execute(
        "SELECT skiplock.set_queue_defaults('q', retry_policy => '{\"base\": 2}',"
        " timeout => interval '1 minute', max_attempts => 6)"
    )
    assert settings(conn, "q")[4:7] == ({"base": 2}, timedelta(minutes=1), 6)
    conn.execute("SELECT skiplock.set_queue_defaults('q', max_attempts => 3)")
    assert settings(conn, "q")[4:7] == (None, None, 3)


# ---- the queue's max_attempts at enqueue ------------------------------------------------


def attempts(conn: psycopg.Connection, ids: list[int]) -> list[int]:
    return [
        conn.execute("SELECT max_attempts FROM skiplock.jobs WHERE id = %s", (i,)).fetchone()[0]
        for i in ids
    ]


def test_every_way_in_takes_the_queues_max_attempts(conn: psycopg.Connection) -> None:
    conn.execute("SELECT skiplock.set_queue_defaults('mail', max_attempts => 6)")
    ids = [
        conn.execute(
            "INSERT INTO skiplock.jobs (task, queue) VALUES ('t', 'mail') RETURNING id"
        ).fetchone()[0],
        conn.execute("SELECT skiplock.enqueue('t', queue => 'mail')").fetchone()[0],
    ]
    ids += [
        i
        for (i,) in conn.execute(
            'SELECT skiplock.enqueue_many(\'[{"task": "t", "queue": "mail"},'
            ' {"task": "u", "queue": "mail", "unique_key": "k"}]\')'
        ).fetchall()
    ]
    ids += conn.execute(
        'SELECT skiplock.insert_jobs(\'[{}, {}]\', \'{"task": "t", "queue": "mail"}\')'
    ).fetchone()[0]
    ids += conn.execute(
        'SELECT skiplock.insert_jobs(\'[["t", {}], ["u", {}]]\', \'{"queue": "mail"}\')'
    ).fetchone()[0]
    ids += store.copy_jobs([EnqueueRequest("t", queue="mail")] * 2, [("queue", "mail")]).run(conn)
    assert attempts(conn, ids) == [6] * 10
    # another queue, and a queue that clears it: the built-in 20
    other = conn.execute("SELECT skiplock.enqueue('t')").fetchone()[0]
    conn.execute("SELECT skiplock.set_queue_defaults('mail')")
    cleared = conn.execute("SELECT skiplock.enqueue('t', queue => 'mail')").fetchone()[0]
    assert attempts(conn, [other, cleared]) == [20, 20]


def test_the_task_default_and_a_given_value_win_over_the_queue(
    conn: psycopg.Connection,
) -> None:
    conn.execute("SELECT skiplock.set_queue_defaults('mail', max_attempts => 6)")
    task = {"name": "send", "queue": "mail", "defaults": {"max_attempts": 3}}
    conn.execute("SELECT skiplock.publish_tasks(NULL, %s::jsonb)", (json.dumps([task]),))
    by_task = [
        conn.execute("INSERT INTO skiplock.jobs (task) VALUES ('send') RETURNING id").fetchone()[0],
        conn.execute("SELECT skiplock.enqueue('send')").fetchone()[0],
        *conn.execute("SELECT skiplock.insert_jobs('[{}]', '{\"task\": \"send\"}')").fetchone()[0],
        *store.copy_jobs([EnqueueRequest("send")] * 2, []).run(conn),
    ]
    by_task += [i for (i,) in conn.execute('SELECT skiplock.enqueue_many(\'[{"task": "send"}]\')')]
    assert attempts(conn, by_task) == [3] * 6
    given = [
        conn.execute(
            "INSERT INTO skiplock.jobs (task, max_attempts) VALUES ('send', 9) RETURNING id"
        ).fetchone()[0],
        conn.execute("SELECT skiplock.enqueue('t', queue => 'mail', max_attempts => 9)").fetchone()[
            0
        ],
        *conn.execute(
            'SELECT skiplock.insert_jobs(\'[{}]\', \'{"task": "t", "queue": "mail",'
            ' "max_attempts": 9}\')'
        ).fetchone()[0],
        *store.copy_jobs(
            [EnqueueRequest("t", queue="mail", max_attempts=9)] * 2,
            [("queue", "mail"), ("max_attempts", 9)],
        ).run(conn),
    ]
    given += [
        i
        for (i,) in conn.execute(
            'SELECT skiplock.enqueue_many(\'[{"task": "send", "max_attempts": 9}]\')'
        )
    ]
    assert attempts(conn, given) == [9] * 6


def test_the_built_in_attempts_are_written_once() -> None:
    """The built-in 20 lives in _default_max_attempts alone: every way in asks it."""
    text = (Path(__file__).parents[2] / "sql" / "functions" / "030_enqueue.sql").read_text()
    code = "\n".join(line.split("--", 1)[0] for line in text.splitlines())
    assert code.count(", 20)") == 1
    assert code.count("_default_max_attempts(") == 5  # its definition and four callers


def test_the_queues_lookup_is_inlined_into_the_callers_query(conn: psycopg.Connection) -> None:
    """A per-job path pays an index probe for the queue's max_attempts, not a function
    call (docs/performance.md, "A queue's max_attempts at enqueue")."""
    plan = "\n".join(
        row[0]
        for row in conn.execute(
            "EXPLAIN (VERBOSE) SELECT o.max_attempts FROM jsonb_array_elements('[[\"t\", {}]]')"
            " j CROSS JOIN LATERAL (SELECT * FROM skiplock._job_options('{}', j.value ->> 0)"
            " OFFSET 0) o"
        )
    )
    assert "queues_pkey" in plan, plan
    assert "_default_max_attempts" not in plan, plan
