"""Scenario 9, made deterministic: a claim over several queues must not hold rows it
does not claim, or a concurrent claimer skips them and starts lower-priority jobs of
the same queue first."""

from __future__ import annotations

import json
import uuid
from collections.abc import Callable
from typing import Any

import psycopg


def test_9_claim_over_queues_locks_only_what_it_claims(
    conn: psycopg.Connection[Any], connect: Callable[..., psycopg.Connection[Any]]
) -> None:
    jobs = [{"task": "t", "queue": "q1", "priority": 10}] * 5
    jobs += [{"task": "t", "queue": "q2", "priority": 5}] * 5
    jobs += [{"task": "t", "queue": "q2", "priority": 0}] * 5
    conn.execute("SELECT skiplock.enqueue_many(%s)", (json.dumps(jobs),))
    a, b = connect(), connect(autocommit=True)
    # A claims 5 over both queues and keeps its transaction open: it gets q1's jobs.
    claimed_a = a.execute(
        "SELECT queue, priority FROM skiplock.claim_jobs(%s, ARRAY['q1', 'q2'], 5)",
        (uuid.uuid4(),),
    ).fetchall()
    assert claimed_a == [("q1", 10)] * 5
    # B claims from q2 meanwhile: q2's best jobs are free, so B must get them.
    claimed_b = b.execute(
        "SELECT priority FROM skiplock.claim_jobs(%s, ARRAY['q2'], 5)", (uuid.uuid4(),)
    ).fetchall()
    a.commit()
    assert claimed_b == [(5,)] * 5
