"""Wake-ups name the queues that got ready jobs, or say `*` when the names would not fit in
one NOTIFY payload (8,000 bytes): a move that readies jobs in many queues at once must
never fail on the size of its wake-up."""

from __future__ import annotations

import uuid

import psycopg
import pytest

W1 = uuid.UUID("00000000-0000-4000-8000-000000000001")
# 150 names of 64 characters: 9,750 bytes joined, more than one payload holds.
QUEUES = [f"q{i:03d}".ljust(64, "x") for i in range(150)]


@pytest.fixture
def listener(dsn: str) -> psycopg.Connection:
    with psycopg.connect(dsn, autocommit=True) as c:
        c.execute("LISTEN skiplock_jobs")
        yield c


def payloads(listener: psycopg.Connection) -> list[str]:
    return [n.payload for n in listener.notifies(timeout=0.5, stop_after=100)]


def drain(listener: psycopg.Connection, count: int) -> None:
    """Read the `count` wake-ups sent so far (one per enqueue), however slowly they come."""
    got = list(listener.notifies(timeout=30, stop_after=count))
    assert len(got) == count


def enqueue_one_per_queue(conn: psycopg.Connection, **options: object) -> list[int]:
    return [
        conn.execute(
            "SELECT skiplock.enqueue('t', '{}', queue => %s"
            + "".join(f", {name} => %s" for name in options)
            + ")",
            (queue, *options.values()),
        ).fetchone()[0]  # type: ignore[index]
        for queue in QUEUES
    ]


def test_releasing_jobs_of_many_queues_wakes_everyone(
    conn: psycopg.Connection, listener: psycopg.Connection
) -> None:
    enqueue_one_per_queue(conn)
    claimed = conn.execute(
        "SELECT id, attempt FROM skiplock.claim_jobs(%s, %s, 1000)", (W1, QUEUES)
    ).fetchall()
    assert len(claimed) == len(QUEUES)
    drain(listener, len(QUEUES))  # the enqueues' wake-ups
    released = conn.execute(
        "SELECT skiplock.release_jobs(%s, %s, %s)",
        (W1, [i for i, _ in claimed], [a for _, a in claimed]),
    ).fetchall()
    assert len(released) == len(QUEUES)
    assert payloads(listener) == ["*"]


def test_settling_dependents_of_many_queues_wakes_everyone(
    conn: psycopg.Connection, listener: psycopg.Connection
) -> None:
    (parent,) = conn.execute("SELECT skiplock.enqueue('t', '{}')").fetchone()  # type: ignore[misc]
    children = enqueue_one_per_queue(conn, depends_on=[parent])
    (claimed,) = conn.execute(
        "SELECT id, attempt FROM skiplock.claim_jobs(%s, '{default}', 1)", (W1,)
    ).fetchall()
    payloads(listener)
    conn.execute("SELECT skiplock.complete_jobs(%s, %s, %s, '{null}')", (W1, [parent], [1]))
    states = conn.execute(
        "SELECT DISTINCT state::text FROM skiplock.jobs WHERE id = ANY (%s)", (children,)
    ).fetchall()
    assert states == [("queued",)]
    assert "*" in payloads(listener)
    assert claimed == (parent, 1)
