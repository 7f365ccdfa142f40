"""Schema migrations: numbered .sql files applied in order, once each, under a lock.

Each file runs in its own transaction while holding a transaction-level advisory lock,
so concurrent `skiplock migrate` runs (or workers starting together) serialise instead
of deadlocking; each applied file is recorded with its checksum. Applying twice is a
no-op, an edited applied file is refused, and so is a schema newer than this code.
"""

from __future__ import annotations

import hashlib
import re
from dataclasses import dataclass
from importlib import resources
from pathlib import Path

import psycopg

from skiplock.errors import SchemaError

# pg_advisory_xact_lock key: the bytes "skiplock" read as a big-endian bigint.
MIGRATION_LOCK_KEY = int.from_bytes(b"skiplock", "big")
_FILE_NAME = re.compile(r"^(\d{4})_([a-z0-9_]+)\.sql$")


@dataclass(frozen=True)
class Migration:
    version: int
    name: str
    sql: str

    @property
    def checksum(self) -> str:
        return hashlib.sha256(self.sql.encode()).hexdigest()


def sql_dir() -> Path:
    """The shipped sql/ folder: inside the wheel, or at the top of a source checkout."""
    packaged = Path(str(resources.files("skiplock"))) / "sql"
    if packaged.is_dir():
        return packaged
    return Path(__file__).resolve().parents[2] / "sql"


def load_migrations(directory: Path | None = None) -> list[Migration]:
    folder = (directory or sql_dir()) / "migrations"
    found = []
    for path in sorted(folder.glob("*.sql")):
        match = _FILE_NAME.match(path.name)
        if not match:
            raise SchemaError(f"migration file name must look like 0001_name.sql, got {path.name}")
        found.append(Migration(int(match[1]), match[2], path.read_text()))
    versions = [m.version for m in found]
    if versions != list(range(1, len(found) + 1)):
        raise SchemaError(f"migrations must be numbered 1..n without gaps, got {versions}")
    return found


_BOOTSTRAP = """
CREATE SCHEMA IF NOT EXISTS skiplock;
CREATE TABLE IF NOT EXISTS skiplock.schema_migrations (
    version    integer PRIMARY KEY,
    name       text NOT NULL,
    checksum   text NOT NULL,
    applied_at timestamptz NOT NULL DEFAULT now()
)
"""


def _applied(conn: psycopg.Connection) -> dict[int, str]:
    rows = conn.execute("SELECT version, checksum FROM skiplock.schema_migrations").fetchall()
    return {version: checksum for version, checksum in rows}


def _check_known(applied: dict[int, str], known: list[Migration]) -> None:
    by_version = {m.version: m for m in known}
    newer = sorted(v for v in applied if v not in by_version)
    if newer:
        raise SchemaError(
            f"database schema is at version {max(applied)}, newer than this skiplock knows "
            f"({len(known)}); upgrade skiplock"
        )
    for version, checksum in applied.items():
        if by_version[version].checksum != checksum:
            raise SchemaError(
                f"migration {version:04d}_{by_version[version].name} was changed after it "
                "was applied (checksum mismatch)"
            )


def migrate(conn: psycopg.Connection) -> list[int]:
    """Apply every pending migration; return the versions applied (empty when up to date).

    `conn` must not be inside a transaction: each migration commits on its own.
    """
    known = load_migrations()
    done: list[int] = []
    for migration in known:
        with conn.transaction():
            conn.execute("SELECT pg_advisory_xact_lock(%s)", (MIGRATION_LOCK_KEY,))
            conn.execute(_BOOTSTRAP)
            applied = _applied(conn)
            _check_known(applied, known)
            if migration.version in applied:
                continue
            conn.execute(migration.sql.encode())
            conn.execute(
                "INSERT INTO skiplock.schema_migrations (version, name, checksum) "
                "VALUES (%s, %s, %s)",
                (migration.version, migration.name, migration.checksum),
            )
            done.append(migration.version)
    return done


def check_schema(conn: psycopg.Connection) -> int:
    """Raise SchemaError unless the schema is the one this code knows; return its version."""
    try:
        with conn.transaction():
            applied = _applied(conn)
    except psycopg.errors.UndefinedTable:
        raise SchemaError("skiplock schema not found; run `skiplock migrate`") from None
    return verify_applied(applied)


def verify_applied(applied: dict[int, str]) -> int:
    """check_schema's rules for {version: checksum} read by any means (sync or async)."""
    known = load_migrations()
    _check_known(applied, known)
    if len(applied) < len(known):
        raise SchemaError(
            f"database schema is at version {max(applied, default=0)}, this skiplock needs "
            f"{len(known)}; run `skiplock migrate`"
        )
    return len(known)
