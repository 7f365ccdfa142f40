"""The `skiplock` command starts without importing what only some commands need."""

from __future__ import annotations

import json
import subprocess
import sys

# Imported by the commands that use them (serve, dev, bench), never at start-up.
LATE = ("uvicorn", "starlette", "skiplock.api", "skiplock.bench", "skiplock.dev")


def test_importing_the_cli_leaves_server_and_bench_modules_unloaded() -> None:
    code = f"""
import json, sys
import skiplock.cli
late = {LATE!r}
packages = tuple(name + "." for name in late)
print(json.dumps(sorted(m for m in sys.modules if m in late or m.startswith(packages))))
"""
    loaded = json.loads(subprocess.check_output([sys.executable, "-c", code], text=True))
    assert loaded == []


def test_every_group_module_registers_its_commands() -> None:
    from skiplock.cli import main

    assert sorted(main.commands) == [
        "audit",
        "bench",
        "dead-letters",
        "dev",
        "enqueue",
        "history",
        "jobs",
        "migrate",
        "queues",
        "schedules",
        "serve",
        "tasks",
        "tokens",
        "users",
        "worker",
        "workers",
        "workflows",
    ]
