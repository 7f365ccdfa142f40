"""Shell completion (README, "Shell completion"): the installed `skiplock` prints click's
completion script for bash, zsh and fish, and completes the admin commands."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys

import pytest

# The console script beside this interpreter (a virtualenv's bin/), else on PATH.
SKIPLOCK = shutil.which("skiplock", path=os.path.dirname(sys.executable)) or shutil.which(
    "skiplock"
)


def complete(**env: str) -> str:
    """Run the `skiplock` console script with the completion variables; its stdout."""
    assert SKIPLOCK is not None, "the skiplock console script is not installed"
    result = subprocess.run(
        [SKIPLOCK], env={**os.environ, **env}, capture_output=True, text=True, check=True
    )
    return result.stdout


@pytest.mark.parametrize(
    ("shell", "marker"),
    [
        ("bash", "complete -o nosort -F _skiplock_completion skiplock"),
        ("zsh", "compdef _skiplock_completion skiplock"),
        ("fish", "complete --no-files --command skiplock"),
    ],
)
def test_the_completion_script_is_produced(shell: str, marker: str) -> None:
    script = complete(_SKIPLOCK_COMPLETE=f"{shell}_source")
    assert marker in script
    assert "_SKIPLOCK_COMPLETE" in script


def test_bash_completes_the_admin_commands() -> None:
    def words(line: str) -> list[str]:
        out = complete(
            _SKIPLOCK_COMPLETE="bash_complete",
            COMP_WORDS=line,
            COMP_CWORD=str(len(line.split()) - 1),
        )
        return [item.split(",", 1)[1] for item in out.splitlines()]

    assert words("skiplock workers s") == ["stop"]
    assert words("skiplock queues s") == ["set", "stats"]
    assert words("skiplock jobs d") == ["delete"]
