"""skiplock.workers_needed: how many workers a queue needs, answered from a bounded
read of the claim index and the running set, whatever the queue holds."""

from __future__ import annotations

import json
import uuid
from collections.abc import Sequence
from datetime import datetime, timedelta, timezone
from typing import Any

import psycopg
import pytest

T0 = datetime(2030, 1, 1, 12, 0, tzinfo=timezone.utc)
W1 = uuid.UUID("00000000-0000-4000-8000-000000000001")


def one(conn: psycopg.Connection, sql: str, params: Sequence[Any] | None = None) -> Any:
    row = conn.execute(sql, params).fetchone()
    assert row is not None
    return row[0]


def queue_jobs(
    conn: psycopg.Connection, queue: str, n: int, *, run_at: datetime = T0, priority: int = 0
) -> None:
    conn.execute(
        "INSERT INTO skiplock.jobs (task, queue, priority, run_at)"
        " SELECT 't', %s, %s, %s - make_interval(secs => i) FROM generate_series(1, %s) i",
        (queue, priority, run_at, n),
    )


def run_jobs(conn: psycopg.Connection, queue: str, n: int) -> None:
    """n jobs of `queue` running on W1, written directly (a claimed state)."""
    conn.execute(
        "INSERT INTO skiplock.jobs (task, queue, state, attempt, started_at, worker_id,"
        " lease_expires_at) SELECT 't', %s, 'running', 1, %s, %s, %s"
        " FROM generate_series(1, %s)",
        (queue, T0, W1, T0 + timedelta(minutes=5), n),
    )


def needed(conn: psycopg.Connection, queue: str, slots: int, **named: Any) -> int:
    extra = "".join(f", {k} => %({k})s" for k in named)
    return one(
        conn,
        f"SELECT skiplock.workers_needed(%(q)s, %(s)s, p_now => %(now)s{extra})",
        {"q": queue, "s": slots, "now": T0, **named},
    )


def test_ready_and_running_jobs_divided_by_slots_rounded_up(conn: psycopg.Connection) -> None:
    assert needed(conn, "default", 10) == 0  # nothing queued
    assert needed(conn, "nowhere", 10) == 0  # an unknown queue
    queue_jobs(conn, "default", 21)
    assert needed(conn, "default", 10) == 3
    run_jobs(conn, "default", 9)
    assert needed(conn, "default", 10) == 3  # 30 jobs
    run_jobs(conn, "default", 1)
    assert needed(conn, "default", 10) == 4  # 31
    assert needed(conn, "default", 1) == 31
    # other queues, future jobs and other priorities: only ready jobs of this queue count
    queue_jobs(conn, "other", 50)
    queue_jobs(conn, "default", 40, run_at=T0 + timedelta(hours=1))
    queue_jobs(conn, "default", 9, priority=5)
    assert needed(conn, "default", 10) == 4  # 40 jobs
    queue_jobs(conn, "default", 1, priority=-3)
    assert needed(conn, "default", 10) == 5


def test_paused_queue_and_max_running(conn: psycopg.Connection) -> None:
    queue_jobs(conn, "mail", 100)
    run_jobs(conn, "mail", 3)
    assert needed(conn, "mail", 10) == 11
    conn.execute("SELECT skiplock.set_queue_limits('mail', p_max_running => 25)")
    assert needed(conn, "mail", 10) == 3  # 25 slots at most
    conn.execute("SELECT skiplock.set_queue_limits('mail')")
    conn.execute("SELECT skiplock.pause_queue('mail')")
    assert needed(conn, "mail", 10) == 1  # its running jobs only
    conn.execute("SELECT skiplock.resume_queue('mail')")
    assert needed(conn, "mail", 10) == 11


def test_counts_stop_at_the_cap(conn: psycopg.Connection) -> None:
    queue_jobs(conn, "big", 500)
    run_jobs(conn, "big", 30)
    assert needed(conn, "big", 10, p_cap=100) == 13  # 100 ready + 30 running
    assert needed(conn, "big", 10, p_cap=20) == 4  # 20 + 20


@pytest.mark.parametrize("slots", [0, -1, None])
def test_refuses_slots_below_one(conn: psycopg.Connection, slots: int | None) -> None:
    with pytest.raises(psycopg.errors.InvalidParameterValue, match="p_slots_per_worker"):
        needed(conn, "default", slots)  # type: ignore[arg-type]


def test_refuses_a_cap_below_one(conn: psycopg.Connection) -> None:
    with pytest.raises(psycopg.errors.InvalidParameterValue, match="p_cap"):
        needed(conn, "default", 10, p_cap=0)


def test_a_worker_role_may_call_it(conn: psycopg.Connection) -> None:
    conn.execute("CREATE ROLE keda_login LOGIN IN ROLE skiplock_worker")
    conn.execute("SET ROLE keda_login")
    try:
        assert needed(conn, "default", 10) == 0
    finally:
        conn.execute("RESET ROLE")
        conn.execute("DROP ROLE keda_login")
    assert not one(
        conn,
        "SELECT has_function_privilege('skiplock_producer',"
        " 'skiplock.workers_needed(text, integer, integer, timestamptz)', 'EXECUTE')",
    )


# 100,000 ready jobs over three priorities, 10,000 scheduled for later and a running
# set of 200 in the queue (and 10,000 ready in another): the function reads about its
# cap of index entries, never scans the table, and its statements' plans (auto_explain,
# ANALYZE, BUFFERS) touch a bounded number of buffers.
CAP = 1000
BUFFER_BUDGET = 400


def seed_big_queue(conn: psycopg.Connection) -> None:
    for priority in (0, 1, 2):
        queue_jobs(conn, "big", 100_000 // 3, priority=priority)
    queue_jobs(conn, "big", 10_000, run_at=T0 + timedelta(days=1))
    queue_jobs(conn, "other", 10_000)
    run_jobs(conn, "big", 200)
    run_jobs(conn, "other", 200)
    conn.execute("VACUUM ANALYZE skiplock.jobs")
    # flushed now: what the inserts read would otherwise show in the next transaction's
    # xact figures (an idle backend flushes its statistics at most once a second)
    conn.execute("SELECT pg_stat_force_next_flush()")


def test_reads_a_bounded_number_of_rows_with_100k_queued(conn: psycopg.Connection) -> None:
    seed_big_queue(conn)
    with conn.transaction():
        assert needed(conn, "big", 10, p_cap=CAP) == (CAP + 200) // 10
        stats = conn.execute(
            "SELECT t.seq_scan, t.idx_tup_fetch,"
            " pg_stat_get_xact_tuples_returned('skiplock.jobs_claim_idx'::regclass),"
            " pg_stat_get_xact_tuples_returned('skiplock.jobs_running_idx'::regclass)"
            " FROM pg_stat_xact_user_tables t WHERE t.relid = 'skiplock.jobs'::regclass"
        ).fetchone()
    assert stats is not None
    seq_scans, heap_rows, claim_entries, running_entries = stats
    assert seq_scans == 0, stats
    # the cap + 1 counted, and a probe or two per priority
    assert claim_entries <= CAP + 10, stats
    # the running set of every queue (its queue is in the heap row)
    assert running_entries <= 400, stats
    assert heap_rows <= CAP + 400 + 10, stats

    # the same call's statements, seen by auto_explain: bounded buffers, no scan
    try:
        conn.execute("LOAD 'auto_explain'")
    except psycopg.Error as exc:  # not superuser, or the module is not installed
        pytest.skip(f"auto_explain unavailable: {exc}")
    for setting in ("log_min_duration = 0", "log_nested_statements = on", "log_analyze = on"):
        conn.execute(f"SET auto_explain.{setting}")
    for setting in ("log_buffers = on", "log_timing = off", "log_format = json"):
        conn.execute(f"SET auto_explain.{setting}")
    conn.execute("SET auto_explain.log_level = notice")
    conn.execute("SET client_min_messages = notice")
    plans: list[str] = []
    conn.add_notice_handler(lambda d: plans.append(d.message_primary or ""))
    needed(conn, "big", 10, p_cap=CAP)
    conn.execute("RESET auto_explain.log_min_duration")
    inner = [
        json.loads(p[p.index("{") :])["Plan"]
        for p in plans
        if "skiplock.jobs" in p and "workers_needed" not in p
    ]
    assert inner, plans
    buffers = sum(p["Shared Hit Blocks"] + p["Shared Read Blocks"] for p in inner)
    assert buffers <= BUFFER_BUDGET, (buffers, BUFFER_BUDGET)
    assert all("Seq Scan" not in json.dumps(p) for p in inner)
