"""docs/sql.md stays runnable: every ```sql block runs, in order, on a fresh database."""

from __future__ import annotations

import re
from pathlib import Path

import psycopg

DOC = Path(__file__).resolve().parents[2] / "docs" / "sql.md"
SQL_BLOCK = re.compile(r"^```sql\n(.*?)^```", re.MULTILINE | re.DOTALL)

# Every function and view of the API has an example on the page.
DOCUMENTED = [
    "enqueue(",
    "enqueue_many(",
    "callback_url =>",
    "reserve_job_ids(",
    "INSERT INTO skiplock.jobs",
    "claim_jobs(",
    "heartbeat_jobs(",
    "complete_jobs(",
    "fail_jobs(",
    "release_jobs(",
    "rescue_expired_jobs(",
    "cancel_job(",
    "retry_job(",
    "set_job_progress(",
    "register_worker(",
    "unregister_worker(",
    "prune_workers(",
    "expire_jobs(",
    "settle_waiting_jobs(",
    "sweep_waiting_jobs(",
    "prune_job_history(",
    "prune_unique_keys(",
    "prune_audit_log(",
    "pause_queue(",
    "resume_queue(",
    "set_queue_limits(",
    "set_queue_defaults(",
    "retry_delay(",
    "retry_policy_is_valid(",
    "publish_tasks(",
    "list_tasks(",
    "forget_task(",
    "read_job_counts(",
    "compact_job_counts(",
    "job_duration_bounds(",
    "skiplock.all_jobs",
    "skiplock.dead_letters",
    "skiplock.queue_stats",
    "skiplock.worker_stats",
    "enqueue_workflow(",
    "skiplock.workflow_jobs",
    "skiplock.workflow_stats",
    "summarize_workflows(",
    "prune_workflows(",
    "cancel_workflow(",
    "retry_workflow(",
    "LISTEN skiplock_jobs",
    "LISTEN skiplock_finished",
    "LISTEN skiplock_cancel",
]


def sql_blocks() -> list[str]:
    blocks = []
    for match in SQL_BLOCK.finditer(DOC.read_text()):
        # psql meta-commands (\x, \gset, …) are not SQL; the server would reject them
        lines = [ln for ln in match[1].splitlines() if not ln.lstrip().startswith("\\")]
        blocks.append("\n".join(lines))
    return blocks


def test_every_api_object_has_an_example() -> None:
    text = "\n".join(sql_blocks())
    missing = [name for name in DOCUMENTED if name not in text]
    assert not missing


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
        2: "cancelled",  # cancel_job while scheduled
        3: "retrying",  # rescued after its lease expired
        4: "retrying",  # fail_jobs with retry_in
        5: "queued",  # dead-lettered with retry: false, then retry_job
        6: "queued",  # release_jobs
        7: "queued",  # unique_key: the second enqueue returned 7 again
        # (the deduplicated enqueue above used up id 8: sequences never give one back)
        9: "queued",  # extract
        10: "waiting",  # load, waiting on 9
        11: "succeeded",  # workflow step fetch
        12: "queued",  # workflow step store, queued once fetch succeeded
        # (the bulk insert examples' rolled-back ids 13-18 are used up too)
        19: "queued",  # enqueue with callback_url (result webhooks, at the end)
        20: "queued",  # plain INSERT with callback_url
        21: "queued",  # enqueue_many with callback_url
        22: "queued",  # enqueued with a trace context in meta (after the webhooks)
    }
    (trace,) = conn.execute("SELECT meta -> 'trace' FROM skiplock.jobs WHERE id = 22").fetchone()
    assert trace == {"traceparent": "00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01"}
    (args,) = conn.execute("SELECT args FROM skiplock.jobs WHERE id = 12").fetchone()
    assert args == {"rows": [["ada", 36], ["grace", 45]]}
    last_errors = dict(
        conn.execute("SELECT id, last_error ->> 'type' FROM skiplock.all_jobs").fetchall()
    )
    assert last_errors[3] == "LeaseExpired"
    assert last_errors[5] == "Discard"
    assert conn.execute("SELECT count(*) FROM skiplock.workers").fetchone() == (0,)
    # prune_audit_log's example deleted the entry it wrote
    assert conn.execute("SELECT count(*) FROM skiplock.audit_log").fetchone() == (0,)
