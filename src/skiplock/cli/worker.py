"""`skiplock worker` runs jobs; `skiplock workers` lists the registered worker processes
and stops one."""

from __future__ import annotations

import asyncio
import atexit
import os
import threading
import time
import uuid
from pathlib import Path
from typing import Any

import click

from skiplock import store
from skiplock.app import App
from skiplock.cli.output import print_json, table, when
from skiplock.cli.root import (
    CliError,
    CliUsageError,
    EnvironmentCommand,
    Settings,
    connect,
    from_command_line,
    listen_dsn_option,
    load_app,
    log,
    log_format_option,
    main,
    pass_settings,
    require_schema,
    validate_from,
)
from skiplock.logs import configure_logging
from skiplock.worker import Worker, WorkerSettings
from skiplock.worker.metrics import MetricsServer, WorkerMetrics

DEFAULTS = WorkerSettings()
STUCK_THREAD_WAIT = 1.0  # seconds to let idle job threads exit before calling them stuck


@main.command(cls=EnvironmentCommand)
@click.option(
    "--app",
    "app_spec",
    default=None,
    metavar="MODULE:ATTR",
    help="The App to run (optional with --builtins: a worker may serve only the built-ins).",
)
@click.option(
    "--builtins",
    is_flag=True,
    default=False,
    help="Also serve the built-in tasks (skiplock.http, skiplock.export, …).",
)
@click.option(
    "--builtins-config",
    type=click.Path(dir_okay=False, path_type=Path),
    default=None,
    metavar="PATH",
    help="The built-ins' settings (TOML). Its [http] allow-list also governs webhook"
    " deliveries, with or without --builtins.",
)
@click.option(
    "--queue",
    "queues",
    multiple=True,
    help="A queue to work on; repeat for more (in the variable: separated by spaces)."
    " Default: 'default' and every queue the app's tasks name.",
)
@click.option(
    "--concurrency",
    type=int,
    default=DEFAULTS.concurrency,
    show_default=True,
    help="Jobs run at once.",
)
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
    "--unknown-task-delay",
    type=float,
    default=DEFAULTS.unknown_task_delay,
    show_default=True,
    metavar="SECONDS",
    help="A job whose task this worker has no handler for goes back to its queue, due again"
    " this many seconds later, its attempt not spent.",
)
@click.option("--webhook-secret", default=None, help="HMAC key that signs webhook deliveries.")
@click.option(
    "--metrics-port",
    type=click.IntRange(1, 65535),
    default=None,
    help="Serve this process's own Prometheus /metrics on this port (default: none).",
)
@click.option(
    "--metrics-host",
    default="127.0.0.1",
    show_default=True,
    help="Address of --metrics-port; 0.0.0.0 in a container, to be scraped from outside it.",
)
@listen_dsn_option
@log_format_option
@click.pass_context
def worker(
    ctx: click.Context,
    app_spec: str | None,
    builtins: bool,
    builtins_config: Path | None,
    queues: tuple[str, ...],
    concurrency: int,
    poll_interval: float,
    lease: float,
    shutdown_grace: float,
    unknown_task_delay: float,
    webhook_secret: str | None,
    metrics_port: int | None,
    metrics_host: str,
    listen_dsn: str | None,
    log_format: str,
) -> None:
    """Run jobs until SIGTERM/SIGINT (a second signal stops at once)."""
    settings: Settings = ctx.obj
    configure_logging(settings.log_level, log_format)
    if app_spec is None and not builtins:
        raise CliUsageError("--app is required unless --builtins is given")
    app = load_app(app_spec) if app_spec else App()
    if builtins:
        app.serve_builtins(builtins_config)
    elif builtins_config is not None:
        from skiplock.builtins import load_settings
        from skiplock.builtins.http import allowed_destinations

        app.destinations = allowed_destinations(load_settings(builtins_config).get("http", {}))
    settings.configure(app, settings.dsn(), from_command_line(ctx, "listen_dsn", listen_dsn))
    worker_settings = WorkerSettings(
        queues=queues or app_queues(app),
        concurrency=concurrency,
        poll_interval=poll_interval,
        lease=lease,
        shutdown_grace=shutdown_grace,
        unknown_task_delay=unknown_task_delay,
        webhook_secret=webhook_secret,
    )
    validate_from(ctx, worker_settings)
    require_schema(app.dsn)
    runner = Worker(app, worker_settings)
    metrics = serve_metrics(runner, metrics_host, metrics_port)
    try:
        asyncio.run(runner.run(install_signal_handlers=True))
    finally:
        if metrics is not None:
            metrics.close()
    exit_if_threads_stuck()


def serve_metrics(runner: Worker, host: str, port: int | None) -> MetricsServer | None:
    """The worker's own /metrics server, when --metrics-port asks for one."""
    if port is None:
        return None
    try:
        return WorkerMetrics(runner).serve(host, port)
    except OSError as exc:
        raise CliError(f"--metrics-port: cannot listen on {host}:{port}: {exc.strerror}") from None


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


@main.group("workers", invoke_without_command=True)
@click.option("--json", "as_json", is_flag=True)
@click.pass_context
def workers(ctx: click.Context, as_json: bool) -> None:
    """The registered worker processes: alive (a heartbeat within a minute) and healthy
    (no handler thread it cannot stop, no loop failing for over a lease, a heartbeat
    within the lease; STUCK counts those threads, STATE names the failing loops);
    `workers stop ID` asks one to stop."""
    if ctx.invoked_subcommand is not None:
        return
    settings: Settings = ctx.obj
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


@workers.command("stop")
@click.argument("worker_id", metavar="ID", type=click.UUID)
@click.option("--json", "as_json", is_flag=True)
@pass_settings
def stop_worker(settings: Settings, worker_id: uuid.UUID, as_json: bool) -> None:
    """Ask a worker to stop gracefully: it stops claiming, gives its running jobs their
    shutdown grace and exits, as on SIGTERM (NOTIFY skiplock_control: a worker whose
    LISTEN connection is down at that moment misses it)."""
    with connect(settings.dsn()) as conn:
        if not store.stop_worker(worker_id).run(conn):
            raise CliError(f"worker {worker_id} not found")
    if as_json:
        print_json({"id": str(worker_id), "stopping": True})
    else:
        click.echo(f"worker {worker_id} told to stop")


def worker_state(row: dict[str, Any]) -> str:
    if not row["alive"]:
        return "silent"
    if row["healthy"]:
        return "healthy"
    stalled = row["stalled_loops"]
    return f"unhealthy ({', '.join(stalled)} failing)" if stalled else "unhealthy"


def app_queues(app: App) -> list[str]:
    """ "default" and every queue the app's tasks (and so its schedules) name: what a
    worker serves unless told otherwise, so that every task of the app runs."""
    named = {task.defaults.queue for task in app.tasks.values() if task.defaults.queue}
    return sorted({"default", *named})
