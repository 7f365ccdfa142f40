"""The SQL house: migrations hold the shape, sql/functions/ every function once.

A database recorded by the pre-release migration chain is refused with what to do; the
shipped migrations never change; the function files re-apply without changing anything;
a step-by-step upgrade ends in the fresh install's catalog; and a worker keeps running
jobs while the functions are re-applied.
"""

from __future__ import annotations

import asyncio
import logging
import re
import shutil
import threading
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import psycopg
import pytest
from click.testing import CliRunner
from psycopg.conninfo import make_conninfo

import skiplock
import skiplock.migrate as migrate_module
from conftest import async_wait_until
from skiplock.cli import main
from skiplock.errors import SchemaError
from skiplock.migrate import (
    Applied,
    check_schema,
    load_functions,
    load_migrations,
    migrate,
    sql_dir,
)
from skiplock.worker import Worker

# The pre-release migration chain, 0001_initial … 0019_webhook_signers, by name: what its
# databases hold in skiplock.schema_migrations, and all migrate reads of them.
PRE_RELEASE_CHAIN = (
    "initial",
    "admin",
    "auth",
    "workflows",
    "tasks",
    "workflow_control",
    "fault_fixes",
    "fast_paths",
    "audit_retention",
    "queue_defaults",
    "settle_in_batches",
    "webhooks",
    "worker_health",
    "perf",
    "task_last_seen",
    "old_snapshots",
    "known_queues",
    "worker_loops",
    "webhook_signers",
)
# sha256 of each shipped migration. Applied migrations are checked by checksum, so an
# edited one would refuse every database that applied it: a change goes in a new file.
SHIPPED_MIGRATIONS = {
    1: ("baseline", "40bab7b677a9496a9a722fef1e537b7e62b040e9ee0db43bf470be458009cb6e"),
    2: ("internal_helpers", "239fe3dc1787e722a9a6b180797a963f7d54475a538bc2b260f9d2e4878516aa"),
    3: ("dead_letter_words", "8d2ec4847d43a1b68134bfbfff4a0abaa8809046423b3a9e749fd45daf70b190"),
    4: ("users", "1c961ad35428abdd18077d6e815fe164af081f3f1d265a60950ec18afd610a8a"),
    5: ("task_defaults", "bd137f3e37e8bcf38010bfccaf9c4d4037064058cbd275b7e49f892077821c83"),
    6: ("schedule_ids", "cd216523712ce37aa514e4210b5f30080aa70bb86920b7221f1e6f678ba177cb"),
    7: ("queue_order", "0c31c143be0be7475fb893abb3d14eab7462c6baf26cc42d2ef227ab1dd649f8"),
    8: ("metrics_history", "60c9b858478ab90f53f42398841eb57803fe976fed79b534511967aaea3c4408"),
    9: ("job_logs", "979147ff5516d79fe28db4265c47a5a5e734218a574f24e687efd85af90a038f"),
    10: ("worker_stops", "10422f506ad561d9cb215b92d6cef046615e701918b378f683b88f8410e618ad"),
    11: ("webhook_deliveries", "072f22371f5065ac9e29db3a9debd01a7fa500a8d777c8fc0fc19891b2dc5fca"),
}

# ---- the catalog fingerprint ------------------------------------------------------------

CATALOG = {
    "functions": """
        SELECT p.oid::regprocedure::text, pg_get_functiondef(p.oid), p.proconfig, p.prosecdef,
               p.proacl::text, obj_description(p.oid, 'pg_proc')
        FROM pg_proc p WHERE p.pronamespace = 'skiplock'::regnamespace""",
    "relations": """
        SELECT c.relname, c.relkind::text, c.reloptions, c.relacl::text,
               obj_description(c.oid, 'pg_class')
        FROM pg_class c
        WHERE c.relnamespace = 'skiplock'::regnamespace""",
    "columns": """
        SELECT c.relname, a.attnum, a.attname, format_type(a.atttypid, a.atttypmod),
               pg_get_expr(d.adbin, d.adrelid), a.attnotnull, a.attidentity::text,
               a.attgenerated::text
        FROM pg_attribute a JOIN pg_class c ON c.oid = a.attrelid
        LEFT JOIN pg_attrdef d ON d.adrelid = a.attrelid AND d.adnum = a.attnum
        WHERE c.relnamespace = 'skiplock'::regnamespace AND a.attnum > 0
          AND NOT a.attisdropped AND c.relkind IN ('r', 'v', 'p', 'm')""",
    "constraints": """
        SELECT coalesce(c.conrelid::regclass::text, c.contypid::regtype::text), c.conname,
               pg_get_constraintdef(c.oid)
        FROM pg_constraint c WHERE c.connamespace = 'skiplock'::regnamespace""",
    "indexes": "SELECT indexname, indexdef FROM pg_indexes WHERE schemaname = 'skiplock'",
    "triggers": """
        SELECT c.relname, t.tgname, pg_get_triggerdef(t.oid) FROM pg_trigger t
        JOIN pg_class c ON c.oid = t.tgrelid
        WHERE c.relnamespace = 'skiplock'::regnamespace AND NOT t.tgisinternal""",
    "views": """
        SELECT c.relname, pg_get_viewdef(c.oid) FROM pg_class c
        WHERE c.relnamespace = 'skiplock'::regnamespace AND c.relkind IN ('v', 'm')""",
    "domains": """
        SELECT t.typname, format_type(t.typbasetype, t.typtypmod), t.typnotnull, t.typdefault
        FROM pg_type t WHERE t.typnamespace = 'skiplock'::regnamespace AND t.typtype = 'd'""",
    "enums": """
        SELECT t.typname, array_agg(e.enumlabel ORDER BY e.enumsortorder)::text
        FROM pg_type t JOIN pg_enum e ON e.enumtypid = t.oid
        WHERE t.typnamespace = 'skiplock'::regnamespace GROUP BY t.typname""",
    "sequences": """
        SELECT sequencename, data_type::text, start_value, min_value, max_value,
               increment_by, cycle, cache_size
        FROM pg_sequences WHERE schemaname = 'skiplock'""",
}

Fingerprint = dict[str, set[tuple[Any, ...]]]


def fingerprint(conn: psycopg.Connection) -> Fingerprint:
    """Everything in schema skiplock that code can depend on, comparable across databases:
    function definitions exactly (pg_get_functiondef: body, arguments, settings), their
    grants and comments, the grants and comments of tables and views,
    columns in attnum order, constraints, indexes, triggers, views, domains, enums and
    sequences."""
    out: Fingerprint = {}
    for name, sql in CATALOG.items():
        rows = conn.execute(sql).fetchall()
        out[name] = {tuple(str(v) if isinstance(v, list) else v for v in r) for r in rows}
        assert len(out[name]) == len(rows)
    return out


# ---- databases of our own on the test server --------------------------------------------


@pytest.fixture
def new_database(conn: psycopg.Connection) -> Iterator[Callable[[], str]]:
    """Make brand-new empty databases on the test server; all dropped after the test."""
    made: list[str] = []
    info = conn.info

    def make() -> str:
        name = f"skiplock_layout_{uuid.uuid4().hex[:12]}"
        conn.execute(f'CREATE DATABASE "{name}"')
        made.append(name)
        return make_conninfo(
            host=info.host,
            port=info.port,
            user=info.user,
            dbname=name,
            **({"password": info.password} if info.password else {}),
        )

    yield make
    for name in made:
        conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


def record_pre_release_chain(dsn: str) -> None:
    """A database as the pre-release chain left it, as far as migrate looks: its
    schema_migrations table with the chain's 19 versions."""
    with psycopg.connect(dsn, autocommit=True) as c:
        c.execute(
            "CREATE SCHEMA skiplock; CREATE TABLE skiplock.schema_migrations ("
            " version integer PRIMARY KEY, name text NOT NULL, checksum text NOT NULL,"
            " applied_at timestamptz NOT NULL DEFAULT now())"
        )
        with c.cursor() as cur:
            cur.executemany(
                "INSERT INTO skiplock.schema_migrations (version, name, checksum)"
                " VALUES (%s, %s, md5(%s))",
                [(n, name, name) for n, name in enumerate(PRE_RELEASE_CHAIN, start=1)],
            )


def copy_sql(target: Path, migrations: int | None = None) -> Path:
    """A copy of the shipped sql/ folder (with only the first `migrations` migrations)."""
    shutil.copytree(sql_dir() / "functions", target / "functions")
    (target / "migrations").mkdir()
    for m in load_migrations()[:migrations]:
        (target / "migrations" / f"{m.version:04d}_{m.name}.sql").write_text(m.sql)
    return target


# ---- for good ----------------------------------------------------------------------------


def test_old_chain_database_is_refused_with_what_to_do(
    new_database: Callable[[], str],
) -> None:
    dsn = new_database()
    record_pre_release_chain(dsn)
    with psycopg.connect(dsn, autocommit=True) as c:
        for action in (migrate, check_schema):
            with pytest.raises(SchemaError) as refused:
                action(c)
            message = str(refused.value)
            assert "pre-release migration chain (0001_initial … 0019_webhook_signers)" in message
            assert "DROP SCHEMA skiplock CASCADE" in message
        # refused before anything was written
        assert c.execute("SELECT to_regclass('skiplock.schema_functions')").fetchone() == (None,)
        assert c.execute("SELECT max(version) FROM skiplock.schema_migrations").fetchone() == (19,)
    result = CliRunner().invoke(main, ["--dsn", dsn, "migrate"])
    assert result.exit_code != 0
    assert "pre-release migration chain" in result.output
    # doing what it says works
    with psycopg.connect(dsn, autocommit=True) as c:
        c.execute("DROP SCHEMA skiplock CASCADE")
        assert migrate(c) == Applied([m.version for m in load_migrations()], functions=True)
        assert check_schema(c) == len(load_migrations())


def test_shipped_migrations_never_change() -> None:
    shipped = {m.version: (m.name, m.checksum) for m in load_migrations()}
    assert shipped == SHIPPED_MIGRATIONS


def test_applying_the_functions_again_changes_nothing(conn: psycopg.Connection) -> None:
    before = fingerprint(conn)
    conn.execute(load_functions().sql.encode())
    conn.execute(load_functions().sql.encode())
    assert fingerprint(conn) == before
    # through migrate: a changed checksum re-applies them; then there is nothing to do
    conn.execute("UPDATE skiplock.schema_functions SET checksum = 'other'")
    assert migrate(conn) == Applied([], functions=True)
    assert fingerprint(conn) == before
    assert not migrate(conn)


def test_up_to_date_migrate_runs_no_ddl(conn: psycopg.Connection) -> None:
    """A no-op migrate must not touch the catalog: running workers keep their prepared
    statements. A function replaced by a re-apply gets a new xmin in pg_proc."""
    xmins = (
        "SELECT array_agg(xmin::text ORDER BY oid) FROM pg_proc"
        " WHERE pronamespace = 'skiplock'::regnamespace"
    )
    before = conn.execute(xmins).fetchone()
    assert not migrate(conn)
    assert conn.execute(xmins).fetchone() == before


def _code(path: Path) -> str:
    """The SQL of a file without its -- comments (none of ours sits inside a string)."""
    return re.sub(r"--[^\n]*", "", path.read_text())


def test_migrations_hold_only_the_shape() -> None:
    allowed: set[tuple[str, str]] = set()
    found = set()
    for path in sorted((sql_dir() / "migrations").glob("*.sql")):
        code = _code(path)
        for m in re.finditer(
            r"\bCREATE\s+(?:OR\s+REPLACE\s+)?(?:FUNCTION|PROCEDURE)\s+([\w.]+)", code, re.I
        ):
            found.add((path.name, m[1]))
        assert not re.search(
            r"\b(CREATE\s+(OR\s+REPLACE\s+)?(CONSTRAINT\s+)?TRIGGER|CREATE\s+(OR\s+REPLACE\s+)?"
            r"(MATERIALIZED\s+)?VIEW|CREATE\s+(OR\s+REPLACE\s+)?RULE|ALTER\s+FUNCTION)\b",
            code,
            re.I,
        ), path.name
    assert found == allowed


def test_every_function_trigger_and_view_is_defined_once(conn: psycopg.Connection) -> None:
    defined: dict[str, list[str]] = {}
    for name, _ in load_functions().files:
        path = sql_dir() / "functions" / name
        text = path.read_text()
        assert text.startswith("-- "), f"{name} opens with a comment saying what it holds"
        code = _code(path)
        assert not re.search(r"\bALTER\s+FUNCTION\b|\bDROP\b", code, re.I), name
        for m in re.finditer(
            r"\bCREATE\s+(OR\s+REPLACE\s+)?(FUNCTION|TRIGGER|VIEW)\s+([\w.]+)", code, re.I
        ):
            assert m[1], f"{name}: {m[0]} is not CREATE OR REPLACE"
            defined.setdefault(f"{m[2].lower()} {m[3].removeprefix('skiplock.')}", []).append(name)
        # each function opens with its contract comment
        for m in re.finditer(r"(?m)^CREATE OR REPLACE FUNCTION ([\w.]+)", text):
            preceding = text[: m.start()].rstrip("\n").rsplit("\n", 1)[-1]
            assert preceding.startswith("--"), f"{name}: {m[1]} has no contract comment"
    twice = {k: v for k, v in defined.items() if len(v) > 1}
    assert not twice
    catalog = (
        {
            f"function {n}"
            for (n,) in conn.execute(
                "SELECT proname FROM pg_proc WHERE pronamespace = 'skiplock'::regnamespace"
            )
        }
        | {
            f"trigger {n}"
            for (n,) in conn.execute(
                "SELECT t.tgname FROM pg_trigger t JOIN pg_class c ON c.oid = t.tgrelid"
                " WHERE c.relnamespace = 'skiplock'::regnamespace AND NOT t.tgisinternal"
            )
        }
        | {
            f"view {n}"
            for (n,) in conn.execute(
                "SELECT relname FROM pg_class WHERE relnamespace = 'skiplock'::regnamespace"
                " AND relkind = 'v'"
            )
        }
    )
    assert set(defined) == catalog


def test_step_by_step_upgrade_ends_in_the_fresh_catalog(
    new_database: Callable[[], str], conn: psycopg.Connection, tmp_path: Path
) -> None:
    """Each migration in turn (with no functions yet), then the functions: the catalog of
    a database upgraded release by release is the fresh install's."""
    dsn = new_database()
    known = load_migrations()
    with psycopg.connect(dsn, autocommit=True) as c:
        for step in range(1, len(known) + 1):
            folder = copy_sql(tmp_path / f"step{step}", migrations=step)
            for path in (folder / "functions").glob("*.sql"):
                path.unlink()
            (folder / "functions" / "010_none.sql").write_text("-- no functions yet\nSELECT 1;\n")
            assert migrate(c, folder).versions == [step]
        assert migrate(c) == Applied([], functions=True)
        assert fingerprint(c) == fingerprint(conn)


# ---- a worker keeps running while the functions are re-applied --------------------------


def test_migrate_gives_way_to_a_held_lock_and_tries_again(
    conn: psycopg.Connection,
    connect: Callable[..., psycopg.Connection],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """The DDL waits at most _LOCK_TIMEOUT for a lock, then rolls back and tries again:
    a worker's transaction is never the one aborted."""
    blocker = connect()
    blocker.execute("LOCK TABLE skiplock.jobs IN ROW EXCLUSIVE MODE")  # as an INSERT would
    conn.execute("UPDATE skiplock.schema_functions SET checksum = 'other'")
    monkeypatch.setattr(migrate_module, "_LOCK_ATTEMPTS", 2)
    with pytest.raises(SchemaError, match="could not take the locks"):
        migrate(conn)
    assert conn.execute("SELECT checksum FROM skiplock.schema_functions").fetchone() == ("other",)
    monkeypatch.undo()
    threading.Timer(1.0, blocker.rollback).start()  # the transaction ends while migrate retries
    assert migrate(conn) == Applied([], functions=True)
    assert not migrate(conn)


ROUNDS = 30


def test_worker_keeps_running_jobs_while_functions_are_reapplied(
    dsn: str, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    # Two function sets whose checksums differ: every function body of the second carries
    # one comment more, so each migrate below replaces every function, trigger and view.
    changed = copy_sql(tmp_path / "changed")
    for path in (changed / "functions").glob("*.sql"):
        text = path.read_text()
        path.write_text(text.replace("AS $$\n", "AS $$\n-- re-applied\n"))
    assert load_functions(changed).checksum != load_functions().checksum

    app = skiplock.App(dsn)
    done: list[int] = []

    @app.task(name="count")
    async def count(n: int) -> int:
        done.append(n)
        return n

    caplog.set_level(logging.WARNING)
    enqueued: list[int] = []
    reapplied: list[Applied] = []

    def reapply(folder: Path | None) -> None:
        with psycopg.connect(dsn, autocommit=True) as c:
            reapplied.append(migrate(c, folder))

    async def body(worker: Worker) -> None:
        for round_ in range(ROUNDS):
            # enqueue while the migrate runs, and the worker claims and finishes meanwhile
            migrating = asyncio.create_task(
                asyncio.to_thread(reapply, changed if round_ % 2 == 0 else None)
            )
            for i in range(20):
                enqueued.append(await app.enqueue_async("count", {"n": round_ * 100 + i}))
            await migrating
        await async_wait_until(lambda: len(done) >= len(enqueued), timeout=60)

    worker = Worker(app, concurrency=8, poll_interval=0.05)

    async def run() -> None:
        runner = asyncio.create_task(worker.run())
        try:
            await asyncio.wait_for(worker.started.wait(), 30)
            await body(worker)
        finally:
            worker.stop()
            await asyncio.wait_for(runner, 30)

    try:
        asyncio.run(run())
    finally:
        app.close()

    assert [r.functions for r in reapplied] == [True] * ROUNDS
    with psycopg.connect(dsn) as c:
        statuses = dict(
            c.execute(
                "SELECT status, count(*) FROM skiplock.all_jobs WHERE id = ANY (%s) GROUP BY 1",
                (enqueued,),
            ).fetchall()
        )
    assert statuses == {"succeeded": len(enqueued)}
    assert sorted(done) == sorted(round_ * 100 + i for round_ in range(ROUNDS) for i in range(20))
    problems = [r for r in caplog.records if r.levelno >= logging.WARNING]
    assert not problems, [r.getMessage() for r in problems]
