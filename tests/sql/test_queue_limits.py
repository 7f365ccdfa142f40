"""Queue limits across all workers, enforced inside claim_jobs."""

from __future__ import annotations

import threading
from collections.abc import Callable

import psycopg
from click.testing import CliRunner

import skiplock
from skiplock.cli import main

W = "00000000-0000-0000-0000-0000000000ff"


def fill(conn: psycopg.Connection, queue: str, n: int) -> None:
    conn.execute(
        "SELECT skiplock.enqueue_many((SELECT jsonb_agg(jsonb_build_object('task', 't',"
        " 'queue', %s::text)) FROM generate_series(1, %s)))",
        (queue, n),
    )


def claim(conn: psycopg.Connection, queues: str, n: int = 50, now: str = "now()") -> list[tuple]:
    return conn.execute(
        f"SELECT id, attempt, queue FROM skiplock.claim_jobs(%s, %s, %s, p_now => {now})",
        (W, queues.split(","), n),
    ).fetchall()


def test_max_running_caps_claims_and_frees_with_finishes(conn: psycopg.Connection) -> None:
    fill(conn, "limited", 10)
    fill(conn, "free", 10)
    conn.execute("SELECT skiplock.set_queue_limits('limited', p_max_running => 3)")
    got = claim(conn, "limited,free")
    assert sum(1 for r in got if r[2] == "limited") == 3
    assert sum(1 for r in got if r[2] == "free") == 10  # other queues are not held back
    assert claim(conn, "limited") == []
    done = next(r for r in got if r[2] == "limited")
    conn.execute(
        "SELECT skiplock.complete_jobs(%s, ARRAY[%s]::bigint[], ARRAY[%s], '{null}')",
        (W, done[0], done[1]),
    )
    assert len(claim(conn, "limited")) == 1


def test_rate_limit_counts_starts_per_window(conn: psycopg.Connection) -> None:
    fill(conn, "api", 20)
    conn.execute(
        "SELECT skiplock.set_queue_limits('api', p_rate_limit => 5, p_rate_period => '1 minute')"
    )
    assert len(claim(conn, "api", 3)) == 3
    assert len(claim(conn, "api")) == 2
    assert claim(conn, "api") == []
    assert len(claim(conn, "api", now="now() + interval '61 seconds'")) == 5
    stats = conn.execute(
        "SELECT max_running, rate_limit, rate_period FROM skiplock.queue_stats WHERE queue = 'api'"
    ).fetchone()
    assert stats[0] is None and stats[1] == 5


def test_concurrent_claimers_never_overshoot(
    conn: psycopg.Connection, connect: Callable[..., psycopg.Connection]
) -> None:
    fill(conn, "limited", 200)
    conn.execute("SELECT skiplock.set_queue_limits('limited', p_max_running => 7)")
    conns = [connect(autocommit=True) for _ in range(8)]
    barrier = threading.Barrier(8)
    counts: list[int] = []

    def run(c: psycopg.Connection) -> None:
        barrier.wait()
        counts.append(len(claim(c, "limited", 5)))

    threads = [threading.Thread(target=run, args=(c,)) for c in conns]
    for t in threads:
        t.start()
    for t in threads:
        t.join(30)
    assert sum(counts) == 7


def test_bad_limits_are_refused(conn: psycopg.Connection) -> None:
    import pytest

    with pytest.raises(psycopg.errors.CheckViolation, match="max_running_positive"):
        conn.execute("SELECT skiplock.set_queue_limits('q', p_max_running => 0)")
    with pytest.raises(psycopg.errors.CheckViolation, match="rate_limit_complete"):
        conn.execute("SELECT skiplock.set_queue_limits('q', p_rate_limit => 5)")


def test_python_and_cli(dsn: str, conn: psycopg.Connection) -> None:
    app = skiplock.App(dsn)
    app.set_queue_limits("mail", max_running=4, rate_limit=100, rate_period=60)
    app.close()
    result = CliRunner().invoke(main, ["--dsn", dsn, "queues"])
    assert "max 4 running, 100 per 60 s" in result.stdout
    # the limit given is set, the other kept; --clear clears one
    result = CliRunner().invoke(main, ["--dsn", dsn, "queues", "set", "mail", "--rate", "10/1"])
    assert result.exit_code == 0 and result.stdout == "queue mail: max 4 running, 10 per 1 s\n"
    limits = "SELECT max_running, rate_limit FROM skiplock.queues WHERE name = 'mail'"
    assert conn.execute(limits).fetchone() == (4, 10)
    result = CliRunner().invoke(
        main, ["--dsn", dsn, "queues", "set", "mail", "--clear", "max-running"]
    )
    assert result.exit_code == 0 and result.stdout == "queue mail: 10 per 1 s\n"
    assert conn.execute(limits).fetchone() == (None, 10)
    result = CliRunner().invoke(main, ["--dsn", dsn, "queues", "set", "mail", "--rate", "x"])
    assert result.exit_code == 2
