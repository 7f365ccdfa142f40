"""`skiplock queues`: counts and settings per queue; create, delete, change settings
(skiplock.queue_settings), pause, resume; one queue's recent stats."""

from __future__ import annotations

import json
import re
from collections.abc import Callable, Sequence
from datetime import datetime
from typing import Any

import click

from skiplock import store
from skiplock.cli.output import print_json, table, when
from skiplock.cli.root import (
    CliError,
    CliUsageError,
    Settings,
    connect,
    main,
    pass_settings,
    run_found,
)
from skiplock.errors import ConfigError
from skiplock.jobs import STATUSES
from skiplock.options import PATTERN_WORDS, QUEUE_PATTERN, from_cli
from skiplock.queue_settings import BY_NAME as QUEUE_SETTINGS
from skiplock.queue_settings import RATE, SETTINGS
from skiplock.queue_stats import ENDED, stats_document


@main.group(invoke_without_command=True)
@click.option("--json", "as_json", is_flag=True)
@click.pass_context
def queues(ctx: click.Context, as_json: bool) -> None:
    """Job counts per queue and status (finished ones: totals since install), with each
    queue's settings; `queues create|delete NAME` adds or removes one, `queues set NAME`
    changes its settings, `queues pause|resume NAME` stops and restarts claiming from it
    and `queues stats NAME` shows its workers and throughput."""
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
        columns = ("queue", "paused", *STATUSES, "priority", "weight")
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


def _defaults_text(stat: dict[str, Any]) -> str:
    defaults = []
    if stat["retry_policy"] is not None:
        defaults.append(f"retry {json.dumps(stat['retry_policy'], sort_keys=True)}")
    if stat["timeout"] is not None:
        defaults.append(f"timeout {stat['timeout']:g} s")
    if stat["max_attempts"] is not None:
        defaults.append(f"{stat['max_attempts']} attempts")
    return ", ".join(defaults) or "-"


def _changed_text(stat: dict[str, Any], changed: set[str]) -> str:
    """What `queues set` prints of a queue: the groups of settings it changed."""
    shown = []
    if changed & {"max_running", *RATE}:
        shown.append(_limits_text(stat))
    if changed & {"retry_policy", "timeout", "max_attempts"}:
        shown.append(f"defaults: {_defaults_text(stat)}")
    if changed & {"priority", "weight"}:
        shown.append(f"priority {stat['priority']}, weight {stat['weight']}")
    return "; ".join(shown)


# The settings with a flag of their own (--max-running ...); a rate is one flag,
# --rate N/SECONDS, and pausing has its own commands.
FLAGGED = tuple(setting for setting in SETTINGS if setting.name not in ("paused", *RATE))
# What --clear takes: a flag's name.
CLEARABLE = {setting.flag.removeprefix("--"): (setting.name,) for setting in FLAGGED} | {
    "rate": RATE
}


def setting_flags(command: Callable[..., Any]) -> Callable[..., Any]:
    """A flag per queue setting (skiplock.queue_settings), in declaration order."""
    flags = []
    for setting in FLAGGED:
        flags.append(
            click.option(
                setting.flag,
                setting.name,
                default=None,
                metavar=setting.metavar,
                help=setting.help,
            )
        )
        if setting.name == "max_running":
            flags.append(
                click.option(
                    "--rate",
                    default=None,
                    metavar="N/SECONDS",
                    help="At most N of its jobs started per SECONDS (or a duration), across"
                    ' all workers: "100/60" or "100/1m".',
                )
            )
    for flag in reversed(flags):
        command = flag(command)
    return command


def given_settings(
    texts: dict[str, Any], rate: str | None, clear: Sequence[str] = ()
) -> dict[str, Any]:
    """The settings the flags give (and those --clear names, as None), each checked by
    its declaration; a bad one is a usage error naming its flag."""
    given: dict[str, Any] = {}
    for setting in FLAGGED:
        text = texts.get(setting.name)
        if text is not None:
            try:
                given[setting.name] = from_cli(setting, text)
            except ConfigError as exc:
                raise CliUsageError(str(exc)) from None
    if rate is not None:
        given.update(_parse_rate(rate))
    for flag in clear:
        for name in CLEARABLE[flag]:
            if name in given:
                raise CliUsageError(f"--clear {flag}: it is set by --{flag} too")
            given[name] = None
    return given


def _parse_rate(text: str) -> dict[str, Any]:
    count, _, period = text.partition("/")
    try:
        return {
            RATE[0]: from_cli(QUEUE_SETTINGS[RATE[0]], count),
            RATE[1]: from_cli(QUEUE_SETTINGS[RATE[1]], period),
        }
    except ConfigError:
        raise CliUsageError(
            f"--rate: expected N/SECONDS (N >= 1, SECONDS > 0 or a duration) such as 100/60"
            f" or 100/1m, got {text!r}"
        ) from None


@queues.command("set")
@click.argument("name")
@setting_flags
@click.option(
    "--clear",
    multiple=True,
    type=click.Choice(sorted(CLEARABLE)),
    metavar="SETTING",
    help=f"Clear a setting: {', '.join(sorted(CLEARABLE))} (priority and weight go back to 0"
    " and 1). Repeat the flag for more.",
)
@pass_settings
def set_queue(
    settings: Settings, /, name: str, rate: str | None, clear: tuple[str, ...], **texts: Any
) -> None:
    """Change a queue's settings: the ones given are set, the others stay as they are
    (--clear SETTING clears one). Limits (--max-running, --rate) are enforced in the
    claim across all workers; defaults (--retry-policy, --timeout, --max-attempts) are
    for its jobs that set none; --priority and --weight order it among the queues a
    worker serves. Creates the queue if needed."""
    given = given_settings(texts, rate, clear)
    if not given:
        raise CliUsageError("give a setting to change (see --help)")
    with connect(settings.dsn()) as conn, conn.transaction():
        store.configure_queue(name, given).run(conn)
        stat = store.get_queue(name).run(conn)
    assert stat is not None  # configure_queue creates the queue row
    click.echo(f"queue {name}: {_changed_text(stat, set(given))}")


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
@setting_flags
@click.option("--json", "as_json", is_flag=True, help="Print the queue, as `queues --json`.")
@pass_settings
def create_queue(
    settings: Settings, /, name: str, paused: bool, rate: str | None, as_json: bool, **texts: Any
) -> None:
    """Create a queue (enqueue creates one on first use too), with any of the settings
    of `queues set`; refused if it exists."""
    if not re.fullmatch(QUEUE_PATTERN, name):
        raise CliUsageError(f"NAME: must be {PATTERN_WORDS[QUEUE_PATTERN]}, got {name!r}")
    given = given_settings(texts, rate)
    with connect(settings.dsn()) as conn, conn.transaction():
        if not store.create_queue(name, paused=paused).run(conn):
            raise CliError(f"queue {name} already exists")
        if given:
            store.configure_queue(name, given).run(conn)
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
