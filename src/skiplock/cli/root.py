"""The root `skiplock` group, its global options and what every command runs through:
the settings, the database connection, the App import and the one-line refusal.

The global options and those of worker, serve and dev also come from the environment
(EnvironmentCommand: flag, then SKIPLOCK_<FLAG>, then the default).

Exit codes: 0 done, 1 refused (not found, bad input, no database, a job in the wrong
state), 2 usage (click's own, or a bad value from the environment). A refusal is one
line on stderr, never a traceback.
"""

from __future__ import annotations

import contextlib
import importlib
import json
import logging
import os
import sys
from collections.abc import Iterator
from dataclasses import dataclass, fields
from typing import IO, Any

import click
import psycopg
from click.core import ParameterSource
from psycopg.conninfo import conninfo_to_dict, make_conninfo

from skiplock import store
from skiplock.app import App
from skiplock.config import DSN_ENV_VARS, POOLER_MODES, resolve_dsn
from skiplock.errors import ConfigError, SkiplockError
from skiplock.jobs import JSONError
from skiplock.logs import LOG_FORMATS, LOG_LEVELS, configure_logging
from skiplock.migrate import check_schema
from skiplock.options import MAX_SECONDS
from skiplock.version import __version__

# Every command logs as "skiplock.cli", whichever module it lives in.
log = logging.getLogger("skiplock.cli")
NO_DSN = "no database: pass --dsn or set SKIPLOCK_DSN / DATABASE_URL"
SECONDS_MAX = MAX_SECONDS  # the longest a SECONDS option may be
# The options of the long-running commands (and the global ones) also come from
# ENV_PREFIX + the flag's name: --poll-interval from SKIPLOCK_POLL_INTERVAL.
ENV_PREFIX = "SKIPLOCK_"


class CliError(click.ClickException):
    """A refusal: printed as one `error: ...` line on stderr, exit code 1."""

    def show(self, file: IO[Any] | None = None) -> None:
        click.echo(f"error: {self.format_message()}", err=True)


class CliUsageError(CliError):
    """A bad option value: one `error: ...` line on stderr, exit code 2 (a usage error)."""

    exit_code = 2


def env_var(option: click.Option) -> str:
    """The variable an option comes from when no flag gives it: SKIPLOCK_ + its long flag."""
    flag = max(option.opts, key=len).lstrip("-")
    return ENV_PREFIX + flag.replace("-", "_").upper()


def _variable_set(option: click.Option) -> str:
    names = [option.envvar] if isinstance(option.envvar, str) else list(option.envvar or ())
    return next((name for name in names if os.environ.get(name)), names[0])


class EnvironmentCommand(click.Command):
    """A command each of whose options can come from the environment: flag, then its
    variable (env_var, or the one the option names itself), then the default; `--help`
    names the variable. A bad value from the environment is a usage error naming it."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        for param in self.params:
            if isinstance(param, click.Option) and param.expose_value:
                param.envvar = param.envvar or env_var(param)
                param.show_envvar = True

    def parse_args(self, ctx: click.Context, args: list[str]) -> list[str]:
        try:
            return super().parse_args(ctx, args)
        except click.BadParameter as exc:
            option = exc.param
            if (
                isinstance(option, click.Option)
                and option.name
                and ctx.get_parameter_source(option.name) is ParameterSource.ENVIRONMENT
            ):
                flag = max(option.opts, key=len)
                message = f"invalid {_variable_set(option)} (for {flag}): {exc.message}"
                raise CliUsageError(message) from None
            raise


def validate_from(ctx: click.Context, settings: Any) -> None:
    """`settings.validate()` for a dataclass whose fields share their names with the
    command's options; a refused value that came from the environment is a usage error
    naming its variable, like a value of the wrong type (a refused flag stays exit 1)."""
    try:
        settings.validate()
    except ConfigError:
        for field in fields(settings):
            if ctx.get_parameter_source(field.name) is not ParameterSource.ENVIRONMENT:
                continue
            try:  # this value alone, the others at their defaults
                type(settings)(**{field.name: getattr(settings, field.name)}).validate()
            except ConfigError as alone:
                option = next(p for p in ctx.command.params if p.name == field.name)
                assert isinstance(option, click.Option)
                flag = max(option.opts, key=len)
                message = f"invalid {_variable_set(option)} (for {flag}): {alone}"
                raise CliUsageError(message) from None
        raise


def from_command_line(ctx: click.Context, name: str, value: str | None) -> str | None:
    """`value` if the command line gave it, else None: the App reads the same variable
    itself, after what the app's code says (flag, then the app's code, then environment)."""
    return value if ctx.get_parameter_source(name) is ParameterSource.COMMANDLINE else None


class SkiplockGroup(EnvironmentCommand, click.Group):
    """The root group: its options come from the environment too, and the errors a user
    can cause are one line instead of a traceback."""

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

    dsn_flag: str | None  # --dsn, or SKIPLOCK_DSN / DATABASE_URL: click reads them
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


def parse_args(text: str) -> dict[str, Any]:
    """The JSON object an --args option gives, or a refusal naming --args."""
    try:
        value = json.loads(text)
    except ValueError as exc:
        raise CliError(f"--args is not valid JSON: {exc}") from None
    if not isinstance(value, dict):
        raise CliError(f"--args must be a JSON object, got {type(value).__name__}: {text}")
    return value


# worker, serve and dev each take them.
listen_dsn_option = click.option(
    "--listen-dsn",
    metavar="DSN",
    default=None,
    help="A direct connection for LISTEN, past a transaction-mode pooler"
    " (default: the DSN itself).",
)
log_format_option = click.option(
    "--log-format",
    type=click.Choice(LOG_FORMATS),
    default="text",
    show_default=True,
    help="text: a line per record for people; json: a JSON object per line"
    " (the HTTP server's access and error lines too).",
)


@click.group(cls=SkiplockGroup)
@click.option(
    "--dsn",
    metavar="DSN",
    envvar=list(DSN_ENV_VARS),
    help="PostgreSQL connection string (none: `dev` starts a private PostgreSQL, other"
    " commands refuse).",
)
@click.option(
    "--pooler",
    type=click.Choice(POOLER_MODES),
    default=None,
    help="'transaction' when the DSN leads to a transaction-mode pooler such as PgBouncer"
    " (default: none).",
)
@click.option(
    "--log-level",
    type=click.Choice(LOG_LEVELS, case_sensitive=False),
    default="info",
    show_default=True,
    help="The least severe records logged.",
)
@click.version_option(__version__, prog_name="skiplock")
@click.pass_context
def main(ctx: click.Context, dsn: str | None, pooler: str | None, log_level: str) -> None:
    """skiplock: background jobs on PostgreSQL alone."""
    configure_logging(log_level, "text")
    ctx.obj = Settings(
        dsn_flag=dsn,
        log_level=log_level,
        pooler_flag=from_command_line(ctx, "pooler", pooler),
    )
