"""cancel_workflow and retry_workflow: a workflow stopped or run again as one unit,
through the single-job transitions and the dependency machinery."""

from __future__ import annotations

import json
from typing import Any

import psycopg
import pytest

W = "00000000-0000-0000-0000-0000000000ee"


def enqueue_workflow(conn: psycopg.Connection, document: Any) -> int:
    return conn.execute(
        "SELECT skiplock.enqueue_workflow(%s::jsonb)", (json.dumps(document),)
    ).fetchone()[0]


def steps(conn: psycopg.Connection, workflow_id: int) -> dict[str, str]:
    return dict(
        conn.execute(
            "SELECT step, status FROM skiplock.workflow_jobs WHERE workflow_id = %s"
            " ORDER BY position",
            (workflow_id,),
        ).fetchall()
    )


def summary(conn: psycopg.Connection, workflow_id: int) -> dict[str, Any]:
    cursor = conn.execute("SELECT * FROM skiplock.workflow_stats WHERE id = %s", (workflow_id,))
    names = [c.name for c in cursor.description]
    return dict(zip(names, cursor.fetchone(), strict=True))


def run(conn: psycopg.Connection, results: dict[str, Any] | None = None) -> dict[str, Any]:
    """Claim what is ready in the default queue; complete each job with results[task]
    (default: none), or fail it for good when that is "FAIL". Returns {task: args}."""
    results = results or {}
    rows = conn.execute(
        "SELECT id, attempt, task, args FROM skiplock.claim_jobs(%s, '{default,other}', 100)", (W,)
    ).fetchall()
    for job_id, attempt, task, _ in rows:
        if results.get(task) == "FAIL":
            conn.execute(
                "SELECT skiplock.fail_jobs(%s, ARRAY[%s]::bigint[], ARRAY[%s],"
                ' ARRAY[\'{"error": "boom", "retry": false}\'::jsonb])',
                (W, job_id, attempt),
            )
        else:
            conn.execute(
                "SELECT skiplock.complete_jobs(%s, ARRAY[%s]::bigint[], ARRAY[%s],"
                " ARRAY[%s::jsonb])",
                (W, job_id, attempt, json.dumps(results.get(task))),
            )
    return {task: args for _, _, task, args in rows}


DIAMOND = {
    "steps": [
        {"name": "a", "task": "t.a"},
        {"name": "b", "task": "t.b", "after": ["a"], "result_arg": "prev"},
        {"name": "c", "task": "t.c", "after": ["a"]},
        {"name": "d", "task": "t.d", "after": ["c", "b"], "results_arg": "inputs"},
    ]
}


def job_of(conn: psycopg.Connection, workflow_id: int, step: str) -> int:
    return conn.execute(
        "SELECT job_id FROM skiplock.workflow_steps WHERE workflow_id = %s AND name = %s",
        (workflow_id, step),
    ).fetchone()[0]


def cancel(conn: psycopg.Connection, workflow_id: int, pattern: str | None = None) -> int:
    return conn.execute(
        "SELECT skiplock.cancel_workflow(%s, %s)", (workflow_id, pattern)
    ).fetchone()[0]


def retry(conn: psycopg.Connection, workflow_id: int, pattern: str | None = None) -> int:
    return conn.execute(
        "SELECT skiplock.retry_workflow(%s, %s)", (workflow_id, pattern)
    ).fetchone()[0]


def test_cancel_ends_pending_steps_at_once_and_asks_running_ones_to_stop(
    conn: psycopg.Connection,
) -> None:
    wf = enqueue_workflow(conn, DIAMOND)
    conn.execute("LISTEN skiplock_cancel")
    # a runs (claimed, not finished); b, c, d wait behind it
    claimed = conn.execute("SELECT id FROM skiplock.claim_jobs(%s, '{default}', 1)", (W,))
    assert claimed.fetchall() == [(job_of(conn, wf, "a"),)]

    assert cancel(conn, wf) == 4
    assert steps(conn, wf) == {"a": "running", "b": "cancelled", "c": "cancelled", "d": "cancelled"}
    cancel_requested = conn.execute(
        "SELECT cancel_requested_at IS NOT NULL FROM skiplock.jobs WHERE id = %s",
        (job_of(conn, wf, "a"),),
    ).fetchone()[0]
    assert cancel_requested
    assert [n.payload for n in conn.notifies(timeout=1, stop_after=1)] == [
        str(job_of(conn, wf, "a"))
    ]

    # the worker sees the request and gives up: the step ends cancelled, as cancel_job's do
    conn.execute(
        "SELECT skiplock.fail_jobs(%s, ARRAY[%s]::bigint[], ARRAY[1],"
        ' ARRAY[\'{"error": "stopped"}\'::jsonb])',
        (W, job_of(conn, wf, "a")),
    )
    assert summary(conn, wf)["state"] == "cancelled"
    assert summary(conn, wf)["cancelled"] == 4


def test_waiting_steps_are_cancelled_not_settled_whatever_their_policy(
    conn: psycopg.Connection,
) -> None:
    document = {
        "steps": [
            {"name": "a", "task": "t.a"},
            {"name": "fail", "task": "t.f", "after": ["a"]},
            {"name": "runs", "task": "t.r", "after": ["a"], "on_dependency_failure": "run"},
        ]
    }
    wf = enqueue_workflow(conn, document)
    assert cancel(conn, wf) == 3
    assert steps(conn, wf) == {"a": "cancelled", "fail": "cancelled", "runs": "cancelled"}
    assert conn.execute("SELECT count(*) FROM skiplock.jobs").fetchone()[0] == 0
    assert conn.execute("SELECT count(*) FROM skiplock.job_dependencies").fetchone()[0] == 0


def test_cancelling_a_finished_workflow_is_a_noop_that_says_so(conn: psycopg.Connection) -> None:
    wf = enqueue_workflow(conn, {"steps": [{"name": "a", "task": "t.a"}]})
    run(conn)
    notices: list[str] = []
    conn.add_notice_handler(lambda d: notices.append(d.message_primary or ""))
    assert cancel(conn, wf) == 0
    assert notices == [f"workflow {wf} has already finished; nothing to cancel"]
    assert steps(conn, wf) == {"a": "succeeded"}


@pytest.mark.parametrize("function", ["cancel_workflow", "retry_workflow"])
def test_an_unknown_workflow_is_refused(conn: psycopg.Connection, function: str) -> None:
    with pytest.raises(psycopg.errors.NoDataFound, match="workflow 999 not found"):
        conn.execute(f"SELECT skiplock.{function}(999)")


def test_a_queue_pattern_cancels_only_the_steps_in_its_queues(conn: psycopg.Connection) -> None:
    wf = enqueue_workflow(
        conn,
        {
            "steps": [
                {"name": "a", "task": "t.a", "queue": "emails"},
                {"name": "b", "task": "t.b", "queue": "billing"},
            ]
        },
    )
    with pytest.raises(psycopg.errors.NoDataFound, match=f"workflow {wf} not found"):
        cancel(conn, wf, "sms*")
    assert cancel(conn, wf, "email*") == 1
    assert steps(conn, wf) == {"a": "cancelled", "b": "queued"}


def test_retry_runs_the_failed_part_again_in_graph_order_with_results(
    conn: psycopg.Connection,
) -> None:
    wf = enqueue_workflow(conn, DIAMOND)
    run(conn, {"t.a": 1})
    run(conn, {"t.b": "FAIL", "t.c": 3})
    # d failed because b did
    assert steps(conn, wf) == {"a": "succeeded", "b": "failed", "c": "succeeded", "d": "failed"}
    assert summary(conn, wf)["state"] == "failed"

    assert retry(conn, wf) == 2
    assert steps(conn, wf) == {"a": "succeeded", "b": "queued", "c": "succeeded", "d": "waiting"}
    # b gets its parent's result again; d waits for b, then gets both results in order
    assert run(conn, {"t.b": 2}) == {"t.b": {"prev": 1}}
    assert run(conn) == {"t.d": {"inputs": [3, 2]}}
    assert summary(conn, wf)["state"] == "succeeded"
    attempts = conn.execute(
        "SELECT attempt, jsonb_array_length(errors) FROM skiplock.all_jobs WHERE id = %s",
        (job_of(conn, wf, "b"),),
    ).fetchone()
    assert attempts == (1, 1)  # attempts reset, the first run's error kept


def test_a_cancelled_workflow_runs_again_from_where_it_stopped(conn: psycopg.Connection) -> None:
    wf = enqueue_workflow(conn, DIAMOND)
    run(conn, {"t.a": 1})
    assert cancel(conn, wf) == 3  # b and c queued, d waiting: never got results
    assert retry(conn, wf) == 3
    assert steps(conn, wf) == {"a": "succeeded", "b": "queued", "c": "queued", "d": "waiting"}
    assert run(conn, {"t.b": "B", "t.c": "C"}) == {"t.b": {"prev": 1}, "t.c": {}}
    assert run(conn) == {"t.d": {"inputs": ["C", "B"]}}
    assert summary(conn, wf)["state"] == "succeeded"


def test_a_step_that_fails_again_takes_its_children_with_it_again(
    conn: psycopg.Connection,
) -> None:
    wf = enqueue_workflow(
        conn,
        {
            "steps": [
                {"name": "a", "task": "t.a"},
                {"name": "b", "task": "t.b", "after": ["a"], "on_dependency_failure": "cancel"},
                {"name": "c", "task": "t.c", "after": ["a"], "on_dependency_failure": "run"},
            ]
        },
    )
    run(conn, {"t.a": "FAIL"})
    run(conn)  # c runs anyway
    assert steps(conn, wf) == {"a": "failed", "b": "cancelled", "c": "succeeded"}
    assert retry(conn, wf) == 2  # a and b; c succeeded and keeps its result
    assert steps(conn, wf) == {"a": "queued", "b": "waiting", "c": "succeeded"}
    run(conn, {"t.a": "FAIL"})
    # b's policy came back with it: cancelled again, not dead-lettered
    assert steps(conn, wf) == {"a": "failed", "b": "cancelled", "c": "succeeded"}


def test_expired_steps_are_retried(conn: psycopg.Connection) -> None:
    wf = enqueue_workflow(
        conn,
        {
            "steps": [
                {"name": "a", "task": "t.a", "expires_in": 1},
                {"name": "b", "task": "t.b", "after": ["a"]},
            ]
        },
    )
    conn.execute("SELECT skiplock.expire_jobs(p_now => now() + interval '1 minute')")
    assert steps(conn, wf) == {"a": "expired", "b": "failed"}
    assert retry(conn, wf) == 2
    run(conn)
    run(conn)
    assert summary(conn, wf)["state"] == "succeeded"


def test_retry_refuses_an_unfinished_workflow_and_pruned_records(
    conn: psycopg.Connection,
) -> None:
    wf = enqueue_workflow(conn, DIAMOND)
    with pytest.raises(psycopg.errors.ObjectNotInPrerequisiteState, match="has not finished"):
        retry(conn, wf)
    run(conn, {"t.a": "FAIL"})
    conn.execute("DELETE FROM skiplock.dead_jobs WHERE id = %s", (job_of(conn, wf, "a"),))
    with pytest.raises(
        psycopg.errors.ObjectNotInPrerequisiteState, match="records of steps a were pruned"
    ):
        retry(conn, wf)
    # a queue-limited caller is not told of a pruned step (it has no queue any more); its
    # steps retried after a parent whose record is gone fail again at once
    assert retry(conn, wf, "default") == 3
    assert steps(conn, wf) == {"a": None, "b": "failed", "c": "failed", "d": "failed"}


def test_retrying_a_succeeded_workflow_does_nothing(conn: psycopg.Connection) -> None:
    wf = enqueue_workflow(conn, {"steps": [{"name": "a", "task": "t.a"}]})
    run(conn)
    assert retry(conn, wf) == 0
    assert steps(conn, wf) == {"a": "succeeded"}


def test_a_queue_pattern_retries_only_its_steps(conn: psycopg.Connection) -> None:
    wf = enqueue_workflow(
        conn,
        {
            "steps": [
                {"name": "a", "task": "t.a", "queue": "other"},
                {"name": "b", "task": "t.b", "after": ["a"]},
            ]
        },
    )
    run(conn, {"t.a": "FAIL"})
    # b is retried, but its parent in a queue it cannot touch failed: b fails again at once
    assert retry(conn, wf, "default") == 1
    assert steps(conn, wf) == {"a": "failed", "b": "failed"}
    assert retry(conn, wf) == 2
    assert steps(conn, wf) == {"a": "queued", "b": "waiting"}


def test_steps_remember_their_policy(conn: psycopg.Connection) -> None:
    wf = enqueue_workflow(
        conn,
        {
            "steps": [
                {"name": "a", "task": "t.a"},
                {"name": "b", "task": "t.b", "after": ["a"], "on_dependency_failure": "run"},
            ]
        },
    )
    rows = conn.execute(
        "SELECT name, on_dependency_failure::text FROM skiplock.workflow_steps"
        " WHERE workflow_id = %s ORDER BY position",
        (wf,),
    ).fetchall()
    assert rows == [("a", "fail"), ("b", "run")]


def test_retry_and_cancel_run_one_after_the_other(connect: Any) -> None:
    with connect() as setup:
        wf = enqueue_workflow(setup, DIAMOND)
        run(setup, {"t.a": "FAIL"})
        setup.commit()
    first, second = connect(), connect()
    try:
        assert retry(first, wf) == 4
        # the second caller waits for the first's lock, then sees the steps back
        second.execute("SET lock_timeout = '200ms'")
        with pytest.raises(psycopg.errors.LockNotAvailable):
            retry(second, wf)
        second.rollback()
        first.commit()
        with pytest.raises(psycopg.errors.ObjectNotInPrerequisiteState):
            retry(second, wf)
        second.rollback()
        assert cancel(second, wf) == 4
    finally:
        first.close()
        second.close()
