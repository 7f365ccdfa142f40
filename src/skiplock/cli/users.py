"""`skiplock users`: the users who log in to the API with a password (POST /api/v1/login)."""

from __future__ import annotations

import sys

import click

from skiplock import store
from skiplock.cli.output import print_rows, when
from skiplock.cli.root import CliError, Settings, connect, main, pass_settings, run_found
from skiplock.passwords import check_user_name, hash_password, password_problem

password_stdin_option = click.option(
    "--password-stdin",
    is_flag=True,
    help="Read the password from stdin (its first line) instead of a hidden prompt.",
)


def read_password(from_stdin: bool) -> str:
    """The new password: the first line of stdin, or typed twice at a hidden prompt.
    Never a flag's value: flags show in `ps` and in shell history."""
    if from_stdin:
        password = sys.stdin.readline().removesuffix("\n").removesuffix("\r")
    else:
        password = str(
            click.prompt("Password", hide_input=True, confirmation_prompt=True, err=True)
        )
    problem = password_problem(password)
    if problem is not None:
        raise CliError(problem)
    return password


@main.group()
def users() -> None:
    """Users of the API: a name and a password, traded at POST /api/v1/login for a JWT
    of the user's scope (needs the API's --jwt-secret)."""


@users.command("create")
@click.argument("name")
@click.option("--scope", type=click.Choice(("read", "write", "admin")), required=True)
@click.option("--queues", default=None, metavar="PATTERN", help="Only these queues: emails*.")
@password_stdin_option
@pass_settings
def create_user(
    settings: Settings, name: str, scope: str, queues: str | None, password_stdin: bool
) -> None:
    """Create a user; the password is read from a prompt or stdin."""
    from skiplock.api.auth import check_queue_pattern

    check_user_name(name)
    check_queue_pattern(queues)
    dsn = settings.dsn()
    password_hash = hash_password(read_password(password_stdin))
    with connect(dsn) as conn:
        if not store.create_user(name, password_hash, scope, queues).run(conn):
            raise CliError(f"user {name} already exists")
    limit = f", queues {queues}" if queues else ""
    click.echo(f"user {name} created (scope {scope}{limit})")


@users.command("list")
@click.option("--json", "as_json", is_flag=True)
@pass_settings
def list_users(settings: Settings, as_json: bool) -> None:
    """Every user, disabled ones too; never a password or its hash."""
    with connect(settings.dsn()) as conn:
        rows = store.list_users().run(conn)
    print_rows(
        rows,
        as_json=as_json,
        empty="no users",
        headers=("NAME", "SCOPE", "QUEUES", "CREATED", "LAST LOGIN", "DISABLED"),
        row=lambda u: (
            u["name"],
            u["scope"],
            u["queue_pattern"] or "*",
            when(u["created_at"]),
            when(u["last_login_at"]),
            when(u["disabled_at"]),
        ),
    )


@users.command("disable")
@click.argument("name")
@pass_settings
def disable_user(settings: Settings, name: str) -> None:
    """Refuse the user's next logins; tokens it already got work until they expire."""
    run_found(
        settings,
        store.disable_user(name),
        f"user {name} not found (or already disabled)",
        f"user {name} disabled",
    )


@users.command("enable")
@click.argument("name")
@pass_settings
def enable_user(settings: Settings, name: str) -> None:
    """Let a disabled user log in again."""
    run_found(
        settings,
        store.enable_user(name),
        f"user {name} not found (or not disabled)",
        f"user {name} enabled",
    )


@users.command("delete")
@click.argument("name")
@pass_settings
def delete_user(settings: Settings, name: str) -> None:
    """Delete a user (the audit log keeps its logins)."""
    run_found(settings, store.delete_user(name), f"user {name} not found", f"user {name} deleted")


@users.command("password")
@click.argument("name")
@password_stdin_option
@pass_settings
def set_password(settings: Settings, name: str, password_stdin: bool) -> None:
    """Set a user's password, read from a prompt or stdin."""
    settings.dsn()  # no DSN: say so before asking for a password
    password_hash = hash_password(read_password(password_stdin))
    run_found(
        settings,
        store.set_user_password(name, password_hash),
        f"user {name} not found",
        f"password of user {name} set",
    )
