"""`skiplock enqueue`: one job, with every job option as a flag (skiplock.options)."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import click

from skiplock.app import App
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
from skiplock.errors import ConfigError
from skiplock.options import OPTIONS, from_cli


def job_option_flags(command: Callable[..., Any]) -> Callable[..., Any]:
    """A flag per job option, in declaration order; a list option's flag repeats."""
    for option in reversed(OPTIONS):
        command = click.option(
            option.flag,
            option.name,
            multiple=option.many,
            default=None,
            metavar=option.metavar,
            help=option.help + (" Repeat the flag for more." if option.many else ""),
        )(command)
    return command


def checked_options(texts: dict[str, Any]) -> dict[str, Any]:
    """The flags given, each checked by its declaration; a bad one is a usage error
    naming its flag."""
    options = {}
    for option in OPTIONS:
        text = texts.get(option.name)
        if text is None or text == ():
            continue
        try:
            options[option.name] = from_cli(option, text)
        except ConfigError as exc:
            raise CliUsageError(str(exc)) from None
    return options


@main.command()
@click.argument("task")
@click.option("--args", "args_text", default="{}", metavar="JSON", help="A JSON object.")
@job_option_flags
@click.option(
    "--app", "app_spec", default=None, metavar="MODULE:ATTR", help="Apply its task defaults."
)
@click.option("--json", "as_json", is_flag=True, help='Print {"id": ...}.')
@pass_settings
def enqueue(
    settings: Settings,
    /,
    task: str,
    args_text: str,
    app_spec: str | None,
    as_json: bool,
    **texts: Any,
) -> None:
    """Enqueue one job of TASK and print its id.

    Unset options take TASK's defaults when --app registers it, else the database's.
    """
    args = parse_args(args_text)
    options = checked_options(texts)
    app = load_app(app_spec) if app_spec else App()
    app.dsn = settings.dsn()
    with connect(app.dsn) as conn:
        job_id = app.enqueue(task, args, conn=conn, **options)
    if as_json:
        print_json({"id": job_id})
    else:
        click.echo(job_id)
