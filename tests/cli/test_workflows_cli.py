"""CLI: skiplock workflows enqueue / list / show."""

from __future__ import annotations

import json

import psycopg
from click.testing import CliRunner

from skiplock.cli import main

W = "00000000-0000-0000-0000-0000000000ee"
DOCUMENT = {
    "name": "report",
    "steps": [
        {"name": "fetch", "task": "t.fetch"},
        {"name": "render", "task": "t.render", "after": ["fetch"], "result_arg": "data"},
    ],
}


def run(dsn: str, *args: str, stdin: str | None = None) -> tuple[int, str, str]:
    result = CliRunner().invoke(main, ["--dsn", dsn, *args], input=stdin)
    return result.exit_code, result.stdout, result.stderr


def test_enqueue_list_show(dsn: str, conn: psycopg.Connection) -> None:
    code, out, _ = run(dsn, "workflows", "enqueue", "-", "--json", stdin=json.dumps(DOCUMENT))
    assert code == 0
    created = json.loads(out)
    assert list(created["jobs"]) == ["fetch", "render"]
    # finish the first step so the table has a mix of statuses
    (job, attempt) = conn.execute(
        "SELECT id, attempt FROM skiplock.claim_jobs(%s, '{default}', 10)", (W,)
    ).fetchone()
    conn.execute(
        "SELECT skiplock.complete_jobs(%s, ARRAY[%s]::bigint[], ARRAY[%s], ARRAY['42'::jsonb])",
        (W, job, attempt),
    )

    code, out, _ = run(dsn, "workflows", "list")
    assert code == 0
    header, row = out.splitlines()
    assert header.split()[:5] == ["ID", "NAME", "STATE", "STEPS", "DONE"]
    assert row.split()[:5] == [str(created["id"]), "report", "running", "2", "1"]

    code, out, _ = run(dsn, "workflows", "show", str(created["id"]))
    assert code == 0
    lines = out.splitlines()
    assert lines[0] == f"workflow {created['id']} report: running"
    assert lines[1] == "steps: 2 (1 queued, 1 succeeded)"
    table = [line.split() for line in lines[3:]]
    assert table[0][:6] == ["STEP", "JOB", "TASK", "QUEUE", "STATUS", "AFTER"]
    assert table[1][:5] == ["fetch", str(job), "t.fetch", "default", "succeeded"]
    assert table[2][:6] == [
        "render",
        str(created["jobs"]["render"]),
        "t.render",
        "default",
        "queued",
        "fetch",
    ]

    code, out, _ = run(dsn, "workflows", "show", str(created["id"]), "--json")
    shown = json.loads(out)
    assert shown["state"] == "running" and shown["steps"][0]["result"] == 42


def test_unknown_workflow_and_bad_documents(dsn: str, conn: psycopg.Connection) -> None:
    code, out, err = run(dsn, "workflows", "show", "999")
    assert (code, out, err) == (1, "", "error: workflow 999 not found\n")
    assert run(dsn, "workflows", "list")[1] == "no workflows\n"

    code, _, err = run(dsn, "workflows", "enqueue", "-", stdin="{not json")
    assert code == 1 and err.startswith("error: <stdin> is not valid JSON")
    cycle = {"steps": [{"name": "a", "task": "t", "after": ["a"]}]}
    code, _, err = run(dsn, "workflows", "enqueue", "-", stdin=json.dumps(cycle))
    assert (code, err) == (1, 'error: step "a": a step cannot come after itself\n')
    assert conn.execute("SELECT count(*) FROM skiplock.all_jobs").fetchone() == (0,)


def test_prune(dsn: str, conn: psycopg.Connection) -> None:
    assert run(dsn, "workflows", "enqueue", "-", stdin=json.dumps(DOCUMENT))[0] == 0
    assert run(dsn, "workflows", "prune", "--older-than", "0")[:2] == (0, "0 workflows pruned\n")
    conn.execute("SELECT skiplock.cancel_job(id) FROM skiplock.jobs")
    assert run(dsn, "workflows", "prune", "--older-than", "0")[:2] == (0, "1 workflow pruned\n")
    assert run(dsn, "workflows", "list")[1] == "no workflows\n"
    code, _, err = run(dsn, "workflows", "prune")
    assert code == 2 and "--older-than" in err
