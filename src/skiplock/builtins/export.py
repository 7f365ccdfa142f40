"""`skiplock.export`: run one of the operator's named, read-only queries and write its
rows to a file, CSV or JSON Lines.

A job names a query of the `[export.queries]` settings and gives its parameters; it
never carries SQL. The parameters are bound (never spliced into the text) after being
converted to the type the settings declare. The query runs in a READ ONLY transaction
under a statement timeout, through a server-side cursor, so a large result streams to
the file instead of filling the worker's memory; more rows than the cap fail the job.
The file's name is the query's and the job's id (`<query>-<job id>.csv`) in the
configured folder: nothing in args reaches the path. It is written under a temporary
name and renamed when complete, so a reader never sees half a file.
"""

from __future__ import annotations

import csv
import datetime
import decimal
import hashlib
import io
import json
import os
import re
import uuid
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, BinaryIO

import psycopg
from psycopg.rows import dict_row
from psycopg.types.json import Jsonb

from skiplock.builtins import check_keys
from skiplock.context import JobContext
from skiplock.errors import ConfigError, Discard

if TYPE_CHECKING:
    from skiplock.app import App

TASK = "skiplock.export"
FORMATS = {"csv": "csv", "jsonl": "jsonl"}  # format -> file extension
QUERY_NAME = re.compile(r"[a-z][a-z0-9_]{0,62}")
FETCH_ROWS = 1000  # rows per round trip of the server-side cursor


def _timestamptz(value: str) -> datetime.datetime:
    moment = datetime.datetime.fromisoformat(value)
    if moment.tzinfo is None:
        raise ValueError("a timestamptz needs a time zone offset")
    return moment


def _boolean(value: Any) -> bool:
    if not isinstance(value, bool):  # bool("false") is True: take only real booleans
        raise TypeError("not a JSON boolean")
    return value


# param type -> (its JSON Schema, the converter from the JSON value to what psycopg binds)
PARAM_TYPES: dict[str, tuple[dict[str, Any], Callable[[Any], Any]]] = {
    "text": ({"type": "string"}, str),
    "integer": ({"type": "integer"}, int),
    "bigint": ({"type": "integer"}, int),
    "numeric": ({"type": ["number", "string"]}, lambda v: decimal.Decimal(str(v))),
    "boolean": ({"type": "boolean"}, _boolean),
    "date": ({"type": "string", "format": "date"}, datetime.date.fromisoformat),
    "timestamptz": ({"type": "string", "format": "date-time"}, _timestamptz),
    "uuid": ({"type": "string", "format": "uuid"}, uuid.UUID),
    "jsonb": ({}, Jsonb),
}


@dataclass(frozen=True)
class Query:
    """A named query of the settings: its SQL (psycopg `%(name)s` placeholders) and
    the type of each parameter, all of them required."""

    name: str
    sql: str
    params: Mapping[str, str]


@dataclass(frozen=True)
class ExportSettings:
    """The `[export]` table, checked."""

    folder: Path = Path("exports")
    max_rows: int = 1_000_000
    statement_timeout: float = 300.0  # seconds, per query
    dsn: str | None = None  # None: the app's own database (a read-only role is better)
    queries: Mapping[str, Query] = field(default_factory=dict)

    @classmethod
    def parse(cls, section: Mapping[str, Any]) -> ExportSettings:
        """The settings of `section`; ConfigError naming the key otherwise."""
        check_keys(section, ("folder", "max_rows", "statement_timeout", "dsn", "queries"), "export")
        folder = section.get("folder", str(cls.folder))
        if not isinstance(folder, str) or not folder:
            raise ConfigError(f"export.folder must be a directory path, got {folder!r}")
        max_rows = section.get("max_rows", cls.max_rows)
        if isinstance(max_rows, bool) or not isinstance(max_rows, int) or max_rows < 1:
            raise ConfigError(f"export.max_rows must be an integer >= 1, got {max_rows!r}")
        timeout = section.get("statement_timeout", cls.statement_timeout)
        if isinstance(timeout, bool) or not isinstance(timeout, int | float) or timeout <= 0:
            raise ConfigError(f"export.statement_timeout must be seconds > 0, got {timeout!r}")
        dsn = section.get("dsn")
        if dsn is not None and (not isinstance(dsn, str) or not dsn):
            raise ConfigError(f"export.dsn must be a connection string, got {dsn!r}")
        queries = section.get("queries", {})
        if not isinstance(queries, Mapping):
            raise ConfigError(f"export.queries must be a table of queries, got {queries!r}")
        return cls(
            Path(folder).expanduser(),
            max_rows,
            float(timeout),
            dsn,
            {name: _query(name, spec) for name, spec in queries.items()},
        )


def _query(name: str, spec: Any) -> Query:
    where = f"export.queries.{name}"
    if not QUERY_NAME.fullmatch(name):
        raise ConfigError(f"{where}: a query's name is [a-z][a-z0-9_]*, at most 63 characters")
    if not isinstance(spec, Mapping):
        raise ConfigError(f"{where} must be a table {{sql, params}}, got {spec!r}")
    check_keys(spec, ("sql", "params"), where)
    sql = spec.get("sql")
    if not isinstance(sql, str) or not sql.strip():
        raise ConfigError(f"{where}.sql must be the query's text, got {sql!r}")
    params = spec.get("params", {})
    if not isinstance(params, Mapping):
        raise ConfigError(f"{where}.params must be a table of name = type, got {params!r}")
    for param, kind in params.items():
        if kind not in PARAM_TYPES:
            raise ConfigError(
                f"{where}.params.{param} must be one of {', '.join(PARAM_TYPES)}, got {kind!r}"
            )
    return Query(name, sql, dict(params))


def args_schema(settings: ExportSettings) -> dict[str, Any]:
    """The args of skiplock.export under these settings: a configured query's name and
    exactly its parameters, each of its declared type."""
    # if/then per query rather than oneOf: a refusal then names the parameter at fault
    per_query = [
        {
            "if": {"properties": {"query": {"const": query.name}}, "required": ["query"]},
            "then": {
                "properties": {
                    "params": {
                        "type": "object",
                        "properties": {p: PARAM_TYPES[t][0] for p, t in query.params.items()},
                        "required": sorted(query.params),
                        "additionalProperties": False,
                    }
                },
                **({"required": ["params"]} if query.params else {}),
            },
        }
        for query in settings.queries.values()
    ]
    return {
        "type": "object",
        "properties": {
            "query": {"enum": sorted(settings.queries)},
            "params": {"type": "object"},
            "format": {"enum": sorted(FORMATS), "default": "csv"},
        },
        "required": ["query"],
        "additionalProperties": False,
        **({"allOf": per_query} if per_query else {}),
    }


def register(app: App, section: Mapping[str, Any]) -> None:
    """Register `skiplock.export` on `app` with the `[export]` settings; the folder is
    made now, so a worker that cannot write there fails at start."""
    settings = ExportSettings.parse(section)
    try:
        settings.folder.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise ConfigError(f"export.folder {settings.folder}: {exc.strerror}") from None

    # One attempt by default: a query that failed once (a timeout, the row cap) fails
    # again the same way; a redrive after a fix runs it again.
    @app.task(
        name=TASK,
        args_schema=args_schema(settings),
        description="Run a named read-only query of the operator's settings and write its"
        " rows to a CSV or JSON Lines file. See docs/builtins.md.",
        max_attempts=1,
    )
    def export(
        ctx: JobContext, query: str, params: Mapping[str, Any] | None = None, format: str = "csv"
    ) -> dict[str, Any]:
        return run_export(
            settings, query, params or {}, format, job_id=ctx.id, dsn=settings.dsn or app.dsn
        )


def run_export(
    settings: ExportSettings,
    name: str,
    params: Mapping[str, Any],
    format: str,
    *,
    job_id: int,
    dsn: str,
) -> dict[str, Any]:
    """Write query `name`'s rows to `<folder>/<name>-<job_id>.<ext>` and return {path,
    rows, bytes, sha256, format, query}. Discard when the query, its parameters or the
    format are not the settings', or the rows pass the cap (the partial file is removed)."""
    query = settings.queries.get(name)
    if query is None:
        raise Discard(f"query {name!r} is not in the [export.queries] settings")
    if format not in FORMATS:
        raise Discard(f"format must be one of {', '.join(FORMATS)}, got {format!r}")
    bound = _bound(query, params)
    path = settings.folder / f"{query.name}-{job_id}.{FORMATS[format]}"
    partial = path.with_name(f".{path.name}.partial")
    try:
        with partial.open("wb") as file:
            sink = _Sink(file)
            rows = _copy_rows(settings, query, bound, dsn, sink, format)
        os.replace(partial, path)
    finally:
        partial.unlink(missing_ok=True)
    return {
        "query": query.name,
        "format": format,
        "path": str(path.resolve()),
        "rows": rows,
        "bytes": sink.size,
        "sha256": sink.digest.hexdigest(),
    }


def _bound(query: Query, params: Mapping[str, Any]) -> dict[str, Any]:
    """The parameters converted to their declared types; Discard naming a bad one."""
    unknown = sorted(set(params) - set(query.params))
    missing = sorted(set(query.params) - set(params))
    if unknown or missing:
        raise Discard(
            f"query {query.name} takes params {sorted(query.params)}:"
            f" missing {missing}, unknown {unknown}"
        )
    bound = {}
    for name, kind in query.params.items():
        try:
            bound[name] = PARAM_TYPES[kind][1](params[name])
        except (TypeError, ValueError, ArithmeticError) as exc:
            raise Discard(f"params.{name} must be a {kind}, got {params[name]!r}: {exc}") from None
    return bound


class _Sink:
    """A binary file that counts and hashes what is written to it."""

    def __init__(self, file: BinaryIO) -> None:
        self.file = file
        self.size = 0
        self.digest = hashlib.sha256()

    def write(self, data: bytes) -> None:
        self.file.write(data)
        self.size += len(data)
        self.digest.update(data)


def _copy_rows(
    settings: ExportSettings,
    query: Query,
    params: Mapping[str, Any],
    dsn: str,
    sink: _Sink,
    format: str,
) -> int:
    rows = 0
    with psycopg.connect(dsn, row_factory=dict_row) as conn:
        conn.read_only = True
        with conn.transaction():
            conn.execute(
                "SELECT set_config('statement_timeout', %s, true)",
                (f"{int(settings.statement_timeout * 1000)}ms",),
            )
            with conn.cursor(name=f"skiplock_export_{query.name}") as cursor:
                cursor.execute(query.sql, params)
                header_written = False
                while batch := cursor.fetchmany(FETCH_ROWS):
                    if rows + len(batch) > settings.max_rows:
                        raise Discard(
                            f"query {query.name} returned more than export.max_rows"
                            f" ({settings.max_rows}) rows: nothing written"
                        )
                    if format == "csv":
                        sink.write(_csv(batch, header=not header_written))
                        header_written = True
                    else:
                        sink.write(b"".join(_json_line(row) for row in batch))
                    rows += len(batch)
                if format == "csv" and not header_written and cursor.description:
                    sink.write(_csv([], header=True, names=[c.name for c in cursor.description]))
    return rows


def _csv(rows: list[dict[str, Any]], *, header: bool, names: list[str] | None = None) -> bytes:
    text = io.StringIO()
    writer = csv.writer(text)
    columns = names if names is not None else list(rows[0])
    if header:
        writer.writerow(columns)
    for row in rows:
        writer.writerow([_cell(value) for value in row.values()])
    return text.getvalue().encode()


def _cell(value: Any) -> Any:
    if value is None:
        return ""
    if isinstance(value, dict | list):
        return json.dumps(value, separators=(",", ":"))
    if isinstance(value, datetime.date | datetime.time):
        return value.isoformat()
    return value


def _json_line(row: dict[str, Any]) -> bytes:
    return (json.dumps(row, default=_json_value, separators=(",", ":")) + "\n").encode()


def _json_value(value: Any) -> Any:
    if isinstance(value, datetime.date | datetime.time):
        return value.isoformat()
    if isinstance(value, decimal.Decimal | uuid.UUID):
        return str(value)
    if isinstance(value, bytes | memoryview):
        return bytes(value).hex()
    if isinstance(value, datetime.timedelta):
        return value.total_seconds()
    raise TypeError(f"cannot write a {type(value).__name__} to JSON")
