"""The task registry and the job counters (sql/functions/110_registry.sql)."""

from __future__ import annotations

import json
import uuid
from datetime import datetime, timedelta, timezone
from typing import Any

import psycopg
import pytest

W1 = uuid.UUID("00000000-0000-4000-8000-0000000000b1")
W2 = uuid.UUID("00000000-0000-4000-8000-0000000000b2")
T0 = datetime(2030, 1, 1, tzinfo=timezone.utc)


def register(conn: psycopg.Connection, worker: uuid.UUID) -> None:
    conn.execute("SELECT skiplock.register_worker(%s, 'h', 1, ARRAY['default'], 1, 'v')", (worker,))


def publish(conn: psycopg.Connection, worker: uuid.UUID | None, tasks: list[Any], **kw: Any) -> int:
    now = kw.get("now")
    return conn.execute(
        "SELECT skiplock.publish_tasks(%s, %s::jsonb, %s)", (worker, json.dumps(tasks), now)
    ).fetchone()[0]


def tasks(conn: psycopg.Connection, names: list[str] | None = None) -> list[tuple[Any, ...]]:
    return conn.execute(
        "SELECT name, queue, description, args_schema, first_seen_at, last_seen_at, workers"
        " FROM skiplock.list_tasks(%s)",
        (names,),
    ).fetchall()


def test_publish_is_an_idempotent_upsert_keeping_first_seen(conn: psycopg.Connection) -> None:
    register(conn, W1)
    schema = {"type": "object", "required": ["to"]}
    spec = {"name": "send", "queue": "emails", "description": "Send.", "args_schema": schema}
    assert publish(conn, W1, [spec, {"name": "plain"}], now=T0) == 2
    assert publish(conn, W1, [spec, {"name": "plain"}], now=T0 + timedelta(hours=1)) == 2
    rows = {row[0]: row for row in tasks(conn)}
    assert set(rows) == {"plain", "send"}
    _, queue, description, args_schema, first, last, workers = rows["send"]
    assert (queue, description, args_schema) == ("emails", "Send.", schema)
    assert first == T0 and last == T0 + timedelta(hours=1)
    assert workers == [W1]
    assert rows["plain"][1:4] == ("default", "", None)


def test_latest_publisher_wins_and_gone_workers_drop_out(conn: psycopg.Connection) -> None:
    register(conn, W1)
    register(conn, W2)
    publish(conn, W1, [{"name": "send", "description": "old"}])
    publish(conn, W2, [{"name": "send", "description": "new", "args_schema": True}])
    row = tasks(conn, ["send"])[0]
    assert row[2:4] == ("new", True) and sorted(row[6]) == [W1, W2]
    conn.execute("SELECT skiplock.unregister_worker(%s)", (W1,))
    publish(conn, W2, [{"name": "send"}])
    assert conn.execute("SELECT worker_ids FROM skiplock.tasks").fetchone()[0] == [W2]
    assert tasks(conn, ["nope"]) == []


def test_last_seen_follows_the_heartbeats_of_live_workers(conn: psycopg.Connection) -> None:
    register(conn, W1)
    register(conn, W2)
    publish(conn, W1, [{"name": "send"}], now=T0)
    publish(conn, None, [{"name": "orphan"}], now=T0)
    beat = T0 + timedelta(days=3)
    conn.execute("UPDATE skiplock.workers SET last_heartbeat_at = %s WHERE id = %s", (beat, W1))
    conn.execute(
        "UPDATE skiplock.workers SET last_heartbeat_at = %s WHERE id = %s",
        (beat + timedelta(seconds=5), W2),  # alive, but not serving `send`
    )

    def seen(at: datetime) -> dict[str, tuple[datetime, list[uuid.UUID]]]:
        rows = conn.execute(
            "SELECT name, last_seen_at, workers FROM skiplock.list_tasks(p_now => %s)", (at,)
        ).fetchall()
        return {name: (last, workers) for name, last, workers in rows}

    # W1 heard from 30 s ago: the task was seen then, not three days ago at its publish.
    assert seen(beat + timedelta(seconds=30)) == {"orphan": (T0, []), "send": (beat, [W1])}
    # W1 silent for over a minute: no longer live, so the published time stands again.
    assert seen(beat + timedelta(minutes=2)) == {"orphan": (T0, []), "send": (T0, [])}
    # A later publish than any heartbeat wins.
    publish(conn, W1, [{"name": "send"}], now=beat + timedelta(minutes=1))
    assert seen(beat + timedelta(seconds=30))["send"] == (beat + timedelta(minutes=1), [W1])


def test_bad_publications_raise_and_change_nothing(conn: psycopg.Connection) -> None:
    with pytest.raises(psycopg.errors.CheckViolation):
        publish(conn, None, [{"name": "bad name!"}])
    with pytest.raises(psycopg.errors.CheckViolation):
        publish(conn, None, [{"name": "t", "args_schema": [1]}])
    with pytest.raises(psycopg.errors.NotNullViolation):
        publish(conn, None, [{"queue": "q"}])
    assert tasks(conn) == []


def test_forget_task(conn: psycopg.Connection) -> None:
    publish(conn, None, [{"name": "t"}])
    assert conn.execute("SELECT skiplock.forget_task('t')").fetchone()[0] is True
    assert conn.execute("SELECT skiplock.forget_task('t')").fetchone()[0] is False


def counts(conn: psycopg.Connection) -> dict[tuple[str, str, str], int]:
    rows = conn.execute(
        "SELECT queue, task, event, n FROM skiplock.read_job_counts()"
        " WHERE event NOT IN ('duration', 'wait')"
    ).fetchall()
    return {(q, t, e): n for q, t, e, n in rows}


def test_counters_follow_every_outcome_by_queue_and_task(conn: psycopg.Connection) -> None:
    jobs = [{"task": "a"}, {"task": "a"}, {"task": "b", "queue": "q"}, {"task": "c"}]
    ids = [r[0] for r in conn.execute("SELECT skiplock.enqueue_many(%s)", (json.dumps(jobs),))]
    conn.execute("INSERT INTO skiplock.jobs (task) VALUES ('raw')")
    claimed = conn.execute(
        "SELECT id FROM skiplock.claim_jobs(%s, ARRAY['default', 'q'], 10)", (W1,)
    ).fetchall()
    assert len(claimed) == 5
    a1, a2, b, c = ids
    conn.execute(
        "SELECT skiplock.complete_jobs(%s, %s::bigint[], '{1,1}', '{null,null}')", (W1, [a1, b])
    )
    conn.execute(  # a2 will be retried; c goes to the dead letters
        "SELECT skiplock.fail_jobs(%s, %s::bigint[], '{1,1}', %s::jsonb[])",
        (W1, [a2, c], ['{"error": "x"}', '{"error": "y", "retry": false}']),
    )
    conn.execute("SELECT skiplock.cancel_job(%s)", (a2,))
    assert counts(conn) == {
        ("default", "a", "created"): 2,
        ("default", "a", "succeeded"): 1,
        ("default", "a", "retried"): 1,
        ("default", "a", "cancelled"): 1,
        ("q", "b", "created"): 1,
        ("q", "b", "succeeded"): 1,
        ("default", "c", "created"): 1,
        ("default", "c", "failed"): 1,
        ("default", "raw", "created"): 1,
    }


def test_durations_fill_histogram_buckets(conn: psycopg.Connection) -> None:
    conn.execute("SELECT skiplock.enqueue('a')")
    conn.execute("SELECT skiplock.enqueue('a')")
    (j1,), (j2,) = conn.execute(
        "SELECT id FROM skiplock.claim_jobs(%s, ARRAY['default'], 2, p_now => %s) ORDER BY id",
        (W1, T0),
    ).fetchall()
    conn.execute(
        "SELECT skiplock.complete_jobs(%s, ARRAY[%s]::bigint[], '{1}', '{null}', %s)",
        (W1, j1, T0 + timedelta(seconds=0.2)),
    )
    conn.execute(
        "SELECT skiplock.fail_jobs(%s, ARRAY[%s]::bigint[], '{1}', ARRAY[%s::jsonb], %s)",
        (W1, j2, '{"retry": false}', T0 + timedelta(hours=2)),
    )
    rows = conn.execute(
        "SELECT status, le, n, seconds FROM skiplock.read_job_counts() WHERE event = 'duration'"
    ).fetchall()
    assert sorted(rows) == [("failed", float("inf"), 1, 7200.0), ("succeeded", 0.25, 1, 0.2)]


def test_compaction_folds_rows_and_keeps_totals(conn: psycopg.Connection) -> None:
    for _ in range(5):
        conn.execute("SELECT skiplock.enqueue('a')")
    assert conn.execute("SELECT count(*) FROM skiplock.job_counts").fetchone()[0] == 5
    assert counts(conn) == {("default", "a", "created"): 5}
    assert conn.execute("SELECT count(*) FROM skiplock.job_counts").fetchone()[0] == 1


def test_enqueuers_in_open_transactions_do_not_wait_for_each_other(connect: Any) -> None:
    # The queue exists first: the first job of a new queue inserts its queues row,
    # which does make a concurrent first enqueue into that queue wait.
    connect(autocommit=True).execute("SELECT skiplock.create_queue('default')")
    first, second = connect(autocommit=False), connect(autocommit=False)
    first.execute("SELECT skiplock.enqueue('a')")
    second.execute("SET lock_timeout = '2s'")
    second.execute("SELECT skiplock.enqueue('a')")  # would time out behind an upsert
    second.execute("SELECT skiplock.read_job_counts()")
    first.commit()
    second.commit()
