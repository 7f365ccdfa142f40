"""`skiplock dead-letters`: list, redrive and purge jobs that failed for good."""

from __future__ import annotations

from datetime import timedelta
from typing import Any

import click

from skiplock import store
from skiplock.cli.output import print_json, table, when
from skiplock.cli.root import (
    SECONDS_MAX,
    CliError,
    CliUsageError,
    Settings,
    connect,
    main,
    pass_settings,
)


@main.group("dead-letters")
def dead_letters() -> None:
    """Jobs that failed for good: list, redrive, purge."""


@dead_letters.command("list")
@click.option("--queue", default=None)
@click.option("--task", default=None)
@click.option("--limit", type=click.IntRange(1, 10000), default=50, show_default=True)
@click.option("--json", "as_json", is_flag=True)
@pass_settings
def list_dead_letters(
    settings: Settings, queue: str | None, task: str | None, limit: int, as_json: bool
) -> None:
    """Newest first, with each job's last error. With --json, args, errors and last_error
    longer than 1,000 bytes of JSON are null, with their size and a preview under
    "truncated"."""
    with connect(settings.dsn()) as conn:
        rows = store.list_dead_letters(queue=queue, task=task, limit=limit).run(conn)
    if as_json:
        print_json(rows)
    elif not rows:
        click.echo("no dead letters")
    else:
        headers = ["ID", "TASK", "QUEUE", "ATTEMPTS", "FAILED", "LAST ERROR"]
        click.echo(
            table(
                headers,
                [
                    [
                        r["id"],
                        r["task"],
                        r["queue"],
                        f"{r['attempt']}/{r['max_attempts']}",
                        when(r["failed_at"]),
                        _last_error_text(r)[:60],
                    ]
                    for r in rows
                ],
            )
        )


def _last_error_text(row: dict[str, Any]) -> str:
    """A listed dead letter's last error, or the start of it when the list cut it (the
    preview is its JSON text: a string, opening quote first)."""
    cut = row["truncated"].get("last_error")
    return str(cut["preview"][1:] if cut else row["last_error"] or "")


@dead_letters.command("redrive")
@click.argument("job_id", type=int, required=False)
@click.option("--queue", default=None, help="Every dead letter of this queue.")
@click.option("--task", default=None, help="Every dead letter of this task.")
@click.option("--all", "everything", is_flag=True, help="Every dead letter (with --yes).")
@click.option("--yes", is_flag=True, help="Required with --all: it queues every dead letter.")
@pass_settings
def redrive_dead_letters(
    settings: Settings,
    job_id: int | None,
    queue: str | None,
    task: str | None,
    everything: bool,
    yes: bool,
) -> None:
    """Queue dead letters again (attempts reset): one by id, or a filtered set."""
    if (job_id is None) == (not (queue or task or everything)):
        raise CliUsageError("give a job id, or --queue/--task/--all (not both)")
    if everything and not yes:
        raise CliUsageError("--all queues every dead letter again: add --yes")
    with connect(settings.dsn()) as conn:
        if job_id is not None:
            if store.get_dead_letter(job_id).run(conn) is None:
                raise CliError(f"dead letter {job_id} not found")
            store.retry_job(job_id).run(conn)
            click.echo(f"job {job_id} queued again")
            return
        total = 0
        while batch := store.redrive_dead_letters(queue=queue, task=task, limit=1000).run(conn):
            total += len(batch)
    click.echo(f"{total} dead letters queued again")


@dead_letters.command("purge")
@click.option("--queue", default=None)
@click.option("--task", default=None)
@click.option(
    "--older-than", type=click.FloatRange(min=0, max=SECONDS_MAX), default=None, metavar="SECONDS"
)
@click.option("--yes", is_flag=True, help="Required: purging deletes for good.")
@pass_settings
def purge_dead_letters(
    settings: Settings,
    queue: str | None,
    task: str | None,
    older_than: float | None,
    yes: bool,
) -> None:
    """Delete dead letters for good (filtered by queue, task, age)."""
    if not yes:
        raise CliUsageError("purging deletes dead letters for good: add --yes")
    age = timedelta(seconds=older_than) if older_than is not None else None
    with connect(settings.dsn()) as conn:
        count = store.purge_dead_letters(queue=queue, task=task, older_than=age).run(conn)
    click.echo(f"{count} dead letters purged")
