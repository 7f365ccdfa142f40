"""What a handler logs is stored with its job, per attempt: stdlib logging from async and
sync handlers and ctx.log, bounded per attempt with a marker line, written in batches,
deleted with the job; a failing log write never fails the job."""

from __future__ import annotations

import asyncio
import logging
import time
import uuid
from datetime import datetime, timezone
from typing import Any

import psycopg
import pytest

import skiplock
from conftest import async_wait_until
from skiplock import JobContext, store
from skiplock.jobs import ClaimedJob
from skiplock.testing import run_jobs
from skiplock.worker import Worker
from skiplock.worker.job_logs import JobLogWriter
from skiplock.worker.loops import LoopHealth

log = logging.getLogger("myapp.stored")


@pytest.fixture(autouse=True)
def _info_logging() -> None:
    # Records reach the capture as any root handler: past their loggers' levels (the
    # conftest fixture restores the root level after the test).
    logging.getLogger().setLevel(logging.INFO)


def logging_app(dsn: str) -> skiplock.App:
    app = skiplock.App(dsn)

    @app.task(name="async_logs")
    async def async_logs(ctx: JobContext, word: str) -> None:
        log.info("async %s", word)
        log.debug("below the level: not stored")
        ctx.log(f"ctx {word}", level="warning")

    @app.task(name="sync_logs")
    def sync_logs(ctx: JobContext, word: str) -> None:
        log.info("sync %s", word)
        try:
            raise ValueError("boom")
        except ValueError:
            log.exception("caught")
        ctx.log("debug via ctx", level="debug")

    @app.task(name="odd_text")
    def odd_text(ctx: JobContext) -> None:
        ctx.log("nul\x00here")
        # Straight to the attempt's log: a record with a lone surrogate would reach
        # pytest's log capture too, which cannot send it between xdist processes.
        ctx.store_log(logging.INFO, "myapp.stored", "surrogate \udce9", time.time())

    @app.task(name="quiet")
    def quiet() -> None:
        pass

    @app.task(name="flaky", max_attempts=3, retry_policy=skiplock.RetryPolicy.fixed(0))
    def flaky(ctx: JobContext) -> None:
        log.info("attempt %d", ctx.attempt)
        if ctx.attempt == 1:
            raise RuntimeError("first attempt fails")

    @app.task(name="doomed", max_attempts=1)
    def doomed() -> None:
        log.warning("about to fail")
        raise RuntimeError("no luck")

    @app.task(name="chatty")
    def chatty(lines: int, width: int = 1) -> None:
        for i in range(lines):
            log.info("%d %s", i, "x" * width)

    return app


def lines_of(app: skiplock.App, job_id: int) -> list[tuple[int, str, str, str]]:
    return [(x.attempt, x.level, x.logger, x.message) for x in app.get_job_logs(job_id)]


def test_async_sync_and_ctx_lines_are_stored_with_their_attempt(dsn: str) -> None:
    app = logging_app(dsn)
    a = app.enqueue("async_logs", {"word": "hi"})
    s = app.enqueue("sync_logs", {"word": "ho"})
    q = app.enqueue("quiet", {})
    assert run_jobs(app) == 3
    assert lines_of(app, a) == [
        (1, "info", "myapp.stored", "async hi"),
        (1, "warning", "skiplock.job", "ctx hi"),
    ]
    stored = lines_of(app, s)
    assert stored[0] == (1, "info", "myapp.stored", "sync ho")
    attempt, level, logger, message = stored[1]
    assert (attempt, level, logger) == (1, "error", "myapp.stored")
    assert message.startswith("caught\nTraceback") and "ValueError: boom" in message
    # ctx.log stores whatever the loggers' levels
    assert stored[2] == (1, "debug", "skiplock.job", "debug via ctx")
    assert app.get_job_logs(q) == []
    with pytest.raises(skiplock.JobNotFound):
        app.get_job_logs(10**12)


def test_text_postgresql_cannot_hold_is_escaped_not_lost(dsn: str) -> None:
    app = logging_app(dsn)
    job_id = app.enqueue("odd_text", {})
    assert run_jobs(app) == 1
    messages = [x.message for x in app.get_job_logs(job_id)]
    assert messages == ["nul\\x00here", "surrogate \\udce9"]


def test_two_attempts_are_kept_apart(dsn: str, conn: psycopg.Connection) -> None:
    app = logging_app(dsn)
    job_id = app.enqueue("flaky", {})
    assert run_jobs(app) == 2  # the first attempt fails, the retry is due at once
    assert app.get_job(job_id).status == "succeeded"
    lines = app.get_job_logs(job_id)
    assert [(x.attempt, x.message) for x in lines] == [(1, "attempt 1"), (2, "attempt 2")]
    assert [x.message for x in app.get_job_logs(job_id, attempt=2)] == ["attempt 2"]
    # paging by seq, as the API and `jobs logs --follow` do
    after = store.job_logs(job_id, after=lines[0].seq).run(conn)
    assert [x.message for x in after] == ["attempt 2"]


class CountingWorker(Worker):
    """Counts the statements that append job logs."""

    appends = 0

    async def _call(self, call: store.Call[Any], *, wait: float | None = None) -> Any:
        if "append_job_logs" in call.sql:
            self.appends += 1
        return await super()._call(call, wait=wait)


def run_one(app: skiplock.App, **settings: Any) -> CountingWorker:
    """One claim, run to the end, by a worker with these settings."""

    async def main() -> CountingWorker:
        worker = CountingWorker(app, listen=False, **settings)
        try:
            assert await worker.run_once() >= 1
        finally:
            await worker.close()
        return worker

    return asyncio.run(main())


def test_lines_of_many_jobs_share_one_statement(dsn: str) -> None:
    app = logging_app(dsn)
    ids = [app.enqueue("chatty", {"lines": 50}) for _ in range(4)]
    app.enqueue("quiet", {})
    worker = run_one(app, job_log_interval=60)
    for job_id in ids:
        assert len(app.get_job_logs(job_id)) == 50
    # 200 lines of four jobs, written before their completion, in one statement
    assert worker.appends == 1


def test_jobs_that_log_nothing_send_nothing(dsn: str) -> None:
    app = logging_app(dsn)
    for _ in range(5):
        app.enqueue("quiet", {})
    assert run_one(app).appends == 0


def test_past_the_line_bound_one_marker_counts_the_rest(dsn: str) -> None:
    app = logging_app(dsn)
    job_id = app.enqueue("chatty", {"lines": 25})
    run_one(app, job_log_max_lines=10)
    lines = app.get_job_logs(job_id)
    assert [x.message for x in lines[:10]] == [f"{i} x" for i in range(10)]
    assert len(lines) == 11
    marker = lines[-1]
    assert (marker.level, marker.logger, marker.dropped_lines) == ("warning", "skiplock", 15)
    assert marker.dropped_bytes == sum(len(f"{i} x") for i in range(10, 25))
    assert marker.message.startswith("15 lines (")


def test_past_the_byte_bound_every_later_line_is_dropped(dsn: str) -> None:
    app = logging_app(dsn)
    job_id = app.enqueue("chatty", {"lines": 10, "width": 100})
    run_one(app, job_log_max_bytes=350)
    lines = app.get_job_logs(job_id)
    assert [x.message.split()[0] for x in lines[:-1]] == ["0", "1", "2"]
    assert lines[-1].dropped_lines == 7


def test_the_sql_bounds_an_attempt_too(dsn: str, conn: psycopg.Connection) -> None:
    """A caller that sends more than the bound (another client, a worker configured
    otherwise) gets the same cut and the same marker."""
    app = logging_app(dsn)
    job_id = app.enqueue("quiet", {})
    wid = uuid.uuid4()
    now = datetime.now(timezone.utc)
    sent = [store.LogLine(job_id, 1, now, "info", "x", f"line {i}") for i in range(5)]
    assert store.append_job_logs(wid, sent[:3], max_lines=4).run(conn) == 3
    assert store.append_job_logs(wid, sent[3:], max_lines=4).run(conn) == 1
    dropped = [store.DroppedLines(job_id, 1, 2, 20)]
    assert store.append_job_logs(wid, [], dropped, max_lines=4).run(conn) == 0
    lines = app.get_job_logs(job_id)
    assert [x.message for x in lines[:4]] == ["line 0", "line 1", "line 2", "line 3"]
    assert (lines[4].dropped_lines, lines[4].dropped_bytes) == (3, 26)
    assert len(lines) == 5
    # another attempt has a bound of its own; a job that does not exist keeps nothing
    other = [store.LogLine(job_id, 2, now, "info", "x", "again"), sent[0]._replace(job_id=10**12)]
    assert store.append_job_logs(wid, other, max_lines=4).run(conn) == 1


def test_bad_lines_are_refused_whole(dsn: str, conn: psycopg.Connection) -> None:
    app = logging_app(dsn)
    job_id = app.enqueue("quiet", {})
    now = datetime.now(timezone.utc)
    bad = [
        store.LogLine(job_id, 1, now, "info", "x", "ok"),
        store.LogLine(job_id, 1, now, "loud", "x", "no"),
    ]
    with pytest.raises(psycopg.errors.CheckViolation, match="job_log_level_known"):
        store.append_job_logs(uuid.uuid4(), bad).run(conn)
    with pytest.raises(psycopg.errors.InvalidParameterValue, match="same length"):
        conn.execute(
            "SELECT skiplock.append_job_logs(gen_random_uuid(), %s, '{1}', ARRAY[now()],"
            " '{info}', '{x}', '{}')",
            ([job_id],),
        )
    assert app.get_job_logs(job_id) == []


def test_logs_go_with_the_job(dsn: str, conn: psycopg.Connection) -> None:
    app = logging_app(dsn)
    deleted, pruned, kept = (app.enqueue("chatty", {"lines": 2}) for _ in range(3))
    dead = app.enqueue("doomed", {})
    assert run_jobs(app) == 4
    assert app.get_job(dead).status == "failed"
    assert [x.message for x in app.get_job_logs(dead)] == ["about to fail"]

    assert store.delete_job(deleted).run(conn) == "succeeded"
    conn.execute(
        "UPDATE skiplock.job_history SET finished_at = now() - interval '30 days' WHERE id = %s",
        (pruned,),
    )
    assert conn.execute("SELECT skiplock.prune_job_history(interval '7 days')").fetchone() == (1,)
    assert conn.execute("SELECT skiplock.purge_dead_letters()").fetchone() == (1,)
    left = {job_id for (job_id,) in conn.execute("SELECT DISTINCT job_id FROM skiplock.job_logs")}
    assert left == {kept}


def test_a_retried_dead_letter_keeps_its_log(dsn: str) -> None:
    app = logging_app(dsn)
    job_id = app.enqueue("doomed", {})
    assert run_jobs(app) == 1
    assert app.retry_job(job_id) == "queued"
    assert run_jobs(app) == 1
    lines = app.get_job_logs(job_id)
    # two runs of attempt 1, by two workers, each with its own bound
    assert [(x.attempt, x.message) for x in lines] == [(1, "about to fail")] * 2
    assert lines[0].worker_id != lines[1].worker_id


def test_a_refused_log_write_does_not_fail_the_job(
    dsn: str, conn: psycopg.Connection, caplog: pytest.LogCaptureFixture
) -> None:
    app = logging_app(dsn)
    job_id = app.enqueue("async_logs", {"word": "lost"})
    # The log table refuses every row; the job's own tables do not.
    conn.execute("ALTER TABLE skiplock.job_logs ADD CONSTRAINT refuse_all CHECK (false) NOT VALID")
    with caplog.at_level(logging.ERROR, logger="skiplock.worker"):
        run_one(app)
    assert app.get_job(job_id).status == "succeeded"
    assert app.get_job_logs(job_id) == []
    assert any("dropping 2 log lines" in r.getMessage() for r in caplog.records)


def test_the_flusher_survives_a_failed_write_and_writes_later(
    dsn: str, caplog: pytest.LogCaptureFixture
) -> None:
    """A lost connection: the lines wait and go with the next write; the loop says so
    and goes on."""
    app = logging_app(dsn)
    job_id = app.enqueue("quiet", {})
    job = app.get_job(job_id)
    failures = [psycopg.OperationalError("connection lost")]
    stored: list[int] = []

    async def call(c: store.Call[Any]) -> Any:
        if failures:
            raise failures.pop()
        async with await psycopg.AsyncConnection.connect(dsn, autocommit=True) as conn:
            stored.append(await c.arun(conn))
        return stored[-1]

    async def main() -> None:
        health = LoopHealth(stall_after=0)
        writer = JobLogWriter(asyncio.get_running_loop(), uuid.uuid4(), call, health, interval=0.01)
        flusher = asyncio.create_task(writer.run())
        claimed = ClaimedJob(
            job.id, job.task, {}, job.queue, 0, 1, 1, None, job.created_at, [], {}, job.run_at
        )
        ctx = JobContext(claimed, uuid.uuid4(), lambda *_: None, writer.add)
        ctx.log("kept across the failure")
        try:
            await async_wait_until(lambda: stored == [1], 30)
            assert health.stalled() == []  # logs never make a worker unhealthy
        finally:
            flusher.cancel()

    with caplog.at_level(logging.WARNING, logger="skiplock.worker"):
        asyncio.run(main())
    assert [x.message for x in app.get_job_logs(job_id)] == ["kept across the failure"]
    assert any("writing 1 log lines failed" in r.getMessage() for r in caplog.records)
