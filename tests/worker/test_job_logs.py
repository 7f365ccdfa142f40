"""Records logged inside a handler name the job: its id, task, queue and attempt, in
text and JSON, from async handlers and from sync ones on the worker's threads."""

from __future__ import annotations

import json
import logging
from typing import Any

import pytest

import skiplock
from skiplock.logs import configure_logging
from skiplock.testing import run_jobs

log = logging.getLogger("myapp.tasks")


def app_logging_from_handlers(dsn: str) -> skiplock.App:
    app = skiplock.App(dsn)

    @app.task(name="async_says", queue="mail")
    async def async_says(word: str) -> None:
        log.info("async %s", word)

    @app.task(name="sync_says", queue="mail")
    def sync_says(word: str) -> None:
        log.info("sync %s", word)

    return app


def run_and_log(
    dsn: str, fmt: str, capsys: pytest.CaptureFixture[str]
) -> tuple[list[str], dict[str, int]]:
    """Run one async and one sync job that log; return stderr's lines and the job ids."""
    configure_logging("info", fmt)
    app = app_logging_from_handlers(dsn)
    ids = {
        "async_says": app.enqueue("async_says", {"word": "hi"}),
        "sync_says": app.enqueue("sync_says", {"word": "hi"}),
    }
    log.info("before any job")
    assert run_jobs(app, queues=["mail"]) == 2
    log.info("after the jobs")
    return capsys.readouterr().err.splitlines(), ids


def test_json_records_from_handlers_carry_the_job(
    dsn: str, capsys: pytest.CaptureFixture[str]
) -> None:
    lines, ids = run_and_log(dsn, "json", capsys)
    records: dict[str, dict[str, Any]] = {}
    for line in lines:
        record = json.loads(line)
        if record["logger"] == "myapp.tasks":
            records[record["message"]] = record
    for task, message in (("async_says", "async hi"), ("sync_says", "sync hi")):
        fields = {k: records[message].get(k) for k in ("job_id", "task", "queue", "attempt")}
        assert fields == {"job_id": ids[task], "task": task, "queue": "mail", "attempt": 1}
    for outside in ("before any job", "after the jobs"):
        assert not {"job_id", "task", "queue", "attempt"} & records[outside].keys()


def test_text_records_from_handlers_carry_the_job(
    dsn: str, capsys: pytest.CaptureFixture[str]
) -> None:
    lines, ids = run_and_log(dsn, "text", capsys)
    mine = {line.split("myapp.tasks: ", 1)[1] for line in lines if "myapp.tasks: " in line}
    assert mine == {
        f"async hi [job_id={ids['async_says']} task=async_says queue=mail attempt=1]",
        f"sync hi [job_id={ids['sync_says']} task=sync_says queue=mail attempt=1]",
        "before any job",
        "after the jobs",
    }
