"""The demo tasks `skiplock dev` runs, run through skiplock.testing on a real database."""

from __future__ import annotations

import threading
import uuid
from datetime import datetime, timezone
from typing import Any

import psycopg
import pytest

from skiplock import App
from skiplock.context import JobContext
from skiplock.demo import app as demo_app
from skiplock.demo import sleep
from skiplock.jobs import ClaimedJob
from skiplock.testing import run_jobs


@pytest.fixture
def app(dsn: str) -> Any:
    """The demo tasks on this test's database (a copy: the module's App stays as it is)."""
    copy = App(dsn)
    copy.tasks = dict(demo_app.tasks)
    yield copy
    copy.close()


def test_the_demo_tasks_are_registered_by_name() -> None:
    assert set(demo_app.tasks) == {
        "echo",
        "sleep",
        "fail",
        "math",
        "webhook",
        "data_export",
        "email",
        "image_resize",
    }


def test_echo_returns_its_args(app: App) -> None:
    job_id = app.enqueue("echo", {"message": "hi", "n": [1, 2]})
    assert run_jobs(app) == 1
    job = app.get_job(job_id)
    assert (job.status, job.result) == ("succeeded", {"message": "hi", "n": [1, 2]})


@pytest.mark.parametrize(
    ("operation", "expected"), [("add", 5), ("sub", -1), ("mul", 6), ("div", 2 / 3)]
)
def test_math(app: App, operation: str, expected: float) -> None:
    job_id = app.enqueue("math", {"a": 2, "b": 3, "operation": operation})
    run_jobs(app)
    job = app.get_job(job_id)
    assert (job.status, job.result) == ("succeeded", expected)


SPELLINGS = [
    *[(spelling, 5) for spelling in ("+", "add", "sum", "plus")],
    *[(spelling, -1) for spelling in ("-", "sub", "subtract", "minus")],
    *[(spelling, 6) for spelling in ("*", "mul", "multiply", "times", "product")],
    *[(spelling, 2 / 3) for spelling in ("/", "div", "divide")],
]


@pytest.mark.parametrize(("operation", "expected"), SPELLINGS)
def test_math_accepts_the_common_spellings(app: App, operation: str, expected: float) -> None:
    ids = [
        app.enqueue("math", {"a": 2, "b": 3, "operation": spelling})
        for spelling in {operation, operation.upper(), operation.capitalize()}
    ]
    run_jobs(app)
    for job_id in ids:
        job = app.get_job(job_id)
        assert (job.status, job.result) == ("succeeded", expected), job.last_error


@pytest.mark.parametrize("operation", ["pow", "", "add ition", 5, None])
def test_math_names_operation_and_every_spelling_when_refusing(app: App, operation: Any) -> None:
    job_id = app.enqueue("math", {"a": 1, "b": 2, "operation": operation})
    run_jobs(app)
    job = app.get_job(job_id)
    assert job.status == "failed"
    error = job.last_error["error"]  # type: ignore[index]
    assert error.startswith("ValueError: operation must be one of add, sub, mul, div")
    for spelling in ("+", "sum", "plus", "-", "subtract", "minus", "*", "multiply", "times"):
        assert spelling in error
    assert "product" in error and "/" in error and "divide" in error
    assert f"got {operation!r}" in error


def test_math_division_by_zero_fails(app: App) -> None:
    job_id = app.enqueue("math", {"a": 1, "b": 0, "operation": "div"})
    run_jobs(app)
    job = app.get_job(job_id)
    assert job.status in ("retrying", "failed")
    assert job.last_error is not None
    assert job.last_error["error"].startswith("ZeroDivisionError")


def test_math_unknown_operation_fails(app: App) -> None:
    job_id = app.enqueue("math", {"a": 1, "b": 2, "operation": "pow"})
    run_jobs(app)
    job = app.get_job(job_id)
    assert job.status == "failed"
    assert "operation must be one of add, sub, mul, div" in job.last_error["error"]  # type: ignore[index]


def test_fail_is_retried_then_dead_after_three_attempts(app: App, conn: psycopg.Connection) -> None:
    job_id = app.enqueue("fail", {"message": "boom"})
    statuses = []
    for _ in range(3):
        assert run_jobs(app) == 1
        statuses.append(app.get_job(job_id).status)
        # skip the retry delay; the handler and the policy stay as they are
        conn.execute("UPDATE skiplock.jobs SET run_at = now()")
    assert statuses == ["retrying", "retrying", "failed"]
    assert run_jobs(app) == 0
    job = app.get_job(job_id)
    assert (job.attempt, job.max_attempts) == (3, 3)
    assert [e["error"] for e in job.errors] == ["RuntimeError: boom"] * 3
    dead = conn.execute("SELECT count(*) FROM skiplock.dead_letters WHERE id = %s", (job_id,))
    assert dead.fetchone() == (1,)


def test_fail_uses_a_short_fixed_retry(app: App) -> None:
    job_id = app.enqueue("fail")
    job = app.get_job(job_id)
    assert job.retry_policy is not None
    assert (job.retry_policy["kind"], job.retry_policy["base"]) == ("fixed", 2.0)


def test_sleep_runs_to_the_end(app: App) -> None:
    job_id = app.enqueue("sleep", {"seconds": 0.2})
    run_jobs(app)
    job = app.get_job(job_id)
    assert job.status == "succeeded"
    assert job.result["cancelled"] is False


class Recorder:
    def __init__(self) -> None:
        self.calls: list[tuple[float | None, str | None]] = []

    def __call__(self, ctx: JobContext, fraction: float | None, message: str | None) -> None:
        self.calls.append((fraction, message))


def _ctx(sink: Recorder) -> JobContext:
    now = datetime.now(timezone.utc)
    job = ClaimedJob(1, "sleep", {}, "default", 0, 1, 1, None, now, [], {}, now)
    return JobContext(job, uuid.uuid4(), sink)


def test_sleep_reports_progress_each_second() -> None:
    sink = Recorder()
    ctx = _ctx(sink)
    # cancel from another thread after the second report, as a worker would
    timer = threading.Timer(1.2, ctx.cancelled.set)
    timer.start()
    result = sleep(ctx, seconds=3)
    timer.join()
    assert result["cancelled"] is True
    assert [fraction for fraction, _ in sink.calls] == [0.0, 1 / 3]
    assert sink.calls[1][1] == "slept 1 of 3 s"


def test_sleep_stops_at_once_when_already_cancelled() -> None:
    ctx = _ctx(Recorder())
    ctx.cancelled.set()
    assert sleep(ctx, seconds=60)["cancelled"] is True
