"""`skiplock tokens`: the API tokens `skiplock serve` accepts."""

from __future__ import annotations

import click

from skiplock import store
from skiplock.cli.output import print_rows, when
from skiplock.cli.root import CliError, Settings, connect, main, pass_settings, run_found


@main.group()
def tokens() -> None:
    """API tokens for `skiplock serve` (stored hashed; the secret is shown once)."""


@tokens.command("create")
@click.option("--name", required=True, help="Unique; it names the caller in the audit log.")
@click.option("--scope", type=click.Choice(("read", "write", "admin")), required=True)
@click.option("--queues", default=None, metavar="PATTERN", help="Only these queues: emails*.")
@pass_settings
def create_token(settings: Settings, name: str, scope: str, queues: str | None) -> None:
    """Create a token and print it (stdout, alone, so `$(...)` captures it)."""
    from skiplock.api.auth import check_queue_pattern, check_token_name, hash_token, new_token

    check_token_name(name)
    check_queue_pattern(queues)
    token = new_token()
    with connect(settings.dsn()) as conn:
        if not store.create_api_token(name, scope, queues, hash_token(token)).run(conn):
            raise CliError(f"token {name} already exists (revoke it and pick another name)")
    limit = f", queues {queues}" if queues else ""
    click.echo(f"token {name} created (scope {scope}{limit}); it is not shown again", err=True)
    click.echo(token)


@tokens.command("list")
@click.option("--json", "as_json", is_flag=True)
@pass_settings
def list_tokens(settings: Settings, as_json: bool) -> None:
    """Every token, revoked ones too; never the secret or its hash."""
    with connect(settings.dsn()) as conn:
        rows = store.list_api_tokens().run(conn)
    print_rows(
        rows,
        as_json=as_json,
        empty="no tokens",
        headers=("NAME", "SCOPE", "QUEUES", "CREATED", "LAST USED", "REVOKED"),
        row=lambda t: (
            t["name"],
            t["scope"],
            t["queue_pattern"] or "*",
            when(t["created_at"]),
            when(t["last_used_at"]),
            when(t["revoked_at"]),
        ),
    )


@tokens.command("revoke")
@click.argument("name")
@pass_settings
def revoke_token(settings: Settings, name: str) -> None:
    """Revoke a token: its next request gets 401."""
    run_found(
        settings,
        store.revoke_api_token(name),
        f"token {name} not found (or already revoked)",
        f"token {name} revoked",
    )
