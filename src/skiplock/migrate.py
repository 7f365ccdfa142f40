"""Schema migrations and the SQL API's functions, applied together under one lock.

sql/migrations/ holds the shape of the data (numbered files, applied once each, in
order); sql/functions/ holds every function, trigger and view once, re-applied after the
migrations. `migrate` runs the pending migrations and then the function files in ONE
transaction holding a transaction-level advisory lock, so concurrent `skiplock migrate`
runs (or workers starting together) serialise instead of deadlocking, and a failure
leaves nothing half-applied. Each migration is recorded with its checksum, the function
files with one checksum over all of them. When nothing is pending and that checksum is
unchanged, `migrate` runs no DDL at all, so running workers keep their prepared
statements. An edited applied migration is refused, and so is a schema newer than this
code or one created by the pre-release migration chain.
"""

from __future__ import annotations

import hashlib
import logging
import re
import time
from dataclasses import dataclass
from importlib import resources
from pathlib import Path

import psycopg

from skiplock.errors import SchemaError

# The roles an operator grants to login roles (sql/functions/150_privileges.sql says
# what each may do); migrate creates them when missing and it may.
ROLES = ("skiplock_producer", "skiplock_worker", "skiplock_admin")
log = logging.getLogger(__name__)
# pg_advisory_xact_lock key: the bytes "skiplock" read as a big-endian bigint.
MIGRATION_LOCK_KEY = int.from_bytes(b"skiplock", "big")
_FILE_NAME = re.compile(r"^(\d{4})_([a-z0-9_]+)\.sql$")
_FUNCTIONS_FILE_NAME = re.compile(r"^(\d{3})_([a-z0-9_]+)\.sql$")
# The name of version 1 in a database made by the pre-release migration chain
# (0001_initial … 0019_webhook_signers): such a database is refused, not upgraded.
_PRE_RELEASE_FIRST = "initial"
# How long migrate's DDL may wait for one lock, and how often it tries (see migrate).
_LOCK_TIMEOUT = "200ms"
_LOCK_ATTEMPTS = 60


@dataclass(frozen=True)
class Migration:
    version: int
    name: str
    sql: str

    @property
    def checksum(self) -> str:
        return hashlib.sha256(self.sql.encode()).hexdigest()


@dataclass(frozen=True)
class Functions:
    """The function files of sql/functions/, in order: (file name, text) each."""

    files: tuple[tuple[str, str], ...]

    @property
    def sql(self) -> str:
        """The files in order, each followed by the COMMENT ON statements of its functions
        and views (see contracts)."""
        return "\n".join(text + "".join(comment_statements(text)) for _, text in self.files)

    @property
    def checksum(self) -> str:
        """sha256 over every file's name and text: any edit, rename or reorder changes it."""
        digest = hashlib.sha256()
        for name, text in self.files:
            digest.update(f"{name}\0{len(text.encode())}\0".encode())
            digest.update(text.encode())
        return digest.hexdigest()


# A function's or view's contract is the comment block directly above its CREATE: the
# `--` lines with no blank line between them and the statement.
_CREATE = re.compile(r"^CREATE OR REPLACE (FUNCTION|VIEW) skiplock\.(\w+)", re.MULTILINE)


def contracts(text: str) -> dict[tuple[str, str], str]:
    """{(kind, name): contract} for the functions and views of one function file: the
    comment block directly above each CREATE, without its `-- ` marks. Every function
    name in schema skiplock is unique, so the name alone says which function it is."""
    found = {}
    for match in _CREATE.finditer(text):
        lines = []
        for line in reversed(text[: match.start()].split("\n")[:-1]):
            if not line.startswith("--"):
                break
            lines.append(line[3:] if line.startswith("-- ") else line[2:])
        found[(match[1], match[2])] = "\n".join(reversed(lines)).strip("\n")
    return found


def comment_statements(text: str) -> list[str]:
    """`COMMENT ON FUNCTION|VIEW skiplock.name IS '<contract>';` for each function and
    view of a function file (see contracts), so that `\\df+` and `\\dv+` in psql show
    the same text as the file: one source."""
    return [
        f"\nCOMMENT ON {kind} skiplock.{name} IS '{contract.replace(chr(39), chr(39) * 2)}';"
        for (kind, name), contract in contracts(text).items()
    ]


@dataclass(frozen=True)
class Applied:
    """What one `migrate` did: the migration versions applied, and whether the function
    files were (re-)applied. Falsy when it did nothing."""

    versions: list[int]
    functions: bool

    def __bool__(self) -> bool:
        return bool(self.versions) or self.functions


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


def load_functions(directory: Path | None = None) -> Functions:
    folder = (directory or sql_dir()) / "functions"
    files = []
    for path in sorted(folder.glob("*.sql")):
        if not _FUNCTIONS_FILE_NAME.match(path.name):
            raise SchemaError(f"function file name must look like 010_name.sql, got {path.name}")
        files.append((path.name, path.read_text()))
    if not files:
        raise SchemaError(f"no function files in {folder}")
    return Functions(tuple(files))


_BOOTSTRAP = """
CREATE SCHEMA IF NOT EXISTS skiplock;
CREATE TABLE IF NOT EXISTS skiplock.schema_migrations (
    version    integer PRIMARY KEY,
    name       text NOT NULL,
    checksum   text NOT NULL,
    applied_at timestamptz NOT NULL DEFAULT now()
);
-- One row: the checksum of the function files last applied (migrate.Functions.checksum).
CREATE TABLE IF NOT EXISTS skiplock.schema_functions (
    checksum   text NOT NULL,
    applied_at timestamptz NOT NULL DEFAULT now()
)
"""

# {version: (name, checksum)} as recorded in skiplock.schema_migrations.
AppliedMigrations = dict[int, tuple[str, str]]


def _applied(conn: psycopg.Connection) -> AppliedMigrations:
    rows = conn.execute("SELECT version, name, checksum FROM skiplock.schema_migrations")
    return {version: (name, checksum) for version, name, checksum in rows.fetchall()}


def _applied_functions(conn: psycopg.Connection) -> str | None:
    row = conn.execute("SELECT checksum FROM skiplock.schema_functions").fetchone()
    return row[0] if row else None


def _exists(conn: psycopg.Connection, table: str) -> bool:
    row = conn.execute("SELECT to_regclass(%s) IS NOT NULL", (table,)).fetchone()
    return bool(row and row[0])


def _check_known(applied: AppliedMigrations, known: list[Migration]) -> None:
    first = applied.get(1)
    if first is not None and first[0] == _PRE_RELEASE_FIRST:
        raise SchemaError(
            "this database was created by a pre-release migration chain (0001_initial … "
            f"{max(applied):04d}_{applied[max(applied)][0]}); skiplock cannot upgrade it: "
            "dump what you need, DROP SCHEMA skiplock CASCADE, and run `skiplock migrate` "
            "again"
        )
    by_version = {m.version: m for m in known}
    newer = sorted(v for v in applied if v not in by_version)
    if newer:
        raise SchemaError(
            f"database schema is at version {max(applied)}, newer than this skiplock knows "
            f"({len(known)}); upgrade skiplock"
        )
    for version, (name, checksum) in applied.items():
        migration = by_version[version]
        if migration.name != name:
            raise SchemaError(
                f"migration {version:04d} was applied as {name!r}, but this skiplock's is "
                f"{migration.name!r}: the database comes from another migration chain"
            )
        if migration.checksum != checksum:
            raise SchemaError(
                f"migration {version:04d}_{migration.name} was changed after it "
                "was applied (checksum mismatch)"
            )


def migrate(conn: psycopg.Connection, directory: Path | None = None) -> Applied:
    """Apply every pending migration, then the function files when any migration was
    applied or their checksum differs from the recorded one; all in one transaction.

    Returns what was done (falsy when the schema was up to date: then no DDL ran).
    `conn` must not be inside a transaction. `directory` replaces the shipped sql/.

    While workers run, the DDL's locks (a replaced trigger locks its table, a replaced
    view the view) can close a cycle with a worker's statement that holds one table and
    waits for another. Every lock the DDL waits for is therefore bounded by
    _LOCK_TIMEOUT, below the default deadlock_timeout of 1 s, so that migrate, not the
    worker, is the one that gives up: it rolls back everything and tries again.
    Workers and the API wait for a few milliseconds of DDL; nothing of theirs fails.
    """
    known = load_migrations(directory)
    functions = load_functions(directory)
    for attempt in range(_LOCK_ATTEMPTS):
        try:
            return _migrate_once(conn, known, functions)
        except psycopg.errors.LockNotAvailable:
            time.sleep(min(0.05 * (attempt + 1), 0.5))
    raise SchemaError(
        f"could not take the locks to migrate in {_LOCK_ATTEMPTS} attempts (long "
        "transactions hold skiplock's tables); run `skiplock migrate` again"
    )


def _migrate_once(
    conn: psycopg.Connection, known: list[Migration], functions: Functions
) -> Applied:
    with conn.transaction():
        conn.execute("SELECT pg_advisory_xact_lock(%s)", (MIGRATION_LOCK_KEY,))
        if not _exists(conn, "skiplock.schema_functions"):
            if _exists(conn, "skiplock.schema_migrations"):
                # an old-chain database: refuse it before creating anything in it
                _check_known(_applied(conn), known)
            conn.execute(_BOOTSTRAP)
        applied = _applied(conn)
        _check_known(applied, known)
        pending = [m for m in known if m.version not in applied]
        missing = _create_roles(conn)
        if not pending and _applied_functions(conn) == functions.checksum and _roles_granted(conn):
            return Applied([], functions=False)
        if missing:
            _warn_missing_roles(missing)
        conn.execute("SELECT set_config('lock_timeout', %s, true)", (_LOCK_TIMEOUT,))
        for migration in pending:
            conn.execute(migration.sql.encode())
            conn.execute(
                "INSERT INTO skiplock.schema_migrations (version, name, checksum) "
                "VALUES (%s, %s, %s)",
                (migration.version, migration.name, migration.checksum),
            )
        conn.execute(functions.sql.encode())
        conn.execute("DELETE FROM skiplock.schema_functions")
        conn.execute(
            "INSERT INTO skiplock.schema_functions (checksum) VALUES (%s)", (functions.checksum,)
        )
    return Applied([m.version for m in pending], functions=True)


def _create_roles(conn: psycopg.Connection) -> list[str]:
    """Create the missing ROLES (NOLOGIN) where this role may; return those still missing.
    Each attempt runs in its own savepoint: a refusal leaves the transaction usable."""
    rows = conn.execute("SELECT rolname FROM pg_roles WHERE rolname = ANY (%s)", (list(ROLES),))
    existing = {name for (name,) in rows.fetchall()}
    missing = []
    for role in ROLES:
        if role in existing:
            continue
        try:
            with conn.transaction():
                conn.execute(f"CREATE ROLE {role} NOLOGIN".encode())
        except psycopg.errors.InsufficientPrivilege:
            missing.append(role)
        except (psycopg.errors.DuplicateObject, psycopg.errors.UniqueViolation):
            pass  # another migrate, in another database of the cluster, made it first
    return missing


def _roles_granted(conn: psycopg.Connection) -> bool:
    """False when one of ROLES exists but has not been granted its rights yet (created
    after the last migrate, by an operator who ran the statements migrate named)."""
    row = conn.execute(
        "SELECT bool_and(has_schema_privilege(r.rolname, 'skiplock', 'USAGE'))"
        " FROM pg_roles r WHERE r.rolname = ANY (%s)",
        (list(ROLES),),
    ).fetchone()
    return row is None or row[0] is not False


def _warn_missing_roles(missing: list[str]) -> None:
    statements = " ".join(f"CREATE ROLE {role} NOLOGIN;" for role in missing)
    log.warning(
        "this role may not create roles, so %s %s not created and nothing was granted to "
        "%s; as a role with CREATEROLE run: %s then `skiplock migrate` again to grant them",
        ", ".join(missing),
        "was" if len(missing) == 1 else "were",
        "it" if len(missing) == 1 else "them",
        statements,
    )


def check_schema(conn: psycopg.Connection, directory: Path | None = None) -> int:
    """Raise SchemaError unless the schema is the one this code knows; return its version."""
    try:
        with conn.transaction():
            applied = _applied(conn)
    except psycopg.errors.UndefinedTable:
        raise SchemaError("skiplock schema not found; run `skiplock migrate`") from None
    version = verify_applied(applied, directory)
    # verify_applied passed: this chain's bootstrap made schema_functions
    with conn.transaction():
        checksum = _applied_functions(conn)
    verify_functions(checksum, directory)
    return version


def verify_applied(applied: AppliedMigrations, directory: Path | None = None) -> int:
    """check_schema's rules for the recorded migrations, read by any means (sync or
    async); return the schema version. Check the functions next (verify_functions)."""
    known = load_migrations(directory)
    _check_known(applied, known)
    if len(applied) < len(known):
        raise SchemaError(
            f"database schema is at version {max(applied, default=0)}, this skiplock needs "
            f"{len(known)}; run `skiplock migrate`"
        )
    return len(known)


def verify_functions(checksum: str | None, directory: Path | None = None) -> None:
    """Refuse a database whose applied function files (by checksum) are not this code's."""
    if checksum != load_functions(directory).checksum:
        raise SchemaError(
            "the database's SQL functions are not the ones this skiplock ships; "
            "run `skiplock migrate`"
        )
