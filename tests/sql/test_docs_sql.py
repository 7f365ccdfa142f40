"""docs/sql.md stays runnable: every ```sql block runs, in order, on a fresh database."""

from __future__ import annotations

import re
from pathlib import Path

import psycopg

DOC = Path(__file__).resolve().parents[2] / "docs" / "sql.md"
SQL_BLOCK = re.compile(r"^```sql\n(.*?)^```", re.MULTILINE | re.DOTALL)


def sql_blocks() -> list[str]:
    blocks = []
    for match in SQL_BLOCK.finditer(DOC.read_text()):
        # psql meta-commands (\x, \gset, …) are not SQL; the server would reject them
        lines = [ln for ln in match[1].splitlines() if not ln.lstrip().startswith("\\")]
        blocks.append("\n".join(lines))
    return blocks


def test_sql_examples_run_in_order(conn: psycopg.Connection) -> None:
    blocks = sql_blocks()
    assert len(blocks) >= 20
    for number, block in enumerate(blocks, 1):
        try:
            conn.execute(block.encode())  # bytes: no placeholder parsing, several statements
        except psycopg.Error as exc:
            raise AssertionError(
                f"sql block {number} of {DOC.name} failed: {exc}\n{block}"
            ) from exc

    # the story the page tells actually happened (no example silently hit nothing)
    statuses = dict(conn.execute("SELECT id, status FROM skiplock.all_jobs").fetchall())
    assert statuses == {
        1: "succeeded",  # complete_jobs
        2: "queued",  # cancel_job while scheduled, then retry_job
        3: "retrying",  # rescued after its lease expired
        4: "retrying",  # fail_jobs with retry_in
        5: "queued",  # dead-lettered with retry: false, then redrive_dead_jobs
        6: "queued",  # release_jobs
        # (the bulk insert examples' rolled-back ids 7-12 are used up)
        13: "queued",  # unique_key: the second enqueue returned 13 again
        # (the deduplicated enqueue above used up id 14: sequences never give one back)
        15: "queued",  # enqueued with a trace context in meta
        16: "queued",  # extract
        17: "waiting",  # load, waiting on 16
        # (18 was cancelled, then removed by delete_job)
        19: "succeeded",  # workflow step fetch
        20: "queued",  # workflow step store, cancelled with its workflow, then retried
        21: "queued",  # fired by fire_schedule
        22: "queued",  # enqueue with callback_url (result webhooks)
        23: "queued",  # plain INSERT with callback_url
        24: "queued",  # enqueue_many with callback_url
    }
    (trace,) = conn.execute("SELECT meta -> 'trace' FROM skiplock.jobs WHERE id = 15").fetchone()
    assert trace == {"traceparent": "00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01"}
    (args,) = conn.execute("SELECT args FROM skiplock.jobs WHERE id = 20").fetchone()
    assert args == {"rows": [["ada", 36], ["grace", 45]]}
    (meta,) = conn.execute("SELECT meta FROM skiplock.jobs WHERE id = 21").fetchone()
    assert meta["schedule"] == "nightly-report"
    last_errors = dict(
        conn.execute("SELECT id, last_error ->> 'type' FROM skiplock.all_jobs").fetchall()
    )
    assert last_errors[3] == "LeaseExpired"
    assert last_errors[5] == "Discard"
    assert conn.execute("SELECT count(*) FROM skiplock.workers").fetchone() == (0,)
    # prune_audit_log's example deleted the entry it wrote
    assert conn.execute("SELECT count(*) FROM skiplock.audit_log").fetchone() == (0,)
    # the schedule, the token and the queue the examples made are gone or revoked
    assert conn.execute("SELECT count(*) FROM skiplock.schedules").fetchone() == (0,)
    revoked = conn.execute("SELECT revoked_at IS NOT NULL FROM skiplock.api_tokens").fetchall()
    assert revoked == [(True,)]
    assert conn.execute("SELECT name FROM skiplock.queues WHERE name = 'imports'").fetchall() == []
