"""Dependencies: a job waits until the jobs it depends on succeed; policies on failure."""

from __future__ import annotations

import asyncio

import psycopg
import pytest

import skiplock
from skiplock.worker import Worker

W = "00000000-0000-0000-0000-0000000000dd"


def enqueue(conn: psycopg.Connection, task: str, deps: list[int] = (), policy: str = "fail") -> int:
    return conn.execute(
        "SELECT skiplock.enqueue(%s, depends_on => %s::bigint[], on_dependency_failure => %s)",
        (task, list(deps) or None, policy),
    ).fetchone()[0]


def status(conn: psycopg.Connection, job_id: int) -> str:
    return conn.execute("SELECT status FROM skiplock.all_jobs WHERE id = %s", (job_id,)).fetchone()[
        0
    ]


def run(conn: psycopg.Connection, *, fail: bool = False) -> list[int]:
    """Claim what is ready and complete (or fail for good) all of it."""
    rows = conn.execute(
        "SELECT id, attempt FROM skiplock.claim_jobs(%s, '{default}', 100)", (W,)
    ).fetchall()
    ids, attempts = [r[0] for r in rows], [r[1] for r in rows]
    if fail:
        conn.execute(
            "SELECT skiplock.fail_jobs(%s, %s::bigint[], %s::integer[], %s::jsonb[])",
            (W, ids, attempts, ['{"error": "boom", "retry": false}'] * len(ids)),
        )
    else:
        conn.execute(
            "SELECT skiplock.complete_jobs(%s, %s::bigint[], %s::integer[], %s::jsonb[])",
            (W, ids, attempts, ["null"] * len(ids)),
        )
    return ids


def test_a_chain_runs_in_order(conn: psycopg.Connection) -> None:
    a = enqueue(conn, "a")
    b = enqueue(conn, "b", [a])
    c = enqueue(conn, "c", [a, b])
    assert [status(conn, i) for i in (a, b, c)] == ["queued", "waiting", "waiting"]
    assert run(conn) == [a]
    assert [status(conn, i) for i in (b, c)] == ["queued", "waiting"]
    assert run(conn) == [b]
    assert run(conn) == [c]
    assert conn.execute("SELECT count(*) FROM skiplock.job_dependencies").fetchone() == (0,)


def test_already_finished_dependencies_settle_at_enqueue(conn: psycopg.Connection) -> None:
    a = enqueue(conn, "a")
    run(conn)
    assert status(conn, enqueue(conn, "b", [a])) == "queued"
    bad = enqueue(conn, "x")
    run(conn, fail=True)
    assert status(conn, enqueue(conn, "y", [bad])) == "failed"
    assert status(conn, enqueue(conn, "z", [bad], "run")) == "queued"


@pytest.mark.parametrize(
    ("policy", "expected"), [("fail", "failed"), ("cancel", "cancelled"), ("run", "queued")]
)
def test_failure_policies(conn: psycopg.Connection, policy: str, expected: str) -> None:
    a = enqueue(conn, "a")
    b = enqueue(conn, "b", [a], policy)
    run(conn, fail=True)
    assert status(conn, a) == "failed"
    assert status(conn, b) == expected
    if expected != "queued":
        (err,) = conn.execute(
            "SELECT last_error FROM skiplock.all_jobs WHERE id = %s", (b,)
        ).fetchone()
        assert err["type"] == "DependencyFailed" and f"dependency {a}" in err["error"]


def test_one_settle_decides_many_jobs_each_by_its_own_policy(conn: psycopg.Connection) -> None:
    ok, bad, other_bad = enqueue(conn, "ok"), enqueue(conn, "bad"), enqueue(conn, "bad2")
    children = {
        "ready": enqueue(conn, "c", [ok]),
        "still waiting": enqueue(conn, "c", [ok, enqueue(conn, "later")]),
        "fail": enqueue(conn, "c", [ok, other_bad, bad], "fail"),
        "cancel": enqueue(conn, "c", [bad], "cancel"),
        "run": enqueue(conn, "c", [ok, bad], "run"),
    }
    # the parents finish while nobody settles the children (as in a missed wake-up) ...
    edges = conn.execute("DELETE FROM skiplock.job_dependencies RETURNING *").fetchall()
    conn.execute("SELECT skiplock._finish_jobs(NULL, %s, NULL, 'succeeded', NULL, now())", ([ok],))
    conn.execute(
        "SELECT skiplock._finish_jobs(NULL, %s, NULL, 'cancelled', NULL, now())",
        ([bad, other_bad],),
    )
    with conn.cursor() as cur:
        cur.executemany("INSERT INTO skiplock.job_dependencies VALUES (%s, %s)", edges)
    # ... then one call settles them all
    conn.execute("SELECT skiplock._settle_waiting_jobs(%s)", (list(children.values()),))
    assert {name: status(conn, i) for name, i in children.items()} == {
        "ready": "queued",
        "still waiting": "waiting",
        "fail": "failed",
        "cancel": "cancelled",
        "run": "queued",
    }
    (err,) = conn.execute(
        "SELECT last_error FROM skiplock.all_jobs WHERE id = %s", (children["fail"],)
    ).fetchone()
    # the lowest dependency that did not succeed is the one named
    assert f"dependency {bad} did not succeed (cancelled)" in err["error"]
    left = conn.execute("SELECT job_id FROM skiplock.job_dependencies").fetchall()
    assert left == [(children["still waiting"],)]


def test_failure_cascades_down_a_chain_and_cancel_counts_as_failure(
    conn: psycopg.Connection,
) -> None:
    a = enqueue(conn, "a")
    b = enqueue(conn, "b", [a])
    c = enqueue(conn, "c", [b])
    conn.execute("SELECT skiplock.cancel_job(%s)", (a,))
    assert [status(conn, i) for i in (a, b, c)] == ["cancelled", "failed", "failed"]


def test_cancelling_a_waiting_job_drops_its_dependencies(conn: psycopg.Connection) -> None:
    a = enqueue(conn, "a")
    b = enqueue(conn, "b", [a])
    assert conn.execute("SELECT skiplock.cancel_job(%s)", (b,)).fetchone() == ("cancelled",)
    assert conn.execute("SELECT count(*) FROM skiplock.job_dependencies").fetchone() == (0,)
    run(conn)
    assert status(conn, b) == "cancelled"


def test_the_sweep_settles_a_missed_wake_up(conn: psycopg.Connection) -> None:
    a = enqueue(conn, "a")
    b = enqueue(conn, "b", [a])
    # A lost race, written directly: a finished while b was enqueued, and nobody settled b.
    conn.execute("DELETE FROM skiplock.job_dependencies")
    run(conn)
    conn.execute("INSERT INTO skiplock.job_dependencies VALUES (%s, %s)", (a, b))
    assert status(conn, b) == "waiting"
    assert conn.execute("SELECT skiplock.sweep_waiting_jobs()").fetchone() == (1,)
    assert status(conn, b) == "queued"


def test_unknown_dependencies_are_refused(conn: psycopg.Connection) -> None:
    with pytest.raises(psycopg.errors.ForeignKeyViolation, match="424242"):
        enqueue(conn, "b", [424242])
    with pytest.raises(psycopg.errors.InvalidTextRepresentation):
        enqueue(conn, "b", [enqueue(conn, "a")], "sometimes")
    assert conn.execute("SELECT count(*) FROM skiplock.all_jobs").fetchone() == (1,)


def test_bulk_takes_dependencies(conn: psycopg.Connection) -> None:
    first = enqueue(conn, "a")
    ids = [
        row[0]
        for row in conn.execute(
            "SELECT * FROM skiplock.enqueue_many(%s::jsonb)",
            (
                f'[{{"task": "b"}}, {{"task": "c", "depends_on": [{first}],'
                f' "on_dependency_failure": "run"}}]',
            ),
        )
    ]
    assert [status(conn, job_id) for job_id in ids] == ["queued", "waiting"]
    assert conn.execute(
        "SELECT depends_on, on_dependency_failure::text FROM skiplock.jobs WHERE id = %s",
        (ids[1],),
    ).fetchone() == ([first], "run")


def test_a_worker_runs_a_python_chain_in_order(dsn: str, conn: psycopg.Connection) -> None:
    app = skiplock.App(dsn)
    order: list[str] = []

    @app.task(name="step")
    async def step(name: str) -> str:
        order.append(name)
        return name

    first = step.enqueue(name="first")
    second = app.enqueue("step", {"name": "second"}, depends_on=[first])
    third = app.enqueue("step", {"name": "third"}, depends_on=[second])
    (fourth,) = app.enqueue_many(
        [{"task": "step", "args": {"name": "fourth"}, "depends_on": [third]}]
    )

    async def body() -> None:
        worker = Worker(app, poll_interval=0.05)
        runner = asyncio.create_task(worker.run())
        for _ in range(400):
            if status(conn, fourth) == "succeeded":
                break
            await asyncio.sleep(0.025)
        worker.stop()
        await runner

    asyncio.run(body())
    assert order == ["first", "second", "third", "fourth"]
    app.close()
