"""skiplock.queue_counts: exact up to its cap, the planner's estimate past it (marked),
for every pending status; the queue_stats view is it at the default cap."""

from __future__ import annotations

import psycopg

COUNTS = (
    "SELECT queue, waiting, scheduled, queued, running, retrying, estimated"
    " FROM skiplock.queue_counts(%s, %s) ORDER BY queue"
)


def fill(conn: psycopg.Connection) -> None:
    conn.execute("SELECT skiplock.enqueue('t', '{}', queue => 'deep') FROM generate_series(1, 30)")
    conn.execute(
        "SELECT skiplock.enqueue('t', '{}', queue => 'deep', run_at => now() + interval '1 h')"
        " FROM generate_series(1, 4)"
    )
    conn.execute("SELECT skiplock.enqueue('t', '{}', queue => 'shallow')")
    conn.execute(
        "INSERT INTO skiplock.jobs (task, queue, state, depends_on)"
        " SELECT 't', 'shallow', 'waiting', '{1}' FROM generate_series(1, 12)"
    )
    conn.execute("ANALYZE skiplock.jobs")


def test_counts_are_exact_up_to_the_cap(conn: psycopg.Connection) -> None:
    fill(conn)
    rows = conn.execute(COUNTS, (None, 100)).fetchall()
    assert rows == [("deep", 0, 4, 30, 0, 0, []), ("shallow", 12, 0, 1, 0, 0, [])]
    assert conn.execute(
        "SELECT queue, waiting, scheduled, queued, estimated FROM skiplock.queue_stats"
        " ORDER BY queue"
    ).fetchall() == [("deep", 0, 4, 30, []), ("shallow", 12, 0, 1, [])]


def test_past_the_cap_a_count_is_estimated_and_never_below_what_was_counted(
    conn: psycopg.Connection,
) -> None:
    fill(conn)
    deep, shallow = conn.execute(COUNTS, (None, 10)).fetchall()
    # 12 waiting jobs over all queues: past the cap, waiting is estimated everywhere;
    # 34 entries of the claim index in `deep`: past the cap, its three are estimated
    assert deep[6] == ["waiting", "scheduled", "queued", "retrying"]
    assert deep[3] >= 10 and deep[2] >= 0
    assert shallow[6] == ["waiting"] and shallow[1] >= 10
    assert shallow[3] == 1  # the claim index of `shallow` holds 1 entry: counted
    assert conn.execute(COUNTS, (["shallow"], 10)).fetchall() == [shallow]


def test_a_cap_below_one_is_refused(conn: psycopg.Connection) -> None:
    try:
        conn.execute("SELECT * FROM skiplock.queue_counts(NULL, 0)")
    except psycopg.errors.InvalidParameterValue as exc:
        assert "p_cap must be at least 1" in str(exc)
    else:
        raise AssertionError("a cap of 0 was taken")
