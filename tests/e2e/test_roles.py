"""Least privilege: a login role holding only skiplock_producer enqueues (from psql and
from Python, in bulk too) and reads its job's status and result, and can do nothing
else; a login role holding only skiplock_worker runs a real `skiplock worker`. No
function is executable by PUBLIC.

Roles are cluster-wide: each test makes login roles with fresh names and drops them
after, so the tests are safe to run twice and side by side. The NOLOGIN roles
skiplock_producer, skiplock_worker and skiplock_admin are made by migrate (the template
database's) and stay.
"""

from __future__ import annotations

import logging
import os
import shutil
import subprocess
import sys
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path

import psycopg
import pytest
from psycopg.conninfo import make_conninfo

import skiplock
import skiplock.migrate as migrate_module
from conftest import wait_until
from skiplock.migrate import migrate
from skiplock.workflows import Step

pytestmark = pytest.mark.slow
TESTS = Path(__file__).resolve().parents[1]
TABLE_PRIVILEGES = ("SELECT", "INSERT", "UPDATE", "DELETE")


@pytest.fixture
def login(conn: psycopg.Connection) -> Iterator[Callable[[str], str]]:
    """login(role) makes a LOGIN role holding only `role` and returns its DSN for this
    test's database; every such role is dropped after the test."""
    made: list[str] = []
    info = conn.info

    def make(role: str) -> str:
        name = f"skiplock_test_{uuid.uuid4().hex[:12]}"
        conn.execute(f"CREATE ROLE {name} LOGIN".encode())
        made.append(name)
        conn.execute(f"GRANT {role} TO {name}".encode())
        return make_conninfo(
            host=info.host,
            port=info.port,
            user=name,
            dbname=info.dbname,
            **({"password": info.password} if info.password else {}),
        )

    yield make
    for name in made:
        # its sessions first (a worker process may still be disconnecting)
        conn.execute(
            "SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE usename = %s", (name,)
        )
        conn.execute(f"DROP OWNED BY {name}".encode())
        conn.execute(f"DROP ROLE {name}".encode())


def psql(dsn: str, sql: str) -> subprocess.CompletedProcess[str]:
    binary = shutil.which("psql")
    if binary is None:
        if os.environ.get("CI"):  # CI must run this with the real psql
            pytest.fail("psql is not installed (.ci/run installs postgresql-client)")
        pytest.skip("needs psql (.ci/run installs postgresql-client)")
    return subprocess.run(
        [binary, dsn, "-X", "-q", "-t", "-A", "-v", "ON_ERROR_STOP=1", "-c", sql],
        capture_output=True,
        text=True,
        timeout=60,
    )


def test_no_function_is_executable_by_public(conn: psycopg.Connection) -> None:
    rows = conn.execute(
        "SELECT p.proname FROM pg_proc p,"
        " aclexplode(coalesce(p.proacl, acldefault('f', p.proowner))) a"
        " WHERE p.pronamespace = 'skiplock'::regnamespace AND a.grantee = 0"
    ).fetchall()
    assert rows == []


def test_internal_helpers_are_granted_to_no_role_but_the_admin(conn: psycopg.Connection) -> None:
    rows = conn.execute(
        "SELECT p.proname, a.grantee::regrole::text FROM pg_proc p,"
        " aclexplode(p.proacl) a"
        " WHERE p.pronamespace = 'skiplock'::regnamespace AND p.proname LIKE '\\_%'"
        "   AND a.grantee <> p.proowner AND a.grantee::regrole::text <> 'skiplock_admin'"
    ).fetchall()
    assert rows == []
    names = {
        n
        for (n,) in conn.execute(
            "SELECT proname FROM pg_proc WHERE pronamespace = 'skiplock'::regnamespace"
            " AND proname LIKE '\\_%'"
        )
    }
    assert {"_finish_jobs", "_move_to_dead_jobs", "_settle_waiting_jobs", "_jobs_inserted"} <= names


def test_producer_enqueues_from_psql_and_can_do_nothing_else(
    conn: psycopg.Connection, login: Callable[[str], str]
) -> None:
    producer = login("skiplock_producer")
    done = psql(producer, "SELECT skiplock.enqueue('send_email', '{\"to\": \"a@b.c\"}')")
    assert done.returncode == 0, done.stderr
    job_id = int(done.stdout.strip())
    status = psql(producer, f"SELECT status FROM skiplock.all_jobs WHERE id = {job_id}")
    assert status.returncode == 0, status.stderr
    assert status.stdout.strip() == "queued"

    # a worker (here: the test's superuser) runs it; the producer reads the result
    worker = uuid.uuid4()
    (attempt,) = conn.execute(
        "SELECT attempt FROM skiplock.claim_jobs(%s, '{default}', 1)", (worker,)
    ).fetchone()
    conn.execute(
        "SELECT skiplock.complete_jobs(%s, %s, %s, %s)",
        (worker, [job_id], [attempt], ['{"sent": true}']),
    )
    result = psql(producer, f"SELECT status, result FROM skiplock.all_jobs WHERE id = {job_id}")
    assert result.stdout.strip() == 'succeeded|{"sent": true}', result.stderr

    refused = {
        "claim": f"SELECT * FROM skiplock.claim_jobs('{uuid.uuid4()}', '{{default}}', 1)",
        "cancel": f"SELECT skiplock.cancel_job({job_id})",
        "tokens": "SELECT * FROM skiplock.api_tokens",
        "token lookup": "SELECT * FROM skiplock.find_api_token('x')",
        "internal": "SELECT skiplock._settle_waiting_jobs('{1}')",
    }
    for what, sql in refused.items():
        out = psql(producer, sql)
        assert out.returncode != 0 and "permission denied" in out.stderr, (what, out)

    # no right on any table, checked by the server for each table and privilege
    tables = [
        t
        for (t,) in conn.execute(
            "SELECT c.oid::regclass::text FROM pg_class c"
            " WHERE c.relnamespace = 'skiplock'::regnamespace AND c.relkind IN ('r', 'p')"
        )
    ]
    assert "skiplock.jobs" in tables and "skiplock.api_tokens" in tables
    with psycopg.connect(producer, autocommit=True) as c:
        held = c.execute(
            "SELECT t, p FROM unnest(%s::text[]) t, unnest(%s::text[]) p"
            " WHERE has_table_privilege(t, p)",
            (tables, list(TABLE_PRIVILEGES)),
        ).fetchall()
        assert held == []
        for statement in (
            "SELECT 1 FROM skiplock.jobs",
            "INSERT INTO skiplock.jobs (task) VALUES ('x')",
            "UPDATE skiplock.jobs SET priority = 1",
            "DELETE FROM skiplock.dead_jobs",
        ):
            with pytest.raises(psycopg.errors.InsufficientPrivilege):
                c.execute(statement)
    assert conn.execute("SELECT count(*) FROM skiplock.jobs").fetchone() == (0,)


def test_producer_app_enqueues_in_bulk(
    conn: psycopg.Connection, login: Callable[[str], str]
) -> None:
    app = skiplock.App(login("skiplock_producer"))
    try:
        few = app.enqueue_many([{"task": "bulk", "args": {"i": i}} for i in range(10)])
        # past the COPY threshold: a producer may not COPY, so the jobs take insert_jobs
        many = app.enqueue_many(
            [{"task": "bulk", "args": {"i": i}, "queue": "big", "priority": 3} for i in range(6000)]
        )
        mixed = app.enqueue_many([{"task": "a"}, {"task": "b", "priority": 1}])
        one = app.enqueue("single", {"x": 1})
        flow = app.workflow(Step("w", name="first"), Step("w", name="then", after=["first"]))
    finally:
        app.close()
    assert len(few) == 10 and len(many) == 6000 and len(mixed) == 2
    assert list(flow.jobs) == ["first", "then"]
    assert many == sorted(many) and few == sorted(few)
    rows = conn.execute(
        "SELECT queue, priority, count(*) FROM skiplock.jobs GROUP BY 1, 2 ORDER BY 1, 2"
    ).fetchall()
    assert rows == [("big", 3, 6000), ("default", 0, 14), ("default", 1, 1)]
    (args,) = conn.execute("SELECT args FROM skiplock.jobs WHERE id = %s", (many[-1],)).fetchone()
    assert args == {"i": 5999} and one


def test_producer_and_worker_read_a_job_with_whether_its_task_is_published(
    conn: psycopg.Connection, login: Callable[[str], str]
) -> None:
    conn.execute('SELECT skiplock.publish_tasks(NULL, \'[{"name": "known"}]\')')
    for role in ("skiplock_producer", "skiplock_worker"):
        app = skiplock.App(login(role))
        try:
            known, ghost = app.enqueue("known"), app.enqueue("ghost")
            assert app.get_job(known).task_published is True
            assert app.get_job(ghost).task_published is False
        finally:
            app.close()
    # the task names only: the rest of the registry stays out of reach
    with psycopg.connect(login("skiplock_producer"), autocommit=True) as c:
        with pytest.raises(psycopg.errors.InsufficientPrivilege):
            c.execute("SELECT args_schema FROM skiplock.tasks")


def test_worker_role_runs_a_worker(
    conn: psycopg.Connection, login: Callable[[str], str], tmp_path: Path
) -> None:
    worker = login("skiplock_worker")
    producer = skiplock.App(login("skiplock_producer"))
    try:
        ok = producer.enqueue("roles.ok", {"n": 21})
        flaky = producer.enqueue("roles.flaky", {})
        later = producer.enqueue("roles.ok", {"n": 1}, delay=1.5)
    finally:
        producer.close()
    env = {
        **os.environ,
        "SKIPLOCK_DSN": worker,
        "PYTHONPATH": os.pathsep.join([str(TESTS / "e2e"), os.environ.get("PYTHONPATH", "")]),
    }
    log = tmp_path / "worker.log"
    with log.open("wb") as out:
        proc = subprocess.Popen(
            [sys.executable, "-m", "skiplock", "worker", "--app", "roles_app:app"],
            stdout=out,
            stderr=subprocess.STDOUT,
            env=env,
        )
    try:
        # the worker wrote its schedule; make it due now so that the tick fires it
        wait_until(
            lambda: conn.execute(
                "UPDATE skiplock.schedules SET next_run_at = now() - interval '1 second'"
                " WHERE name = 'roles.every_minute' AND last_run_at IS NULL RETURNING 1"
            ).fetchone(),
            timeout=30,
        )

        def statuses() -> dict[int, str]:
            return dict(
                conn.execute(
                    "SELECT id, status FROM skiplock.all_jobs WHERE id = ANY (%s)",
                    ([ok, flaky, later],),
                ).fetchall()
            )

        wait_until(lambda: set(statuses().values()) == {"succeeded"}, timeout=60)
        wait_until(
            lambda: conn.execute(
                "SELECT 1 FROM skiplock.all_jobs WHERE task = 'roles.tick' AND status = 'succeeded'"
            ).fetchone(),
            timeout=60,
        )
        assert proc.poll() is None, log.read_text()
    finally:
        proc.terminate()
        proc.wait(30)
    text = log.read_text()
    assert "permission denied" not in text, text
    rows = dict(
        conn.execute(
            "SELECT id, attempt FROM skiplock.all_jobs WHERE id = ANY (%s)", ([ok, flaky],)
        ).fetchall()
    )
    assert rows == {ok: 1, flaky: 2}
    (result,) = conn.execute("SELECT result FROM skiplock.all_jobs WHERE id = %s", (ok,)).fetchone()
    assert result == 42


def test_migrate_without_createrole_says_what_to_run_once_and_goes_on(
    conn: psycopg.Connection, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    """A role that may not create roles migrates its own database: one warning naming
    the statements to run, everything else applied. (A role name no cluster has, so
    that the test does not depend on which roles exist.)"""
    owner = f"skiplock_test_{uuid.uuid4().hex[:12]}"
    absent = f"skiplock_test_{uuid.uuid4().hex[:12]}"
    database = f"skiplock_roles_{uuid.uuid4().hex[:12]}"
    monkeypatch.setattr(migrate_module, "ROLES", (*migrate_module.ROLES, absent))
    conn.execute(f"CREATE ROLE {owner} LOGIN NOCREATEROLE".encode())
    conn.execute(f'CREATE DATABASE "{database}" OWNER {owner}'.encode())
    info = conn.info
    dsn = make_conninfo(
        host=info.host,
        port=info.port,
        user=owner,
        dbname=database,
        **({"password": info.password} if info.password else {}),
    )
    try:
        caplog.set_level(logging.WARNING, "skiplock.migrate")
        with psycopg.connect(dsn, autocommit=True) as c:
            assert migrate(c).functions
            assert not migrate(c)  # up to date: nothing applied, nothing said again
            assert c.execute("SELECT to_regprocedure('skiplock.enqueue_many(jsonb)')").fetchone()[0]
        warnings = [r.getMessage() for r in caplog.records if r.name == "skiplock.migrate"]
        assert len(warnings) == 1, warnings
        assert f"CREATE ROLE {absent} NOLOGIN;" in warnings[0]
        assert "skiplock migrate" in warnings[0]
        assert (
            conn.execute("SELECT 1 FROM pg_roles WHERE rolname = %s", (absent,)).fetchone() is None
        )
    finally:
        conn.execute(f'DROP DATABASE IF EXISTS "{database}" WITH (FORCE)'.encode())
        conn.execute(f"DROP ROLE IF EXISTS {owner}".encode())
