"""The Python example of docs/workflows.md runs as written: a real `skiplock worker`
process runs its steps while the example enqueues and waits."""

from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path

DOC = Path(__file__).resolve().parents[2] / "docs" / "workflows.md"


def test_the_python_example_runs(dsn: str, tmp_path: Path) -> None:
    (block,) = re.findall(r"^```python\n(.*?)^```", DOC.read_text(), re.MULTILINE | re.DOTALL)
    (tmp_path / "myapp.py").write_text(block)
    env = {**os.environ, "SKIPLOCK_DSN": dsn, "PYTHONPATH": str(tmp_path)}
    with (tmp_path / "worker.log").open("wb") as log:
        worker = subprocess.Popen(
            [sys.executable, "-m", "skiplock", "worker", "--app", "myapp:app"],
            stdout=log,
            stderr=subprocess.STDOUT,
            env=env,
            cwd=tmp_path,
        )
    try:
        example = subprocess.run(
            [sys.executable, "myapp.py"],
            capture_output=True,
            text=True,
            env=env,
            cwd=tmp_path,
            timeout=120,
        )
    finally:
        worker.terminate()
        worker.wait(30)
    assert example.returncode == 0, example.stderr
    lines = example.stdout.splitlines()
    assert lines[0] == "1 {'fetch': 1, 'parse': 2}"
    assert lines[1:] == ["succeeded 14", "succeeded 430"]
