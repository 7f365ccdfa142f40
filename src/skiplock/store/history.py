"""The finished jobs read out for an archive (sql/functions/080_maintenance.sql):
export_finished_jobs streamed through a server-side cursor, archive_job_history one
batch at a time. JSON columns come back as their exact text (msgspec.Raw), never decoded
and re-encoded: an archive keeps what PostgreSQL stored, large integers included."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import datetime, timedelta
from typing import Any

import msgspec
import psycopg
from psycopg.adapt import Loader
from psycopg.rows import dict_row

# Rows per round trip of the export's cursor: what the client holds at once.
EXPORT_BATCH = 1000


class RawJsonLoader(Loader):
    """json and jsonb as their text, wrapped for msgspec to write out unchanged."""

    def load(self, data: Any) -> msgspec.Raw:
        return msgspec.Raw(bytes(data))


def _raw_json(cursor: psycopg.Cursor[Any]) -> None:
    for name in ("json", "jsonb"):
        cursor.adapters.register_loader(name, RawJsonLoader)


def export_finished_jobs(
    conn: psycopg.Connection[Any],
    *,
    before: datetime,
    queue: str | None = None,
    dead_letters: bool = False,
) -> Iterator[dict[str, Any]]:
    """The finished jobs that finished before `before`, oldest first (dead letters too
    with `dead_letters`), streamed by a server-side cursor: at most EXPORT_BATCH rows in
    memory at once. Runs in a transaction of its own on `conn` (a named cursor lives in
    one), read-only."""
    with (
        conn.transaction(),
        conn.cursor(name="skiplock_export", row_factory=dict_row) as cursor,
    ):
        _raw_json(cursor)
        cursor.itersize = EXPORT_BATCH
        cursor.execute(
            "SELECT * FROM skiplock.export_finished_jobs(%s, %s, %s)",
            (before, queue, dead_letters),
        )
        yield from cursor


def archive_job_history(
    conn: psycopg.Connection[Any], *, older_than: timedelta, limit: int
) -> list[dict[str, Any]]:
    """Delete up to `limit` finished jobs older than `older_than` and return them, oldest
    first. Call it inside a transaction and commit once the rows are stored: a rollback
    keeps them all."""
    cursor = conn.cursor(row_factory=dict_row)
    _raw_json(cursor)
    cursor.execute("SELECT * FROM skiplock.archive_job_history(%s, %s)", (older_than, limit))
    return cursor.fetchall()
