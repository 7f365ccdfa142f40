"""A queue's default retry policy and timeout, for its jobs that set none of their own."""

from __future__ import annotations

import datetime

import psycopg
import pytest
from click.testing import CliRunner

from skiplock.cli import main

W = "00000000-0000-0000-0000-0000000000ee"


def fail_once(conn: psycopg.Connection, queue: str) -> float:
    """Claim the queue's one job, fail it, and return the retry delay in seconds."""
    (job_id, attempt) = conn.execute(
        "SELECT id, attempt FROM skiplock.claim_jobs(%s, %s, 1)", (W, [queue])
    ).fetchone()
    conn.execute(
        "SELECT skiplock.fail_jobs(%s, ARRAY[%s::bigint], ARRAY[%s], ARRAY[%s::jsonb])",
        (W, job_id, attempt, '{"error": "x"}'),
    )
    return conn.execute(
        "SELECT extract(epoch FROM run_at - now()) FROM skiplock.jobs WHERE id = %s", (job_id,)
    ).fetchone()[0]


def test_failing_job_retries_by_its_queues_policy(conn: psycopg.Connection) -> None:
    conn.execute(
        "SELECT skiplock.set_queue_defaults('slow', retry_policy => "
        """'{"kind": "fixed", "base": 500, "jitter": 0}')"""
    )
    conn.execute("SELECT skiplock.enqueue('t', queue => 'slow')")
    assert fail_once(conn, "slow") == pytest.approx(500, abs=5)
    # without a queue default: the built-in policy (1 s, exponential)
    conn.execute("SELECT skiplock.enqueue('t', queue => 'plain')")
    assert fail_once(conn, "plain") <= 1


def test_job_policy_wins_over_the_queues(conn: psycopg.Connection) -> None:
    conn.execute(
        "SELECT skiplock.set_queue_defaults('slow', retry_policy => "
        """'{"kind": "fixed", "base": 500, "jitter": 0}')"""
    )
    conn.execute(
        "SELECT skiplock.enqueue('t', queue => 'slow', retry_policy => "
        """'{"kind": "fixed", "base": 60, "jitter": 0}')"""
    )
    assert fail_once(conn, "slow") == pytest.approx(60, abs=5)


def test_claim_returns_the_queues_timeout_unless_the_job_has_one(
    conn: psycopg.Connection,
) -> None:
    conn.execute("SELECT skiplock.set_queue_defaults('q', timeout => interval '30 seconds')")
    conn.execute("SELECT skiplock.enqueue('t', queue => 'q')")
    conn.execute("SELECT skiplock.enqueue('t', queue => 'q', timeout => interval '5 seconds')")
    conn.execute("SELECT skiplock.enqueue('t', queue => 'other')")
    rows = conn.execute(
        "SELECT queue, extract(epoch FROM timeout) FROM skiplock.claim_jobs(%s, %s, 10)"
        " ORDER BY id",
        (W, ["q", "other"]),
    ).fetchall()
    assert rows == [("q", 30), ("q", 5), ("other", None)]
    # also through the claim of a queue with limits
    conn.execute("SELECT skiplock.set_queue_limits('q', p_max_running => 10)")
    conn.execute("SELECT skiplock.enqueue('t', queue => 'q')")
    rows = conn.execute(
        "SELECT extract(epoch FROM timeout) FROM skiplock.claim_jobs(%s, %s, 10)", (W, ["q"])
    ).fetchall()
    assert rows == [(30,)]


def test_defaults_show_in_queue_stats_and_null_clears(conn: psycopg.Connection) -> None:
    conn.execute(
        "SELECT skiplock.set_queue_defaults('q', retry_policy => '{\"base\": 2}',"
        " timeout => interval '1 minute')"
    )
    assert conn.execute(
        "SELECT retry_policy, timeout FROM skiplock.queue_stats WHERE queue = 'q'"
    ).fetchone() == ({"base": 2}, datetime.timedelta(minutes=1))
    conn.execute("SELECT skiplock.set_queue_defaults('q')")
    assert conn.execute(
        "SELECT retry_policy, timeout FROM skiplock.queue_stats WHERE queue = 'q'"
    ).fetchone() == (None, None)


@pytest.mark.parametrize(
    ("arguments", "message"),
    [
        ("""retry_policy => '{"kind": "random"}'""", "retry_policy_valid"),
        ("timeout => interval '0'", "queue_timeout_positive"),
    ],
)
def test_bad_defaults_are_refused(conn: psycopg.Connection, arguments: str, message: str) -> None:
    with pytest.raises(psycopg.errors.CheckViolation, match=message):
        conn.execute(f"SELECT skiplock.set_queue_defaults('q', {arguments})")


def test_cli_sets_shows_and_clears_defaults(conn: psycopg.Connection, dsn: str) -> None:
    conn.execute("SELECT skiplock.set_queue_limits('mail', p_max_running => 4)")
    policy = '{"kind": "fixed", "base": 30}'
    args = ["--dsn", dsn, "queues", "set", "mail", "--retry-policy", policy, "--timeout", "90"]
    result = CliRunner().invoke(main, args)
    assert result.exit_code == 0, result.output
    assert result.stdout == (
        'queue mail: defaults: retry {"base": 30, "kind": "fixed"}, timeout 90 s\n'
    )
    row = conn.execute(
        "SELECT max_running, retry_policy ->> 'base', timeout FROM skiplock.queues"
        " WHERE name = 'mail'"
    ).fetchone()
    assert row == (4, "30", datetime.timedelta(seconds=90))  # the limits stay
    listed = CliRunner().invoke(main, ["--dsn", dsn, "queues"])
    assert "max 4 running" in listed.stdout and "timeout 90 s" in listed.stdout
    clear = ["--clear", "max-running", "--clear", "retry-policy", "--clear", "timeout"]
    result = CliRunner().invoke(main, ["--dsn", dsn, "queues", "set", "mail", *clear])
    assert result.stdout == "queue mail: -; defaults: -\n"
    row = conn.execute(
        "SELECT max_running, retry_policy, timeout FROM skiplock.queues WHERE name = 'mail'"
    ).fetchone()
    assert row == (None, None, None)


@pytest.mark.parametrize(
    "option",
    [
        ["--retry-policy", "{"],
        ["--retry-policy", '{"kind": "random"}'],
        ["--retry-policy", '{"base": "1"}'],
        ["--retry-policy", '{"delay": 1}'],
        ["--timeout", "0"],
        ["--timeout", "1e300"],  # beyond any interval: a usage error, not an overflow
        ["--rate", "5/1e300"],
    ],
)
def test_cli_refuses_bad_defaults(conn: psycopg.Connection, dsn: str, option: list[str]) -> None:
    result = CliRunner().invoke(main, ["--dsn", dsn, "queues", "set", "mail", *option])
    assert result.exit_code == 2
    assert conn.execute("SELECT count(*) FROM skiplock.queues WHERE name = 'mail'").fetchone() == (
        0,
    )
