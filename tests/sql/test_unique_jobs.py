"""Unique jobs: one job per key, enforced by the unique_keys primary key."""

from __future__ import annotations

import threading
from collections.abc import Callable
from datetime import timedelta

import psycopg
import pytest

W = "00000000-0000-0000-0000-0000000000aa"


def enqueue(conn: psycopg.Connection, key: str, **extra: str) -> int:
    opts = "".join(f", {name} => '{value}'" for name, value in extra.items())
    return conn.execute(f"SELECT skiplock.enqueue('t', unique_key => %s{opts})", (key,)).fetchone()[
        0
    ]


def job_count(conn: psycopg.Connection) -> int:
    return conn.execute("SELECT count(*) FROM skiplock.all_jobs").fetchone()[0]


def claim(conn: psycopg.Connection) -> list[tuple[int, int]]:
    return conn.execute(
        "SELECT id, attempt FROM skiplock.claim_jobs(%s, '{default}', 10)", (W,)
    ).fetchall()


def complete(conn: psycopg.Connection, token: tuple[int, int]) -> None:
    conn.execute(
        "SELECT skiplock.complete_jobs(%s, ARRAY[%s]::bigint[], ARRAY[%s], '{null}')",
        (W, token[0], token[1]),
    )


def test_sixty_four_concurrent_enqueues_make_one_job(
    conn: psycopg.Connection, connect: Callable[..., psycopg.Connection]
) -> None:
    conns = [connect(autocommit=True) for _ in range(64)]
    barrier = threading.Barrier(64)
    ids: list[int] = []
    lock = threading.Lock()

    def run(c: psycopg.Connection) -> None:
        barrier.wait()
        job_id = enqueue(c, "invoice-7")
        with lock:
            ids.append(job_id)

    threads = [threading.Thread(target=run, args=(c,)) for c in conns]
    for t in threads:
        t.start()
    for t in threads:
        t.join(60)
    assert len(ids) == 64 and len(set(ids)) == 1
    assert job_count(conn) == 1
    assert conn.execute("SELECT unique_key FROM skiplock.all_jobs").fetchone() == ("invoice-7",)


def test_a_rolled_back_holder_does_not_block_the_key(
    conn: psycopg.Connection, connect: Callable[..., psycopg.Connection]
) -> None:
    holder = connect()
    first = enqueue(holder, "k")  # not committed
    waiter_ids: list[int] = []
    waiter = threading.Thread(target=lambda: waiter_ids.append(enqueue(conn, "k")))
    waiter.start()  # blocks on the holder's uncommitted key
    holder.rollback()
    waiter.join(30)
    assert waiter_ids and waiter_ids[0] != first
    assert job_count(conn) == 1


def test_active_scope_holds_until_the_job_finishes(conn: psycopg.Connection) -> None:
    first = enqueue(conn, "k")
    assert enqueue(conn, "k") == first
    (token,) = claim(conn)
    assert enqueue(conn, "k") == first  # still running
    complete(conn, token)
    second = enqueue(conn, "k")
    assert second != first


def test_queued_scope_frees_the_key_when_the_job_starts(conn: psycopg.Connection) -> None:
    first = enqueue(conn, "k", unique_scope="queued")
    assert enqueue(conn, "k", unique_scope="queued") == first
    claim(conn)
    second = enqueue(conn, "k", unique_scope="queued")
    assert second != first
    assert job_count(conn) == 2


def test_period_scope_holds_after_finishing_until_the_period_ends(conn: psycopg.Connection) -> None:
    first = enqueue(conn, "k", unique_for="1 hour")
    (token,) = claim(conn)
    complete(conn, token)
    assert enqueue(conn, "k", unique_for="1 hour") == first  # finished, still in its period
    # The period runs out (written directly, as a crash-state test would).
    conn.execute("UPDATE skiplock.unique_keys SET holds_until = now() - interval '1 second'")
    assert enqueue(conn, "k", unique_for="1 hour") != first


def test_failed_and_cancelled_jobs_release_their_keys(conn: psycopg.Connection) -> None:
    dead = enqueue(conn, "a")
    (token,) = claim(conn)
    conn.execute(
        "SELECT skiplock.fail_jobs(%s, ARRAY[%s]::bigint[], ARRAY[%s], ARRAY[%s]::jsonb[])",
        (W, token[0], token[1], '{"retry": false}'),
    )
    assert enqueue(conn, "a") != dead

    cancelled = enqueue(conn, "b")
    conn.execute("SELECT skiplock.cancel_job(%s)", (cancelled,))
    assert enqueue(conn, "b") != cancelled


def test_bad_unique_options_are_refused(conn: psycopg.Connection) -> None:
    with pytest.raises(psycopg.errors.InvalidTextRepresentation):
        enqueue(conn, "k", unique_scope="forever")
    with pytest.raises(psycopg.errors.InvalidParameterValue, match="unique_for"):
        enqueue(conn, "k", unique_scope="queued", unique_for="1 hour")
    with pytest.raises(psycopg.errors.InvalidTextRepresentation):
        conn.execute(
            """SELECT skiplock.enqueue_many('[{"task": "t", "unique_key": "a"},"""
            """ {"task": "t", "unique_key": "b", "unique_scope": "forever"}]')"""
        )
    assert job_count(conn) == 0


def test_bulk_takes_unique_keys_job_by_job_in_input_order(conn: psycopg.Connection) -> None:
    held = enqueue(conn, "held")
    ids = [
        row[0]
        for row in conn.execute(
            """SELECT * FROM skiplock.enqueue_many('[{"task": "t", "unique_key": "k"},"""
            """ {"task": "t", "args": {"n": 2}, "unique_key": "k"}, {"task": "t"},"""
            """ {"task": "t", "unique_key": "held"},"""
            """ {"task": "t", "unique_key": "p", "unique_for": 3600}]')"""
        )
    ]
    assert ids[0] == ids[1] and ids[3] == held
    assert len({ids[0], ids[2], held, ids[4]}) == 4
    assert job_count(conn) == 4
    assert conn.execute(
        "SELECT scope::text, period FROM skiplock.unique_keys WHERE key = 'p'"
    ).fetchone() == ("period", timedelta(hours=1))


def test_a_bad_callback_url_raises_even_when_the_key_is_held(conn: psycopg.Connection) -> None:
    holder = enqueue(conn, "k")
    with pytest.raises(psycopg.errors.CheckViolation, match="callback_url_http"):
        enqueue(conn, "k", callback_url="ftp://example.com/hook")
    assert enqueue(conn, "k") == holder
    assert job_count(conn) == 1
