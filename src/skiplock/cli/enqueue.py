"""`skiplock enqueue`."""

from __future__ import annotations

import click

from skiplock.cli.output import print_json
from skiplock.cli.root import (
    CliUsageError,
    Settings,
    connect,
    load_app,
    main,
    parse_args,
    pass_settings,
)
from skiplock.registry import App
from skiplock.webhooks import check_callback_url


@main.command()
@click.argument("task")
@click.option("--args", "args_text", default="{}", metavar="JSON", help="A JSON object.")
@click.option("--queue", default=None, help="Default: the database's ('default').")
@click.option("--priority", type=int, default=None, help="-100..100, higher runs first.")
@click.option("--delay", type=float, default=None, metavar="SECONDS", help="Run this much later.")
@click.option(
    "--callback-url",
    default=None,
    metavar="URL",
    help="POST the outcome here when the job finishes (see docs/webhooks.md).",
)
@click.option(
    "--app", "app_spec", default=None, metavar="MODULE:ATTR", help="Apply its task defaults."
)
@click.option("--json", "as_json", is_flag=True, help='Print {"id": ...}.')
@pass_settings
def enqueue(
    settings: Settings,
    task: str,
    args_text: str,
    queue: str | None,
    priority: int | None,
    delay: float | None,
    callback_url: str | None,
    app_spec: str | None,
    as_json: bool,
) -> None:
    """Enqueue one job of TASK and print its id.

    Unset options take TASK's defaults when --app registers it, else the database's.
    """
    args = parse_args(args_text)
    if callback_url is not None:
        try:
            check_callback_url(callback_url)
        except ValueError as exc:
            raise CliUsageError(f"--callback-url: {exc}") from None
    app = load_app(app_spec) if app_spec else App()
    app.dsn = settings.dsn()
    with connect(app.dsn) as conn:
        job_id = app.enqueue(
            task,
            args,
            conn=conn,
            queue=queue,
            priority=priority,
            delay=delay,
            callback_url=callback_url,
        )
    if as_json:
        print_json({"id": job_id})
    else:
        click.echo(job_id)
