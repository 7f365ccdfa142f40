"""`skiplock schedules`: recurring (cron) schedules."""

from __future__ import annotations

import json

import click

from skiplock import store
from skiplock.cli.output import field_text, print_json, table, when
from skiplock.cli.root import (
    CliError,
    Settings,
    connect,
    main,
    parse_args,
    pass_settings,
    run_found,
)
from skiplock.schedules import validate as validate_schedule


@main.group()
def schedules() -> None:
    """Recurring schedules (cron): list, show, create, enable, disable, delete."""


@schedules.command("list")
@click.option("--json", "as_json", is_flag=True)
@pass_settings
def list_schedules(settings: Settings, as_json: bool) -> None:
    """Every schedule with its next run."""
    with connect(settings.dsn()) as conn:
        rows = store.list_schedules().run(conn)
    if as_json:
        print_json(rows)
    elif not rows:
        click.echo("no schedules")
    else:
        headers = ["NAME", "CRON", "TIMEZONE", "TASK", "QUEUE", "ENABLED", "NEXT RUN", "LAST RUN"]
        click.echo(
            table(
                headers,
                [
                    [
                        r["name"],
                        r["cron"],
                        r["timezone"],
                        r["task"],
                        r["queue"],
                        "yes" if r["enabled"] else "no",
                        when(r["next_run_at"]),
                        when(r["last_run_at"]),
                    ]
                    for r in rows
                ],
            )
        )


@schedules.command("show")
@click.argument("name")
@click.option("--json", "as_json", is_flag=True)
@pass_settings
def show_schedule(settings: Settings, name: str, as_json: bool) -> None:
    """Every field of one schedule."""
    with connect(settings.dsn()) as conn:
        rows = store.list_schedules(name).run(conn)
    if not rows:
        raise CliError(f"schedule {name} not found")
    if as_json:
        print_json(rows[0])
    else:
        click.echo("\n".join(f"{key:13} {field_text(value)}" for key, value in rows[0].items()))


@schedules.command("create")
@click.argument("name")
@click.option("--cron", required=True, help='5 fields, or @hourly/@daily/…: "*/5 * * * *".')
@click.option("--task", required=True)
@click.option("--args", "args_text", default="{}", metavar="JSON", help="A JSON object.")
@click.option("--queue", help="Default: the task's published queue, else default.")
@click.option("--priority", type=int, help="Default: the task's published default, else 0.")
@click.option("--timezone", default="UTC", show_default=True, help="An IANA name.")
@click.option(
    "--max-attempts",
    type=click.IntRange(1),
    help="Default: the task's published default, else 20.",
)
@click.option("--replace", is_flag=True, help="Replace a schedule of the same name.")
@click.option(
    "--allow-unregistered-task",
    is_flag=True,
    help="Accept a task no worker has published (yet).",
)
@pass_settings
def create_schedule(
    settings: Settings,
    name: str,
    cron: str,
    task: str,
    args_text: str,
    queue: str | None,
    priority: int | None,
    timezone: str,
    max_attempts: int | None,
    replace: bool,
    allow_unregistered_task: bool,
) -> None:
    """Create a schedule (workers fire it; the first computes its next run). Options
    left out take the task's published defaults, then the queue's (max attempts), then
    the built-in values, resolved now; a task no worker has published is
    refused unless --allow-unregistered-task."""
    validate_schedule(cron, timezone)
    args_json = json.dumps(parse_args(args_text))
    with connect(settings.dsn()) as conn:
        published = store.list_tasks([task]).run(conn)
        if not published and not allow_unregistered_task:
            raise CliError(
                f"unknown task {task}: no worker has published it; check the name, start a"
                " worker that serves it, or pass --allow-unregistered-task"
            )
        store.create_schedule(
            name,
            cron=cron,
            task=task,
            args_json=args_json,
            queue=queue,
            priority=priority,
            timezone=timezone,
            max_attempts=max_attempts,
            replace=replace,
        ).run(conn)
    click.echo(f"schedule {name} {'saved' if replace else 'created'}")


@schedules.command("enable")
@click.argument("name")
@pass_settings
def enable_schedule(settings: Settings, name: str) -> None:
    """Enable a schedule (its next run is computed from now)."""
    _set_schedule(settings, name, enabled=True)


@schedules.command("disable")
@click.argument("name")
@pass_settings
def disable_schedule(settings: Settings, name: str) -> None:
    """Disable a schedule; it keeps its settings."""
    _set_schedule(settings, name, enabled=False)


def _set_schedule(settings: Settings, name: str, *, enabled: bool) -> None:
    done = f"schedule {name} {'enabled' if enabled else 'disabled'}"
    run_found(
        settings, store.set_schedule_enabled(name, enabled), f"schedule {name} not found", done
    )


@schedules.command("run")
@click.argument("name")
@pass_settings
def run_schedule(settings: Settings, name: str) -> None:
    """Run a schedule now, out of its cron: its job is enqueued; its next run stays."""
    with connect(settings.dsn()) as conn:
        job_id = store.run_schedule(name).run(conn)
    if job_id is None:
        raise CliError(f"schedule {name} not found")
    click.echo(f"schedule {name}: job {job_id} enqueued")


@schedules.command("delete")
@click.argument("name")
@pass_settings
def delete_schedule(settings: Settings, name: str) -> None:
    """Delete a schedule (jobs it already enqueued stay)."""
    run_found(
        settings,
        store.delete_schedule(name),
        f"schedule {name} not found",
        f"schedule {name} deleted",
    )
