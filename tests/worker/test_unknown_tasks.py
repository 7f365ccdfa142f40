"""A job whose task the worker has no handler for: handed back without spending its
attempt, due again after the worker's unknown_task_delay, said in one WARNING per task at
most once a minute; a worker that serves the task runs it when it is due."""

from __future__ import annotations

import asyncio
import logging
from datetime import datetime, timezone

import psycopg
import pytest
from test_worker import finished, job_row, run_worker

import skiplock
from conftest import async_wait_until
from skiplock.errors import ConfigError
from skiplock.jobs import ClaimedJob
from skiplock.worker import Worker
from skiplock.worker.unknown_tasks import UnknownTaskWarnings

HANDED_BACK = "no handler for it in this worker"


def db_now(dsn: str) -> datetime:
    with psycopg.connect(dsn) as c:
        (now,) = c.execute("SELECT now()").fetchone()
    return now


def warnings_about(caplog: pytest.LogCaptureFixture, text: str) -> list[str]:
    return [
        r.getMessage()
        for r in caplog.records
        if r.name == "skiplock.worker" and r.levelno == logging.WARNING and text in r.getMessage()
    ]


def test_a_job_of_an_unknown_task_is_handed_back_then_run_by_a_worker_that_serves_it(
    dsn: str, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO, logger="skiplock.worker")
    with psycopg.connect(dsn, autocommit=True) as c:
        job_id = c.execute("SELECT skiplock.enqueue('report', '{\"day\": 1}')").fetchone()[0]
    lacking = skiplock.App(dsn)

    @lacking.task(name="other")
    def other() -> None: ...

    before = db_now(dsn)

    async def hand_back() -> int:
        worker = Worker(lacking, unknown_task_delay=0.2)
        try:
            return await worker.run_once()
        finally:
            await worker.close()

    assert asyncio.run(hand_back()) == 1

    status, attempt, worker_id, run_at, errors = job_row(
        dsn, job_id, "status, attempt, worker_id, run_at, errors"
    )
    # the attempt is not spent and nothing is recorded against the job
    assert (attempt, worker_id, errors) == (0, None, [])
    assert status in ("scheduled", "queued")  # queued once the delay has passed
    # due again about the delay after it was handed back (the database's clock)
    assert before < run_at
    with psycopg.connect(dsn) as c:
        assert c.execute("SELECT count(*) FROM skiplock.dead_jobs").fetchone() == (0,)
        (latest,) = c.execute("SELECT now() + interval '0.2 seconds'").fetchone()
    assert run_at <= latest
    (message,) = warnings_about(caplog, HANDED_BACK)
    assert message == (
        f"job {job_id} of task 'report': no handler for it in this worker (tasks: other);"
        " handed back, due again in 0.2 s, no attempt spent"
    )
    # no per-job "released" line beside the warning
    assert not [r for r in caplog.records if f"job {job_id} report released" in r.getMessage()]
    lacking.close()

    serving = skiplock.App(dsn)

    @serving.task(name="report")
    def report(day: int) -> int:
        return day

    async def body(worker: Worker) -> None:
        await async_wait_until(finished(dsn, job_id))

    run_worker(serving, body)
    assert job_row(dsn, job_id) == ("succeeded", 1, 1)
    serving.close()


def test_the_warning_is_given_once_a_minute_per_task() -> None:
    now = [1000.0]
    warnings = UnknownTaskWarnings(lambda: {"b", "a"}, clock=lambda: now[0])
    records: list[str] = []

    class Keep(logging.Handler):
        def emit(self, record: logging.LogRecord) -> None:
            records.append(record.getMessage())

    handler = Keep()
    log = logging.getLogger("skiplock.worker")
    log.addHandler(handler)
    try:
        for job_id in (1, 2, 3):
            warnings.handed_back(job(job_id, "report"), 60)
        warnings.handed_back(job(4, "typo"), 60)
        now[0] += 59.9
        warnings.handed_back(job(5, "report"), 60)
        now[0] += 0.1
        warnings.handed_back(job(6, "report"), 60)
    finally:
        log.removeHandler(handler)

    assert records == [
        "job 1 of task 'report': no handler for it in this worker (tasks: a, b); handed back,"
        " due again in 60 s, no attempt spent",
        "job 4 of task 'typo': no handler for it in this worker (tasks: a, b); handed back,"
        " due again in 60 s, no attempt spent",
        "job 6 of task 'report': no handler for it in this worker (tasks: a, b); handed back,"
        " due again in 60 s, no attempt spent (3 more of its jobs since the last warning)",
    ]


def test_the_delay_is_checked(dsn: str) -> None:
    with pytest.raises(ConfigError, match=r"^unknown_task_delay must be >= 0.1, got 0"):
        Worker(skiplock.App(dsn), unknown_task_delay=0)


def job(job_id: int, task: str) -> ClaimedJob:
    at = datetime(2030, 1, 1, tzinfo=timezone.utc)
    return ClaimedJob(job_id, task, {}, "default", 0, 1, 20, None, at, [], {}, at)
