"""The dashboard's options of `skiplock serve` and `skiplock dev`, declared once for both."""

from __future__ import annotations

import click
from click.core import ParameterSource

from skiplock.cli.root import CliUsageError, env_var


def checked_trace_url(ctx: click.Context, param: click.Parameter, value: str | None) -> str | None:
    """--trace-url as given, when the dashboard can link with it; else a usage error
    naming the flag or the variable it came from."""
    if value is None:
        return None
    # imported here: the dashboard's modules cost a start that does not use them
    from skiplock.dashboard.job_relations import check_trace_url

    try:
        return check_trace_url(value)
    except ValueError as exc:
        name = "--trace-url"
        if isinstance(param, click.Option) and param.name:
            if ctx.get_parameter_source(param.name) is ParameterSource.ENVIRONMENT:
                name = env_var(param)
        raise CliUsageError(f"{name}: {exc}") from None


trace_url_option = click.option(
    "--trace-url",
    default=None,
    metavar="URL",
    callback=checked_trace_url,
    help="Link a job's dashboard page to its trace: an http(s) URL with {trace_id} (and"
    " {span_id}), e.g. https://jaeger.example.com/trace/{trace_id}. Default: the id as text.",
)
