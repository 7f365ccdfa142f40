"""`skiplock queues`: counts per queue; create, delete, set limits and defaults, pause,
resume; one queue's recent stats."""

from __future__ import annotations

import json
import re
from datetime import datetime, timedelta
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
    run_found,
)
from skiplock.errors import SkiplockError
from skiplock.jobs import STATUSES
from skiplock.options import PATTERN_WORDS, QUEUE_PATTERN
from skiplock.queue_stats import ENDED, stats_document
from skiplock.retry import RetryPolicy


@main.group(invoke_without_command=True)
@click.option("--json", "as_json", is_flag=True)
@click.pass_context
def queues(ctx: click.Context, as_json: bool) -> None:
    """Job counts per queue and status (finished ones: totals since install);
    `queues create|delete NAME` adds or removes one, `queues set NAME` sets its limits
    and defaults, `queues pause|resume NAME` stops and restarts claiming from it and
    `queues stats NAME` shows its workers and throughput."""
    if ctx.invoked_subcommand is not None:
        return
    settings: Settings = ctx.obj
    with connect(settings.dsn()) as conn:
        stats = store.queue_stats().run(conn)
    if as_json:
        print_json(stats)
    elif not stats:
        click.echo("no queues")
    else:
        columns = ("queue", "paused", *STATUSES)
        headers = [*(name.upper() for name in columns), "LIMITS", "DEFAULTS"]
        rows = [
            [*(_stat_text(s[k]) for k in columns), _limits_text(s), _defaults_text(s)]
            for s in stats
        ]
        click.echo(table(headers, rows))


def _stat_text(value: Any) -> str:
    if isinstance(value, bool):
        return "yes" if value else "no"
    return str(value)


def _limits_text(stat: dict[str, Any]) -> str:
    limits = []
    if stat["max_running"] is not None:
        limits.append(f"max {stat['max_running']} running")
    if stat["rate_limit"] is not None:
        limits.append(f"{stat['rate_limit']} per {stat['rate_period']:g} s")
    return ", ".join(limits) or "-"


@queues.command("set")
@click.argument("name")
@click.option("--max-running", type=click.IntRange(1), default=None, help="Across all workers.")
@click.option(
    "--rate", default=None, metavar="N/SECONDS", help='e.g. "100/60": 100 starts a minute.'
)
@click.option(
    "--retry-policy",
    default=None,
    metavar="JSON",
    help='Default for jobs without one, e.g. \'{"kind": "fixed", "base": 30}\'.',
)
@click.option(
    "--timeout",
    type=click.FloatRange(0, SECONDS_MAX, min_open=True),
    default=None,
    metavar="SECONDS",
    help="Default for jobs without one.",
)
@pass_settings
def set_queue_limits(
    settings: Settings,
    name: str,
    max_running: int | None,
    rate: str | None,
    retry_policy: str | None,
    timeout: float | None,
) -> None:
    """Set a queue's limits, enforced in the claim across all workers, and the retry
    policy and timeout its jobs take when they set none. Limits (--max-running, --rate)
    and defaults (--retry-policy, --timeout) are each set as a pair when one of the pair
    is given, the other one of the pair then cleared; with no option, all are cleared."""
    rate_limit, rate_period = _parse_rate(rate) if rate else (None, None)
    policy = _parse_retry_policy(retry_policy) if retry_policy else None
    period = timedelta(seconds=timeout) if timeout is not None else None
    set_limits = max_running is not None or rate is not None
    set_defaults = retry_policy is not None or timeout is not None
    if not set_limits and not set_defaults:
        set_limits = set_defaults = True
    with connect(settings.dsn()) as conn, conn.transaction():
        if set_limits:
            store.set_queue_limits(
                name, max_running=max_running, rate_limit=rate_limit, rate_period=rate_period
            ).run(conn)
        if set_defaults:
            store.set_queue_defaults(name, retry_policy=policy, timeout=period).run(conn)
        stat = store.get_queue(name).run(conn)
    assert stat is not None  # both calls create the queue row
    shown = [_limits_text(stat)] if set_limits else []
    if set_defaults:
        shown.append(f"defaults: {_defaults_text(stat)}")
    click.echo(f"queue {name}: {'; '.join(shown)}")


def _parse_retry_policy(text: str) -> dict[str, Any]:
    try:
        policy: dict[str, Any] = json.loads(text)
        RetryPolicy.from_json(policy)  # refused here, with the field, rather than by SQL
        return policy
    except (ValueError, SkiplockError) as exc:  # invalid JSON, or a ConfigError
        raise click.BadParameter(str(exc), param_hint="--retry-policy") from None


def _defaults_text(stat: dict[str, Any]) -> str:
    defaults = []
    if stat["retry_policy"] is not None:
        defaults.append(f"retry {json.dumps(stat['retry_policy'], sort_keys=True)}")
    if stat["timeout"] is not None:
        defaults.append(f"timeout {stat['timeout']:g} s")
    return ", ".join(defaults) or "-"


def _parse_rate(text: str) -> tuple[int, timedelta]:
    count, _, seconds = text.partition("/")
    try:
        limit, period = int(count), float(seconds)
    except ValueError:
        raise click.BadParameter(f"expected N/SECONDS such as 100/60, got {text!r}") from None
    if limit < 1 or not 0 < period <= SECONDS_MAX:
        raise click.BadParameter(
            f"N must be >= 1 and 0 < SECONDS <= {SECONDS_MAX:.0f}, got {text!r}"
        )
    return limit, timedelta(seconds=period)


@queues.command("pause")
@click.argument("name")
@pass_settings
def pause_queue(settings: Settings, name: str) -> None:
    """Stop claiming from a queue; running jobs finish."""
    run_found(settings, store.pause_queue(name), f"queue {name} not found", f"queue {name} paused")


@queues.command("resume")
@click.argument("name")
@pass_settings
def resume_queue(settings: Settings, name: str) -> None:
    """Claim from a paused queue again."""
    run_found(
        settings, store.resume_queue(name), f"queue {name} not found", f"queue {name} resumed"
    )


@queues.command("create")
@click.argument("name")
@click.option("--paused", is_flag=True, help="Create it paused: its jobs wait for a resume.")
@click.option("--json", "as_json", is_flag=True, help="Print the queue, as `queues --json`.")
@pass_settings
def create_queue(settings: Settings, name: str, paused: bool, as_json: bool) -> None:
    """Create a queue (enqueue creates one on first use too); refused if it exists."""
    if not re.fullmatch(QUEUE_PATTERN, name):
        raise CliUsageError(f"NAME: must be {PATTERN_WORDS[QUEUE_PATTERN]}, got {name!r}")
    with connect(settings.dsn()) as conn, conn.transaction():
        if not store.create_queue(name, paused=paused).run(conn):
            raise CliError(f"queue {name} already exists")
        created = store.get_queue(name).run(conn)
    if as_json:
        print_json(created)
    else:
        click.echo(f"queue {name} created" + (" (paused)" if paused else ""))


@queues.command("delete")
@click.argument("name")
@pass_settings
def delete_queue(settings: Settings, name: str) -> None:
    """Delete an empty queue (no waiting, scheduled, queued, retrying or running job);
    its finished jobs, dead letters and totals stay."""
    # A queue that still has jobs is refused by delete_queue itself (one error line).
    run_found(
        settings, store.delete_queue(name), f"queue {name} not found", f"queue {name} deleted"
    )


# The window of `queues stats`, as the API's: up to a day of per-minute buckets.
MINUTES_DEFAULT = 60
MINUTES_MAX = 1440


@queues.command("stats")
@click.argument("name")
@click.option(
    "--minutes",
    type=click.IntRange(1, MINUTES_MAX),
    default=MINUTES_DEFAULT,
    show_default=True,
    help="The window of the throughput.",
)
@click.option("--json", "as_json", is_flag=True, help="The API's /queues/NAME/stats body.")
@pass_settings
def queue_stats(settings: Settings, name: str, minutes: int, as_json: bool) -> None:
    """A queue's counts by status (finished ones: totals since install), the live
    workers serving it, and the jobs that finished per minute over the last N minutes."""
    with connect(settings.dsn()) as conn:
        queue = store.get_queue(name).run(conn)
        if queue is None:
            raise CliError(f"queue {name} not found")
        workers = store.queue_workers(name).run(conn)
        buckets = store.queue_throughput(name, minutes).run(conn)
    stats = stats_document(queue, workers, buckets, minutes)
    if as_json:
        print_json(stats)
    else:
        click.echo(_stats_text(stats))


def _stats_text(stats: dict[str, Any]) -> str:
    counts, throughput = stats["counts"], stats["throughput"]
    lines = [
        f"queue:    {stats['queue']}" + (" (paused)" if stats["paused"] else ""),
        f"workers:  {stats['workers']} live",
        "",
        table([s.upper() for s in counts], [list(counts.values())]),
        "",
        f"finished in the last {throughput['minutes']} min: {throughput['finished']}"
        f" ({throughput['per_minute_average']:g} per minute)",
    ]
    # Only the minutes in which a job finished: a day of zeros says nothing.
    busy = [m for m in throughput["per_minute"] if any(m[s] for s in ENDED)]
    if busy:
        rows = [[when(datetime.fromisoformat(m["minute"])), *(m[s] for s in ENDED)] for m in busy]
        lines += ["", table(["MINUTE", *(s.upper() for s in ENDED)], rows)]
    return "\n".join(lines)
