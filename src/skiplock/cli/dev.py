"""`skiplock dev` runs the API, the dashboard and a worker in one process, on the embedded
PostgreSQL unless a DSN is given."""

from __future__ import annotations

import asyncio
import contextlib
import secrets
import signal
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

import click

from skiplock import store
from skiplock.app import App
from skiplock.cli.dashboard_options import trace_url_option
from skiplock.cli.root import (
    CliError,
    EnvironmentCommand,
    Settings,
    connect,
    from_command_line,
    listen_dsn_option,
    load_app,
    log,
    log_format_option,
    main,
    validate_from,
)
from skiplock.cli.serve import (
    api_factory,
    base_url,
    dashboard_line,
    dashboard_read_only_option,
    forwarded_allow_ips_option,
    host_option,
    port_option,
    server_settings,
)
from skiplock.cli.worker import DEFAULTS, app_queues, exit_if_threads_stuck
from skiplock.config import resolve_dsn
from skiplock.logs import configure_logging
from skiplock.migrate import migrate
from skiplock.worker import Worker, WorkerSettings

if TYPE_CHECKING:
    import uvicorn  # imported where used: every other command would pay for it at start

DEMO_APP = "skiplock.demo:app"
DEV_SHUTDOWN_GRACE = 5.0  # Ctrl-C in `dev` should not wait the production 30 s
DEV_TOKEN_NAME = "dev"
DEV_USER_NAME = "admin"


@main.command(cls=EnvironmentCommand)
@click.option(
    "--app",
    "app_spec",
    default=DEMO_APP,
    show_default=True,
    metavar="MODULE:ATTR",
    help="The App to run.",
)
@host_option
@port_option
@click.option(
    "--data-dir",
    type=click.Path(file_okay=False, path_type=Path),
    default=Path(".skiplock"),
    show_default=True,
    help="Where the private PostgreSQL keeps its data (when no DSN is given).",
)
@click.option(
    "--concurrency",
    type=int,
    default=DEFAULTS.concurrency,
    show_default=True,
    help="Jobs run at once.",
)
@forwarded_allow_ips_option
@dashboard_read_only_option
@trace_url_option
@listen_dsn_option
@click.option(
    "--webhook-secret",
    default=None,
    help="HMAC key that signs webhook deliveries (default: a new random one, printed at start).",
)
@click.option("--no-builtins", is_flag=True, help="Do not serve the built-in tasks.")
@click.option(
    "--builtins-config",
    type=click.Path(dir_okay=False, path_type=Path),
    help="The built-ins' settings (TOML); default: dev's, where http may reach loopback.",
)
@log_format_option
@click.pass_context
def dev(
    ctx: click.Context,
    app_spec: str,
    host: str,
    port: int,
    data_dir: Path,
    concurrency: int,
    forwarded_allow_ips: str | None,
    dashboard_read_only: bool,
    trace_url: str | None,
    listen_dsn: str | None,
    webhook_secret: str | None,
    no_builtins: bool,
    builtins_config: Path | None,
    log_format: str,
) -> None:
    """Worker and API in one process, on a private PostgreSQL unless a DSN is given."""
    from skiplock.dev import dev_builtins, start_embedded

    settings: Settings = ctx.obj
    configure_logging(settings.log_level, log_format)
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
    validate_from(ctx, worker_settings)
    create_app = api_factory()
    dsn = resolve_dsn(settings.dsn_flag) or start_embedded(data_dir)
    with connect(dsn, check=False) as conn:
        migrate(conn)
    # once the database is up: a dev that stops sooner leaves the app (a module's) as it was
    mail_catcher = None
    if not no_builtins:
        app.serve_builtins(builtins_config or dev_builtins(data_dir))
        from skiplock.builtins.mail_catcher import start_for_dev

        mail_catcher = start_for_dev(app, data_dir / "mail")
    settings.configure(app, dsn, from_command_line(ctx, "listen_dsn", listen_dsn))
    from skiplock.api.auth import AuthConfig, hash_token, new_token
    from skiplock.passwords import hash_password

    # dev serves with auth on, as production does, and hands out an admin token so the
    # API stays one copy-paste away; each start replaces the previous dev token.
    token = new_token()
    # And an admin user with a random password, made once (its password is shown then
    # only), which logs in with a JWT signed by a secret made at every start.
    password = secrets.token_urlsafe(12)
    jwt_secret = secrets.token_urlsafe(32)
    with connect(dsn) as conn:
        store.create_api_token(DEV_TOKEN_NAME, "admin", None, hash_token(token), replace=True).run(
            conn
        )
        made = store.create_user(DEV_USER_NAME, hash_password(password), "admin", None).run(conn)
    click.echo(
        banner(
            dsn,
            host,
            port,
            app_spec,
            worker_settings.queues,
            token=token,
            webhook_secret=made_secret,
            user_password=password if made else None,
            mail=mail_catcher.banner_line() if mail_catcher else None,
        )
    )
    asyncio.run(
        serve_and_work(
            app,
            create_app(
                app,
                auth=AuthConfig(
                    jwt_secret=jwt_secret, jwt_issuer="skiplock-dev", jwt_audience="skiplock-dev"
                ),
                # a newcomer's first job may name a task the demo app lacks: it is taken
                # and waits, shown as unpublished, instead of a 422
                accept_unknown_tasks=True,
                dashboard_read_only=dashboard_read_only,
                trace_url=trace_url,
            ),
            host,
            port,
            worker_settings,
            forwarded_allow_ips=forwarded_allow_ips,
        )
    )
    exit_if_threads_stuck()


def banner(
    dsn: str,
    host: str,
    port: int,
    app_spec: str,
    queues: Sequence[str],
    *,
    token: str | None = None,
    webhook_secret: str | None = None,
    user_password: str | None = None,
    mail: str | None = None,
) -> str:
    url = base_url(host, port)
    sql = "SELECT skiplock.enqueue('echo', '{\\\"message\\\":\\\"hi\\\"}')"
    body = '{"task": "echo", "args": {"message": "hi"}}'
    auth = f' -H "Authorization: Bearer {token}"' if token else ""
    return "\n".join(
        [
            f"skiplock dev: worker running {app_spec} on queues {', '.join(queues)}, API at {url}",
            f"database: {dsn}",
            f"{dashboard_line(host, port)} (log in as {DEV_USER_NAME} or with the API token)",
            *(
                [f"API token ({DEV_TOKEN_NAME}, admin; replaced at every start): {token}"]
                if token
                else []
            ),
            *(
                [f"API user ({DEV_USER_NAME}, admin; password shown once): {user_password}"]
                if user_password
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
            *([mail] if mail else []),
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
        asgi, host=host, port=port, log_config=None, **server_settings(forwarded_allow_ips)
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
