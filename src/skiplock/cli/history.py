"""`skiplock history`: export the finished jobs, and prune the history (archiving what
is pruned to a dated file first, with --archive-dir).

Files hold one job per line (JSON lines) or per row (CSV with a header), in
export_finished_jobs' columns: JSON columns as PostgreSQL stored them, times in UTC."""

from __future__ import annotations

import csv
import os
import sys
from collections.abc import Iterable, Mapping
from datetime import datetime, timedelta, timezone
from pathlib import Path
from typing import IO, Any

import click
import msgspec
import psycopg

from skiplock import store
from skiplock.cli.root import CliError, CliUsageError, Settings, connect, main, pass_settings
from skiplock.options import positive_duration
from skiplock.store.history import archive_job_history, export_finished_jobs

FORMATS = ("jsonl", "csv")
ARCHIVE_BATCH = 1000  # rows per archived-and-pruned transaction


@main.group()
def history() -> None:
    """Finished jobs: export them, prune them (archiving them first with --archive-dir)."""


def timestamp(ctx: click.Context, param: click.Parameter, value: str) -> datetime:
    """An ISO 8601 time with its offset (2026-01-31T00:00:00Z): never the local zone by
    guess, which would move an archive's boundary by hours."""
    text = value.strip()
    try:  # Python 3.10's fromisoformat does not read "Z"
        parsed = datetime.fromisoformat(text[:-1] + "+00:00" if text[-1:] in "Zz" else text)
    except ValueError:
        raise CliUsageError(
            f"--before: {value!r} is not an ISO 8601 time, e.g. 2026-01-31T00:00:00Z"
        ) from None
    if parsed.utcoffset() is None:
        raise CliUsageError(f"--before: {value!r} has no offset: add Z (UTC) or +HH:MM")
    return parsed


def duration(ctx: click.Context, param: click.Parameter, value: str) -> timedelta:
    """A duration > 0: seconds, or 90m, 12h, 7d, P7D."""
    try:
        return positive_duration(value)
    except ValueError as exc:
        raise CliUsageError(f"--older-than: {exc}") from None


format_option = click.option(
    "--format", "file_format", type=click.Choice(FORMATS), default="jsonl", show_default=True
)


def _utc(value: Any) -> Any:
    return value.astimezone(timezone.utc) if isinstance(value, datetime) else value


def _cell(value: Any) -> str:
    """A CSV cell: text as it is, JSON columns as their JSON, anything else as it reads in
    JSON (times in ISO 8601, durations as PT30S); empty for null."""
    if value is None:
        return ""
    if isinstance(value, str):
        return value
    if isinstance(value, msgspec.Raw):
        return bytes(value).decode()
    text = msgspec.json.encode(_utc(value)).decode()
    return text[1:-1] if text.startswith('"') else text


class JobWriter:
    """Finished jobs written to a text file as JSON lines or CSV (its header first)."""

    def __init__(self, file: IO[str], file_format: str) -> None:
        self._file = file
        self._csv = csv.writer(file) if file_format == "csv" else None
        self._header_written = False

    def write(self, rows: Iterable[Mapping[str, Any]]) -> int:
        count = 0
        for row in rows:
            if self._csv is None:
                line = msgspec.json.encode({k: _utc(v) for k, v in row.items()})
                self._file.write(line.decode() + "\n")
            else:
                if not self._header_written:
                    self._csv.writerow(row.keys())
                    self._header_written = True
                self._csv.writerow([_cell(v) for v in row.values()])
            count += 1
        return count


def _sync(file: IO[str]) -> None:
    file.flush()
    os.fsync(file.fileno())


def _sync_directory(directory: Path) -> None:
    """Make a new file's name durable, not only its contents."""
    fd = os.open(directory, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


@history.command("export")
@click.option(
    "--before",
    metavar="TIMESTAMP",
    callback=timestamp,
    required=True,
    help="Jobs that finished before this time (ISO 8601 with its offset).",
)
@format_option
@click.option("--queue", default=None, help="Only this queue's jobs.")
@click.option("--dead-letters", is_flag=True, help="The dead letters too (status failed).")
@click.option(
    "--output",
    type=click.Path(dir_okay=False, writable=True, path_type=Path),
    default=None,
    help="Write to this file (replaced only once the export is complete); default: stdout.",
)
@pass_settings
def export_history(
    settings: Settings,
    before: datetime,
    file_format: str,
    queue: str | None,
    dead_letters: bool,
    output: Path | None,
) -> None:
    """Stream the finished jobs that finished before --before, oldest first, without
    deleting any; memory stays bounded however many there are."""
    with connect(settings.dsn()) as conn:
        rows = export_finished_jobs(conn, before=before, queue=queue, dead_letters=dead_letters)
        if output is None:
            count = JobWriter(sys.stdout, file_format).write(rows)
        else:
            count = _export_to_file(output, file_format, rows)
    click.echo(f"{count} jobs exported", err=True)


def _export_to_file(output: Path, file_format: str, rows: Iterable[Mapping[str, Any]]) -> int:
    """Write beside `output`, then rename: a failed export leaves no half file."""
    partial = output.with_name(output.name + ".partial")
    try:
        with partial.open("w", encoding="utf-8", newline="") as file:
            count = JobWriter(file, file_format).write(rows)
            _sync(file)
        partial.replace(output)
    except OSError as exc:
        partial.unlink(missing_ok=True)
        raise CliError(f"cannot write {output}: {exc.strerror}") from None
    except BaseException:
        partial.unlink(missing_ok=True)
        raise
    return count


@history.command("prune")
@click.option(
    "--older-than",
    metavar="DURATION",
    callback=duration,
    required=True,
    help="Delete the finished jobs (succeeded, cancelled, expired) older than this.",
)
@click.option(
    "--archive-dir",
    type=click.Path(file_okay=False, path_type=Path),
    default=None,
    help="First write the jobs to a new dated file in this folder, and delete only what"
    " is safely written there.",
)
@format_option
@pass_settings
def prune_history(
    settings: Settings, older_than: timedelta, archive_dir: Path | None, file_format: str
) -> None:
    """Retention on demand: what every worker does with its history retention, here with
    an archive. Dead letters are kept until purged (`skiplock dead-letters purge`)."""
    with connect(settings.dsn()) as conn:
        if archive_dir is None:
            total = 0
            while True:
                batch = store.prune_job_history(older_than, ARCHIVE_BATCH).run(conn)
                total += batch
                if batch < ARCHIVE_BATCH:
                    break
            click.echo(f"{total} finished jobs pruned")
            return
        path, total = archive(conn, archive_dir, older_than, file_format)
    where = f" to {path}" if path else ""
    click.echo(f"{total} finished jobs archived{where} and pruned")


def archive(
    conn: psycopg.Connection[Any],
    directory: Path,
    older_than: timedelta,
    file_format: str,
    *,
    batch: int = ARCHIVE_BATCH,
) -> tuple[Path | None, int]:
    """Archive and prune, one transaction per batch: the batch's rows are deleted, written
    to a new file named for this run's time, flushed to disk (fsync), and only then is
    the deletion committed. A failure rolls the batch back, so every pruned row is in
    the file; a crash between the fsync and the commit leaves rows in both, and the next
    run archives them again (at least once). Returns the file (None when nothing was
    old enough) and how many jobs went."""
    if not directory.is_dir():
        raise CliUsageError(f"--archive-dir: {directory} is not a folder")
    stamp = datetime.now(timezone.utc).strftime("%Y%m%dT%H%M%SZ")
    path = directory / f"job_history-{stamp}.{file_format}"
    file: IO[str] | None = None
    writer: JobWriter | None = None
    total = 0
    try:
        while True:
            with conn.transaction():
                rows = archive_job_history(conn, older_than=older_than, limit=batch)
                if not rows:
                    break
                if file is None:
                    path, file = _new_file(path)
                    writer = JobWriter(file, file_format)
                    _sync_directory(directory)
                assert writer is not None
                writer.write(rows)
                _sync(file)
            total += len(rows)
            if len(rows) < batch:
                break
    except OSError as exc:
        raise CliError(f"cannot archive to {path}: {exc.strerror}") from None
    finally:
        if file is not None:
            file.close()
    return (path if file is not None else None), total


def _new_file(path: Path) -> tuple[Path, IO[str]]:
    """A file that did not exist: a second run in the same second gets -2, -3 ..."""
    candidate, number = path, 1
    while True:
        try:
            return candidate, candidate.open("x", encoding="utf-8", newline="")
        except FileExistsError:
            number += 1
            candidate = path.with_name(f"{path.stem}-{number}{path.suffix}")
