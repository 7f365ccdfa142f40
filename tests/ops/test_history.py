"""`skiplock history export` and `skiplock history prune --archive-dir`: finished jobs
leave the database only once they are safely in a file."""

from __future__ import annotations

import csv
import io
import json
import os
from datetime import datetime, timedelta, timezone
from pathlib import Path

import psycopg
import pytest
from click.testing import CliRunner, Result

import skiplock.cli.history as history_cli
from skiplock.cli import main
from skiplock.store.history import EXPORT_BATCH, export_finished_jobs

W = "00000000-0000-4000-8000-0000000000d5"
BIG = "123456789012345678901234567890123456789"  # more digits than a float keeps


def run(dsn: str, *args: str) -> Result:
    return CliRunner().invoke(main, ["--dsn", dsn, *args])


def finish(conn: psycopg.Connection, n: int, *, queue: str = "default", days_ago: int) -> list[int]:
    """n succeeded jobs of `queue` that finished `days_ago` days ago (args hold BIG)."""
    spec = json.dumps([{"task": "t", "queue": queue} for _ in range(n)])
    conn.execute(
        "SELECT skiplock.enqueue_many(jsonb_set(%s::jsonb, '{0,args}', %s::jsonb))",
        (spec, f'{{"n": {BIG}}}'),
    )
    rows = conn.execute(
        "SELECT id, attempt FROM skiplock.claim_jobs(%s, ARRAY[%s], %s)", (W, queue, n)
    ).fetchall()
    ids = [r[0] for r in rows]
    conn.execute(
        "SELECT skiplock.complete_jobs(%s, %s::bigint[], %s::integer[], %s::jsonb[])",
        (W, ids, [r[1] for r in rows], ['{"ok": true}'] * n),
    )
    conn.execute(
        "UPDATE skiplock.job_history SET finished_at = now() - make_interval(days => %s)"
        " WHERE id = ANY(%s)",
        (days_ago, ids),
    )
    return sorted(ids)


def dead_letter(conn: psycopg.Connection, *, days_ago: int) -> int:
    job = conn.execute("SELECT skiplock.enqueue('t', max_attempts => 1)").fetchone()[0]
    (token,) = conn.execute(
        "SELECT id, attempt FROM skiplock.claim_jobs(%s, '{default}', 1)", (W,)
    ).fetchall()
    conn.execute(
        "SELECT skiplock.fail_jobs(%s, ARRAY[%s]::bigint[], ARRAY[%s], '{\"{}\"}')",
        (W, *token),
    )
    conn.execute(
        "UPDATE skiplock.dead_jobs SET failed_at = now() - make_interval(days => %s) WHERE id = %s",
        (days_ago, job),
    )
    return int(job)


def history_ids(conn: psycopg.Connection) -> list[int]:
    return [r[0] for r in conn.execute("SELECT id FROM skiplock.job_history ORDER BY id")]


def days_ago(days: int) -> str:
    return (datetime.now(timezone.utc) - timedelta(days=days)).isoformat()


def jsonl_ids(text: str) -> list[int]:
    return sorted(json.loads(line)["id"] for line in text.splitlines())


def test_export_streams_finished_jobs_before_the_time_and_deletes_nothing(
    conn: psycopg.Connection, dsn: str
) -> None:
    old = finish(conn, 3, days_ago=10)
    finish(conn, 2, days_ago=1)
    dead = dead_letter(conn, days_ago=20)
    before = history_ids(conn)

    result = run(dsn, "history", "export", "--before", days_ago(5))
    assert result.exit_code == 0, result.output
    assert jsonl_ids(result.stdout) == old
    assert result.stderr.strip() == "3 jobs exported"
    line = json.loads(result.stdout.splitlines()[0])
    assert line["status"] == "succeeded" and line["result"] == {"ok": True}
    assert f'"args":{{"n": {BIG}}}' in result.stdout  # jsonb's own text, digits all kept
    assert line["finished_at"].endswith("Z")

    with_dead = run(dsn, "history", "export", "--before", days_ago(5), "--dead-letters")
    rows = [json.loads(x) for x in with_dead.stdout.splitlines()]
    assert rows[0]["id"] == dead and rows[0]["status"] == "failed"  # oldest first
    assert sorted(r["id"] for r in rows) == sorted([*old, dead])
    assert history_ids(conn) == before


def test_export_filters_by_queue_and_writes_csv_to_a_file(
    conn: psycopg.Connection, dsn: str, tmp_path: Path
) -> None:
    finish(conn, 2, days_ago=10)
    mail = finish(conn, 2, queue="emails", days_ago=10)
    out = tmp_path / "emails.csv"
    args = ("--before", days_ago(5), "--queue", "emails", "--format", "csv", "--output", str(out))
    result = run(dsn, "history", "export", *args)
    assert result.exit_code == 0, result.output
    assert result.stdout == ""
    rows = list(csv.DictReader(io.StringIO(out.read_text())))
    assert sorted(int(r["id"]) for r in rows) == mail
    assert {r["queue"] for r in rows} == {"emails"}
    assert json.loads(rows[0]["result"]) == {"ok": True}
    assert rows[0]["args"] == f'{{"n": {BIG}}}'
    assert rows[0]["tags"] == "[]"
    assert not list(tmp_path.glob("*.partial"))


def test_export_reads_through_a_server_side_cursor_over_the_index(
    conn: psycopg.Connection, dsn: str
) -> None:
    finish(conn, EXPORT_BATCH + 5, days_ago=10)
    with psycopg.connect(dsn, autocommit=True) as reader:
        rows = export_finished_jobs(reader, before=datetime.now(timezone.utc))
        next(rows)
        # the rows come batch by batch from a cursor the server holds, not all at once
        cursors = reader.execute("SELECT name FROM pg_cursors").fetchall()
        assert ("skiplock_export",) in cursors
        assert sum(1 for _ in rows) == EXPORT_BATCH + 4
    # the function is inlined: the plan reads the finished_at index, no function scan
    # that would build the whole set first
    conn.execute("ANALYZE skiplock.job_history")
    conn.execute("SET enable_seqscan = off")
    plan = "\n".join(
        r[0]
        for r in conn.execute(
            "EXPLAIN SELECT * FROM skiplock.export_finished_jobs(now(), NULL, true)"
        )
    )
    assert "Function Scan" not in plan
    assert "job_history_finished_at_idx" in plan


def test_refusals_are_one_line(dsn: str, tmp_path: Path) -> None:
    def refused(*args: str) -> str:
        result = run(dsn, "history", *args)
        assert result.exit_code == 2, result.output
        (line,) = result.stderr.strip().splitlines()
        return line

    assert refused("export", "--before", "2026-01-01T00:00:00") == (
        "error: --before: '2026-01-01T00:00:00' has no offset: add Z (UTC) or +HH:MM"
    )
    assert refused("export", "--before", "yesterday").startswith(
        "error: --before: 'yesterday' is not an ISO 8601 time"
    )
    assert refused("prune", "--older-than", "0").startswith("error: --older-than: ")
    missing = tmp_path / "missing"
    assert refused("prune", "--older-than", "7d", "--archive-dir", str(missing)) == (
        f"error: --archive-dir: {missing} is not a folder"
    )


def test_prune_without_archive_deletes_the_old_history(conn: psycopg.Connection, dsn: str) -> None:
    finish(conn, 3, days_ago=10)
    new = finish(conn, 2, days_ago=1)
    result = run(dsn, "history", "prune", "--older-than", "7d")
    assert result.exit_code == 0, result.output
    assert result.stdout.strip() == "3 finished jobs pruned"
    assert history_ids(conn) == new


@pytest.mark.parametrize("file_format", ["jsonl", "csv"])
def test_archive_writes_a_dated_file_then_prunes_exactly_its_rows(
    conn: psycopg.Connection, dsn: str, tmp_path: Path, file_format: str
) -> None:
    old = finish(conn, 5, days_ago=10)
    new = finish(conn, 2, days_ago=1)
    dead = dead_letter(conn, days_ago=30)
    result = run(
        dsn,
        "history",
        "prune",
        "--older-than",
        "7d",
        "--archive-dir",
        str(tmp_path),
        "--format",
        file_format,
    )
    assert result.exit_code == 0, result.output
    (archived,) = tmp_path.iterdir()
    assert archived.name.startswith("job_history-") and archived.suffix == f".{file_format}"
    assert result.stdout.strip() == f"5 finished jobs archived to {archived} and pruned"
    text = archived.read_text()
    if file_format == "jsonl":
        assert jsonl_ids(text) == old
    else:
        assert sorted(int(r["id"]) for r in csv.DictReader(io.StringIO(text))) == old
    assert history_ids(conn) == new
    assert conn.execute("SELECT id FROM skiplock.dead_jobs").fetchall() == [(dead,)]

    again = run(dsn, "history", "prune", "--older-than", "7d", "--archive-dir", str(tmp_path))
    assert again.stdout.strip() == "0 finished jobs archived and pruned"
    assert list(tmp_path.iterdir()) == [archived]  # no empty file


def test_a_failed_write_prunes_nothing_it_did_not_store(
    conn: psycopg.Connection, dsn: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    old = finish(conn, 25, days_ago=10)
    real_fsync = os.fsync
    synced = []

    def fsync_fails_on_the_third_batch(fd: int) -> None:
        if os.path.isdir(f"/proc/self/fd/{fd}"):  # the folder's fsync
            return real_fsync(fd)
        synced.append(fd)
        if len(synced) == 3:
            raise OSError(28, "No space left on device")
        return real_fsync(fd)

    monkeypatch.setattr(history_cli.os, "fsync", fsync_fails_on_the_third_batch)
    with psycopg.connect(dsn, autocommit=True) as archiver:
        with pytest.raises(history_cli.CliError, match="No space left on device"):
            history_cli.archive(archiver, tmp_path, timedelta(days=7), "jsonl", batch=10)
    (archived,) = tmp_path.iterdir()
    stored = jsonl_ids(archived.read_text())
    # the first two batches were stored and then pruned; the third is written in part
    # but rolled back, so it is still in the history (and will be archived again)
    pruned = sorted(set(old) - set(history_ids(conn)))
    assert pruned == old[:20]
    assert set(pruned) <= set(stored)
    assert history_ids(conn) == old[20:]


def test_workers_prune_and_only_admins_archive_or_export(conn: psycopg.Connection) -> None:
    """prune_job_history runs archive_job_history's deletion as its owner, so the worker
    role prunes without any right to archive or export (which return jobs' contents)."""
    finish(conn, 3, days_ago=10)
    conn.execute("SET ROLE skiplock_worker")
    assert conn.execute("SELECT skiplock.prune_job_history(interval '7 days')").fetchone() == (3,)
    for call in (
        "SELECT * FROM skiplock.archive_job_history(interval '7 days')",
        "SELECT * FROM skiplock.export_finished_jobs(now())",
    ):
        with pytest.raises(psycopg.errors.InsufficientPrivilege):
            conn.execute(call)
    conn.execute("RESET ROLE")
    conn.execute("SET ROLE skiplock_admin")
    assert conn.execute("SELECT count(*) FROM skiplock.export_finished_jobs(now())").fetchone()
