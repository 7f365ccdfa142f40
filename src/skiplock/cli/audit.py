"""`skiplock audit`: the API's audit log of mutating calls."""

from __future__ import annotations

from datetime import timedelta

import click

from skiplock import store
from skiplock.cli.output import print_rows, when
from skiplock.cli.root import SECONDS_MAX, Settings, connect, main, pass_settings


@main.group("audit", invoke_without_command=True)
@click.option("--limit", type=click.IntRange(1, 10000), default=50, show_default=True)
@click.option("--json", "as_json", is_flag=True)
@click.pass_context
def audit(ctx: click.Context, limit: int, as_json: bool) -> None:
    """The API's audit log of mutating calls, newest first; `audit prune --older-than
    SECONDS` deletes old entries."""
    if ctx.invoked_subcommand is not None:
        return
    settings: Settings = ctx.obj
    with connect(settings.dsn()) as conn:
        rows = store.list_audit(limit=limit).run(conn)
    print_rows(
        rows,
        as_json=as_json,
        empty="no audit entries",
        headers=("ID", "AT", "ACTOR", "ACTION", "STATUS"),
        row=lambda r: (r["id"], when(r["at"]), r["actor"], r["action"], r["status"]),
    )


# One short DELETE (and, autocommit, one transaction) per batch.
AUDIT_PRUNE_BATCH = 1000


@audit.command("prune")
@click.option(
    "--older-than",
    type=click.FloatRange(min=0, max=SECONDS_MAX),
    required=True,
    metavar="SECONDS",
    help="Written at least this long ago.",
)
@pass_settings
def prune_audit(settings: Settings, older_than: float) -> None:
    """Delete audit entries older than SECONDS (e.g. 7776000 for 90 days)."""
    period = timedelta(seconds=older_than)
    deleted = 0
    with connect(settings.dsn()) as conn:
        while True:
            batch = store.prune_audit_log(period, AUDIT_PRUNE_BATCH).run(conn)
            deleted += batch
            if batch < AUDIT_PRUNE_BATCH:
                break
    click.echo(f"{deleted} audit entr{'ies' if deleted != 1 else 'y'} pruned")
