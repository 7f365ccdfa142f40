"""The metrics history: finishing jobs lands in the right minute rows and buckets, the
fold adds minutes into hours, retention prunes in batches, the depth sampler reads the
claim index within its cap, and the series reads a bounded window of rows."""

from __future__ import annotations

import asyncio
import json
import uuid
from collections.abc import Sequence
from datetime import datetime, timedelta, timezone
from typing import Any

import psycopg
import pytest
from psycopg.types.json import Jsonb

import skiplock
from skiplock.worker import Worker

W1 = uuid.UUID("00000000-0000-4000-8000-000000000001")
T0 = datetime(2030, 1, 1, 12, 0, tzinfo=timezone.utc)
DURATION_BUCKETS = 17  # job_duration_bounds: 16 bounds and +Inf
WAIT_BUCKETS = 16  # job_wait_bounds: 15 bounds and +Inf


def one(conn: psycopg.Connection, sql: str, params: Sequence[Any] | None = None) -> Any:
    row = conn.execute(sql, params).fetchone()
    assert row is not None
    return row[0]


def enqueue(
    conn: psycopg.Connection, task: str = "t", queue: str = "default", run_at: datetime = T0
) -> int:
    return one(
        conn,
        "SELECT skiplock.enqueue(%s, '{}', queue => %s, run_at => %s, max_attempts => 2)",
        (task, queue, run_at),
    )


def claim(
    conn: psycopg.Connection, now: datetime, queues: Sequence[str] = ("default",)
) -> list[tuple[int, int]]:
    rows = conn.execute(
        "SELECT id, attempt FROM skiplock.claim_jobs(%s, %s, 100, '30 seconds'::interval, %s)",
        (W1, list(queues), now),
    ).fetchall()
    return [(r[0], r[1]) for r in rows]


def complete(conn: psycopg.Connection, jobs: list[tuple[int, int]], now: datetime) -> None:
    conn.execute(
        "SELECT skiplock.complete_jobs(%s, %s, %s, NULL, %s)",
        (W1, [i for i, _ in jobs], [a for _, a in jobs], now),
    )


def fail(conn: psycopg.Connection, jobs: list[tuple[int, int]], now: datetime) -> list[str]:
    rows = conn.execute(
        "SELECT status FROM skiplock.fail_jobs(%s, %s, %s, %s::jsonb[], %s)",
        (
            W1,
            [i for i, _ in jobs],
            [a for _, a in jobs],
            [Jsonb({"error": "boom", "retry_in": 0})] * len(jobs),
            now,
        ),
    ).fetchall()
    return [r[0] for r in rows]


def minute_rows(conn: psycopg.Connection) -> dict[tuple[datetime, str, str], dict[str, Any]]:
    """The job metrics per (minute, queue, task), folded and not, summed."""
    rows = conn.execute(
        "SELECT minute, queue, task, sum(succeeded), sum(failed), sum(retried),"
        " sum(cancelled), sum(expired),"
        " skiplock._sum_buckets(array_agg(run_buckets) FILTER (WHERE run_buckets IS NOT NULL)),"
        " sum(run_seconds),"
        " skiplock._sum_buckets(array_agg(wait_buckets) FILTER (WHERE wait_buckets IS NOT NULL)),"
        " sum(wait_seconds)"
        " FROM skiplock.job_metrics_minutes GROUP BY 1, 2, 3"
    ).fetchall()
    names = ("succeeded", "failed", "retried", "cancelled", "expired", "run_buckets")
    names += ("run_seconds", "wait_buckets", "wait_seconds")
    return {(r[0], r[1], r[2]): dict(zip(names, r[3:], strict=True)) for r in rows}


def bucket(conn: psycopg.Connection, bounds: str, seconds: float) -> int:
    """The 0-based index of the bucket `seconds` falls in."""
    return int(one(conn, f"SELECT width_bucket(%s::float8, skiplock.{bounds}())", (seconds,)))


def test_finishing_lands_in_the_minute_and_buckets(conn: psycopg.Connection) -> None:
    """complete, fail→retry, fail→dead and cancel each count in the minute they are
    recorded (the transaction's clock: one transaction here); run times and waits land
    in their buckets (p_now moves the job's own times)."""
    with conn.transaction():
        a = enqueue(conn, "a")
        b = enqueue(conn, "b")
        enqueue(conn, "c", run_at=T0 + timedelta(minutes=5))
        started = T0 + timedelta(seconds=3)  # a and b waited 3 s
        claimed = claim(conn, started)
        assert sorted(i for i, _ in claimed) == [a, b]
        done = T0 + timedelta(minutes=1, seconds=10)  # a ran 67 s
        complete(conn, [j for j in claimed if j[0] == a], done)
        assert fail(conn, [j for j in claimed if j[0] == b], done) == ["retrying"]
        # b again: waited 20 s from its retry, fails for good a minute later
        (again,) = claim(conn, done + timedelta(seconds=20))
        dead = T0 + timedelta(minutes=2, seconds=30)
        assert fail(conn, [again], dead) == ["failed"]
        # c is cancelled before it starts: counted, no wait, no run time
        c = one(conn, "SELECT id FROM skiplock.jobs WHERE task = 'c'")
        conn.execute("SELECT skiplock.cancel_job(%s, %s)", (c, dead))
        assert one(conn, "SELECT skiplock.fold_metrics()") > 0
        minute = one(conn, "SELECT date_trunc('minute', now())")

    rows = minute_rows(conn)
    assert {key[0] for key in rows} == {minute}
    succeeded = rows[(minute, "default", "a")]
    assert succeeded["succeeded"] == 1 and succeeded["failed"] == 0
    assert succeeded["run_seconds"] == pytest.approx(67)
    assert succeeded["run_buckets"].index(1) == bucket(conn, "job_duration_bounds", 67)
    assert sum(succeeded["run_buckets"]) == 1 and len(succeeded["run_buckets"]) == DURATION_BUCKETS
    # the wait of the attempt that ended the job: a's 3 s
    waits = succeeded["wait_buckets"]
    assert waits.index(1) == bucket(conn, "job_wait_bounds", 3) and len(waits) == WAIT_BUCKETS

    failed = rows[(minute, "default", "b")]
    assert (failed["failed"], failed["retried"], failed["succeeded"]) == (1, 1, 0)
    assert failed["run_seconds"] == pytest.approx(dead.timestamp() - (done.timestamp() + 20))
    # b's second attempt waited 20 s; its retried attempt is not counted
    assert failed["wait_seconds"] == pytest.approx(20)
    assert failed["wait_buckets"].index(1) == bucket(conn, "job_wait_bounds", 20)
    assert sum(failed["wait_buckets"]) == 1

    cancelled = rows[(minute, "default", "c")]
    assert cancelled["cancelled"] == 1
    assert cancelled["run_buckets"] is None and cancelled["wait_buckets"] is None


def test_compacting_the_counters_moves_each_count_once(conn: psycopg.Connection) -> None:
    """Scrapes and the finishing trigger compact job_counts too: every compaction moves
    only the rows counted since the last one, and the totals stay whole."""
    with conn.transaction():
        enqueue(conn, "a")
        assert fail(conn, claim(conn, T0), T0) == ["retrying"]
        assert one(conn, "SELECT skiplock.compact_job_counts()") is True
        conn.execute("SELECT skiplock.read_job_counts()")
        assert one(conn, "SELECT skiplock.fold_metrics()") == 1
    assert one(conn, "SELECT sum(retried) FROM skiplock.job_metrics_minutes") == 1
    totals = conn.execute(
        "SELECT event, n FROM skiplock.read_job_counts() ORDER BY event"
    ).fetchall()
    assert totals == [("created", 1), ("retried", 1)]
    assert one(conn, "SELECT count(*) FROM skiplock.job_counts WHERE minute IS NOT NULL") == 0


def test_a_batch_is_one_row_per_minute_and_key(conn: psycopg.Connection) -> None:
    """A batch of completions writes one grouped row per (minute, queue, task)."""
    for _ in range(30):
        enqueue(conn, "a")
        enqueue(conn, "b")
    claimed = claim(conn, T0)
    complete(conn, claimed, T0 + timedelta(seconds=1))
    waits = conn.execute(
        "SELECT task, wait_buckets FROM skiplock.job_metrics_minutes ORDER BY task"
    ).fetchall()
    assert [(task, sum(w)) for task, w in waits] == [("a", 30), ("b", 30)]
    finished = conn.execute(
        "SELECT task, sum(n) FROM skiplock.job_counts"
        " WHERE event = 'succeeded' AND minute IS NOT NULL GROUP BY task ORDER BY task"
    ).fetchall()
    assert finished == [("a", 30), ("b", 30)]


def test_fold_adds_minutes_into_hours_and_keeps_counting(conn: psycopg.Connection) -> None:
    with conn.transaction():
        for _ in range(3):
            enqueue(conn, "a")
        jobs = claim(conn, T0)
        complete(conn, jobs[:2], T0 + timedelta(seconds=5))
        assert one(conn, "SELECT skiplock.fold_metrics()") >= 2
        complete(conn, jobs[2:], T0 + timedelta(seconds=50))  # same minute, after the fold
        assert one(conn, "SELECT skiplock.fold_metrics()") >= 1
        assert one(conn, "SELECT skiplock.fold_metrics()") == 0
        minute = one(conn, "SELECT date_trunc('minute', now())")
    rows = conn.execute(
        "SELECT minute, folded, succeeded, run_buckets, wait_buckets"
        " FROM skiplock.job_metrics_minutes WHERE task = 'a'"
    ).fetchall()
    assert [(m, f, n, sum(r), sum(w)) for m, f, n, r, w in rows] == [(minute, True, 3, 3, 3)]
    hour = conn.execute(
        "SELECT hour, succeeded, run_buckets, wait_buckets FROM skiplock.job_metrics_hours"
        " WHERE task = 'a'"
    ).fetchall()
    hour_start = minute.replace(minute=0)
    assert [(h, n, sum(r), sum(w)) for h, n, r, w in hour] == [(hour_start, 3, 3, 3)]


def test_fold_runs_in_one_place_at_a_time(conn: psycopg.Connection, connect: Any) -> None:
    other = connect()
    with other.transaction():
        assert other.execute("SELECT skiplock.fold_metrics()").fetchone() == (0,)
        assert one(conn, "SELECT skiplock.fold_metrics()") is None


def seed_history(
    conn: psycopg.Connection, days: int, keys: int, now: datetime, hour_days: int | None = None
) -> None:
    """`days` of folded minute rows and `hour_days` (default `days`) of hour rows for
    `keys` queue/task pairs, up to now."""
    conn.execute(
        "INSERT INTO skiplock.job_metrics_minutes (minute, queue, task, folded, succeeded,"
        " run_buckets, run_seconds)"
        " SELECT m, 'q' || (k %% 4), 't' || k, true, 1, '{0,1}', 0.1"
        " FROM generate_series(%s::timestamptz - make_interval(days => %s), %s, '1 minute') m,"
        " generate_series(1, %s) k",
        (now, days, now, keys),
    )
    conn.execute(
        "INSERT INTO skiplock.job_metrics_hours (hour, queue, task, succeeded, run_buckets)"
        " SELECT h, 'q' || (k %% 4), 't' || k, 60, '{0,60}'"
        " FROM generate_series(date_trunc('hour', %s::timestamptz) - make_interval(days => %s),"
        " %s, '1 hour') h, generate_series(1, %s) k",
        (now, hour_days or days, now, keys),
    )
    conn.execute("ANALYZE skiplock.job_metrics_minutes")
    conn.execute("ANALYZE skiplock.job_metrics_hours")


def test_prune_in_batches_keeps_the_retention(conn: psycopg.Connection) -> None:
    now = T0
    seed_history(conn, 16, 2, now)
    conn.execute(
        "INSERT INTO skiplock.queue_depth_minutes (minute, queue, ready)"
        " SELECT m, 'q', 1 FROM generate_series(%s::timestamptz - interval '15 days', %s,"
        " '1 hour') m",
        (now, now),
    )
    deleted = one(conn, "SELECT skiplock.prune_metrics(p_limit => 500, p_now => %s)", (now,))
    assert deleted == 500
    while deleted == 500:
        deleted = one(conn, "SELECT skiplock.prune_metrics(p_limit => 500, p_now => %s)", (now,))
    oldest_minute = one(conn, "SELECT min(minute) FROM skiplock.job_metrics_minutes")
    assert oldest_minute >= now - timedelta(days=14)
    assert one(conn, "SELECT min(minute) FROM skiplock.queue_depth_minutes") >= now - timedelta(
        days=14
    )
    # the hours are kept 90 days: 16 days are all still there
    assert one(conn, "SELECT min(hour) FROM skiplock.job_metrics_hours") < now - timedelta(days=15)
    conn.execute(
        "SELECT skiplock.prune_metrics(interval '1 day', interval '2 days', 100000, %s)", (now,)
    )
    assert one(conn, "SELECT min(hour) FROM skiplock.job_metrics_hours") >= now - timedelta(days=2)


def test_prune_keeps_rows_not_yet_folded(conn: psycopg.Connection) -> None:
    old = T0 - timedelta(days=20)
    conn.execute(
        "INSERT INTO skiplock.job_metrics_minutes (minute, queue, task, succeeded)"
        " VALUES (%s, 'q', 't', 1)",
        (old,),
    )
    conn.execute("SELECT skiplock.prune_metrics(p_now => %s)", (T0,))
    assert one(conn, "SELECT count(*) FROM skiplock.job_metrics_minutes") == 1
    conn.execute("SELECT skiplock.fold_metrics()")
    assert one(conn, "SELECT succeeded FROM skiplock.job_metrics_hours") == 1


# ---- the depth sampler ------------------------------------------------------------------


def test_sampler_counts_ready_jobs_and_the_oldest(conn: psycopg.Connection) -> None:
    now = T0
    for priority, age in ((0, 90), (5, 30), (-3, 10)):
        conn.execute(
            "SELECT skiplock.enqueue('t', '{}', queue => 'mail', priority => %s, run_at => %s)",
            (priority, now - timedelta(seconds=age)),
        )
    enqueue(conn, "t", "mail", run_at=now + timedelta(hours=1))  # scheduled: not ready
    enqueue(conn, "t", "other", run_at=now)
    conn.execute("SELECT skiplock.create_queue('empty')")
    assert one(conn, "SELECT skiplock.sample_queue_depth(p_now => %s)", (now,)) >= 3
    rows = {
        r[0]: r[1:]
        for r in conn.execute(
            "SELECT queue, ready, ready_estimated, oldest_ready_seconds"
            " FROM skiplock.queue_depth_minutes WHERE minute = %s",
            (now,),
        )
    }
    assert rows["mail"] == (3, False, 90.0)
    assert rows["other"] == (1, False, 0.0)
    assert rows["empty"] == (0, False, 0.0)
    # once per minute: a second call in the same minute does nothing
    assert one(conn, "SELECT skiplock.sample_queue_depth(p_now => %s)", (now,)) is None
    later = now + timedelta(minutes=1)
    assert one(conn, "SELECT skiplock.sample_queue_depth(p_now => %s)", (later,)) is not None
    hour = conn.execute(
        "SELECT ready, oldest_ready_seconds FROM skiplock.queue_depth_hours WHERE queue = 'mail'"
    ).fetchall()
    assert hour == [(3, 150.0)]  # the hour keeps its peaks


def test_sampler_reads_the_claim_index_within_its_cap(conn: psycopg.Connection) -> None:
    """50,000 ready jobs, a cap of 1,000: the sampler reads about the cap of index
    entries and heap rows, never scans the table, and says its figure is an estimate."""
    conn.execute(
        "INSERT INTO skiplock.jobs (task, queue, run_at)"
        " SELECT 't', 'big', %s - make_interval(secs => i) FROM generate_series(1, 50000) i",
        (T0,),
    )
    conn.execute("VACUUM ANALYZE skiplock.jobs")
    # An idle backend flushes its statistics at most once a second, and what it has not
    # flushed yet (the insert's reads) shows in the next transaction's xact figures.
    conn.execute("SELECT pg_stat_force_next_flush()")
    with conn.transaction():
        assert one(conn, "SELECT skiplock.sample_queue_depth(1000, %s)", (T0,)) >= 1
        stats = conn.execute(
            "SELECT t.seq_scan, t.idx_tup_fetch,"
            " pg_stat_get_xact_tuples_returned('skiplock.jobs_claim_idx'::regclass)"
            " FROM pg_stat_xact_user_tables t WHERE t.relid = 'skiplock.jobs'::regclass"
        ).fetchone()
    assert stats is not None
    seq_scans, heap_rows, index_entries = stats
    assert seq_scans == 0
    # the cap + 1 counted, and a handful of probes (queues, priorities, oldest)
    assert index_entries <= 1000 + 10, stats
    assert heap_rows <= 1000 + 10, stats
    ready, estimated, oldest = conn.execute(
        "SELECT ready, ready_estimated, oldest_ready_seconds FROM skiplock.queue_depth_minutes"
        " WHERE queue = 'big'"
    ).fetchone()
    assert estimated is True
    assert 25_000 <= ready <= 100_000  # the planner's estimate of 50,000
    assert oldest == 50_000


# ---- the series -------------------------------------------------------------------------


def series(conn: psycopg.Connection, range_: str, **kwargs: Any) -> list[dict[str, Any]]:
    named = "".join(f", {k} => %({k})s" for k in kwargs)
    cur = conn.execute(
        f"SELECT * FROM skiplock.metrics_series(%(range)s::interval{named})",
        {"range": range_, **kwargs},
    )
    names = [c.name for c in cur.description or ()]
    return [dict(zip(names, row, strict=True)) for row in cur.fetchall()]


def test_series_by_minute_and_by_hour(conn: psycopg.Connection) -> None:
    """One transaction, so that now() (the counters' clock) is one minute throughout."""
    with conn.transaction():
        now = one(conn, "SELECT now()")
        minute, hour_start = (now.replace(second=0, microsecond=0), now.replace(minute=0))
        hour_start = hour_start.replace(second=0, microsecond=0)
        for task in ("a", "a", "b"):
            enqueue(conn, task, "mail", run_at=now)
        enqueue(conn, "a", "other", run_at=now)
        complete(conn, claim(conn, now, ["mail", "other"]), now)
        conn.execute("SELECT skiplock.sample_queue_depth()")
        conn.execute("SELECT skiplock.compact_job_counts()")  # as a scrape does

        hour = series(conn, "1 hour")
        assert len(hour) == 60 and hour[-1]["at"] == minute
        assert [r["succeeded"] for r in hour].count(0) == 59
        assert hour[-1]["succeeded"] == 4 and hour[-1]["ready"] == 0
        assert hour[0]["ready"] is None  # no sample then
        mail_a = series(conn, "1 hour", p_queue="mail", p_task="a")
        assert mail_a[-1]["succeeded"] == 2 and mail_a[-1]["ready"] is None

        day = series(conn, "24 hours")
        assert len(day) == 24 and day[-1]["at"] == hour_start
        assert day[-1]["succeeded"] == 4  # not folded yet: read from the minute rows
        conn.execute("SELECT skiplock.fold_metrics()")
        day = series(conn, "24 hours")
        assert day[-1]["succeeded"] == 4 and sum(day[-1]["run_buckets"]) == 4
        assert sum(day[-1]["wait_buckets"]) == 4
        week = series(conn, "7 days", p_queue_pattern="oth*")
        assert len(week) == 168 and week[-1]["succeeded"] == 1


def test_series_refuses_a_bad_range(conn: psycopg.Connection) -> None:
    for bad in ("0 seconds", "-1 hour", "91 days"):
        with pytest.raises(psycopg.errors.InvalidParameterValue, match="p_range"):
            series(conn, bad)


# With 14 days of minute rows and 90 days of hour rows for 20 queue/task keys, each
# window reads its own rows: EXPLAIN (ANALYZE, BUFFERS) of the statement inside
# metrics_series (auto_explain) stays within these budgets, whatever the table holds.
BUDGETS = {"1 hour": (60 * 20 + 100, 200), "24 hours": (24 * 20 + 100, 100)}
BUDGETS["7 days"] = (168 * 20 + 100, 300)


@pytest.mark.parametrize("window", sorted(BUDGETS))
def test_series_reads_a_bounded_window(conn: psycopg.Connection, window: str) -> None:
    seed_history(conn, 14, 20, T0, hour_days=90)
    try:
        conn.execute("LOAD 'auto_explain'")
    except psycopg.Error as exc:  # not superuser, or the module is not installed
        pytest.skip(f"auto_explain unavailable: {exc}")
    for setting in ("log_min_duration = 0", "log_nested_statements = on", "log_analyze = on"):
        conn.execute(f"SET auto_explain.{setting}")
    conn.execute("SET auto_explain.log_buffers = on")
    conn.execute("SET auto_explain.log_timing = off")
    conn.execute("SET auto_explain.log_format = json")
    conn.execute("SET auto_explain.log_level = notice")
    conn.execute("SET client_min_messages = notice")
    plans: list[str] = []
    conn.add_notice_handler(lambda d: plans.append(d.message_primary or ""))
    rows = series(conn, window, p_now=T0)
    conn.execute("RESET auto_explain.log_min_duration")
    assert rows and rows[-1]["succeeded"] > 0
    inner = [p for p in plans if "job_metrics" in p and "generate_series" in p]
    assert inner, plans
    plan = json.loads(inner[0][inner[0].index("{") :])["Plan"]
    row_budget, buffer_budget = BUDGETS[window]
    read = scanned_rows(plan)
    assert read <= row_budget, (read, row_budget)
    buffers = plan["Shared Hit Blocks"] + plan["Shared Read Blocks"]
    assert buffers <= buffer_budget, (buffers, buffer_budget)
    assert "Seq Scan" not in json.dumps(plan)


def scanned_rows(node: dict[str, Any]) -> int:
    """Rows the scans of a plan returned, over all their loops."""
    own = 0
    if node["Node Type"].endswith("Scan") and "Relation Name" in node:
        own = node["Actual Rows"] * node["Actual Loops"] + node.get("Rows Removed by Filter", 0)
    return own + sum(scanned_rows(child) for child in node.get("Plans", ()))


# ---- the worker's share -----------------------------------------------------------------


def test_the_worker_takes_the_minute_once_and_prunes_with_its_settings(
    dsn: str, conn: psycopg.Connection
) -> None:
    enqueue(conn, "a", run_at=datetime.now(timezone.utc))
    conn.execute(
        "INSERT INTO skiplock.job_metrics_minutes (minute, queue, task, folded, succeeded)"
        " VALUES (now() - interval '3 days', 'q', 't', true, 1),"
        "        (now() - interval '1 day', 'q', 't', true, 1)"
    )
    app = skiplock.App(dsn)

    async def minute_then_prune() -> tuple[bool, bool]:
        worker = Worker(
            app,
            listen=False,
            metrics_retention=timedelta(days=2),
            metrics_hourly_retention=None,
        )
        try:
            await worker.run_once()  # opens its pool (no handler: the job goes back)
            first = await worker.maintenance.record_metrics_once()
            again = await worker.maintenance.record_metrics_once()  # the same minute, most likely
            await worker.maintenance.prune_once()
            return first, again
        finally:
            await worker.close()

    first, again = asyncio.run(minute_then_prune())
    assert first is True
    samples = one(conn, "SELECT count(*) FROM skiplock.queue_depth_minutes")
    assert samples >= 1
    if samples == 1:  # no minute boundary passed between the two calls
        assert again is False
    kept = conn.execute(
        "SELECT minute > now() - interval '2 days' FROM skiplock.job_metrics_minutes"
        " WHERE queue = 'q'"
    ).fetchall()
    assert kept == [(True,)]
