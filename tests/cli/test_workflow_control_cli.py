"""CLI: skiplock workflows cancel / retry."""

from __future__ import annotations

import json

import psycopg
from click.testing import CliRunner

from skiplock.cli import main

W = "00000000-0000-0000-0000-0000000000ee"
DOCUMENT = {
    "steps": [
        {"name": "fetch", "task": "t.fetch"},
        {"name": "render", "task": "t.render", "after": ["fetch"], "result_arg": "data"},
    ],
}


def run(dsn: str, *args: str, stdin: str | None = None) -> tuple[int, str, str]:
    result = CliRunner().invoke(main, ["--dsn", dsn, *args], input=stdin)
    return result.exit_code, result.stdout, result.stderr


def enqueue(dsn: str) -> int:
    code, out, _ = run(dsn, "workflows", "enqueue", "-", stdin=json.dumps(DOCUMENT))
    assert code == 0
    return int(out)


def statuses(conn: psycopg.Connection, workflow_id: int) -> list[str]:
    rows = conn.execute(
        "SELECT status FROM skiplock.workflow_jobs WHERE workflow_id = %s ORDER BY position",
        (workflow_id,),
    ).fetchall()
    return [row[0] for row in rows]


def test_cancel_then_retry(dsn: str, conn: psycopg.Connection) -> None:
    wf = enqueue(dsn)
    code, _, err = run(dsn, "workflows", "retry", str(wf))
    assert (code, err) == (
        1,
        f"error: workflow {wf} has not finished (unfinished steps: fetch, render);"
        " wait for it or cancel it first\n",
    )

    assert run(dsn, "workflows", "cancel", str(wf)) == (
        0,
        f"workflow {wf}: 2 steps cancelled (running ones are told to stop)\n",
        "",
    )
    assert statuses(conn, wf) == ["cancelled", "cancelled"]
    assert run(dsn, "workflows", "cancel", str(wf))[:2] == (
        0,
        f"workflow {wf} has already finished; nothing to cancel\n",
    )

    assert run(dsn, "workflows", "retry", str(wf))[:2] == (0, f"workflow {wf}: 2 steps retried\n")
    assert statuses(conn, wf) == ["queued", "waiting"]


def test_retry_with_nothing_to_retry(dsn: str, conn: psycopg.Connection) -> None:
    wf = enqueue(dsn)
    for _ in range(2):
        (job, attempt) = conn.execute(
            "SELECT id, attempt FROM skiplock.claim_jobs(%s, '{default}', 10)", (W,)
        ).fetchone()
        conn.execute(
            "SELECT skiplock.complete_jobs(%s, ARRAY[%s]::bigint[], ARRAY[%s], ARRAY['1'::jsonb])",
            (W, job, attempt),
        )
    assert run(dsn, "workflows", "retry", str(wf))[:2] == (
        0,
        f"workflow {wf} has no step to retry\n",
    )


def test_unknown_workflow(dsn: str) -> None:
    for command in ("cancel", "retry"):
        assert run(dsn, "workflows", command, "999") == (1, "", "error: workflow 999 not found\n")
    code, _, err = run(dsn, "workflows", "cancel", "x")
    assert code == 2 and "WORKFLOW_ID" in err
