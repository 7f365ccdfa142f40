"""How skiplock processes log: one line per record, as text for people or JSON for
machines. The worker attaches job fields as `extra={"skiplock": {...}}`; the JSON
format lifts them to the top level of each line."""

from __future__ import annotations

import json
import logging
import sys
from datetime import datetime, timezone
from typing import Any

from skiplock.errors import ConfigError

LOG_FORMATS = ("text", "json")
LOG_LEVELS = ("debug", "info", "warning", "error", "critical")


class TextFormatter(logging.Formatter):
    """`time level logger: message`, plus the job's error message when it failed."""

    def __init__(self) -> None:
        super().__init__("%(asctime)s %(levelname)-7s %(name)s: %(message)s")

    def format(self, record: logging.LogRecord) -> str:
        line = super().format(record)
        error = _error_message(getattr(record, "skiplock", None))
        return f"{line}: {error}" if error else line


class JSONFormatter(logging.Formatter):
    """One JSON object per line: time, level, logger, message and the job's fields."""

    def format(self, record: logging.LogRecord) -> str:
        out: dict[str, Any] = {
            "time": datetime.fromtimestamp(record.created, timezone.utc).isoformat(),
            "level": record.levelname.lower(),
            "logger": record.name,
            "message": record.getMessage(),
        }
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
