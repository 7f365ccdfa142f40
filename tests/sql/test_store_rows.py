"""The store reads rows by column name, and its readers carry every column of the views
they read: a column added to a view, or moved in it, cannot shift another field or go
unseen."""

from __future__ import annotations

import uuid
from dataclasses import dataclass, replace
from datetime import datetime, timedelta, timezone
from typing import NamedTuple

import psycopg
import pytest

from skiplock import store
from skiplock.jobs import ClaimedJob, Job
from skiplock.store.call import dataclass_row


def columns(conn: psycopg.Connection, sql: str) -> set[str]:
    cursor = conn.execute(sql)
    assert cursor.description is not None
    return {c.name for c in cursor.description}


def test_job_has_a_field_for_every_all_jobs_column(conn: psycopg.Connection) -> None:
    assert columns(conn, "SELECT * FROM skiplock.all_jobs LIMIT 0") == set(store.JOB_FIELDS)


@pytest.mark.parametrize(
    "source, reader",
    [
        ("skiplock.queue_stats", store.QUEUE_STAT_COLUMNS),
        ("skiplock.dead_letters", store.DEAD_LETTER_COLUMNS),
        ("skiplock.worker_stats", store.WORKER_COLUMNS),
        ("skiplock.schedules", store.SCHEDULE_COLUMNS),
        ("skiplock.summarize_workflows(NULL)", store.WORKFLOW_COLUMNS),
        ("skiplock.list_tasks(NULL)", store.TASK_COLUMNS),
        ("skiplock.queue_throughput('default', 1)", store.THROUGHPUT_COLUMNS),
        ("skiplock.audit_log", store.AUDIT_COLUMNS),
    ],
)
def test_dict_readers_read_every_column(
    conn: psycopg.Connection, source: str, reader: tuple[str, ...]
) -> None:
    assert columns(conn, f"SELECT * FROM {source} LIMIT 0") == set(reader)


def test_readers_leave_out_only_what_they_mean_to(conn: psycopg.Connection) -> None:
    # a token's hash is never read back; a step's workflow id and position are the
    # request's own and the listing's order
    tokens = columns(conn, "SELECT * FROM skiplock.api_tokens LIMIT 0")
    assert tokens - set(store.API_TOKEN_COLUMNS) == {"id", "token_hash"}
    steps = columns(conn, "SELECT * FROM skiplock.workflow_jobs LIMIT 0")
    assert steps - set(store.WORKFLOW_STEP_COLUMNS) == {"workflow_id", "position"}


class Pair(NamedTuple):
    a: int
    b: str


def test_named_tuple_rows_are_matched_by_name(conn: psycopg.Connection) -> None:
    row = store.named_tuple_row(Pair)
    same = store.Call("SELECT 1 AS a, 'x' AS b", (), list, row).run(conn)
    swapped = store.Call("SELECT 'x' AS b, 1 AS a", (), list, row).run(conn)
    assert same == swapped == [Pair(1, "x")]
    with pytest.raises(TypeError, match="missing: b, unexpected: c"):
        store.Call("SELECT 1 AS a, 'x' AS c", (), list, row).run(conn)


@dataclass(frozen=True)
class PairRecord:
    a: int
    b: str


def test_dataclass_rows_are_matched_by_name(conn: psycopg.Connection) -> None:
    row = dataclass_row(PairRecord)
    same = store.Call("SELECT 1 AS a, 'x' AS b", (), list, row).run(conn)
    swapped = store.Call("SELECT 'x' AS b, 1 AS a", (), list, row).run(conn)
    assert same == swapped == [PairRecord(1, "x")]
    with pytest.raises(TypeError, match="missing: -, unexpected: c"):
        store.Call("SELECT 1 AS a, 'x' AS b, 2 AS c", (), list, row).run(conn)


def test_claimed_jobs_are_read_by_name(conn: psycopg.Connection) -> None:
    job_id = store.enqueue(store.EnqueueRequest("t", '{"n": 1}', tags=["a"])).run(conn)
    worker = uuid.UUID(int=1)
    [claimed] = store.claim_jobs(worker, ["default"], 10, timedelta(seconds=30)).run(conn)
    assert isinstance(claimed, ClaimedJob)
    assert (claimed.id, claimed.task, claimed.args, claimed.tags) == (job_id, "t", {"n": 1}, ["a"])
    assert claimed.attempt == 1 and claimed.queue == "default"


def test_a_job_shows_its_key_deadline_and_dependencies(conn: psycopg.Connection) -> None:
    deadline = datetime(2100, 1, 1, tzinfo=timezone.utc)
    parent = store.enqueue(store.EnqueueRequest("t")).run(conn)
    child = store.enqueue(
        store.EnqueueRequest(
            "t",
            unique_key="k-1",
            expires_at=deadline,
            depends_on=[parent],
            on_dependency_failure="cancel",
        )
    ).run(conn)
    job = store.get_job(child).run(conn)
    assert isinstance(job, Job)
    assert job.status == "waiting"
    assert (job.unique_key, job.expires_at, job.depends_on) == ("k-1", deadline, [parent])
    assert job.on_dependency_failure == "cancel"
    assert job.to_json()["expires_at"] == deadline.isoformat()
    # the same job read alone and listed; only the single read says whether its task is
    # published (nobody published "t")
    listed = store.list_jobs(limit=1, before_id=child).run(conn)[0]
    assert store.get_job(parent).run(conn) == replace(listed, task_published=False)

    store.cancel_job(child).run(conn)
    finished = store.get_job(child).run(conn)
    assert finished is not None and finished.status == "cancelled"
    # kept in the history: the key and the dependencies; the policy only while pending
    assert (finished.unique_key, finished.depends_on) == ("k-1", [parent])
    assert finished.on_dependency_failure is None
