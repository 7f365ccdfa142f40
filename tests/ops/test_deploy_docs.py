"""docs/operations.md shows real commands: each `skiplock …` line of its console blocks
(and each container command after an image name) is one the CLI knows, and its backup
is the one tests/ops/test_backup_restore.py takes and restores."""

from __future__ import annotations

import re
import shlex
from pathlib import Path

from click.testing import CliRunner

from skiplock.cli import main

DOC = Path(__file__).resolve().parents[2] / "docs" / "operations.md"
IMAGES = ("skiplock:0.1.0", "my-jobs:1.0")


def console_lines() -> list[str]:
    blocks = re.findall(r"```console\n(.*?)```", DOC.read_text(), re.S)
    return [line[2:] for block in blocks for line in block.splitlines() if line.startswith("$ ")]


def test_every_command_shown_is_a_real_one() -> None:
    shown = []
    for line in console_lines():
        words = shlex.split(line)
        if words[0] == "skiplock":
            shown.append(words[1:])
        elif words[:2] == ["docker", "run"]:
            (image,) = [w for w in words if w in IMAGES]
            shown.append(words[words.index(image) + 1 :])
    assert len(shown) >= 6
    for args in shown:
        if not args:  # the image's default command
            args = ["serve"]
        result = CliRunner().invoke(main, [*args, "--help"])
        assert result.exit_code == 0, (args, result.output)


def test_the_backup_shown_is_the_one_tested() -> None:
    lines = console_lines()
    tested = (Path(__file__).parent / "test_backup_restore.py").read_text()
    (dump,) = [line for line in lines if line.startswith("pg_dump")]
    (restore,) = [line for line in lines if line.startswith("pg_restore")]
    for flag in ("--schema=skiplock", "--format=custom"):
        assert flag in dump and f'"{flag}"' in tested
    for flag in ("--no-owner", "--exit-on-error"):
        assert flag in restore and f'"{flag}"' in tested
