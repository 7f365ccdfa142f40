"""`skiplock jobs logs ID`: a job's stored log as `time level logger: message` lines or
JSON lines, one attempt or all; --follow prints lines as a real worker stores them and
ends when the job has finished; Ctrl-C ends it cleanly."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import datetime, timezone
from pathlib import Path

import psycopg
import pytest
from cli_checks import enqueue, ok, refused, run

from conftest import wait_until
from skiplock import store

HERE = Path(__file__).resolve().parent
WORKER = uuid.UUID("00000000-0000-4000-8000-0000000000c2")


def store_lines(conn: psycopg.Connection, job_id: int, attempt: int, *messages: str) -> None:
    now = datetime.now(timezone.utc)
    lines = [store.LogLine(job_id, attempt, now, "info", "app", m) for m in messages]
    assert store.append_job_logs(WORKER, lines).run(conn) == len(lines)


def test_lines_of_every_attempt_or_one(dsn: str, conn: psycopg.Connection) -> None:
    (job_id,) = enqueue(conn)
    store_lines(conn, job_id, 1, "first try", "failed")
    store_lines(conn, job_id, 2, "second try")
    out = ok(run(dsn, "jobs", "logs", str(job_id))).splitlines()
    assert [line.split(" ", 2)[2] for line in out if not line.startswith("---")] == [
        "info app: first try",
        "info app: failed",
        "info app: second try",
    ]
    assert out[2] == "--- attempt 2 ---"
    datetime.strptime(" ".join(out[0].split(" ", 2)[:2]), "%Y-%m-%d %H:%M:%S.%f")
    only = ok(run(dsn, "jobs", "logs", str(job_id), "--attempt", "2")).splitlines()
    assert [line.endswith("info app: second try") for line in only] == [True]
    records = [
        json.loads(x) for x in ok(run(dsn, "jobs", "logs", str(job_id), "--json")).split("\n") if x
    ]
    assert [(r["attempt"], r["message"]) for r in records] == [
        (1, "first try"),
        (1, "failed"),
        (2, "second try"),
    ]


def test_refusals(dsn: str, conn: psycopg.Connection) -> None:
    assert refused(run(dsn, "jobs", "logs", "424242")) == "error: job 424242 not found"
    (job_id,) = enqueue(conn)
    assert ok(run(dsn, "jobs", "logs", str(job_id))) == ""
    assert run(dsn, "jobs", "logs", str(job_id), "--attempt", "0").exit_code == 2


@contextmanager
def skiplock_process(
    dsn: str, tmp_path: Path, name: str, *args: str
) -> Iterator[subprocess.Popen[bytes]]:
    env = {
        **os.environ,
        "SKIPLOCK_DSN": dsn,
        "PYTHONPATH": os.pathsep.join([str(HERE), os.environ.get("PYTHONPATH", "")]),
    }
    # A file, not a pipe: a pipe nobody reads fills up and blocks the process.
    with (tmp_path / f"{name}.out").open("wb") as out, (tmp_path / f"{name}.err").open("wb") as err:
        proc = subprocess.Popen(
            [sys.executable, "-m", "skiplock", *args],
            stdout=out,
            stderr=err,
            env=env,
            # Ctrl-C as at a terminal: an xdist worker ignores SIGINT, and its children
            # would inherit that.
            preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_DFL),
        )
    try:
        yield proc
    finally:
        if proc.poll() is None:
            proc.kill()
        proc.wait(30)


@pytest.mark.slow
def test_follow_prints_a_running_job_s_lines_and_ends_with_it(
    dsn: str, conn: psycopg.Connection, tmp_path: Path
) -> None:
    job_id = conn.execute(
        "SELECT skiplock.enqueue('steps', '{\"n\": 3}', queue => 'logs')"
    ).fetchone()[0]
    follow = ("jobs", "logs", str(job_id), "--follow", "--interval", "0.05")
    with skiplock_process(dsn, tmp_path, "follow", *follow) as follower:
        worker = ("worker", "--app", "job_logs_app:app", "--queue", "logs")
        with skiplock_process(dsn, tmp_path, "worker", *worker):
            assert follower.wait(60) == 0, (tmp_path / "follow.err").read_text()
    lines = (tmp_path / "follow.out").read_text().splitlines()
    assert [line.split(" ", 2)[2] for line in lines] == [
        "info steps: step 1 of 3",
        "info steps: step 2 of 3",
        "info steps: step 3 of 3",
        "warning skiplock.job: all steps done",
    ]
    assert conn.execute(
        "SELECT status FROM skiplock.all_jobs WHERE id = %s", (job_id,)
    ).fetchone() == ("succeeded",)


@pytest.mark.slow
def test_ctrl_c_ends_follow_cleanly(dsn: str, conn: psycopg.Connection, tmp_path: Path) -> None:
    (job_id,) = enqueue(conn)  # nobody runs it: --follow would wait for good
    store_lines(conn, job_id, 1, "so far")
    follow = ("jobs", "logs", str(job_id), "--follow", "--interval", "0.05")
    with skiplock_process(dsn, tmp_path, "follow", *follow) as follower:
        wait_until(lambda: "so far" in (tmp_path / "follow.out").read_text(), 30)
        follower.send_signal(signal.SIGINT)
        assert follower.wait(30) == 0
    assert (tmp_path / "follow.err").read_text() == ""
