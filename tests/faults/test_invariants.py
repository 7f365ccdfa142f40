"""The fault suite's invariant checks on histories built by hand: a check that passes a
legal history by mistake, or fails one, makes every scenario that uses it wrong."""

from __future__ import annotations

import uuid
from typing import Any

import psycopg
import pytest
from fault_fixtures import ledger_fixture  # noqa: F401
from harness import check_i4_fenced
from psycopg.types.json import Jsonb

WORKER_A, WORKER_B = uuid.uuid4(), uuid.uuid4()


def run(conn: psycopg.Connection[Any], worker: uuid.UUID, *, succeed: bool) -> int:
    """Claim the one queued job as `worker`, log its start and finish in the ledger as the
    handler would, and complete or fail it. Returns the attempt."""
    job_id, attempt = conn.execute(
        # As of tomorrow: a failed attempt's retry is due after its backoff.
        "SELECT id, attempt FROM skiplock.claim_jobs(%s, '{default}', 1,"
        " p_now => now() + interval '1 day')",
        (worker,),
    ).fetchone() or (0, 0)
    for event in ("start", "finish"):
        conn.execute(
            "INSERT INTO ledger (job_id, attempt, worker_id, event, pid)"
            " VALUES (%s, %s, %s, %s, 0)",
            (job_id, attempt, worker, event),
        )
    # complete_jobs takes a result per job, fail_jobs an error: the same fourth argument.
    verdict, outcome = ("complete_jobs", None) if succeed else ("fail_jobs", {"error": "boom"})
    conn.execute(
        f"SELECT skiplock.{verdict}(%s, %s, %s, %s::jsonb[])",
        (worker, [job_id], [attempt], [None if outcome is None else Jsonb(outcome)]),
    )
    return int(attempt)


def test_i4_counts_only_the_runs_since_the_job_was_revived(
    ledger: psycopg.Connection[Any],
) -> None:
    (job_id,) = ledger.execute("SELECT skiplock.enqueue('t')").fetchone() or (0,)
    assert run(ledger, WORKER_A, succeed=False) == 1
    assert run(ledger, WORKER_B, succeed=True) == 2
    # retry_job revives the succeeded job with its attempts reset: attempt 1 again.
    ledger.execute("SELECT skiplock.retry_job(%s)", (job_id,))
    assert run(ledger, WORKER_A, succeed=True) == 1
    check_i4_fenced(ledger)


def test_i4_fails_a_finish_the_ledger_never_saw(ledger: psycopg.Connection[Any]) -> None:
    ledger.execute("SELECT skiplock.enqueue('t')")
    run(ledger, WORKER_A, succeed=True)
    ledger.execute("DELETE FROM ledger WHERE event = 'finish'")
    with pytest.raises(AssertionError, match="I4"):
        check_i4_fenced(ledger)


def test_i4_fails_a_success_under_an_earlier_claim(ledger: psycopg.Connection[Any]) -> None:
    ledger.execute("SELECT skiplock.enqueue('t')")
    run(ledger, WORKER_A, succeed=False)
    run(ledger, WORKER_B, succeed=True)
    # The history says attempt 2 succeeded; make it say the first, superseded claim did.
    ledger.execute("UPDATE skiplock.job_history SET attempt = 1, worker_id = %s", (WORKER_A,))
    with pytest.raises(AssertionError, match="I4"):
        check_i4_fenced(ledger)
