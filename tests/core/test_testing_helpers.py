"""skiplock.testing: run_jobs and assert_enqueued, as a user's own tests would use them."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from skiplock import App, Job, store
from skiplock.testing import assert_enqueued, run_jobs


@pytest.fixture
def app(dsn: str) -> Iterator[App]:
    app = App(dsn)

    @app.task(name="add")
    def add(a: int, b: int) -> int:
        return a + b

    @app.task(name="fan_out")
    def fan_out(n: int) -> None:
        app.enqueue_many([{"task": "add", "args": {"a": i, "b": i}} for i in range(n)])

    @app.task(name="forever")
    async def forever() -> None:
        await app.enqueue_async("forever")

    yield app
    app.close()


def test_run_jobs_runs_every_ready_job_and_what_they_enqueue(app: App) -> None:
    first = app.enqueue("add", {"a": 2, "b": 3})
    app.enqueue("fan_out", {"n": 3})
    assert run_jobs(app) == 5
    assert app.get_job(first).result == 5
    assert sorted(j.result for j in _jobs(app, "add")) == [0, 2, 4, 5]
    assert run_jobs(app) == 0


def test_run_jobs_only_takes_ready_jobs_from_its_queues(app: App) -> None:
    elsewhere = app.enqueue("add", {"a": 1, "b": 1}, queue="other")
    later = app.enqueue("add", {"a": 1, "b": 1}, delay=3600)
    assert run_jobs(app) == 0
    assert run_jobs(app, queues=["other", "default"]) == 1
    assert app.get_job(elsewhere).status == "succeeded"
    assert app.get_job(later).status == "scheduled"


def test_run_jobs_stops_after_max_rounds(app: App) -> None:
    app.enqueue("forever")
    assert run_jobs(app, max_rounds=3) == 3
    assert [j.status for j in _jobs(app, "forever")] == ["queued", *["succeeded"] * 3]


def test_assert_enqueued_returns_the_newest_match(app: App) -> None:
    app.enqueue("add", {"a": 1, "b": 2})
    newest = app.enqueue("add", {"a": 1, "b": 2}, queue="math")
    job = assert_enqueued(app, "add", {"a": 1, "b": 2})
    assert job.id == newest
    assert assert_enqueued(app, "add", queue="default").queue == "default"
    assert assert_enqueued(app, "add", status="queued").id == newest


def test_assert_enqueued_lists_what_was_enqueued(app: App) -> None:
    job_id = app.enqueue("add", {"a": 1, "b": 2})
    with pytest.raises(AssertionError) as failure:
        assert_enqueued(app, "add", {"a": 9, "b": 9}, queue="default")
    message = str(failure.value)
    assert message.startswith("no job 'add' with args {'a': 9, 'b': 9} in queue 'default';")
    assert f"#{job_id} add args={{'a': 1, 'b': 2}} queue=default status=queued" in message

    with pytest.raises(AssertionError, match="with status 'succeeded'"):
        assert_enqueued(app, "add", status="succeeded")


def test_assert_enqueued_on_an_empty_database(app: App) -> None:
    with pytest.raises(AssertionError, match="no job 'add': no jobs were enqueued"):
        assert_enqueued(app, "add")


def _jobs(app: App, task: str) -> list[Job]:
    return app.run(store.list_jobs(task=task))
