"""Every option of `worker`, `serve` and `dev` (and the global ones) from the environment:
flag, then SKIPLOCK_<FLAG>, then the default; a bad value names its variable; the
README's table of variables is the commands' own."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import click
import pytest
from click.testing import CliRunner, Result

from skiplock.cli import main
from skiplock.cli.root import ENV_PREFIX

README = Path(__file__).parents[2] / "README.md"
TABLE_START = "<!-- environment variables: tests/cli/test_environment.py checks this table -->"
TABLE_END = "<!-- end of the environment variables -->"
COMMANDS = ("worker", "serve", "dev")


def options(command: click.Command) -> list[click.Option]:
    return [p for p in command.params if isinstance(p, click.Option) and p.expose_value]


def variables(option: click.Option) -> list[str]:
    return [option.envvar] if isinstance(option.envvar, str) else list(option.envvar or ())


def long_flag(option: click.Option) -> str:
    return max(option.opts, key=len)


def default_text(option: click.Option) -> str:
    if option.required:
        return "required"
    if option.is_flag:
        return "off"
    default = option.to_info_dict()["default"]  # None when unset, as --help has it
    if default is None or default == ():
        return "—"
    return f"`{default}`"


def env_table() -> str:
    """The README's table, from the commands: one row per variable and meaning."""
    rows: dict[tuple[str, str, str, str], list[str]] = {}
    for name, command in [("every command", main), *((n, main.commands[n]) for n in COMMANDS)]:
        for option in options(command):
            names = ", then ".join(f"`{v}`" for v in variables(option))
            meaning = (option.help or "").replace("|", "\\|")
            key = (names, f"`{long_flag(option)}`", default_text(option), meaning)
            rows.setdefault(key, []).append(name)
    lines = ["| variable | flag | commands | default | meaning |", "|---|---|---|---|---|"]
    for (names, flag, default, meaning), commands in sorted(rows.items()):
        lines.append(f"| {names} | {flag} | {', '.join(commands)} | {default} | {meaning} |")
    return "\n".join(lines)


def test_the_readme_table_is_the_commands_own() -> None:
    text = README.read_text()
    assert TABLE_START in text and TABLE_END in text, "the README lost its table's markers"
    table = text.split(TABLE_START, 1)[1].split(TABLE_END, 1)[0].strip()
    expected = env_table()
    assert table == expected, f"README.md's table should read:\n{expected}"


@pytest.mark.parametrize("name", ["", *COMMANDS])
def test_every_option_has_its_variable_and_help_names_it(name: str) -> None:
    command = main.commands[name] if name else main
    for option in options(command):
        flag = long_flag(option)
        expected = ENV_PREFIX + flag.lstrip("-").replace("-", "_").upper()
        if flag == "--dsn":
            assert variables(option) == ["SKIPLOCK_DSN", "DATABASE_URL"]
        else:
            assert variables(option) == [expected], flag
        assert option.help, f"{flag} needs a help text: the README's table shows it"
    shown = CliRunner().invoke(main, [name, "--help"] if name else ["--help"]).output
    for option in options(command):
        assert variables(option)[0] in " ".join(shown.split()), option.opts


def params(command: str, args: list[str], env: dict[str, str]) -> dict[str, Any]:
    """The values `command` would run with, resolved by click as on a real start."""
    with click.Context(main) as parent:
        with pytest.MonkeyPatch.context() as patch:
            for key, value in env.items():
                patch.setenv(key, value)
            ctx = main.commands[command].make_context(command, args, parent=parent)
    return ctx.params


def test_flag_then_environment_then_default() -> None:
    env = {"SKIPLOCK_CONCURRENCY": "3", "SKIPLOCK_QUEUE": "mail images", "SKIPLOCK_APP": "a:b"}
    worker = params("worker", [], env)
    assert (worker["concurrency"], worker["queues"], worker["app_spec"]) == (
        3,
        ("mail", "images"),
        "a:b",
    )
    assert worker["lease"] == 30.0  # the default
    worker = params("worker", ["--concurrency", "5", "--queue", "x"], env)
    assert (worker["concurrency"], worker["queues"]) == (5, ("x",))
    serve = params("serve", [], {"SKIPLOCK_PORT": "9001", "SKIPLOCK_NO_AUTH": "true"})
    assert (serve["port"], serve["no_auth"]) == (9001, True)
    dev = params("dev", [], {"SKIPLOCK_DATA_DIR": "/tmp/x", "SKIPLOCK_LOG_FORMAT": "json"})
    assert (str(dev["data_dir"]), dev["log_format"]) == ("/tmp/x", "json")


def usage_error(result: Result) -> str:
    assert result.exit_code == 2, (result.exit_code, result.output)
    assert "Traceback" not in result.output
    (line,) = result.stderr.strip().splitlines()
    return line


@pytest.mark.parametrize(
    ("args", "env", "line"),
    [
        (
            ["serve"],
            {"SKIPLOCK_PORT": "eighty"},
            "error: invalid SKIPLOCK_PORT (for --port): 'eighty' is not a valid integer.",
        ),
        (
            ["worker", "--app", "skiplock.demo:app"],
            {"SKIPLOCK_LOG_FORMAT": "xml"},
            "error: invalid SKIPLOCK_LOG_FORMAT (for --log-format): 'xml' is not one of"
            " 'text', 'json'.",
        ),
        (
            ["jobs", "list"],
            {"SKIPLOCK_LOG_LEVEL": "loud"},
            "error: invalid SKIPLOCK_LOG_LEVEL (for --log-level): 'loud' is not one of"
            " 'debug', 'info', 'warning', 'error', 'critical'.",
        ),
        (
            ["worker", "--app", "skiplock.demo:app"],
            {"SKIPLOCK_CONCURRENCY": "0"},
            "error: invalid SKIPLOCK_CONCURRENCY (for --concurrency): concurrency must be"
            " >= 1, got 0",
        ),
        (
            ["dev"],
            {"SKIPLOCK_CONCURRENCY": "0"},
            "error: invalid SKIPLOCK_CONCURRENCY (for --concurrency): concurrency must be"
            " >= 1, got 0",
        ),
        (
            ["worker", "--app", "skiplock.demo:app"],
            {"SKIPLOCK_POLL_INTERVAL": "0"},
            "error: invalid SKIPLOCK_POLL_INTERVAL (for --poll-interval): poll_interval must"
            " be >= 0.01, got 0.0",
        ),
    ],
)
def test_a_bad_value_from_the_environment_names_its_variable(
    args: list[str], env: dict[str, str], line: str
) -> None:
    # Nothing is reached: the DSN leads nowhere, and the value is refused before it is used.
    result = CliRunner().invoke(main, ["--dsn", "host=/nonexistent port=1", *args], env=env)
    assert usage_error(result) == line


NOWHERE = "--dsn=host=/nonexistent port=1"


def test_a_bad_flag_is_still_refused_as_before() -> None:
    result = CliRunner().invoke(
        main,
        [NOWHERE, "worker", "--app", "skiplock.demo:app", "--concurrency", "0"],
        env={"SKIPLOCK_LEASE": "60"},
    )
    assert result.exit_code == 1
    assert result.stderr.strip() == "error: concurrency must be >= 1, got 0"


def test_the_app_comes_from_the_environment() -> None:
    result = CliRunner().invoke(
        main, ["--dsn", "host=/nonexistent port=1", "worker"], env={"SKIPLOCK_APP": "nope_xyz:app"}
    )
    assert result.exit_code == 1
    assert result.stderr.startswith("error: cannot import app 'nope_xyz:app'")


def test_the_apps_own_pooler_and_listen_dsn_win_over_the_environment_not_over_flags(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    (tmp_path / "pooled_app_xyz.py").write_text(
        "import skiplock\napp = skiplock.App(pooler='session', listen_dsn='dbname=mine')\n"
    )
    monkeypatch.syspath_prepend(str(tmp_path))
    from pooled_app_xyz import app  # type: ignore[import-not-found]

    env = {"SKIPLOCK_POOLER": "transaction", "SKIPLOCK_LISTEN_DSN": "dbname=env"}
    worker = [NOWHERE, "worker", "--app", "pooled_app_xyz:app"]
    # refused at the database, after the app was configured
    assert CliRunner().invoke(main, worker, env=env).exit_code == 1
    assert (app.pooler, app.listen_dsn) == ("session", "dbname=mine")
    flags = [NOWHERE, "--pooler", "none", *worker[1:], "--listen-dsn", "dbname=flag"]
    assert CliRunner().invoke(main, flags, env=env).exit_code == 1
    assert (app.pooler, app.listen_dsn) == ("none", "dbname=flag")


def test_login_lifetime_takes_a_duration_and_refuses_a_bad_one() -> None:
    from skiplock.options import positive_duration

    assert positive_duration("12h").total_seconds() == 12 * 3600
    assert positive_duration("90").total_seconds() == 90
    assert positive_duration("P1D").total_seconds() == 86400
    for bad in ("0", "soon", "-5"):
        with pytest.raises(ValueError, match=r"must be|Expected"):
            positive_duration(bad)
    result = CliRunner().invoke(main, ["serve", "--login-lifetime", "soon"])
    assert result.exit_code == 2
    assert result.stderr.strip() == (
        "error: --login-lifetime: must be seconds, or a duration such as 90s, 5m, 1h30m, 2d or PT5M"
    )
