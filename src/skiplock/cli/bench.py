"""`skiplock bench`: the command; the harness is skiplock.bench, imported when it runs."""

from __future__ import annotations

import click

from skiplock.cli.output import print_json
from skiplock.cli.root import CliError, Settings, connect, main, pass_settings, require_schema
from skiplock.config import resolve_dsn
from skiplock.migrate import migrate


@main.command("bench")
@click.option("--jobs", type=click.IntRange(1), default=20_000, show_default=True)
@click.option(
    "--workers", type=click.IntRange(1), default=1, show_default=True, help="Worker processes."
)
@click.option(
    "--concurrency",
    type=click.IntRange(1),
    default=200,
    show_default=True,
    help="Jobs at once per worker process.",
)
@click.option(
    "--batch-size",
    type=click.IntRange(1),
    default=None,
    help="Most jobs per claim (default: all free slots).",
)
@click.option("--args-bytes", type=click.IntRange(0), default=0, show_default=True)
@click.option(
    "--handler",
    type=click.Choice(["async-noop", "sync-noop", "sleep-1ms"]),
    default="async-noop",
    show_default=True,
)
@click.option(
    "--rounds",
    type=click.IntRange(1),
    default=3,
    show_default=True,
    help="Report min / median / max over this many rounds.",
)
@click.option(
    "--scenario",
    "scenarios",
    multiple=True,
    metavar="NAME",
    type=click.Choice(
        ["bulk-enqueue", "single-enqueue", "drain", "steady", "latency", "idle", "held-transaction"]
    ),
    help="Repeat for more (default: all but held-transaction).",
)
@click.option(
    "--duration",
    type=click.FloatRange(min=0.1),
    default=10.0,
    show_default=True,
    help="Seconds of the steady scenario.",
)
@click.option(
    "--rate",
    type=click.FloatRange(min=1),
    default=10_000.0,
    show_default=True,
    help="Jobs/s the steady scenario's producer aims for.",
)
@click.option("--idle-seconds", type=click.FloatRange(min=0.1), default=5.0, show_default=True)
@click.option(
    "--hold-seconds",
    type=click.FloatRange(min=0.1),
    default=300.0,
    show_default=True,
    help="How long held-transaction keeps its REPEATABLE READ transaction open.",
)
@click.option(
    "--hold-margin",
    type=click.FloatRange(min=0.1),
    default=60.0,
    show_default=True,
    help="Seconds of held-transaction load before the hold, and again after it.",
)
@click.option(
    "--sample-interval",
    type=click.FloatRange(min=0.1),
    default=60.0,
    show_default=True,
    help="Seconds per timeline row (soak, held-transaction).",
)
@click.option(
    "--soak",
    type=click.FloatRange(min=1),
    default=None,
    metavar="SECONDS",
    help="Instead of the scenarios: this long at half the drain rate, one row per interval.",
)
@click.option("--json", "as_json", is_flag=True)
@click.option("--yes", is_flag=True, help="Go ahead on a database that already holds jobs.")
@pass_settings
def bench(
    settings: Settings,
    jobs: int,
    workers: int,
    concurrency: int,
    batch_size: int | None,
    args_bytes: int,
    handler: str,
    rounds: int,
    scenarios: tuple[str, ...],
    duration: float,
    rate: float,
    idle_seconds: float,
    hold_seconds: float,
    hold_margin: float,
    sample_interval: float,
    soak: float | None,
    as_json: bool,
    yes: bool,
) -> None:
    """Measure enqueue, drain, steady-state throughput, latency and idle cost.

    Every round empties the skiplock tables (TRUNCATE): on a database that holds jobs
    it refuses unless --yes. Without a DSN it runs on a private PostgreSQL in a
    temporary directory.
    """
    from skiplock.bench import (
        DEFAULT_SCENARIOS,
        Bench,
        BenchError,
        BenchSettings,
        embedded_dsn,
        render_soak,
        render_table,
    )

    dsn = resolve_dsn(settings.dsn_flag)
    if dsn:
        require_schema(dsn)
    else:
        dsn = embedded_dsn()
        with connect(dsn, check=False) as conn:
            migrate(conn)
    runner = Bench(
        dsn,
        BenchSettings(
            jobs=jobs,
            workers=workers,
            concurrency=concurrency,
            batch_size=batch_size,
            args_bytes=args_bytes,
            handler=handler,
            rounds=rounds,
            duration=duration,
            rate=rate,
            idle_seconds=idle_seconds,
            hold_seconds=hold_seconds,
            hold_margin=hold_margin,
            sample_interval=sample_interval,
        ),
    )
    held = runner.foreign_jobs()
    if held and not yes:
        raise CliError(
            f"this database holds {held} jobs and the bench deletes every job"
            " (TRUNCATE of the skiplock tables); pass --yes to go ahead"
        )
    if held:
        click.echo(
            f"WARNING: deleting {held} jobs: the bench empties the skiplock tables", err=True
        )
    progress = None if as_json else lambda line: click.echo(line, err=True)
    try:
        if soak is not None:
            report = runner.soak(soak, progress=progress)
        else:
            report = runner.run(scenarios or DEFAULT_SCENARIOS, progress=progress)
    except BenchError as exc:
        raise CliError(str(exc)) from None
    if as_json:
        print_json(report)
    else:
        click.echo(render_soak(report) if soak is not None else render_table(report))
