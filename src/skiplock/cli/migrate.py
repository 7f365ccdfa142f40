"""`skiplock migrate`."""

from __future__ import annotations

import click

from skiplock.cli.root import Settings, connect, main, pass_settings
from skiplock.migrate import load_migrations, migrate


@main.command("migrate")
@pass_settings
def migrate_command(settings: Settings) -> None:
    """Apply pending schema migrations, then the SQL functions when they changed (safe to
    run again, and concurrently)."""
    with connect(settings.dsn(), check=False) as conn:
        applied = migrate(conn)
    names = {m.version: m.name for m in load_migrations()}
    for version in applied.versions:
        click.echo(f"applied {version:04d}_{names[version]}")
    if applied.functions:
        click.echo("applied the SQL functions (sql/functions)")
    if not applied:
        click.echo(f"schema is up to date (version {len(names)})")
