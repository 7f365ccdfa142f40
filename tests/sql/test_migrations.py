"""Migrations: applied once under a lock, refused when edited or newer, shipped in the wheel."""

from __future__ import annotations

import subprocess
import sys
import threading
import uuid
import zipfile
from collections.abc import Iterator
from importlib.util import find_spec
from pathlib import Path

import psycopg
import pytest
from psycopg.conninfo import make_conninfo

from skiplock.errors import SchemaError
from skiplock.migrate import check_schema, load_migrations, migrate

ROOT = Path(__file__).resolve().parents[2]


@pytest.fixture
def empty_dsn(conn: psycopg.Connection) -> Iterator[str]:
    """A brand-new database with no skiplock schema at all, dropped after the test."""
    name = f"skiplock_empty_{uuid.uuid4().hex[:12]}"
    conn.execute(f'CREATE DATABASE "{name}"')
    info = conn.info
    try:
        yield make_conninfo(
            host=info.host,
            port=info.port,
            user=info.user,
            dbname=name,
            **({"password": info.password} if info.password else {}),
        )
    finally:
        conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


def applied_versions(conn: psycopg.Connection) -> list[int]:
    rows = conn.execute("SELECT version FROM skiplock.schema_migrations ORDER BY version")
    return [v for (v,) in rows]


def test_migrate_twice_is_a_noop(empty_dsn: str) -> None:
    known = [m.version for m in load_migrations()]
    with psycopg.connect(empty_dsn, autocommit=True) as c:
        with pytest.raises(SchemaError, match="not found"):
            check_schema(c)
        assert migrate(c) == known
        assert migrate(c) == []
        assert applied_versions(c) == known
        assert check_schema(c) == len(known)


def test_template_database_is_already_migrated(conn: psycopg.Connection) -> None:
    assert migrate(conn) == []
    assert check_schema(conn) == len(load_migrations())


def test_newer_schema_is_refused(conn: psycopg.Connection) -> None:
    future = len(load_migrations()) + 1
    conn.execute(
        "INSERT INTO skiplock.schema_migrations (version, name, checksum) "
        "VALUES (%s, 'from_the_future', 'x')",
        (future,),
    )
    with pytest.raises(SchemaError, match="newer"):
        check_schema(conn)
    with pytest.raises(SchemaError, match="newer"):
        migrate(conn)
    # the refused migrate left the connection usable and wrote nothing
    assert applied_versions(conn) == [*range(1, future + 1)]


def test_tampered_checksum_is_refused(conn: psycopg.Connection) -> None:
    conn.execute("UPDATE skiplock.schema_migrations SET checksum = 'edited' WHERE version = 1")
    with pytest.raises(SchemaError, match="checksum"):
        check_schema(conn)
    with pytest.raises(SchemaError, match="checksum"):
        migrate(conn)


def test_concurrent_migrate_on_empty_database_applies_once(empty_dsn: str) -> None:
    known = [m.version for m in load_migrations()]
    barrier = threading.Barrier(2)
    results: list[list[int]] = []
    errors: list[BaseException] = []

    def run() -> None:
        try:
            with psycopg.connect(empty_dsn, autocommit=True) as c:
                barrier.wait(timeout=30)
                results.append(migrate(c))
        except BaseException as exc:  # reported by the main thread
            errors.append(exc)

    threads = [threading.Thread(target=run) for _ in range(2)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=60)
    assert not errors, errors
    assert len(results) == 2
    # every version applied by exactly one of the two
    assert sorted(v for r in results for v in r) == known
    with psycopg.connect(empty_dsn, autocommit=True) as c:
        assert applied_versions(c) == known
        assert check_schema(c) == len(known)
        assert c.execute("SELECT count(*) FROM skiplock.schema_migrations").fetchone()[0] == len(
            known
        )


@pytest.mark.slow
def test_wheel_ships_sql_and_py_typed(tmp_path: Path) -> None:
    cmd = [sys.executable, "-m", "build", "--wheel", "--outdir", str(tmp_path)]
    if find_spec("hatchling") is not None:
        # the backend is already installed: build offline, without a fresh isolated env
        cmd.append("--no-isolation")
    subprocess.run([*cmd, str(ROOT)], check=True, capture_output=True, cwd=tmp_path)
    (wheel,) = tmp_path.glob("skiplock-*.whl")
    with zipfile.ZipFile(wheel) as zf:
        names = set(zf.namelist())
        assert "skiplock/py.typed" in names
        for path in sorted((ROOT / "sql" / "migrations").glob("*.sql")):
            member = f"skiplock/sql/migrations/{path.name}"
            assert member in names
            assert zf.read(member) == path.read_bytes()
    assert "skiplock/sql/migrations/0001_initial.sql" in names
