"""prune_audit_log: the audit log's retention, in batches, by anyone at once."""

from __future__ import annotations

from collections.abc import Callable

import psycopg
import pytest


def write_entries(conn: psycopg.Connection, n: int, age: str) -> None:
    conn.execute(
        "INSERT INTO skiplock.audit_log (at, actor, action, status)"
        " SELECT now() - %s::interval, %s, 'POST /api/v1/jobs', 201 FROM generate_series(1, %s)",
        (age, age, n),
    )


def ages(conn: psycopg.Connection) -> list[tuple[str, int]]:
    """(age written, how many) of the entries left; each entry's actor is its age."""
    return conn.execute(
        "SELECT actor, count(*) FROM skiplock.audit_log GROUP BY 1 ORDER BY 1"
    ).fetchall()


def test_prunes_only_old_entries_oldest_first_in_batches(conn: psycopg.Connection) -> None:
    write_entries(conn, 5, "100 days")
    write_entries(conn, 6, "95 days")
    write_entries(conn, 4, "1 day")
    one = "SELECT skiplock.prune_audit_log(interval '90 days', 4)"
    assert conn.execute(one).fetchone() == (4,)
    # the oldest go first: one of the 100-day entries is left
    assert ages(conn) == [("1 day", 4), ("100 days", 1), ("95 days", 6)]
    assert [conn.execute(one).fetchone()[0] for _ in range(3)] == [4, 3, 0]
    assert ages(conn) == [("1 day", 4)]
    # p_now moves "now": two days later, the 1-day entries are older than a day
    assert conn.execute(
        "SELECT skiplock.prune_audit_log(interval '1 day', p_now => now() + interval '2 days')"
    ).fetchone() == (4,)


def test_concurrent_pruners_never_block_each_other(
    conn: psycopg.Connection, connect: Callable[..., psycopg.Connection]
) -> None:
    write_entries(conn, 30, "100 days")
    first = connect()
    taken = first.execute("SELECT skiplock.prune_audit_log(interval '90 days', 10)").fetchone()[0]
    other = connect(autocommit=True)
    other.execute("SET lock_timeout = '1s'")  # a block would raise instead of waiting
    rest = other.execute("SELECT skiplock.prune_audit_log(interval '90 days', 100)").fetchone()[0]
    first.commit()
    assert (taken, rest) == (10, 20)
    assert ages(conn) == []


@pytest.mark.parametrize(
    ("call", "message"),
    [
        ("prune_audit_log(interval '-1 day')", "p_older_than must be an interval >= 0, got -1"),
        ("prune_audit_log(NULL)", "p_older_than must be an interval >= 0, got NULL"),
        ("prune_audit_log(interval '1 day', 0)", "p_limit must be at least 1, got 0"),
        ("prune_audit_log(interval '1 day', NULL)", "p_limit must be at least 1, got NULL"),
    ],
)
def test_bad_arguments_raise_and_delete_nothing(
    conn: psycopg.Connection, call: str, message: str
) -> None:
    write_entries(conn, 2, "100 days")
    with pytest.raises(psycopg.errors.InvalidParameterValue, match=message):
        conn.execute(f"SELECT skiplock.{call}")
    conn.rollback()
    assert ages(conn) == [("100 days", 2)]
