"""The built-in tasks: a standard library of jobs that any producer can enqueue, from SQL
too (`SELECT skiplock.enqueue('skiplock.http', '{"url": …}')`), served by a worker
started with `--builtins` (or `App.serve_builtins`).

Each module `skiplock.builtins.<name>` holds one concern and defines
`register(app, section)`: it checks its table of the settings (ConfigError naming the
key) and registers its tasks on the app with their args JSON Schemas, which the worker
publishes to the task registry so the API refuses bad args with a 422 at enqueue.

The settings are one TOML file, one table per module (`[http]`, `[export]`, …), named by
`--builtins-config PATH` or SKIPLOCK_BUILTINS_CONFIG; no file gives every module its
defaults. See docs/builtins.md.
"""

from __future__ import annotations

import importlib
import os
import sys
from collections.abc import Iterable, Mapping
from pathlib import Path
from typing import TYPE_CHECKING, Any

from skiplock.errors import ConfigError

if sys.version_info >= (3, 11):
    import tomllib
else:  # the same parser, before it joined the standard library
    import tomli as tomllib

if TYPE_CHECKING:
    from skiplock.app import App

CONFIG_ENV = "SKIPLOCK_BUILTINS_CONFIG"
PREFIX = "skiplock."  # of every built-in task's name
# The modules of skiplock.builtins that register tasks, in the order they do.
MODULES = ("http", "export", "email", "image")


def load_settings(path: str | Path | None = None) -> dict[str, Any]:
    """The built-ins' settings from the TOML file at `path`, else the one
    SKIPLOCK_BUILTINS_CONFIG names, else {} (every module's defaults). ConfigError when
    the named file cannot be read or parsed, or holds a table no module owns."""
    if path is None:
        path = os.environ.get(CONFIG_ENV) or None
    if path is None:
        return {}
    try:
        with Path(path).open("rb") as file:
            settings: dict[str, Any] = tomllib.load(file)
    except OSError as exc:
        raise ConfigError(f"cannot read the built-ins' settings {path}: {exc.strerror}") from None
    except tomllib.TOMLDecodeError as exc:
        raise ConfigError(f"the built-ins' settings {path} are not valid TOML: {exc}") from None
    check_sections(settings)
    return settings


def check_sections(settings: Mapping[str, Any]) -> None:
    """ConfigError naming a top-level key that is no module's table."""
    for key, value in settings.items():
        if key not in MODULES:
            raise ConfigError(
                f"unknown built-ins section [{key}]: the sections are {', '.join(MODULES)}"
            )
        if not isinstance(value, Mapping):
            raise ConfigError(f"built-ins section {key} must be a table, got {value!r}")


def check_keys(table: Mapping[str, Any], known: Iterable[str], where: str) -> None:
    """ConfigError naming the first key of `table` (at `where`, e.g. "http") that is not
    one of `known`, and the keys that are."""
    allowed = sorted(known)
    for key in table:
        if key not in allowed:
            raise ConfigError(f"{where}.{key} is not a setting: use {', '.join(allowed)}")


def register_builtins(app: App, settings: Mapping[str, Any]) -> None:
    """Register every built-in module's tasks on `app`, each from its section of
    `settings` (missing: its defaults; a module that has required settings, NEEDS_SETTINGS,
    only with its section), replacing those of an earlier call. A bad
    setting raises ConfigError and leaves the app as it was."""
    check_sections(settings)
    tasks, destinations = dict(app.tasks), app.destinations
    # the built-ins are the tasks named skiplock.*: serving them again starts afresh
    app.tasks = {name: task for name, task in tasks.items() if not name.startswith(PREFIX)}
    try:
        for name in MODULES:
            module = importlib.import_module(f"skiplock.builtins.{name}")
            # a module that cannot run on defaults (email needs a sender, image a folder)
            # is served only when its table is given
            if name in settings or not getattr(module, "NEEDS_SETTINGS", False):
                module.register(app, settings.get(name, {}))
    except BaseException:
        app.tasks, app.destinations = tasks, destinations
        raise
