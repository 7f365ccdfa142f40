"""claim_jobs over several queues: a queue's priority before its jobs' priorities, and
weights that split each claim in proportion (sql/functions/040_claim.sql)."""

from __future__ import annotations

import json
import uuid
from collections import Counter
from typing import Any

import psycopg

W = uuid.UUID("00000000-0000-4000-8000-0000000000c1")


def fill(conn: psycopg.Connection[Any], queue: str, n: int, priority: int = 0) -> None:
    jobs = [{"task": "t", "queue": queue, "priority": priority}] * n
    conn.execute("SELECT skiplock.enqueue_many(%s)", (json.dumps(jobs),))


def order(conn: psycopg.Connection[Any], queue: str, priority: int, weight: int) -> None:
    conn.execute("SELECT skiplock.set_queue_order(%s, %s, %s)", (queue, priority, weight))


def claim(conn: psycopg.Connection[Any], queues: list[str], limit: int) -> list[str]:
    rows = conn.execute(
        "SELECT queue FROM skiplock.claim_jobs(%s, %s, %s)", (W, queues, limit)
    ).fetchall()
    return [r[0] for r in rows]


def test_a_higher_priority_queue_is_emptied_first_whatever_its_jobs_priorities(
    conn: psycopg.Connection[Any],
) -> None:
    fill(conn, "urgent", 7, priority=-50)
    fill(conn, "bulk", 7, priority=100)
    order(conn, "urgent", 10, 1)
    assert claim(conn, ["bulk", "urgent"], 5) == ["urgent"] * 5
    assert sorted(claim(conn, ["bulk", "urgent"], 5)) == ["bulk"] * 3 + ["urgent"] * 2


def test_equal_weights_keep_job_priority_across_queues(conn: psycopg.Connection[Any]) -> None:
    fill(conn, "a", 5, priority=10)
    fill(conn, "b", 5, priority=5)
    order(conn, "a", 0, 4)
    order(conn, "b", 0, 4)
    assert claim(conn, ["a", "b"], 5) == ["a"] * 5


def test_weights_split_a_claim_in_proportion(conn: psycopg.Connection[Any]) -> None:
    fill(conn, "heavy", 2000)
    fill(conn, "light", 2000, priority=100)  # weights, not job priorities, decide
    order(conn, "heavy", 0, 3)
    conn.execute("SELECT setseed(0.25)")
    counts = Counter(claim(conn, ["heavy", "light"], 400))
    # (n - 1 + e) / weight: about 300 and 100, give or take the draw
    assert 270 <= counts["heavy"] <= 330, counts
    assert counts["heavy"] + counts["light"] == 400


def test_one_job_claims_follow_the_weights_too(conn: psycopg.Connection[Any]) -> None:
    fill(conn, "heavy", 600)
    fill(conn, "light", 600)
    order(conn, "heavy", 0, 3)
    conn.execute("SELECT setseed(0.5)")
    counts = Counter(q for _ in range(400) for q in claim(conn, ["heavy", "light"], 1))
    # a share of 3/4 in 400 draws: 300, standard deviation under 9
    assert 260 <= counts["heavy"] <= 340, counts


def test_a_queue_that_runs_out_leaves_its_share_to_the_others(
    conn: psycopg.Connection[Any],
) -> None:
    fill(conn, "heavy", 100)
    fill(conn, "light", 5)
    order(conn, "light", 0, 10)
    assert Counter(claim(conn, ["heavy", "light"], 40)) == {"heavy": 35, "light": 5}


def test_a_limited_queue_keeps_its_limit_under_weights(conn: psycopg.Connection[Any]) -> None:
    fill(conn, "heavy", 100)
    fill(conn, "capped", 100)
    order(conn, "capped", 0, 9)
    conn.execute("SELECT skiplock.set_queue_limits('capped', p_max_running => 4)")
    assert Counter(claim(conn, ["heavy", "capped"], 40)) == {"heavy": 36, "capped": 4}
