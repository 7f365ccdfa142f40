"""A queue's settings from Python: App.configure_queue, set_queue_limits,
set_queue_defaults and set_queue_order check each value by its declaration
(skiplock/queue_settings.py), and a queue's max_attempts reaches the jobs App enqueues,
by any path."""

from __future__ import annotations

from datetime import timedelta
from typing import Any

import psycopg
import pytest

import skiplock
from skiplock import RetryPolicy, store
from skiplock.errors import ConfigError

SETTINGS = (
    "SELECT paused, max_running, rate_limit, rate_period, retry_policy, timeout,"
    " max_attempts, priority, weight FROM skiplock.queues WHERE name = %s"
)


def settings(conn: psycopg.Connection, queue: str) -> tuple[Any, ...] | None:
    row = conn.execute(SETTINGS, (queue,)).fetchone()
    return None if row is None else tuple(row)


def test_each_setter_sets_its_own(app: skiplock.App, conn: psycopg.Connection) -> None:
    app.set_queue_order("q", priority="critical", weight=3)
    app.set_queue_defaults("q", retry_policy=RetryPolicy.fixed(5), timeout="2m", max_attempts=6)
    app.set_queue_limits("q", max_running=4, rate_limit=10, rate_period=60)
    assert settings(conn, "q") == (
        False,
        4,
        10,
        timedelta(minutes=1),
        RetryPolicy.fixed(5).to_json(),
        timedelta(minutes=2),
        6,
        100,
        3,
    )
    app.set_queue_order("q", weight=2)
    app.set_queue_defaults("q", max_attempts=7)
    assert settings(conn, "q") == (
        False,
        4,
        10,
        timedelta(minutes=1),
        None,
        None,
        7,
        0,
        2,
    )


def test_configure_queue_keeps_what_it_is_not_given(
    app: skiplock.App, conn: psycopg.Connection
) -> None:
    app.configure_queue("q", paused=True, priority=5, timeout=timedelta(seconds=30))
    app.configure_queue("q", weight=4, timeout=None)
    assert settings(conn, "q") == (True, None, None, None, None, None, None, 5, 4)


@pytest.mark.parametrize(
    ("call", "field"),
    [
        (lambda app: app.set_queue_order("q", priority=101), "priority"),
        (lambda app: app.set_queue_order("q", priority="urgent"), "priority"),
        (lambda app: app.set_queue_order("q", weight=0), "weight"),
        (lambda app: app.set_queue_defaults("q", max_attempts=0), "max_attempts"),
        (lambda app: app.set_queue_defaults("q", timeout=0), "timeout"),
        (lambda app: app.set_queue_limits("q", max_running=0), "max_running"),
        (lambda app: app.set_queue_limits("q", rate_limit=5), "rate_period"),
        (lambda app: app.configure_queue("q", retry_policy={"kind": "random"}), "retry_policy"),
        (lambda app: app.configure_queue("q", weight=2, size=3), "size"),
    ],
)
def test_a_bad_value_is_a_config_error_naming_it(
    app: skiplock.App, conn: psycopg.Connection, call: Any, field: str
) -> None:
    with pytest.raises(ConfigError, match=field):
        call(app)
    assert settings(conn, "q") is None


def test_app_enqueues_take_the_queues_max_attempts_on_every_path(
    app: skiplock.App, conn: psycopg.Connection
) -> None:
    app.set_queue_defaults("mail", max_attempts=6)
    copied = [{"task": "t", "queue": "mail"}] * (store.INSERT_MAX_JOBS + 1)
    assert isinstance(store.enqueue_many(app._requests(copied)), store.CopyCall)
    ids = [
        app.enqueue("t", queue="mail"),
        *app.enqueue_many([{"task": "t", "queue": "mail"}] * 3),  # one INSERT
        *app.enqueue_many(
            [{"task": "t", "queue": "mail"}, {"task": "t", "queue": "mail", "delay": 5}]
        ),  # enqueue_many
        *app.enqueue_many(copied),  # COPY
    ]
    rows = conn.execute(
        "SELECT max_attempts, count(*) FROM skiplock.jobs WHERE id = ANY(%s) GROUP BY 1", (ids,)
    ).fetchall()
    assert rows == [(6, len(ids))]

    @app.task(name="send", queue="mail", max_attempts=2)
    def send() -> None:
        pass

    given = [
        app.enqueue("send"),
        app.enqueue("t", queue="mail", max_attempts=9),
        *app.enqueue_many([{"task": "send"}] * (store.INSERT_MAX_JOBS + 1)),
    ]
    rows = conn.execute(
        "SELECT max_attempts, count(*) FROM skiplock.jobs WHERE id = ANY(%s) GROUP BY 1 ORDER BY 1",
        (given,),
    ).fetchall()
    assert rows == [(2, len(given) - 1), (9, 1)]
