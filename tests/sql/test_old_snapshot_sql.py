"""An old snapshot keeps the entries of every job claimed or finished since it began in the
jobs table's indexes (sql/functions/040_claim.sql): the worker's statements must not walk
them.
claim_jobs' p_run_after and p_priority_floor bound a claim past them; complete, heartbeat
and the rest find a worker's jobs by (worker_id, id). Entries read are counted, never timed."""

from __future__ import annotations

import uuid
from collections.abc import Callable, Sequence
from datetime import datetime, timedelta, timezone

import psycopg

from skiplock import store

W = uuid.UUID("00000000-0000-4000-8000-0000000000b1")
T0 = datetime(2030, 1, 1, tzinfo=timezone.utc)
NOW = T0 + timedelta(days=1)  # every job below is due by then


def enqueue_at(
    conn: psycopg.Connection, hours: int, queue: str = "default", priority: int = 0
) -> int:
    row = conn.execute(
        "SELECT skiplock.enqueue('t', queue => %s, priority => %s, run_at => %s)",
        (queue, priority, T0 + timedelta(hours=hours)),
    ).fetchone()
    assert row is not None
    return int(row[0])


def claim(
    conn: psycopg.Connection,
    queues: Sequence[str],
    bounds: dict[str, tuple[int, datetime]] | None,
    limit: int = 10,
) -> list[tuple[int, datetime]]:
    floors = run_after = None
    if bounds is not None:
        floors = [bounds[q][0] if q in bounds else None for q in queues]
        run_after = [bounds[q][1] if q in bounds else None for q in queues]
    rows = conn.execute(
        "SELECT id, run_at FROM skiplock.claim_jobs(%s, %s, %s, p_now => %s,"
        " p_run_after => %s::timestamptz[], p_priority_floor => %s::smallint[])",
        (W, list(queues), limit, NOW, run_after, floors),
    ).fetchall()
    return [(r[0], r[1]) for r in rows]


def test_claim_takes_only_jobs_at_or_after_the_bound(conn: psycopg.Connection) -> None:
    early, middle, late = (enqueue_at(conn, h) for h in (1, 2, 3))
    urgent_but_early = enqueue_at(conn, 0, priority=9)
    bound = T0 + timedelta(hours=2)
    assert sorted(claim(conn, ["default"], {"default": (0, bound)})) == [
        (middle, bound),
        (late, T0 + timedelta(hours=3)),
    ]
    # no bound: the rest, highest priority first (rows come back in no order: one a claim)
    assert [job for job, _ in claim(conn, ["default"], None, limit=1)] == [urgent_but_early]
    assert [job for job, _ in claim(conn, ["default"], None, limit=1)] == [early]


def test_bound_leaves_lower_priorities_to_a_full_claim(conn: psycopg.Connection) -> None:
    high = enqueue_at(conn, 5, priority=5)
    low_old, low_new = enqueue_at(conn, 1), enqueue_at(conn, 6)
    other = enqueue_at(conn, 1, "other")
    bounds = {"default": (5, T0 + timedelta(hours=4))}
    # a lower priority than the bound's is not taken, however new: taking low_new first
    # would start it before the older low_old of the same priority. A queue without a
    # bound is claimed in full.
    claimed = [job for job, _ in claim(conn, ["default", "other"], bounds)]
    assert sorted(claimed) == sorted([high, other])
    assert sorted(job for job, _ in claim(conn, ["default", "other"], None)) == sorted(
        [low_old, low_new]
    )


def test_bound_applies_over_several_queues_and_to_limited_queues(
    conn: psycopg.Connection,
) -> None:
    conn.execute("SELECT skiplock.set_queue_limits('limited', p_max_running => 5)")
    old = [enqueue_at(conn, 1, q) for q in ("default", "other", "limited")]
    new = [enqueue_at(conn, 5, q) for q in ("default", "other", "limited")]
    bound = T0 + timedelta(hours=4)
    bounds = {q: (0, bound) for q in ("default", "other", "limited")}
    assert sorted(job for job, _ in claim(conn, ["default", "other"], bounds)) == new[:2]
    assert [job for job, _ in claim(conn, ["limited"], bounds)] == new[2:]
    assert sorted(job for job, _ in claim(conn, ["default", "other", "limited"], None)) == old


def test_python_claim_returns_run_at(conn: psycopg.Connection) -> None:
    run_at = datetime.now(timezone.utc) - timedelta(hours=1)
    row = conn.execute("SELECT skiplock.enqueue('t', run_at => %s)", (run_at,)).fetchone()
    assert row is not None
    lease = timedelta(seconds=30)
    later = {"default": (0, run_at + timedelta(microseconds=1))}
    assert store.claim_jobs(W, ["default"], 5, lease, later).run(conn) == []
    (job,) = store.claim_jobs(W, ["default"], 5, lease, {"default": (0, run_at)}).run(conn)
    assert (job.id, job.run_at) == (row[0], run_at)


def entries_read(conn: psycopg.Connection, index: str | None = None) -> int:
    """Index entries read (from one index, or all of skiplock.jobs'), counted whether or
    not their row turned out visible: the counts already flushed to the statistics plus
    those this backend has not flushed yet, so that a flush between two readings (an idle
    backend flushes once a second has passed since its last flush) changes nothing.
    Only this test's connection reads these indexes."""
    row = conn.execute(
        "SELECT sum(pg_stat_get_tuples_returned(i.indexrelid)"
        " + pg_stat_get_xact_tuples_returned(i.indexrelid)) FROM pg_index i"
        " WHERE i.indrelid = 'skiplock.jobs'::regclass"
        " AND (%s::regclass IS NULL OR i.indexrelid = %s::regclass)",
        (index, index),
    ).fetchone()
    assert row is not None
    return int(row[0])


def hold_old_snapshot(connect: Callable[..., psycopg.Connection]) -> psycopg.Connection:
    old = connect()
    old.execute("BEGIN ISOLATION LEVEL REPEATABLE READ")
    old.execute("SELECT count(*) FROM skiplock.queues")  # takes the snapshot, then idles
    return old


def run_and_finish(conn: psycopg.Connection, n: int) -> None:
    """n jobs claimed and finished by W: with an old snapshot open, vacuum may not remove
    their index entries, nor a scan mark them dead."""
    conn.execute(
        "INSERT INTO skiplock.jobs (task, run_at)"
        " SELECT 't', now() - interval '1 hour' + n * interval '1 ms'"
        " FROM generate_series(1, %s) n",
        (n,),
    )
    done = conn.execute(
        "SELECT id, attempt FROM skiplock.claim_jobs(%s, '{default}', %s)", (W, n)
    ).fetchall()
    conn.execute(
        "SELECT skiplock.complete_jobs(%s, %s::bigint[], %s::integer[], NULL)",
        (W, [r[0] for r in done], [r[1] for r in done]),
    )
    conn.execute("VACUUM skiplock.jobs")


def claim_reading(conn: psycopg.Connection, run_after: datetime | None) -> tuple[int, int]:
    """Claim 50 jobs: (jobs claimed, entries of jobs_claim_idx the claim read)."""
    before = entries_read(conn, "skiplock.jobs_claim_idx")
    claimed = conn.execute(
        "SELECT id FROM skiplock.claim_jobs(%s, '{default}', 50,"
        " p_run_after => %s::timestamptz[], p_priority_floor => '{0}')",
        (W, None if run_after is None else [run_after]),
    ).fetchall()
    return len(claimed), entries_read(conn, "skiplock.jobs_claim_idx") - before


def test_bound_skips_what_an_old_snapshot_keeps_in_the_claim_index(
    conn: psycopg.Connection, connect: Callable[..., psycopg.Connection]
) -> None:
    old = hold_old_snapshot(connect)
    run_and_finish(conn, 5000)
    conn.execute("INSERT INTO skiplock.jobs (task) SELECT 't' FROM generate_series(1, 100)")
    bound = conn.execute("SELECT min(run_at) FROM skiplock.jobs WHERE state = 'queued'").fetchone()
    assert bound is not None
    full = claim_reading(conn, None)
    bounded = claim_reading(conn, bound[0])
    old.rollback()
    # the full claim read every dead entry, then its 50; the bounded one seeked past them
    assert full[0] == bounded[0] == 50
    assert full[1] >= 5000 + 50, full
    assert bounded[1] < 5000 // 10, bounded


def test_finishing_reads_only_its_own_jobs_under_an_old_snapshot(
    conn: psycopg.Connection, connect: Callable[..., psycopg.Connection]
) -> None:
    old = hold_old_snapshot(connect)
    run_and_finish(conn, 5000)  # the same worker's: its finished jobs stay in the indexes
    conn.execute("INSERT INTO skiplock.jobs (task) SELECT 't' FROM generate_series(1, 100)")
    jobs = conn.execute(
        "SELECT id, attempt FROM skiplock.claim_jobs(%s, '{default}', 100)", (W,)
    ).fetchall()
    first = [j[0] for j in jobs[:50]], [j[1] for j in jobs[:50]]
    second = [j[0] for j in jobs[50:]], [j[1] for j in jobs[50:]]
    calls = {
        "heartbeat": ("heartbeat_jobs(%s, %s::bigint[], %s::integer[])", first),
        "complete": ("complete_jobs(%s, %s::bigint[], %s::integer[], NULL)", first),
        "release": ("release_jobs(%s, %s::bigint[], %s::integer[])", second),
    }
    read = {}
    for name, (call, (ids, attempts)) in calls.items():
        before = entries_read(conn)
        done = conn.execute(f"SELECT skiplock.{call}", (W, ids, attempts)).fetchall()
        assert len(done) == 50, name
        read[name] = entries_read(conn) - before
    old.rollback()
    # a few entries per job (its own versions), not the 5,000 finished jobs' entries
    assert all(n < 1000 for n in read.values()), read
