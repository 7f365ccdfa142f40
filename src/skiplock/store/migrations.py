"""What the database says is applied: the migrations and the function files (the
tables sql/migrations/ and skiplock migrate keep)."""

from __future__ import annotations

from skiplock.store.call import Call, scalar


def applied_migrations() -> Call[dict[int, tuple[str, str]]]:
    """{version: (name, checksum)} of the applied migrations (see migrate.check_schema)."""
    return Call(
        "SELECT version, name, checksum FROM skiplock.schema_migrations",
        (),
        lambda rows: {version: (name, checksum) for version, name, checksum in rows},
    )


def applied_functions() -> Call[str | None]:
    """The checksum of the applied function files (see migrate.check_schema); only ask
    once the migrations passed migrate.verify_applied (the table comes with them)."""
    return Call("SELECT checksum FROM skiplock.schema_functions", (), scalar)
