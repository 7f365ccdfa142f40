"""The Prometheus binaries the ops tests run (Debian's `prometheus` package, which
brings promtool): skipped where they are missing, but a failure with CI set (.ci/run
installs them)."""

from __future__ import annotations

import os
import shutil

import pytest


def binary(name: str) -> str:
    """The path of `name`; skip (fail under CI) when it is not installed."""
    path = shutil.which(name)
    if path is None:
        message = f"{name} is not installed (apt-get install -y prometheus)"
        if os.environ.get("CI"):
            pytest.fail(message)
        pytest.skip(message)
    return path
