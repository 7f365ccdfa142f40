"""Log lines: text for people, one JSON object per line for machines."""

from __future__ import annotations

import json
import logging

import pytest

from skiplock.errors import ConfigError
from skiplock.logs import JSONFormatter, configure_logging, job_fields

JOB_FIELDS = {
    "job_id": 7,
    "task": "echo",
    "queue": "default",
    "attempt": 2,
    "status": "retrying",
    "duration_ms": 1.5,
    "error": '{"error": "RuntimeError: boom", "type": "RuntimeError"}',
}


def test_json_lines_carry_the_job_fields(capsys: pytest.CaptureFixture[str]) -> None:
    configure_logging("info", "json")
    logging.getLogger("skiplock.worker").warning("job %d failed", 7, extra={"skiplock": JOB_FIELDS})
    logging.getLogger("other").debug("not shown at info")
    lines = capsys.readouterr().err.splitlines()
    assert len(lines) == 1
    record = json.loads(lines[0])
    assert record["level"] == "warning"
    assert record["logger"] == "skiplock.worker"
    assert record["message"] == "job 7 failed"
    assert record["time"].endswith("+00:00")
    assert {k: record[k] for k in ("job_id", "task", "queue", "attempt", "status")} == {
        "job_id": 7,
        "task": "echo",
        "queue": "default",
        "attempt": 2,
        "status": "retrying",
    }
    assert record["error"]["error"] == "RuntimeError: boom"


def test_text_is_one_line_with_the_error(capsys: pytest.CaptureFixture[str]) -> None:
    configure_logging("debug", "text")
    logging.getLogger("skiplock.worker").warning("job 7 failed", extra={"skiplock": JOB_FIELDS})
    (line,) = capsys.readouterr().err.splitlines()
    assert line.endswith("WARNING skiplock.worker: job 7 failed: RuntimeError: boom")


def test_configuring_again_replaces_the_handler(capsys: pytest.CaptureFixture[str]) -> None:
    configure_logging("info", "text")
    configure_logging("info", "json")
    logging.getLogger("x").info("once")
    assert len(capsys.readouterr().err.splitlines()) == 1


def test_bad_settings_name_the_value() -> None:
    with pytest.raises(ConfigError, match="log format must be one of text, json, got 'xml'"):
        configure_logging("info", "xml")
    with pytest.raises(ConfigError, match="log level must be one of"):
        configure_logging("loud", "text")


def test_records_inside_job_fields_carry_them_only_there(
    capsys: pytest.CaptureFixture[str],
) -> None:
    configure_logging("info", "json")
    mine = logging.getLogger("myapp")
    with job_fields({"job_id": 7, "task": "echo", "queue": "default", "attempt": 2}):
        mine.info("inside")
        # the worker's own job fields win over the context's
        mine.info("outcome", extra={"skiplock": {"job_id": 7, "attempt": 3}})
    mine.info("outside")
    inside, outcome, outside = (json.loads(line) for line in capsys.readouterr().err.splitlines())
    assert {k: inside[k] for k in ("job_id", "task", "queue", "attempt")} == {
        "job_id": 7,
        "task": "echo",
        "queue": "default",
        "attempt": 2,
    }
    assert (outcome["attempt"], outcome["task"]) == (3, "echo")
    assert not {"job_id", "task", "queue", "attempt"} & outside.keys()


def test_text_puts_the_job_before_a_traceback(capsys: pytest.CaptureFixture[str]) -> None:
    configure_logging("info", "text")
    with job_fields({"job_id": 7, "task": "echo", "queue": "default", "attempt": 1}):
        try:
            raise RuntimeError("boom")
        except RuntimeError:
            logging.getLogger("myapp").exception("it broke")
    first, *rest = capsys.readouterr().err.splitlines()
    assert first.endswith("myapp: it broke [job_id=7 task=echo queue=default attempt=1]")
    assert rest[0] == "Traceback (most recent call last):"


def test_uvicorn_access_lines_carry_the_request_in_json() -> None:
    # The record as uvicorn makes it, formatted alone: the uvicorn.access logger itself
    # may have been switched off by a server an earlier test ran in this process.
    args = ("127.0.0.1:5000", "GET", "/health", "1.1", 200)
    line = logging.LogRecord(
        "uvicorn.access", logging.INFO, __file__, 1, '%s - "%s %s HTTP/%s" %d', args, None
    )
    record = json.loads(JSONFormatter().format(line))
    assert record["message"] == '127.0.0.1:5000 - "GET /health HTTP/1.1" 200'
    assert record["http"] == {
        "client": "127.0.0.1:5000",
        "method": "GET",
        "path": "/health",
        "version": "1.1",
        "status": 200,
    }
