"""`skiplock serve` runs the HTTP API (and the dashboard); the options and helpers it shares
with `skiplock dev` (skiplock.cli.dev)."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING, Any

import click

from skiplock import store
from skiplock.app import App
from skiplock.cli.dashboard_options import trace_url_option
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
    require_schema,
)
from skiplock.logs import configure_logging
from skiplock.options import positive_duration

if TYPE_CHECKING:
    pass  # imported where used: every other command would pay for it at start


def api_factory() -> Callable[..., Any]:
    """skiplock.api's create_app, imported only by the commands that serve."""
    try:
        from skiplock.api import create_app
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
    default=None,
    metavar="IPS",
    help="Trust X-Forwarded-For/-Proto only from these comma-separated proxy addresses"
    " or networks ('*': any). Default: trust no proxy header.",
)


# How long a stopping server waits for open connections: the dashboard's event streams
# never end by themselves (their browsers reconnect to whatever serves next).
GRACEFUL_SHUTDOWN_SECONDS = 5.0


def server_settings(forwarded_allow_ips: str | None) -> dict[str, Any]:
    """uvicorn's settings beside the app and address. Proxy headers are off unless
    proxies are named: uvicorn's own default trusts 127.0.0.1, so any local client could
    choose the address that the failed-auth limiter counts and the audit log records."""
    proxies: dict[str, Any] = {"proxy_headers": False}
    if forwarded_allow_ips:
        proxies = {"proxy_headers": True, "forwarded_allow_ips": forwarded_allow_ips}
    return {"timeout_graceful_shutdown": GRACEFUL_SHUTDOWN_SECONDS, **proxies}


dashboard_read_only_option = click.option(
    "--dashboard-read-only",
    is_flag=True,
    help="The dashboard shows everything and offers no action (and refuses any).",
)


def base_url(host: str, port: int) -> str:
    return f"http://{host}:{port}"


def dashboard_line(host: str, port: int) -> str:
    return f"dashboard at {base_url(host, port)}/dashboard/"


host_option = click.option(
    "--host", default="127.0.0.1", show_default=True, help="The address the API listens on."
)
port_option = click.option(
    "--port", type=int, default=8000, show_default=True, help="The port the API listens on."
)


@main.command(cls=EnvironmentCommand)
@click.option("--app", "app_spec", default=None, metavar="MODULE:ATTR", help="For task defaults.")
@host_option
@port_option
@forwarded_allow_ips_option
@click.option(
    "--no-auth",
    is_flag=True,
    help="Serve without authentication (only behind something that authenticates).",
)
@click.option(
    "--jwt-secret",
    default=None,
    help="HS256 secret for JWTs (>= 32 bytes; prefer the env var: flags show in ps).",
)
@click.option(
    "--jwt-public-key",
    default=None,
    metavar="PEM|PATH",
    help="RS256 public key for JWTs: PEM text or a file.",
)
@click.option("--jwt-issuer", default=None, help="Required iss.")
@click.option("--jwt-audience", default=None, help="Required aud.")
@click.option(
    "--login-lifetime",
    default="12h",
    show_default=True,
    metavar="DURATION",
    help="How long a token from POST /api/v1/login lasts (seconds, or 90m, 12h, P1D).",
)
@click.option(
    "--accept-unknown-tasks",
    is_flag=True,
    help="Take jobs, workflows and schedules of tasks no worker has published, as if each"
    " sent allow_unregistered_task (default: 422 unknown task; dev always takes them).",
)
@dashboard_read_only_option
@trace_url_option
@listen_dsn_option
@log_format_option
@click.pass_context
def serve(
    ctx: click.Context,
    app_spec: str | None,
    host: str,
    port: int,
    forwarded_allow_ips: str | None,
    no_auth: bool,
    jwt_secret: str | None,
    jwt_public_key: str | None,
    jwt_issuer: str | None,
    jwt_audience: str | None,
    login_lifetime: str,
    accept_unknown_tasks: bool,
    dashboard_read_only: bool,
    trace_url: str | None,
    listen_dsn: str | None,
    log_format: str,
) -> None:
    """Serve the HTTP API and the dashboard; every API route but /health, /ready, /metrics
    and the API docs needs a bearer token (`skiplock tokens create`) or a JWT, unless --no-auth."""
    import uvicorn

    from skiplock.api.auth import AuthConfig

    settings: Settings = ctx.obj
    try:
        lifetime = positive_duration(login_lifetime)
    except ValueError as exc:
        raise CliUsageError(f"--login-lifetime: {exc}") from None
    configure_logging(settings.log_level, log_format)
    app = load_app(app_spec) if app_spec else App()
    settings.configure(app, settings.dsn(), from_command_line(ctx, "listen_dsn", listen_dsn))
    auth = None
    if no_auth:
        # A log record, not a bare line: it follows --log-format like the server's own.
        log.warning(
            "serving without authentication (--no-auth): anyone who can"
            " reach the port can run every admin action"
        )
    else:
        auth = AuthConfig(
            jwt_secret=jwt_secret,
            jwt_public_key=read_public_key(jwt_public_key),
            jwt_issuer=jwt_issuer,
            jwt_audience=jwt_audience,
            login_lifetime=lifetime,
        )
    require_schema(app.dsn)
    if auth is not None and not auth.jwt_enabled and live_token_count(app.dsn) == 0:
        # Start anyway: the first token is made with the CLI, not through the API.
        log.warning(
            "auth is on and no API token exists yet: create one with"
            " `skiplock tokens create --name NAME --scope admin`"
        )
    url = base_url(host, port)
    click.echo(f"skiplock serve: API at {url}/api/v1, {dashboard_line(host, port)}")
    uvicorn.run(
        api_factory()(
            app,
            auth=auth,
            accept_unknown_tasks=accept_unknown_tasks,
            dashboard_read_only=dashboard_read_only,
            trace_url=trace_url,
        ),
        host=host,
        port=port,
        log_config=None,
        **server_settings(forwarded_allow_ips),
    )
