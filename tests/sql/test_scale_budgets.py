"""The hot path does not grow with the data: at 10M jobs of history and 1M queued
(tests/budgets.py), claiming, heartbeating, completing and failing a batch, enqueuing and
the maintenance passes a worker runs touch a fixed number of rows and blocks, about
what they touch on an empty database. The `scale` tier: `pytest -m scale -n 0`."""

from __future__ import annotations

import uuid

import psycopg
import pytest

from budgets import counting

pytestmark = pytest.mark.scale

# For a batch of 10: the claim reads ~100 rows in ~130 blocks, a completion ~50 in
# ~140 (index maintenance of the history); a scan of the history would read 10M.
ROW_BUDGET = 1_000
BLOCK_BUDGET = 1_000
BATCH = 10


@pytest.fixture
def worker(scale_dsn: str) -> tuple[psycopg.Connection, uuid.UUID]:
    conn = psycopg.connect(scale_dsn, autocommit=True)
    worker_id = uuid.uuid4()
    conn.execute(
        "SELECT skiplock.register_worker(%s, 'scale', 1, ARRAY['default', 'emails'], %s, 'test')",
        (worker_id, BATCH),
    )
    return conn, worker_id


def claim(conn: psycopg.Connection, worker_id: uuid.UUID) -> tuple[list[int], list[int]]:
    rows = conn.execute(
        "SELECT id, attempt FROM skiplock.claim_jobs(%s, ARRAY['default', 'emails'], %s)",
        (worker_id, BATCH),
    ).fetchall()
    assert len(rows) == BATCH
    return [r[0] for r in rows], [r[1] for r in rows]


def within(touched: list[int], what: str) -> None:
    rows, blocks = touched
    assert rows <= ROW_BUDGET and blocks <= BLOCK_BUDGET, (what, rows, blocks)


def test_claim_heartbeat_and_complete(worker: tuple[psycopg.Connection, uuid.UUID]) -> None:
    conn, worker_id = worker
    with counting(conn) as claimed:
        ids, attempts = claim(conn, worker_id)
    within(claimed, "claim")
    with conn.transaction(force_rollback=True):
        ids, attempts = claim(conn, worker_id)
        with counting(conn) as beat:
            conn.execute(
                "SELECT * FROM skiplock.heartbeat_jobs(%s, %s, %s)", (worker_id, ids, attempts)
            ).fetchall()
        within(beat, "heartbeat")
        with counting(conn) as completed:
            done = conn.execute(
                "SELECT * FROM skiplock.complete_jobs(%s, %s, %s, %s::jsonb[])",
                (worker_id, ids, attempts, ["{}"] * BATCH),
            ).fetchall()
            assert len(done) == BATCH
        within(completed, "complete")


def test_fail_and_enqueue(worker: tuple[psycopg.Connection, uuid.UUID]) -> None:
    conn, worker_id = worker
    with conn.transaction(force_rollback=True):
        ids, attempts = claim(conn, worker_id)
        errors = ['{"error": "boom"}'] * BATCH
        with counting(conn) as failed:
            conn.execute(
                "SELECT * FROM skiplock.fail_jobs(%s, %s, %s, %s::jsonb[])",
                (worker_id, ids, attempts, errors),
            ).fetchall()
        within(failed, "fail")
    with counting(conn) as enqueued:
        conn.execute(
            "SELECT skiplock.enqueue('t', jsonb_build_object('n', g), queue => 'default')"
            " FROM generate_series(1, %s) g",
            (BATCH,),
        ).fetchall()
    within(enqueued, "enqueue")


def test_the_maintenance_passes(worker: tuple[psycopg.Connection, uuid.UUID]) -> None:
    conn, _ = worker
    for name, statement in (
        ("rescue", "SELECT * FROM skiplock.rescue_expired_jobs()"),
        ("expire", "SELECT * FROM skiplock.expire_jobs()"),
        ("sweep", "SELECT * FROM skiplock.sweep_waiting_jobs()"),
        ("sample depth", "SELECT skiplock.sample_queue_depth()"),
        ("fold metrics", "SELECT skiplock.fold_metrics()"),
    ):
        with counting(conn) as touched:
            conn.execute(statement).fetchall()
        # the depth sample reads up to its cap of 10,000 ready entries per queue
        limit = 100_000 if name == "sample depth" else ROW_BUDGET
        assert touched[0] <= limit and touched[1] <= 10 * BLOCK_BUDGET, (name, touched)
