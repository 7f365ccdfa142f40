"""`skiplock jobs list --json`, `dead-letters list --json` and `workflows list --json`
stay small whatever the rows hold: a long JSON value comes as a preview, the whole one
from `jobs show`."""

from __future__ import annotations

import json
import uuid
from typing import Any

import psycopg
import pytest
from click.testing import CliRunner, Result

from skiplock.cli import main
from skiplock.store import PREVIEW_CHARS

WORKER = uuid.UUID("00000000-0000-4000-8000-00000000c12e")
ROWS = 150
BIG = 1_000_000
OUTPUT_BYTES_MAX = 1_000_000


@pytest.fixture
def cli(dsn: str) -> Any:
    runner = CliRunner()

    def invoke(*args: str) -> Result:
        result = runner.invoke(main, ["--dsn", dsn, *args])
        assert result.exit_code == 0, (result.output[:300], result.exception)
        return result

    return invoke


def finish_big(conn: psycopg.Connection, *, fail: bool) -> list[int]:
    """150 jobs with 1 MB args, claimed and completed with a 1 MB result (or failed for
    good with a 1 MB error); built in SQL so the test sends no megabytes."""
    conn.execute(
        "INSERT INTO skiplock.jobs (task, args) SELECT 't', jsonb_build_object('blob',"
        " repeat('x', %s)) FROM generate_series(1, %s)",
        (BIG, ROWS),
    )
    rows = conn.execute(
        "SELECT id, attempt FROM skiplock.claim_jobs(%s, ARRAY['default'], 1000)", (WORKER,)
    ).fetchall()
    ids, attempts = [r[0] for r in rows], [r[1] for r in rows]
    if fail:
        outcome = "skiplock.fail_jobs(%s, %s::bigint[], %s::integer[], array_fill(" + (
            "jsonb_build_object('error', repeat('e', %s), 'retry', false), ARRAY[%s]))"
        )
    else:
        outcome = "skiplock.complete_jobs(%s, %s::bigint[], %s::integer[], array_fill(" + (
            "jsonb_build_object('blob', repeat('y', %s)), ARRAY[%s]))"
        )
    conn.execute(f"SELECT {outcome}", (WORKER, ids, attempts, BIG, len(ids)))
    return ids


def test_jobs_list_json_over_big_rows_is_bounded(cli: Any, conn: psycopg.Connection) -> None:
    ids = finish_big(conn, fail=False)
    out = cli("jobs", "list", "--json", "--limit", "500").stdout_bytes
    assert len(out) < OUTPUT_BYTES_MAX
    jobs = json.loads(out)
    assert sorted(job["id"] for job in jobs) == sorted(ids)
    for job in jobs:
        assert job["args"] is None and job["result"] is None
        assert job["truncated"]["args"]["bytes"] > BIG
        assert job["truncated"]["result"]["preview"].startswith('{"blob": "yyy')
        assert len(job["truncated"]["result"]["preview"]) == PREVIEW_CHARS
    shown = json.loads(cli("jobs", "show", str(ids[0]), "--json").stdout)
    assert shown["args"] == {"blob": "x" * BIG}
    # The table still shows every job.
    assert len(cli("jobs", "list", "--limit", "500").stdout.splitlines()) == ROWS + 1


def test_dead_letters_list_json_over_big_rows_is_bounded(
    cli: Any, conn: psycopg.Connection
) -> None:
    ids = finish_big(conn, fail=True)
    out = cli("dead-letters", "list", "--json", "--limit", "500").stdout_bytes
    assert len(out) < OUTPUT_BYTES_MAX
    letters = json.loads(out)
    assert sorted(letter["id"] for letter in letters) == sorted(ids)
    for letter in letters:
        assert letter["args"] is None and letter["last_error"] is None
        assert letter["truncated"]["last_error"]["bytes"] > BIG
    table = cli("dead-letters", "list", "--limit", "500").stdout.splitlines()
    assert len(table) == ROWS + 1 and table[1].endswith("e" * 10)


def test_workflows_list_json_over_big_meta_is_bounded(cli: Any, conn: psycopg.Connection) -> None:
    conn.execute(
        "SELECT skiplock.enqueue_workflow(jsonb_build_object("
        " 'meta', jsonb_build_object('blob', repeat('w', %s)),"
        ' \'steps\', \'[{"name": "s", "task": "t"}]\'::jsonb)) FROM generate_series(1, %s)',
        (BIG, ROWS),
    )
    out = cli("workflows", "list", "--json", "--limit", "500").stdout_bytes
    assert len(out) < OUTPUT_BYTES_MAX
    workflows = json.loads(out)
    assert len(workflows) == ROWS
    assert all(w["meta"] is None and w["truncated"]["meta"]["bytes"] > BIG for w in workflows)
