"""Workflows in SQL: enqueue_workflow checks the whole graph before writing anything,
steps receive their parents' results, and the views follow the workflow as a unit."""

from __future__ import annotations

import json
import re
from pathlib import Path
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


def run(conn: psycopg.Connection, results: dict[str, Any] | None = None) -> dict[str, dict]:
    """Claim what is ready; complete each job with results[task] (default: the task
    name), or fail it for good when the result is the string "FAIL". Returns
    {task: args} of the claimed jobs."""
    rows = conn.execute(
        "SELECT id, attempt, task, args FROM skiplock.claim_jobs(%s, '{default,other}', 100)",
        (W,),
    ).fetchall()
    results = results or {}
    done = [r for r in rows if results.get(r[2]) != "FAIL"]
    failed = [r for r in rows if results.get(r[2]) == "FAIL"]
    conn.execute(
        "SELECT skiplock.complete_jobs(%s, %s::bigint[], %s::integer[], %s::jsonb[])",
        (
            W,
            [r[0] for r in done],
            [r[1] for r in done],
            [json.dumps(results.get(r[2], r[2])) for r in done],
        ),
    )
    conn.execute(
        "SELECT skiplock.fail_jobs(%s, %s::bigint[], %s::integer[], %s::jsonb[])",
        (
            W,
            [r[0] for r in failed],
            [r[1] for r in failed],
            ['{"error": "boom", "retry": false}'] * len(failed),
        ),
    )
    return {r[2]: r[3] for r in rows}


DIAMOND = {
    "name": "diamond",
    "steps": [
        {"name": "a", "task": "t.a", "args": {"n": 1}},
        {"name": "b", "task": "t.b", "after": ["a"], "result_arg": "prev"},
        {"name": "c", "task": "t.c", "after": ["a"]},
        {"name": "d", "task": "t.d", "after": ["c", "b"], "results_arg": "inputs"},
    ],
}


def test_a_diamond_runs_in_order_and_passes_results(conn: psycopg.Connection) -> None:
    wf = enqueue_workflow(conn, DIAMOND)
    assert steps(conn, wf) == {"a": "queued", "b": "waiting", "c": "waiting", "d": "waiting"}
    assert summary(conn, wf)["state"] == "running"

    assert run(conn, {"t.a": {"rows": 3}}) == {"t.a": {"n": 1}}
    assert run(conn, {"t.b": "B", "t.c": ["C"]}) == {"t.b": {"prev": {"rows": 3}}, "t.c": {}}
    # all parents' results, in `after` order (c before b), not in finishing order
    assert run(conn) == {"t.d": {"inputs": [["C"], "B"]}}

    stats = summary(conn, wf)
    assert (stats["state"], stats["steps"], stats["succeeded"]) == ("succeeded", 4, 4)
    assert stats["finished_at"] is not None
    (meta,) = conn.execute(
        "SELECT meta FROM skiplock.all_jobs WHERE id = (SELECT job_id FROM"
        " skiplock.workflow_steps WHERE workflow_id = %s AND name = 'd')",
        (wf,),
    ).fetchone()
    assert meta == {"workflow_id": wf, "workflow_step": "d"}


def test_steps_take_enqueue_options(conn: psycopg.Connection) -> None:
    wf = enqueue_workflow(
        conn,
        {
            "steps": [
                {
                    "name": "x",
                    "task": "t.x",
                    "queue": "other",
                    "priority": 7,
                    "max_attempts": 3,
                    "timeout": 2.5,
                    "tags": ["etl"],
                    "meta": {"who": "ada"},
                    "retry_policy": {"kind": "fixed", "base": 1},
                    "delay": 60,
                }
            ]
        },
    )
    row = conn.execute(
        "SELECT queue, priority, max_attempts, timeout, tags, meta, retry_policy, status"
        " FROM skiplock.all_jobs WHERE id = (SELECT job_id FROM skiplock.workflow_steps"
        " WHERE workflow_id = %s)",
        (wf,),
    ).fetchone()
    assert row[:3] == ("other", 7, 3)
    assert row[3].total_seconds() == 2.5
    assert row[4:7] == (
        ["etl"],
        {"who": "ada", "workflow_id": wf, "workflow_step": "x"},
        {"kind": "fixed", "base": 1},
    )
    assert row[7] == "scheduled"


@pytest.mark.parametrize(
    ("document", "message"),
    [
        ([], "must be a JSON object"),
        ({"steps": []}, "non-empty JSON array"),
        ({"steps": [{"task": "t"}], "colour": "red"}, 'unknown workflow field "colour"'),
        ({"steps": [{"task": "t"}]}, "step 1: name must be"),
        ({"steps": [{"name": "a"}]}, 'step "a": task is required'),
        ({"steps": [{"name": "a", "task": "t", "prio": 1}]}, 'step "a": unknown field "prio"'),
        (
            {"steps": [{"name": "a", "task": "t", "depends_on": [1]}]},
            'unknown field "depends_on"; workflow steps take "after"',
        ),
        (
            {"steps": [{"name": "a", "task": "t", "priority": "high"}]},
            "priority must be a JSON number",
        ),
        ({"steps": [{"name": "a", "task": "t", "after": "b"}]}, "after must be a JSON array"),
        ({"steps": [{"name": "a", "task": "t", "after": [1]}]}, "lists of strings"),
        (
            {"steps": [{"name": "a", "task": "t"}, {"name": "a", "task": "t"}]},
            '"a" is used twice',
        ),
        ({"steps": [{"name": "a", "task": "t", "after": ["zz"]}]}, 'unknown step "zz"'),
        ({"steps": [{"name": "a", "task": "t", "after": ["a"]}]}, "after itself"),
        (
            {
                "steps": [
                    {"name": "a", "task": "t", "after": ["c"]},
                    {"name": "b", "task": "t", "after": ["a"]},
                    {"name": "c", "task": "t", "after": ["b"]},
                    {"name": "ok", "task": "t"},
                ]
            },
            "cycle: a, b, c cannot start",
        ),
        (
            {"steps": [{"name": "a", "task": "t", "result_arg": "x"}]},
            "result_arg needs exactly one step",
        ),
        (
            {"steps": [{"name": "a", "task": "t", "results_arg": "x"}]},
            "results_arg needs at least one",
        ),
        (
            {"steps": [{"name": "a", "task": "t", "after": [], "results_arg": ""}]},
            'step "a": results_arg must be an argument name',
        ),
        (
            {"steps": [{"name": "a", "task": "t", "on_dependency_failure": "shrug"}]},
            "fail, cancel or run",
        ),
    ],
)
def test_bad_documents_are_refused_naming_the_problem(
    conn: psycopg.Connection, document: Any, message: str
) -> None:
    with pytest.raises(psycopg.errors.InvalidParameterValue, match=message):
        enqueue_workflow(conn, document)
    assert conn.execute("SELECT count(*) FROM skiplock.all_jobs").fetchone() == (0,)
    assert conn.execute("SELECT count(*) FROM skiplock.workflows").fetchone() == (0,)


def test_an_error_from_enqueue_names_the_step_and_writes_nothing(conn: psycopg.Connection) -> None:
    document = {
        "steps": [
            {"name": "good", "task": "t.ok"},
            {"name": "bad", "task": "t.ok", "after": ["good"], "queue": "no spaces"},
        ]
    }
    with pytest.raises(psycopg.errors.CheckViolation, match=r'step "bad": .*queue_name'):
        enqueue_workflow(conn, document)
    with pytest.raises(psycopg.errors.InvalidDatetimeFormat, match='step "x"'):
        enqueue_workflow(conn, {"steps": [{"name": "x", "task": "t", "run_at": "soon"}]})
    assert conn.execute("SELECT count(*) FROM skiplock.all_jobs").fetchone() == (0,)
    assert conn.execute("SELECT count(*) FROM skiplock.workflow_steps").fetchone() == (0,)


def test_the_caller_rolling_back_leaves_nothing(connect: Any) -> None:
    conn = connect()  # not autocommit: one transaction until commit or rollback
    enqueue_workflow(conn, DIAMOND)
    conn.rollback()
    for table in ("workflows", "workflow_steps", "jobs", "job_dependencies"):
        assert conn.execute(f"SELECT count(*) FROM skiplock.{table}").fetchone() == (0,)


@pytest.mark.parametrize(
    ("policy", "child", "state"),
    [
        ("fail", "failed", "failed"),
        ("cancel", "cancelled", "failed"),
        ("run", "succeeded", "failed"),
    ],
)
def test_failure_policies_inside_a_workflow(
    conn: psycopg.Connection, policy: str, child: str, state: str
) -> None:
    wf = enqueue_workflow(
        conn,
        {
            "steps": [
                {"name": "a", "task": "t.a"},
                {"name": "ok", "task": "t.ok"},
                {
                    "name": "b",
                    "task": "t.b",
                    "after": ["ok", "a"],
                    "results_arg": "got",
                    "on_dependency_failure": policy,
                },
                {"name": "c", "task": "t.c", "after": ["b"]},
            ]
        },
    )
    run(conn, {"t.a": "FAIL", "t.ok": 1})
    ran = run(conn)
    if policy == "run":
        # b ran anyway; the failed parent's place in the list holds null
        assert ran == {"t.b": {"got": [1, None]}}
        run(conn)
    grandchild = "succeeded" if policy == "run" else "failed"
    assert steps(conn, wf) == {"a": "failed", "ok": "succeeded", "b": child, "c": grandchild}
    assert summary(conn, wf)["state"] == state


def test_a_cancelled_workflow_and_the_counts(conn: psycopg.Connection) -> None:
    wf = enqueue_workflow(
        conn,
        {
            "steps": [
                {"name": "a", "task": "t.a"},
                {"name": "b", "task": "t.b", "after": ["a"], "on_dependency_failure": "cancel"},
            ]
        },
    )
    stats = summary(conn, wf)
    assert (stats["queued"], stats["waiting"], stats["finished_at"]) == (1, 1, None)
    (job_a,) = conn.execute(
        "SELECT job_id FROM skiplock.workflow_steps WHERE workflow_id = %s AND name = 'a'", (wf,)
    ).fetchone()
    conn.execute("SELECT skiplock.cancel_job(%s)", (job_a,))
    stats = summary(conn, wf)
    assert (stats["state"], stats["cancelled"], stats["steps"]) == ("cancelled", 2, 2)


def test_summaries_limited_to_a_queue_pattern(conn: psycopg.Connection) -> None:
    wf = enqueue_workflow(
        conn,
        {
            "steps": [
                {"name": "a", "task": "t.a", "queue": "emails"},
                {"name": "b", "task": "t.b", "queue": "billing", "after": ["a"]},
            ]
        },
    )
    rows = conn.execute(
        "SELECT id, steps, queued, waiting FROM skiplock.summarize_workflows('email*')"
    ).fetchall()
    assert rows == [(wf, 1, 1, 0)]
    assert conn.execute("SELECT * FROM skiplock.summarize_workflows('sms*')").fetchall() == []


def test_reading_a_workflow_probes_indexes_not_the_whole_history(conn: psycopg.Connection) -> None:
    conn.execute(
        "INSERT INTO skiplock.job_history (id, task, args, queue, priority, status, attempt,"
        " max_attempts, tags, meta, errors, created_at, finished_at)"
        " SELECT g, 't', '{}', 'default', 0, 'succeeded', 1, 20, '{}', '{}', '[]', now(), now()"
        " FROM generate_series(1000000, 1020000) g"
    )
    for _ in range(20):
        enqueue_workflow(conn, DIAMOND)
    conn.execute("ANALYZE")
    for query in (
        "SELECT * FROM skiplock.workflow_stats WHERE id = 3",
        "SELECT * FROM skiplock.workflow_stats ORDER BY id DESC LIMIT 5",
        "SELECT * FROM skiplock.workflow_jobs WHERE workflow_id = 3",
    ):
        plan = "\n".join(r[0] for r in conn.execute(f"EXPLAIN {query}"))
        assert "Seq Scan on job_history" not in plan, plan
        assert "job_history_pkey" in plan, plan


def test_the_sql_example_of_the_guide_runs(conn: psycopg.Connection) -> None:
    doc = Path(__file__).resolve().parents[2] / "docs" / "workflows.md"
    (block,) = re.findall(r"^```sql\n(.*?)^```", doc.read_text(), re.MULTILINE | re.DOTALL)
    conn.execute(block.encode())
    assert steps(conn, 1) == {
        "orders": "queued",
        "refunds": "queued",
        "merge": "waiting",
        "email": "waiting",
    }


def test_prune_workflows_forgets_old_finished_ones(conn: psycopg.Connection) -> None:
    one_step = {"steps": [{"name": "a", "task": "t.a"}]}
    finished, running = enqueue_workflow(conn, one_step), enqueue_workflow(conn, DIAMOND)
    run(conn)  # finishes `finished`, and step a of `running`
    later = "now() + interval '2 days'"
    prune = f"SELECT skiplock.prune_workflows(interval '1 day', p_now => {later})"
    assert conn.execute("SELECT skiplock.prune_workflows(interval '1 day')").fetchone() == (0,)
    assert conn.execute(prune).fetchone() == (1,)
    assert [r[0] for r in conn.execute("SELECT id FROM skiplock.workflows")] == [running]
    assert conn.execute(
        "SELECT count(*) FROM skiplock.workflow_steps WHERE workflow_id = %s", (finished,)
    ).fetchone() == (0,)
    # the finished job itself stays in the history
    assert conn.execute("SELECT count(*) FROM skiplock.job_history").fetchone() == (2,)


def test_steps_may_be_declared_in_any_order(conn: psycopg.Connection) -> None:
    # a long chain declared backwards: the parents are still enqueued first
    n = 300
    declared = [
        {"name": f"s{i}", "task": "t", "after": [f"s{i - 1}"] if i else None}
        for i in reversed(range(n))
    ]
    wf = enqueue_workflow(conn, {"steps": declared})
    rows = conn.execute(
        "SELECT step, position, job_id, status FROM skiplock.workflow_jobs"
        " WHERE workflow_id = %s ORDER BY job_id",
        (wf,),
    ).fetchall()
    assert [r[0] for r in rows] == [f"s{i}" for i in range(n)]  # enqueued parents first
    assert rows[0][1:] == (n, rows[0][2], "queued")  # position is declaration order
    assert {r[3] for r in rows[1:]} == {"waiting"}
