"""Migrations and functions: applied once under a lock, refused when edited, newer or from
another chain, re-applied when the functions change, shipped in the wheel."""

from __future__ import annotations

import subprocess
import sys
import threading
import zipfile
from importlib.util import find_spec
from pathlib import Path

import psycopg
import pytest

from skiplock.errors import SchemaError
from skiplock.migrate import Applied, check_schema, load_functions, load_migrations, migrate

ROOT = Path(__file__).resolve().parents[2]


def applied_versions(conn: psycopg.Connection) -> list[int]:
    rows = conn.execute("SELECT version FROM skiplock.schema_migrations ORDER BY version")
    return [v for (v,) in rows]


def applied_functions(conn: psycopg.Connection) -> list[str]:
    return [c for (c,) in conn.execute("SELECT checksum FROM skiplock.schema_functions")]


def test_migrate_twice_is_a_noop(empty_dsn: str) -> None:
    known = [m.version for m in load_migrations()]
    with psycopg.connect(empty_dsn, autocommit=True) as c:
        with pytest.raises(SchemaError, match="not found"):
            check_schema(c)
        assert migrate(c) == Applied(known, functions=True)
        second = migrate(c)
        assert second == Applied([], functions=False) and not second
        assert applied_versions(c) == known
        assert applied_functions(c) == [load_functions().checksum]
        assert check_schema(c) == len(known)


def test_template_database_is_already_migrated(conn: psycopg.Connection) -> None:
    assert migrate(conn) == Applied([], functions=False)
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
    results: list[Applied] = []
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
    # every version, and the functions, applied by exactly one of the two
    assert sorted(v for r in results for v in r.versions) == known
    assert sorted(r.functions for r in results) == [False, True]
    with psycopg.connect(empty_dsn, autocommit=True) as c:
        assert applied_versions(c) == known
        assert check_schema(c) == len(known)
        assert c.execute("SELECT count(*) FROM skiplock.schema_migrations").fetchone()[0] == len(
            known
        )
        assert applied_functions(c) == [load_functions().checksum]


def test_other_chain_is_refused(conn: psycopg.Connection) -> None:
    conn.execute("UPDATE skiplock.schema_migrations SET name = 'other' WHERE version = 1")
    with pytest.raises(SchemaError, match="another migration chain"):
        check_schema(conn)
    with pytest.raises(SchemaError, match="another migration chain"):
        migrate(conn)


def test_changed_functions_are_refused_then_reapplied(conn: psycopg.Connection) -> None:
    conn.execute("UPDATE skiplock.schema_functions SET checksum = 'older'")
    with pytest.raises(SchemaError, match=r"SQL functions.*run `skiplock migrate`"):
        check_schema(conn)
    assert migrate(conn) == Applied([], functions=True)
    assert applied_functions(conn) == [load_functions().checksum]
    assert check_schema(conn) == len(load_migrations())
    assert migrate(conn) == Applied([], functions=False)


def test_failed_functions_leave_nothing_applied(empty_dsn: str, tmp_path: Path) -> None:
    """Migrations and functions are one transaction: a broken function file rolls the
    migrations back too."""
    sql = tmp_path / "sql"
    (sql / "migrations").mkdir(parents=True)
    (sql / "functions").mkdir()
    for path in (ROOT / "sql" / "migrations").glob("*.sql"):
        (sql / "migrations" / path.name).write_bytes(path.read_bytes())
    (sql / "functions" / "010_broken.sql").write_text("CREATE FUNCTION skiplock.broken(;\n")
    with psycopg.connect(empty_dsn, autocommit=True) as c:
        with pytest.raises(psycopg.errors.SyntaxError):
            migrate(c, sql)
        assert c.execute("SELECT to_regclass('skiplock.jobs')").fetchone() == (None,)
        assert c.execute("SELECT to_regclass('skiplock.schema_migrations')").fetchone() == (None,)


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
        shipped = sorted((ROOT / "sql").glob("*/*.sql"))
        for path in shipped:
            member = f"skiplock/{path.relative_to(ROOT).as_posix()}"
            assert member in names
            assert zf.read(member) == path.read_bytes()
    assert "skiplock/sql/migrations/0001_baseline.sql" in names
    functions = [p.name for p in shipped if p.parent.name == "functions"]
    assert functions == [name for name, _ in load_functions().files] and len(functions) > 1
