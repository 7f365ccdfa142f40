"""`skiplock tasks`: the task registry, what workers serve."""

from __future__ import annotations

import json

import click

from skiplock import store
from skiplock.cli.output import field_text, print_json, table, when
from skiplock.cli.root import CliError, Settings, connect, load_app, main, pass_settings, run_found


@main.group(invoke_without_command=True)
@click.option("--json", "as_json", is_flag=True)
@click.pass_context
def tasks(ctx: click.Context, as_json: bool) -> None:
    """The task registry: what workers serve (`tasks` lists them); `tasks show NAME`,
    `tasks publish --app MODULE:ATTR`, `tasks forget NAME`."""
    if ctx.invoked_subcommand is not None:
        return
    settings: Settings = ctx.obj
    with connect(settings.dsn()) as conn:
        rows = store.list_tasks().run(conn)
    if as_json:
        print_json(rows)
    elif not rows:
        click.echo("no tasks registered (workers publish theirs when they start)")
    else:
        headers = ["NAME", "QUEUE", "SCHEMA", "WORKERS", "LAST SEEN", "DESCRIPTION"]
        click.echo(
            table(
                headers,
                [
                    [
                        r["name"],
                        r["queue"],
                        "no" if r["args_schema"] is None else "yes",
                        len(r["workers"]),
                        when(r["last_seen_at"]),
                        (r["description"].splitlines() or [""])[0],
                    ]
                    for r in rows
                ],
            )
        )


@tasks.command("show")
@click.argument("name")
@click.option("--json", "as_json", is_flag=True)
@pass_settings
def show_task(settings: Settings, name: str, as_json: bool) -> None:
    """One task with its description and the JSON Schema of its args."""
    with connect(settings.dsn()) as conn:
        rows = store.list_tasks([name]).run(conn)
    if not rows:
        raise CliError(f"task {name} not found")
    task = rows[0]
    if as_json:
        print_json(task)
        return
    for key in ("name", "queue", "first_seen_at", "last_seen_at"):
        click.echo(f"{key + ':':<15}{field_text(task[key])}")
    click.echo(f"{'workers:':<15}{', '.join(str(w) for w in task['workers']) or '(none alive)'}")
    click.echo(f"{'description:':<15}{task['description']}")
    schema = task["args_schema"]
    click.echo(f"{'args schema:':<15}" + ("(none)" if schema is None else ""))
    if schema is not None:
        click.echo(json.dumps(schema, indent=2))


@tasks.command("publish")
@click.option("--app", "app_spec", required=True, metavar="MODULE:ATTR")
@pass_settings
def publish_tasks(settings: Settings, app_spec: str) -> None:
    """Publish the app's tasks to the registry without starting a worker (e.g. from a
    deploy step, before the API starts taking jobs for them)."""
    app = load_app(app_spec)
    with connect(settings.dsn()) as conn:
        count = app.publish_tasks(conn=conn)
    click.echo(f"published {count} task(s)")


@tasks.command("forget")
@click.argument("name")
@pass_settings
def forget_task(settings: Settings, name: str) -> None:
    """Remove a task from the registry (its jobs are not touched)."""
    run_found(settings, store.forget_task(name), f"task {name} not found", f"task {name} forgotten")
