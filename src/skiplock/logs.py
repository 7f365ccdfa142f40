"""How skiplock processes log: one line per record, as text for people or JSON for
machines. The worker attaches job fields as `extra={"skiplock": {...}}`; the JSON
format lifts them to the top level of each line.

A record logged while a job's handler runs (by the handler's own loggers too, and from
the thread of a sync handler) carries that job's id, task, queue and attempt: the worker
sets them in a contextvar around the run (`job_fields`), and JobFieldsFilter copies
them onto the record as `skiplock_job`. Outside a job the record has no such fields."""

from __future__ import annotations

import contextlib
import json
import logging
import sys
from collections.abc import Iterator, Mapping
from contextvars import ContextVar
from datetime import datetime, timezone
from typing import Any

from skiplock.context import LEVEL_NUMBERS, JobContext
from skiplock.errors import ConfigError
from skiplock.jobs import ClaimedJob

LOG_FORMATS = ("text", "json")
LOG_LEVELS = tuple(LEVEL_NUMBERS)

# The job whose handler runs in this context (its JobContext, a claimed job, or the
# fields themselves); None outside a job. A sync handler's thread sees it because
# Task.run runs the handler in a copy of the job's context. The worker sets the context
# as it is: the fields are built only for a record that is logged, not for every job,
# and the worker's log capture finds the attempt's log through it.
current_job: ContextVar[JobContext | ClaimedJob | Mapping[str, Any] | None] = ContextVar(
    "skiplock_job", default=None
)


@contextlib.contextmanager
def job_fields(fields: Mapping[str, Any]) -> Iterator[None]:
    """Tag every record logged inside the block, in this context, with `fields`."""
    token = current_job.set(dict(fields))
    try:
        yield
    finally:
        current_job.reset(token)


def _fields(job: JobContext | ClaimedJob | Mapping[str, Any]) -> Mapping[str, Any]:
    if isinstance(job, JobContext):
        job = job.job
    if isinstance(job, ClaimedJob):
        return {"job_id": job.id, "task": job.task, "queue": job.queue, "attempt": job.attempt}
    return job


class JobFieldsFilter(logging.Filter):
    """Adds the fields of the job running in the record's context as `skiplock_job`.

    A handler filter, so it sees records of every logger (the handler's own included);
    add it to a handler of your own to get the fields there too."""

    def filter(self, record: logging.LogRecord) -> bool:
        job = current_job.get()
        if job is not None and not hasattr(record, "skiplock_job"):
            record.skiplock_job = _fields(job)
        return True


class TextFormatter(logging.Formatter):
    """`time level logger: message [job_id=… task=… queue=… attempt=…]`, the job's part
    inside a handler only, plus the job's error message when it failed."""

    def __init__(self) -> None:
        super().__init__("%(asctime)s %(levelname)-7s %(name)s: %(message)s")

    def formatMessage(self, record: logging.LogRecord) -> str:
        # Before a traceback, which format() appends after this.
        line = super().formatMessage(record)
        fields = getattr(record, "skiplock_job", None)
        if not isinstance(fields, Mapping):
            return line
        return f"{line} [{' '.join(f'{name}={value}' for name, value in fields.items())}]"

    def format(self, record: logging.LogRecord) -> str:
        line = super().format(record)
        error = _error_message(getattr(record, "skiplock", None))
        return f"{line}: {error}" if error else line


class JSONFormatter(logging.Formatter):
    """One JSON object per line: time, level, logger, message and the job's fields;
    uvicorn's access lines add `http` (client, method, path, version, status)."""

    def format(self, record: logging.LogRecord) -> str:
        out: dict[str, Any] = {
            "time": datetime.fromtimestamp(record.created, timezone.utc).isoformat(),
            "level": record.levelname.lower(),
            "logger": record.name,
            "message": record.getMessage(),
        }
        job = getattr(record, "skiplock_job", None)
        if isinstance(job, Mapping):
            out.update(job)
        if record.name == "uvicorn.access" and isinstance(record.args, tuple):
            if (http := _access_fields(record.args)) is not None:
                out["http"] = http
        fields = getattr(record, "skiplock", None)
        if isinstance(fields, dict):
            out.update(fields)
            if isinstance(fields.get("error"), str):
                out["error"] = _parse_error(fields["error"])
        if record.exc_info:
            out["exception"] = self.formatException(record.exc_info)
        return json.dumps(out, default=str)


class _StderrHandler(logging.Handler):
    # Looks sys.stderr up at each record instead of keeping the stream it was created
    # with, so a replaced stderr (click's test runner, pytest capture) is never written
    # to after it was closed.
    def emit(self, record: logging.LogRecord) -> None:
        try:
            sys.stderr.write(self.format(record) + "\n")
            sys.stderr.flush()
        except Exception:
            self.handleError(record)


def configure_logging(level: str | int = "info", fmt: str = "text") -> None:
    """Send every log record at `level` or above to stderr in format `fmt` (text|json).

    Calling it again replaces the handler it installed before, never others.
    """
    if fmt not in LOG_FORMATS:
        raise ConfigError(f"log format must be one of {', '.join(LOG_FORMATS)}, got {fmt!r}")
    if isinstance(level, str):
        if level.lower() not in LOG_LEVELS:
            raise ConfigError(f"log level must be one of {', '.join(LOG_LEVELS)}, got {level!r}")
        level = level.upper()
    root = logging.getLogger()
    for handler in [h for h in root.handlers if isinstance(h, _StderrHandler)]:
        root.removeHandler(handler)
    handler = _StderrHandler()
    handler.addFilter(JobFieldsFilter())
    handler.setFormatter(JSONFormatter() if fmt == "json" else TextFormatter())
    root.addHandler(handler)
    root.setLevel(level)


def _parse_error(text: str) -> Any:
    # The worker passes the error object as the JSON text it records in the database.
    try:
        return json.loads(text)
    except ValueError:
        return text


def _error_message(fields: object) -> str | None:
    if not isinstance(fields, dict) or not isinstance(fields.get("error"), str):
        return None
    error = _parse_error(fields["error"])
    if isinstance(error, dict):
        return str(error.get("error", ""))
    return str(error)


def _access_fields(args: tuple[Any, ...]) -> dict[str, Any] | None:
    # uvicorn logs each request as '%s - "%s %s HTTP/%s" %d' with these five arguments.
    if len(args) != 5:
        return None
    return dict(zip(("client", "method", "path", "version", "status"), args, strict=True))
