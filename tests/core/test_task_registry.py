"""Tasks with a schema and a description: checked on enqueue, published by workers,
checked again by the worker before the handler runs."""

from __future__ import annotations

import asyncio
import json
from collections.abc import Iterator
from typing import Any

import psycopg
import pytest

from skiplock import App, store
from skiplock.errors import ConfigError
from skiplock.testing import run_jobs
from skiplock.validation import InvalidArgs
from skiplock.worker import Worker

EMAIL = {
    "type": "object",
    "properties": {"to": {"type": "string"}, "cc": {"type": "array", "items": {"type": "string"}}},
    "required": ["to"],
    "additionalProperties": False,
}


@pytest.fixture
def app(dsn: str) -> Iterator[App]:
    app = App(dsn)
    ran: list[dict[str, Any]] = []
    app.ran = ran  # type: ignore[attr-defined]

    @app.task(name="send_email", queue="emails", args_schema=EMAIL)
    def send_email(**args: Any) -> None:
        """Send one email."""
        ran.append(args)

    @app.task(name="plain", description="No schema here.")
    def plain() -> None:
        """Not this docstring."""

    yield app
    app.close()


def test_description_defaults_to_the_docstring(app: App) -> None:
    assert app.tasks["send_email"].description == "Send one email."
    assert app.tasks["plain"].description == "No schema here."
    assert app.tasks["plain"].validator is None


def test_a_bad_schema_is_refused_at_registration(app: App) -> None:
    with pytest.raises(ConfigError, match="not a valid JSON Schema"):

        @app.task(name="bad", args_schema={"type": "no-such-type"})
        def bad() -> None: ...


def test_enqueue_checks_args_and_names_the_path(app: App, conn: psycopg.Connection) -> None:
    with pytest.raises(InvalidArgs) as caught:
        app.enqueue("send_email", {"to": "a@b.c", "cc": ["x", 3]})
    assert caught.value.path == "args.cc[1]"
    with pytest.raises(InvalidArgs, match=r"args does not match.*'to' is a required"):
        app.enqueue("send_email", {})
    with pytest.raises(InvalidArgs):
        app.enqueue_many([{"task": "send_email", "args": {"to": "a"}}, {"task": "send_email"}])
    assert conn.execute("SELECT count(*) FROM skiplock.jobs").fetchone()[0] == 0
    assert app.enqueue("send_email", {"to": "a@b.c"}) > 0


def test_enqueue_many_checks_each_jobs_own_args(app: App, conn: psycopg.Connection) -> None:
    """Jobs given as just {task, args} take the quick way through the task's template;
    their args are checked one by one all the same."""
    ids = app.enqueue_many([{"task": "send_email", "args": {"to": f"{n}@b.c"}} for n in range(3)])
    rows = conn.execute("SELECT args ->> 'to' FROM skiplock.jobs ORDER BY id").fetchall()
    assert len(ids) == 3 and [r[0] for r in rows] == ["0@b.c", "1@b.c", "2@b.c"]
    with pytest.raises(InvalidArgs) as caught:
        app.enqueue_many(
            [
                {"task": "send_email", "args": {"to": "a@b.c"}},
                {"task": "send_email", "args": {"to": 7}},
            ]
        )
    assert caught.value.path == "args.to"
    assert conn.execute("SELECT count(*) FROM skiplock.jobs").fetchone()[0] == 3


def test_worker_publishes_its_tasks_at_start(app: App, conn: psycopg.Connection) -> None:
    async def start_and_stop() -> None:
        worker = Worker(app, queues=["emails"])
        await worker.run_once()
        await worker.close()

    asyncio.run(start_and_stop())
    tasks = {t["name"]: t for t in store.list_tasks().run(conn)}
    assert set(tasks) == {"plain", "send_email"}
    assert tasks["send_email"]["queue"] == "emails"
    assert tasks["send_email"]["args_schema"] == EMAIL
    assert tasks["send_email"]["description"] == "Send one email."
    assert tasks["plain"]["args_schema"] is None
    assert app.publish_tasks() == 2


def test_worker_dead_letters_bad_args_without_retrying(app: App, conn: psycopg.Connection) -> None:
    # Raw SQL skips the producer's check; the worker's check catches it.
    bad = conn.execute(
        "SELECT skiplock.enqueue('send_email', '{\"to\": 5}', queue => 'emails')"
    ).fetchone()[0]
    good = app.enqueue("send_email", {"to": "a@b.c"})
    assert run_jobs(app, queues=["emails"]) == 2
    assert app.ran == [{"to": "a@b.c"}]  # type: ignore[attr-defined]
    job = app.get_job(bad)
    assert job.status == "failed" and job.attempt == 1
    assert job.last_error is not None
    assert job.last_error["type"] == "InvalidArgs" and job.last_error["path"] == "args.to"
    assert "args.to does not match the schema of task send_email" in job.last_error["error"]
    assert app.get_job(good).status == "succeeded"
    assert json.loads(json.dumps(job.last_error))  # stored as plain JSON
