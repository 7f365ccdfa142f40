"""The `skiplock` command: every admin action, each a call into the same App and store.

Exit codes: 0 done, 1 refused (not found, bad input, no database, a job in the wrong
state), 2 usage (click's own). A refusal is one line on stderr, never a traceback.
"""

from __future__ import annotations

import asyncio
import atexit
import contextlib
import importlib
import json
import logging
import os
import secrets
import signal
import sys
import threading
import time
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from pathlib import Path
from typing import IO, TYPE_CHECKING, Any

import click
import psycopg
from psycopg.conninfo import conninfo_to_dict, make_conninfo

from skiplock import store
from skiplock.app import App
from skiplock.config import POOLER_MODES, resolve_dsn
from skiplock.errors import SkiplockError
from skiplock.jobs import FINISHED as FINISHED_STATUSES
from skiplock.jobs import STATUSES, Job, JSONError, json_field
from skiplock.logs import LOG_FORMATS, LOG_LEVELS, configure_logging
from skiplock.migrate import check_schema, load_migrations, migrate
from skiplock.retry import RetryPolicy
from skiplock.schedules import validate as validate_schedule
from skiplock.store import JobFilter
from skiplock.version import __version__
from skiplock.webhooks import check_callback_url
from skiplock.worker import Worker, WorkerSettings

if TYPE_CHECKING:
    import uvicorn  # imported where used: it costs ~0.2 s at every start

log = logging.getLogger("skiplock.cli")
DEFAULTS = WorkerSettings()
DEMO_APP = "skiplock.demo:app"
NO_DSN = "no database: pass --dsn or set SKIPLOCK_DSN / DATABASE_URL"
DEV_SHUTDOWN_GRACE = 5.0  # Ctrl-C in `dev` should not wait the production 30 s
DEV_TOKEN_NAME = "dev"
STUCK_THREAD_WAIT = 1.0  # seconds to let idle job threads exit before calling them stuck
SECONDS_MAX = timedelta.max.total_seconds()  # the longest a SECONDS option may be


class CliError(click.ClickException):
    """A refusal: printed as one `error: ...` line on stderr, exit code 1."""

    def show(self, file: IO[Any] | None = None) -> None:
        click.echo(f"error: {self.format_message()}", err=True)


class CliUsageError(CliError):
    """A bad option value: one `error: ...` line on stderr, exit code 2 (a usage error)."""

    exit_code = 2


class SkiplockGroup(click.Group):
    """Turns the errors a user can cause into one line instead of a traceback."""

    def invoke(self, ctx: click.Context) -> Any:
        try:
            return super().invoke(ctx)
        except psycopg.Error as exc:
            raise CliError(_database_message(exc)) from None
        except (SkiplockError, JSONError) as exc:
            raise CliError(str(exc)) from None


def _first_line(exc: BaseException) -> str:
    return (str(exc).strip().splitlines() or [type(exc).__name__])[0]


def _database_message(exc: psycopg.Error) -> str:
    # No SQLSTATE: the client lost or never had a connection; 08/57P: the server says so.
    # (Other OperationalErrors, e.g. 55000 from retry_job, are refusals with a message.)
    if exc.sqlstate is None or exc.sqlstate.startswith(("08", "57P")):
        return f"cannot connect to the database: {_first_line(exc)}"
    message = exc.diag.message_primary or _first_line(exc)
    if isinstance(exc, (psycopg.errors.UndefinedTable, psycopg.errors.InvalidSchemaName)):
        return f"{message} (run `skiplock migrate`)"
    return message


@dataclass(frozen=True)
class Settings:
    """The global options, handed to every command."""

    dsn_flag: str | None
    log_level: str
    pooler_flag: str | None = None

    def dsn(self) -> str:
        dsn = resolve_dsn(self.dsn_flag)
        if not dsn:
            raise CliError(NO_DSN)
        return dsn

    def configure(self, app: App, dsn: str, listen_dsn_flag: str | None) -> None:
        """Point a long-running command's App at its database, pooler and listen DSN: a
        flag wins over what the app's code says, which wins over the environment."""
        app.dsn = dsn
        if self.pooler_flag:
            app.pooler = self.pooler_flag
        if listen_dsn_flag:
            app.listen_dsn = listen_dsn_flag
        # Read now: a bad SKIPLOCK_POOLER is refused before anything starts.
        log.debug("pooler: %s", app.pooler)


pass_settings = click.make_pass_decorator(Settings)


@contextlib.contextmanager
def connect(dsn: str, *, check: bool = True) -> Iterator[psycopg.Connection[Any]]:
    """One autocommit connection; with `check`, refuse a missing or unknown schema."""
    try:
        # The DSN's own connect_timeout wins; 10 s when it sets none.
        if "connect_timeout" not in conninfo_to_dict(dsn):
            dsn = make_conninfo(dsn, connect_timeout=10)
        # Never prepared (psycopg would prepare a statement run 5 times): a command runs
        # a few statements, and through a transaction-mode pooler a prepared statement
        # can be missing, or already taken, on the next transaction's server connection.
        conn = psycopg.connect(dsn, autocommit=True, prepare_threshold=None)
    except psycopg.Error as exc:  # ProgrammingError for a malformed DSN, too
        raise CliError(f"cannot connect to the database: {_first_line(exc)}") from None
    store.show_readable_json(conn)
    with conn:
        if check:
            check_schema(conn)
        yield conn


def require_schema(dsn: str) -> None:
    """Refuse to start a long-running command on an unreachable or unmigrated database."""
    with connect(dsn, check=True):
        pass


def load_app(spec: str) -> App:
    """Import `module:attribute` (the current directory is importable) as an App."""
    module_name, _, attribute = spec.partition(":")
    if not module_name or not attribute:
        raise CliError(f"cannot import app {spec!r}: expected module:attribute, e.g. myapp:app")
    if os.getcwd() not in sys.path:
        sys.path.insert(0, os.getcwd())
    try:
        value: Any = importlib.import_module(module_name)
        for part in attribute.split("."):
            value = getattr(value, part)
    except Exception as exc:
        raise CliError(f"cannot import app {spec!r}: {type(exc).__name__}: {exc}") from None
    if not isinstance(value, App):
        raise CliError(f"cannot import app {spec!r}: it is a {type(value).__name__}, not an App")
    return value


def run_found(settings: Settings, call: store.Call[bool], missing: str, done: str) -> None:
    """Run an admin call that answers false for an unknown name: `missing` on stderr and
    exit 1 then, `done` on stdout otherwise."""
    with connect(settings.dsn()) as conn:
        if not call.run(conn):
            raise CliError(missing)
    click.echo(done)


def print_json(value: Any) -> None:
    click.echo(json.dumps(value, indent=2, default=str))


def table(headers: Sequence[str], rows: Sequence[Sequence[Any]]) -> str:
    cells = [[str(v) for v in row] for row in [headers, *rows]]
    widths = [max(len(row[i]) for row in cells) for i in range(len(headers))]
    return "\n".join(
        "  ".join(v.ljust(w) for v, w in zip(row, widths, strict=True)).rstrip() for row in cells
    )


def when(value: datetime | None) -> str:
    return value.astimezone().strftime("%Y-%m-%d %H:%M:%S") if value else ""


# ---- the group ----------------------------------------------------------------------


@click.group(cls=SkiplockGroup)
@click.option(
    "--dsn",
    metavar="DSN",
    help="PostgreSQL connection string (default: $SKIPLOCK_DSN, then $DATABASE_URL).",
)
@click.option(
    "--pooler",
    type=click.Choice(POOLER_MODES),
    default=None,
    help="'transaction' when the DSN leads to a transaction-mode pooler such as PgBouncer"
    " (default: $SKIPLOCK_POOLER, then none).",
)
@click.option(
    "--log-level",
    type=click.Choice(LOG_LEVELS, case_sensitive=False),
    default="info",
    show_default=True,
)
@click.version_option(__version__, prog_name="skiplock")
@click.pass_context
def main(ctx: click.Context, dsn: str | None, pooler: str | None, log_level: str) -> None:
    """skiplock: background jobs on PostgreSQL alone."""
    configure_logging(log_level, "text")
    ctx.obj = Settings(dsn_flag=dsn, log_level=log_level, pooler_flag=pooler)


@main.command("migrate")
@pass_settings
def migrate_command(settings: Settings) -> None:
    """Apply pending schema migrations, then the SQL functions when they changed (safe to
    run again, and concurrently)."""
    with connect(settings.dsn(), check=False) as conn:
        applied = migrate(conn)
    names = {m.version: m.name for m in load_migrations()}
    for version in applied.versions:
        click.echo(f"applied {version:04d}_{names[version]}")
    if applied.functions:
        click.echo("applied the SQL functions (sql/functions)")
    if not applied:
        click.echo(f"schema is up to date (version {len(names)})")


# ---- worker -------------------------------------------------------------------------

listen_dsn_option = click.option(
    "--listen-dsn",
    metavar="DSN",
    default=None,
    help="A direct connection for LISTEN, past a transaction-mode pooler"
    " (default: $SKIPLOCK_LISTEN_DSN, then the DSN itself).",
)


@main.command()
@click.option("--app", "app_spec", required=True, metavar="MODULE:ATTR", help="The App to run.")
@click.option(
    "--queue",
    "queues",
    multiple=True,
    help="A queue to work on; repeat for more. Default: 'default' and every queue the "
    "app's tasks name.",
)
@click.option("--concurrency", type=int, default=DEFAULTS.concurrency, show_default=True)
@click.option(
    "--poll-interval",
    type=float,
    default=DEFAULTS.poll_interval,
    show_default=True,
    help="Seconds between polls when no notification arrives.",
)
@click.option(
    "--lease", type=float, default=DEFAULTS.lease, show_default=True, help="Lease in seconds."
)
@click.option(
    "--shutdown-grace",
    type=float,
    default=DEFAULTS.shutdown_grace,
    show_default=True,
    help="Seconds running jobs get to finish on SIGTERM/SIGINT.",
)
@click.option(
    "--webhook-secret",
    envvar="SKIPLOCK_WEBHOOK_SECRET",
    default=None,
    help="HMAC key that signs webhook deliveries (default: $SKIPLOCK_WEBHOOK_SECRET).",
)
@listen_dsn_option
@click.option("--log-format", type=click.Choice(LOG_FORMATS), default="text", show_default=True)
@click.pass_context
def worker(
    ctx: click.Context,
    app_spec: str,
    queues: tuple[str, ...],
    concurrency: int,
    poll_interval: float,
    lease: float,
    shutdown_grace: float,
    webhook_secret: str | None,
    listen_dsn: str | None,
    log_format: str,
) -> None:
    """Run jobs until SIGTERM/SIGINT (a second signal stops at once)."""
    settings: Settings = ctx.obj
    configure_logging(settings.log_level, log_format)
    app = load_app(app_spec)
    settings.configure(app, settings.dsn(), listen_dsn)
    worker_settings = WorkerSettings(
        queues=queues or app_queues(app),
        concurrency=concurrency,
        poll_interval=poll_interval,
        lease=lease,
        shutdown_grace=shutdown_grace,
        webhook_secret=webhook_secret,
    )
    worker_settings.validate()
    require_schema(app.dsn)
    asyncio.run(Worker(app, worker_settings).run(install_signal_handlers=True))
    exit_if_threads_stuck()


def exit_if_threads_stuck() -> None:
    """Exit now if a job thread is still alive after the worker stopped.

    A sync handler cannot be interrupted; one that ignores `ctx.cancelled` would keep
    the interpreter waiting for its thread forever. Its job was already handed back
    (or will be rescued), so exiting is safe.
    """
    deadline = time.monotonic() + STUCK_THREAD_WAIT
    stuck = []
    for thread in threading.enumerate():
        if thread is threading.main_thread() or thread.daemon:
            continue
        thread.join(max(0.0, deadline - time.monotonic()))
        if thread.is_alive():
            stuck.append(thread.name)
    if stuck:
        log.warning("exiting with %d job thread(s) still running: %s", len(stuck), stuck)
        atexit._run_exitfuncs()  # what a normal exit would run (log flush, dev server stop)
        os._exit(0)


@main.command("workers")
@click.option("--json", "as_json", is_flag=True)
@pass_settings
def workers_list(settings: Settings, as_json: bool) -> None:
    """The registered worker processes: alive (a heartbeat within a minute) and healthy
    (no handler thread it cannot stop, no loop failing for over a lease, a heartbeat
    within the lease; STUCK counts those threads, STATE names the failing loops)."""
    with connect(settings.dsn()) as conn:
        rows = store.list_workers().run(conn)
    if as_json:
        print_json(rows)
        return
    if not rows:
        click.echo("no workers registered")
        return
    headers = ["ID", "HOST", "PID", "QUEUES", "RUNNING", "STUCK", "STATE", "LAST HEARTBEAT"]
    click.echo(
        table(
            headers,
            [
                [
                    r["id"],
                    r["host"],
                    r["pid"],
                    ",".join(r["queues"]),
                    f"{r['running_jobs']}/{r['concurrency']}",
                    r["stuck_jobs"],
                    worker_state(r),
                    when(r["last_heartbeat_at"]),
                ]
                for r in rows
            ],
        )
    )


def worker_state(row: dict[str, Any]) -> str:
    if not row["alive"]:
        return "silent"
    if row["healthy"]:
        return "healthy"
    stalled = row["stalled_loops"]
    return f"unhealthy ({', '.join(stalled)} failing)" if stalled else "unhealthy"


# ---- producing ----------------------------------------------------------------------


def parse_args(text: str) -> dict[str, Any]:
    try:
        value = json.loads(text)
    except ValueError as exc:
        raise CliError(f"--args is not valid JSON: {exc}") from None
    if not isinstance(value, dict):
        raise CliError(f"--args must be a JSON object, got {type(value).__name__}: {text}")
    return value


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


# ---- bench --------------------------------------------------------------------------


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
@click.option("--payload-bytes", type=click.IntRange(0), default=0, show_default=True)
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
    payload_bytes: int,
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
            payload_bytes=payload_bytes,
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


# ---- jobs ---------------------------------------------------------------------------


@main.group()
def jobs() -> None:
    """List, show, cancel and retry jobs."""


@jobs.command("list")
@click.option("--status", type=click.Choice(STATUSES), default=None)
@click.option("--queue", default=None)
@click.option("--task", default=None)
@click.option("--limit", type=click.IntRange(1, 10000), default=50, show_default=True)
@click.option("--json", "as_json", is_flag=True)
@pass_settings
def list_jobs(
    settings: Settings,
    status: str | None,
    queue: str | None,
    task: str | None,
    limit: int,
    as_json: bool,
) -> None:
    """Newest jobs first. With --json, a value longer than 1,000 bytes of JSON is null,
    with its size and a preview under "truncated"; `jobs show ID --json` has it whole."""
    filters = JobFilter(statuses=(status,) if status else (), queue=queue, task=task)
    with connect(settings.dsn()) as conn:
        found = store.list_job_previews(filters, limit=limit).run(conn)
    if as_json:
        print_json([{name: json_field(value) for name, value in job.items()} for job in found])
    elif not found:
        click.echo("no jobs")
    else:
        click.echo(table(JOB_HEADERS, [job_row(job) for job in found]))


JOB_HEADERS = ("ID", "TASK", "QUEUE", "STATUS", "ATTEMPT", "CREATED", "FINISHED")


def job_row(job: dict[str, Any]) -> tuple[Any, ...]:
    return (
        job["id"],
        job["task"],
        job["queue"],
        job["status"],
        f"{job['attempt']}/{job['max_attempts']}",
        when(job["created_at"]),
        when(job["finished_at"]),
    )


@jobs.command("show")
@click.argument("job_id", type=int)
@click.option("--json", "as_json", is_flag=True)
@pass_settings
def show_job(settings: Settings, job_id: int, as_json: bool) -> None:
    """Every field of one job, and its last error."""
    app = App(settings.dsn())
    with connect(app.dsn) as conn:
        job = app.get_job(job_id, conn=conn)
    if as_json:
        print_json(job.to_json())
    else:
        click.echo(describe_job(job))


def describe_job(job: Job) -> str:
    fields = job.to_json()
    errors = fields.pop("errors")
    fields.pop("last_error")
    fields["attempt"] = f"{job.attempt}/{fields.pop('max_attempts')}"
    lines = [f"{name + ':':<21}{_field_text(value)}" for name, value in fields.items()]
    lines.append(f"{'errors:':<21}{len(errors)}")
    if job.last_error:
        error = job.last_error
        lines.append(f"last error (attempt {error.get('attempt', '?')}): {error.get('error')}")
        lines.extend("  " + line for line in str(error.get("traceback", "")).splitlines())
    return "\n".join(lines)


def _field_text(value: Any) -> str:
    if value is None:
        return ""
    if isinstance(value, (dict, list)):
        return json.dumps(value)
    return str(value)


@jobs.command("cancel")
@click.argument("job_id", type=int)
@pass_settings
def cancel_job(settings: Settings, job_id: int) -> None:
    """Cancel a job; a running one is asked to stop."""
    app = App(settings.dsn())
    with connect(app.dsn) as conn:
        status = app.cancel_job(job_id, conn=conn)
    if status == "running":
        click.echo(f"job {job_id} is running: cancellation requested")
    elif status == "cancelled":
        click.echo(f"job {job_id} cancelled")
    else:
        raise CliError(f"job {job_id} already {status}")


@jobs.command("retry")
@click.argument("job_id", type=int)
@pass_settings
def retry_job(settings: Settings, job_id: int) -> None:
    """Run a failed or finished job again, or a waiting one now."""
    app = App(settings.dsn())
    with connect(app.dsn) as conn:
        status = app.retry_job(job_id, conn=conn)
    click.echo(f"job {job_id} {status}")


# ---- workflows ----------------------------------------------------------------------


@main.group()
def workflows() -> None:
    """Enqueue, list and show workflows (graphs of jobs followed as one unit)."""


@workflows.command("enqueue")
@click.argument("document", type=click.File("r"), metavar="FILE")
@click.option("--json", "as_json", is_flag=True, help='Print {"id", "jobs"}.')
@pass_settings
def enqueue_workflow(settings: Settings, document: IO[str], as_json: bool) -> None:
    """Enqueue the workflow described in FILE (JSON; `-` reads stdin), in one
    transaction, and print its id. The document is skiplock.enqueue_workflow's:
    {"name", "meta", "steps": [{"name", "task", "args", "after", "result_arg", ...}]}."""
    text = document.read()
    try:
        json.loads(text)
    except ValueError as exc:
        raise CliError(f"{document.name} is not valid JSON: {exc}") from None
    with connect(settings.dsn()) as conn:
        workflow_id = store.enqueue_workflow(text).run(conn)
        jobs = store.workflow_job_ids(workflow_id).run(conn)
    if as_json:
        print_json({"id": workflow_id, "jobs": jobs})
    else:
        click.echo(workflow_id)


WORKFLOW_HEADERS = ("ID", "NAME", "STATE", "STEPS", "DONE", "CREATED", "FINISHED")


@workflows.command("list")
@click.option("--limit", type=click.IntRange(1, 10000), default=50, show_default=True)
@click.option("--json", "as_json", is_flag=True)
@pass_settings
def list_workflows(settings: Settings, limit: int, as_json: bool) -> None:
    """Newest workflows first, with their state and how many steps have finished. With
    --json, a meta longer than 1,000 bytes of JSON is null, with its size and a preview
    under "truncated"."""
    with connect(settings.dsn()) as conn:
        found = store.list_workflow_summaries(limit=limit).run(conn)
    if as_json:
        print_json(found)
    elif not found:
        click.echo("no workflows")
    else:
        rows = [
            (
                w["id"],
                w["name"] or "",
                w["state"],
                w["steps"],
                sum(w[status] for status in FINISHED_STATUSES),
                when(w["created_at"]),
                when(w["finished_at"]),
            )
            for w in found
        ]
        click.echo(table(WORKFLOW_HEADERS, rows))


@workflows.command("prune")
@click.option(
    "--older-than",
    type=click.FloatRange(min=0, max=SECONDS_MAX),
    required=True,
    metavar="SECONDS",
    help="Created at least this long ago.",
)
@pass_settings
def prune_workflows(settings: Settings, older_than: float) -> None:
    """Forget finished workflows (their jobs' history and dead letters stay)."""
    app = App(settings.dsn())
    with connect(app.dsn) as conn:
        deleted = app.prune_workflows(older_than, conn=conn)
    click.echo(f"{deleted} workflow{'s' if deleted != 1 else ''} pruned")


@workflows.command("cancel")
@click.argument("workflow_id", type=int)
@pass_settings
def cancel_workflow(settings: Settings, workflow_id: int) -> None:
    """Cancel every unfinished step; running ones are asked to stop."""
    app = App(settings.dsn())
    with connect(app.dsn) as conn:
        count = app.cancel_workflow(workflow_id, conn=conn)
    if count == 0:
        click.echo(f"workflow {workflow_id} has already finished; nothing to cancel")
    else:
        done = f"{_steps(count)} cancelled (running ones are told to stop)"
        click.echo(f"workflow {workflow_id}: {done}")


@workflows.command("retry")
@click.argument("workflow_id", type=int)
@pass_settings
def retry_workflow(settings: Settings, workflow_id: int) -> None:
    """Run the steps of a finished workflow that did not succeed again, in graph order."""
    app = App(settings.dsn())
    with connect(app.dsn) as conn:
        count = app.retry_workflow(workflow_id, conn=conn)
    if count == 0:
        click.echo(f"workflow {workflow_id} has no step to retry")
    else:
        click.echo(f"workflow {workflow_id}: {_steps(count)} retried")


def _steps(count: int) -> str:
    return f"{count} step{'s' if count != 1 else ''}"


STEP_HEADERS = ("STEP", "JOB", "TASK", "QUEUE", "STATUS", "AFTER", "ATTEMPT", "FINISHED", "ERROR")


@workflows.command("show")
@click.argument("workflow_id", type=int)
@click.option("--json", "as_json", is_flag=True)
@pass_settings
def show_workflow(settings: Settings, workflow_id: int, as_json: bool) -> None:
    """A workflow's state, its counts by status and a table of its steps."""
    app = App(settings.dsn())
    with connect(app.dsn) as conn:
        workflow = app.get_workflow(workflow_id, conn=conn)
    if as_json:
        print_json(workflow.to_json())
        return
    counts = ", ".join(
        f"{n} {status}" for status, n in workflow.counts.items() if n and status != "steps"
    )
    click.echo(
        f"workflow {workflow.id}{' ' + workflow.name if workflow.name else ''}: {workflow.state}"
    )
    click.echo(f"steps: {workflow.counts['steps']} ({counts})")
    click.echo(f"created: {when(workflow.created_at)}  finished: {when(workflow.finished_at)}")
    rows = [
        (
            s.step,
            s.job_id,
            s.task or "",
            s.queue or "",
            s.status or "(pruned)",
            ",".join(s.after),
            f"{s.attempt}/{s.max_attempts}" if s.attempt is not None else "",
            when(s.finished_at),
            (s.last_error or "")[:60],
        )
        for s in workflow.steps
    ]
    click.echo(table(STEP_HEADERS, rows))


# ---- queues -------------------------------------------------------------------------


@main.group(invoke_without_command=True)
@click.option("--json", "as_json", is_flag=True)
@click.pass_context
def queues(ctx: click.Context, as_json: bool) -> None:
    """Job counts per queue and status (finished ones: totals since install);
    `queues pause|resume NAME` stops and restarts claiming from a queue."""
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


# ---- serving ------------------------------------------------------------------------


def api_factory() -> Callable[..., Any]:
    try:
        from skiplock.api import create_app  # type: ignore[import-not-found]
    except ImportError as exc:
        raise CliError(f"the HTTP API is not available: {exc}") from None
    factory: Callable[..., Any] = create_app
    return factory


def read_public_key(value: str | None) -> str | None:
    """PEM text as given, or the contents of the file it names."""
    if value is None or "-----BEGIN" in value:
        return value
    try:
        return Path(value).read_text()
    except OSError as exc:
        raise CliError(f"cannot read the JWT public key {value}: {exc.strerror}") from None


def live_token_count(dsn: str) -> int:
    with connect(dsn) as conn:
        return sum(1 for t in store.list_api_tokens().run(conn) if t["revoked_at"] is None)


forwarded_allow_ips_option = click.option(
    "--forwarded-allow-ips",
    envvar="SKIPLOCK_FORWARDED_ALLOW_IPS",
    default=None,
    metavar="IPS",
    help="Trust X-Forwarded-For/-Proto only from these comma-separated proxy addresses"
    " or networks ('*': any). Default: trust no proxy header.",
)


def proxy_settings(forwarded_allow_ips: str | None) -> dict[str, Any]:
    """uvicorn's proxy-header settings: off unless proxies are named. uvicorn's own
    default trusts 127.0.0.1, so any local client could choose the address that the
    failed-auth limiter counts and the audit log records."""
    if not forwarded_allow_ips:
        return {"proxy_headers": False}
    return {"proxy_headers": True, "forwarded_allow_ips": forwarded_allow_ips}


@main.command()
@click.option("--app", "app_spec", default=None, metavar="MODULE:ATTR", help="For task defaults.")
@click.option("--host", default="127.0.0.1", show_default=True)
@click.option("--port", type=int, default=8000, show_default=True)
@forwarded_allow_ips_option
@click.option(
    "--no-auth",
    is_flag=True,
    help="Serve without authentication (only behind something that authenticates).",
)
@click.option(
    "--jwt-secret",
    envvar="SKIPLOCK_JWT_SECRET",
    default=None,
    help="HS256 secret for JWTs (>= 32 bytes; prefer the env var: flags show in ps).",
)
@click.option(
    "--jwt-public-key",
    envvar="SKIPLOCK_JWT_PUBLIC_KEY",
    default=None,
    metavar="PEM|PATH",
    help="RS256 public key for JWTs: PEM text or a file.",
)
@click.option("--jwt-issuer", envvar="SKIPLOCK_JWT_ISSUER", default=None, help="Required iss.")
@click.option("--jwt-audience", envvar="SKIPLOCK_JWT_AUDIENCE", default=None, help="Required aud.")
@listen_dsn_option
@pass_settings
def serve(
    settings: Settings,
    app_spec: str | None,
    host: str,
    port: int,
    forwarded_allow_ips: str | None,
    no_auth: bool,
    jwt_secret: str | None,
    jwt_public_key: str | None,
    jwt_issuer: str | None,
    jwt_audience: str | None,
    listen_dsn: str | None,
) -> None:
    """Serve the HTTP API; every route but /health, /ready, /metrics and the API docs
    needs a bearer token (`skiplock tokens create`) or a JWT, unless --no-auth."""
    import uvicorn

    from skiplock.api.auth import AuthConfig

    app = load_app(app_spec) if app_spec else App()
    settings.configure(app, settings.dsn(), listen_dsn)
    auth = None
    if no_auth:
        click.echo(
            "warning: serving without authentication (--no-auth): anyone who can"
            " reach the port can run every admin action",
            err=True,
        )
    else:
        auth = AuthConfig(
            jwt_secret=jwt_secret,
            jwt_public_key=read_public_key(jwt_public_key),
            jwt_issuer=jwt_issuer,
            jwt_audience=jwt_audience,
        )
    require_schema(app.dsn)
    if auth is not None and not auth.jwt_enabled and live_token_count(app.dsn) == 0:
        # Start anyway: the first token is made with the CLI, not through the API.
        log.warning(
            "auth is on and no API token exists yet: create one with"
            " `skiplock tokens create --name NAME --scope admin`"
        )
    uvicorn.run(
        api_factory()(app, auth=auth),
        host=host,
        port=port,
        log_config=None,
        **proxy_settings(forwarded_allow_ips),
    )


@main.command()
@click.option("--app", "app_spec", default=DEMO_APP, show_default=True, metavar="MODULE:ATTR")
@click.option("--host", default="127.0.0.1", show_default=True)
@click.option("--port", type=int, default=8000, show_default=True)
@click.option(
    "--data-dir",
    type=click.Path(file_okay=False, path_type=Path),
    default=Path(".skiplock"),
    show_default=True,
    help="Where the private PostgreSQL keeps its data (when no DSN is given).",
)
@click.option("--concurrency", type=int, default=DEFAULTS.concurrency, show_default=True)
@forwarded_allow_ips_option
@listen_dsn_option
@click.option(
    "--webhook-secret",
    envvar="SKIPLOCK_WEBHOOK_SECRET",
    default=None,
    help="HMAC key that signs webhook deliveries (default: $SKIPLOCK_WEBHOOK_SECRET, else a"
    " new random one, printed at start).",
)
@pass_settings
def dev(
    settings: Settings,
    app_spec: str,
    host: str,
    port: int,
    data_dir: Path,
    concurrency: int,
    forwarded_allow_ips: str | None,
    listen_dsn: str | None,
    webhook_secret: str | None,
) -> None:
    """Worker and API in one process, on a private PostgreSQL unless a DSN is given."""
    from skiplock.dev import start_embedded

    app = load_app(app_spec)
    # Without a secret every callback_url delivery would go to the dead letters: dev
    # makes one, so webhooks work out of the box, and prints it for the receiver.
    made_secret = None if webhook_secret else secrets.token_urlsafe(32)
    worker_settings = WorkerSettings(
        queues=app_queues(app),
        concurrency=concurrency,
        shutdown_grace=DEV_SHUTDOWN_GRACE,
        webhook_secret=webhook_secret or made_secret,
    )
    worker_settings.validate()
    create_app = api_factory()
    dsn = resolve_dsn(settings.dsn_flag) or start_embedded(data_dir)
    with connect(dsn, check=False) as conn:
        migrate(conn)
    settings.configure(app, dsn, listen_dsn)
    from skiplock.api.auth import AuthConfig, hash_token, new_token

    # dev serves with auth on, as production does, and hands out an admin token so the
    # API stays one copy-paste away; each start replaces the previous dev token.
    token = new_token()
    with connect(dsn) as conn:
        store.create_api_token(DEV_TOKEN_NAME, "admin", None, hash_token(token), replace=True).run(
            conn
        )
    click.echo(
        banner(
            dsn,
            host,
            port,
            app_spec,
            worker_settings.queues,
            token=token,
            webhook_secret=made_secret,
        )
    )
    asyncio.run(
        serve_and_work(
            app,
            create_app(app, auth=AuthConfig()),
            host,
            port,
            worker_settings,
            forwarded_allow_ips=forwarded_allow_ips,
        )
    )
    exit_if_threads_stuck()


def app_queues(app: App) -> list[str]:
    """ "default" and every queue the app's tasks (and so its schedules) name: what a
    worker serves unless told otherwise, so that every task of the app runs."""
    named = {task.defaults.queue for task in app.tasks.values() if task.defaults.queue}
    return sorted({"default", *named})


def banner(
    dsn: str,
    host: str,
    port: int,
    app_spec: str,
    queues: Sequence[str],
    *,
    token: str | None = None,
    webhook_secret: str | None = None,
) -> str:
    url = f"http://{host}:{port}"
    sql = "SELECT skiplock.enqueue('echo', '{\\\"message\\\":\\\"hi\\\"}')"
    body = '{"task": "echo", "args": {"message": "hi"}}'
    auth = f' -H "Authorization: Bearer {token}"' if token else ""
    return "\n".join(
        [
            f"skiplock dev: worker running {app_spec} on queues {', '.join(queues)}, API at {url}",
            f"database: {dsn}",
            *(
                [f"API token ({DEV_TOKEN_NAME}, admin; replaced at every start): {token}"]
                if token
                else []
            ),
            *(
                [
                    "webhook secret (signs callback_url deliveries; made at every start unless"
                    f" SKIPLOCK_WEBHOOK_SECRET or --webhook-secret gives one): {webhook_secret}"
                ]
                if webhook_secret
                else []
            ),
            "",
            "enqueue a job:",
            f'  psql "{dsn}" -c "{sql}"',
            f"  curl{auth} -X POST {url}/api/v1/jobs -H 'Content-Type: application/json'"
            f" -d '{body}'",
            "watch it:",
            f'  psql "{dsn}" -c "SELECT id, task, status, result FROM skiplock.all_jobs"',
            f"  curl{auth} {url}/api/v1/jobs/1",
            "",
            "Ctrl-C to stop.",
        ]
    )


async def serve_and_work(
    app: App,
    asgi: Any,
    host: str,
    port: int,
    worker_settings: WorkerSettings,
    *,
    forwarded_allow_ips: str | None = None,
) -> None:
    """Run the API and a worker in this loop until SIGINT/SIGTERM or either one fails.

    A worker stopped on request (POST /api/v1/workers/{id}/stop, skiplock.stop_worker)
    ends alone: whoever stopped a worker expects that worker to stop, not the API and
    the database they are looking at. The API keeps serving until Ctrl-C."""
    import uvicorn

    worker = Worker(app, worker_settings)
    config = uvicorn.Config(
        asgi, host=host, port=port, log_config=None, **proxy_settings(forwarded_allow_ips)
    )
    server = quiet_server(config)
    stops = 0

    def stop() -> None:
        nonlocal stops
        stops += 1
        if stops == 1:
            log.info(
                "stopping: running jobs get %.0f s to finish; press Ctrl-C again to stop now",
                worker_settings.shutdown_grace,
            )
        server.should_exit = True
        server.force_exit = stops > 1
        worker.stop()  # a second call drops the grace period

    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, stop)
    tasks = [
        asyncio.create_task(_serve_api(server, host, port), name="api"),
        asyncio.create_task(worker.run(), name="worker"),
    ]
    api, worker_run = tasks
    try:
        await asyncio.wait(tasks, return_when=asyncio.FIRST_COMPLETED)
        if stops == 0 and not api.done() and worker_run.exception() is None:
            # only a stop request ends the worker cleanly while no signal came
            log.info(
                "worker %s stopped on request; the API keeps serving at http://%s:%s and jobs"
                " wait for a worker (`skiplock worker` on the database above); Ctrl-C to stop",
                worker.id,
                host,
                port,
            )
            await asyncio.wait([api])
        if stops == 0:
            stop()
        # let the other one finish its shutdown before reporting a failure
        for outcome in await asyncio.gather(*tasks, return_exceptions=True):
            if isinstance(outcome, BaseException):
                raise outcome
    finally:
        for sig in (signal.SIGINT, signal.SIGTERM):
            loop.remove_signal_handler(sig)


def quiet_server(config: uvicorn.Config) -> uvicorn.Server:
    """A uvicorn server that leaves signals alone: it would install its own SIGINT and
    SIGTERM handlers (and re-raise the signal once shut down), where `dev` wants one
    handler that stops API and worker together."""
    import uvicorn

    class QuietServer(uvicorn.Server):
        @contextlib.contextmanager
        def capture_signals(self) -> Iterator[None]:
            yield

    return QuietServer(config)


async def _serve_api(server: uvicorn.Server, host: str, port: int) -> None:
    try:
        await server.serve()
    except SystemExit:
        # uvicorn exits the process when it cannot bind; the worker must stop first
        raise CliError(f"the API could not start on {host}:{port} (see the log above)") from None


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


# ---- dead letters -------------------------------------------------------------------


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
@click.option("--all", "everything", is_flag=True, help="Every dead letter.")
@pass_settings
def redrive_dead_letters(
    settings: Settings,
    job_id: int | None,
    queue: str | None,
    task: str | None,
    everything: bool,
) -> None:
    """Queue dead letters again (attempts reset): one by id, or a filtered set."""
    if (job_id is None) == (not (queue or task or everything)):
        raise click.UsageError("give a job id, or --queue/--task/--all (not both)")
    with connect(settings.dsn()) as conn:
        if job_id is not None:
            if store.get_dead_letter(job_id).run(conn) is None:
                raise CliError(f"dead letter {job_id} not found")
            store.retry_job(job_id).run(conn)
            click.echo(f"job {job_id} queued again")
            return
        total = 0
        while batch := store.redrive_dead_jobs(queue=queue, task=task, limit=1000).run(conn):
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
        raise click.UsageError("purging deletes dead letters for good: add --yes")
    age = timedelta(seconds=older_than) if older_than is not None else None
    with connect(settings.dsn()) as conn:
        count = store.purge_dead_jobs(queue=queue, task=task, older_than=age).run(conn)
    click.echo(f"{count} dead letters purged")


# ---- schedules ----------------------------------------------------------------------


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
        click.echo("\n".join(f"{key:13} {_field_text(value)}" for key, value in rows[0].items()))


@schedules.command("create")
@click.argument("name")
@click.option("--cron", required=True, help='5 fields, or @hourly/@daily/…: "*/5 * * * *".')
@click.option("--task", required=True)
@click.option("--args", "args_text", default="{}", metavar="JSON", help="A JSON object.")
@click.option("--queue", default="default", show_default=True)
@click.option("--priority", type=int, default=0, show_default=True)
@click.option("--timezone", default="UTC", show_default=True, help="An IANA name.")
@click.option("--max-attempts", type=click.IntRange(1), default=20, show_default=True)
@click.option("--replace", is_flag=True, help="Replace a schedule of the same name.")
@pass_settings
def create_schedule(
    settings: Settings,
    name: str,
    cron: str,
    task: str,
    args_text: str,
    queue: str,
    priority: int,
    timezone: str,
    max_attempts: int,
    replace: bool,
) -> None:
    """Create a schedule (workers fire it; the first computes its next run)."""
    validate_schedule(cron, timezone)
    args_json = json.dumps(parse_args(args_text))
    with connect(settings.dsn()) as conn:
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


# ---- tokens and audit ---------------------------------------------------------------


@main.group()
def tokens() -> None:
    """API tokens for `skiplock serve` (stored hashed; the secret is shown once)."""


@tokens.command("create")
@click.option("--name", required=True, help="Unique; it names the caller in the audit log.")
@click.option("--scope", type=click.Choice(("read", "write", "admin")), required=True)
@click.option("--queues", default=None, metavar="PATTERN", help="Only these queues: emails*.")
@pass_settings
def create_token(settings: Settings, name: str, scope: str, queues: str | None) -> None:
    """Create a token and print it (stdout, alone, so `$(...)` captures it)."""
    from skiplock.api.auth import check_queue_pattern, check_token_name, hash_token, new_token

    check_token_name(name)
    check_queue_pattern(queues)
    token = new_token()
    with connect(settings.dsn()) as conn:
        if not store.create_api_token(name, scope, queues, hash_token(token)).run(conn):
            raise CliError(f"token {name} already exists (revoke it and pick another name)")
    limit = f", queues {queues}" if queues else ""
    click.echo(f"token {name} created (scope {scope}{limit}); it is not shown again", err=True)
    click.echo(token)


@tokens.command("list")
@click.option("--json", "as_json", is_flag=True)
@pass_settings
def list_tokens(settings: Settings, as_json: bool) -> None:
    """Every token, revoked ones too; never the secret or its hash."""
    with connect(settings.dsn()) as conn:
        rows = store.list_api_tokens().run(conn)
    if as_json:
        print_json(rows)
        return
    if not rows:
        click.echo("no tokens")
        return
    headers = ("NAME", "SCOPE", "QUEUES", "CREATED", "LAST USED", "REVOKED")
    click.echo(
        table(
            headers,
            [
                (
                    t["name"],
                    t["scope"],
                    t["queue_pattern"] or "*",
                    when(t["created_at"]),
                    when(t["last_used_at"]),
                    when(t["revoked_at"]),
                )
                for t in rows
            ],
        )
    )


@tokens.command("revoke")
@click.argument("name")
@pass_settings
def revoke_token(settings: Settings, name: str) -> None:
    """Revoke a token: its next request gets 401."""
    run_found(
        settings,
        store.revoke_api_token(name),
        f"token {name} not found (or already revoked)",
        f"token {name} revoked",
    )


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
    if as_json:
        print_json(rows)
        return
    if not rows:
        click.echo("no audit entries")
        return
    headers = ("ID", "AT", "ACTOR", "ACTION", "STATUS")
    click.echo(
        table(
            headers,
            [(r["id"], when(r["at"]), r["actor"], r["action"], r["status"]) for r in rows],
        )
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


# ---- the task registry --------------------------------------------------------------


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
        click.echo(f"{key + ':':<15}{_field_text(task[key])}")
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
