"""Fixtures of the built-in tasks' tests: a local HTTP server that answers from a script,
and an App serving the built-ins on this test's database."""

from __future__ import annotations

from collections.abc import Iterator

import pytest
from local_http import LocalServer

import skiplock

# re-exported: test modules import them as `from conftest import ...` (see waiting.py)
from waiting import async_wait_until, wait_until

__all__ = ["async_wait_until", "wait_until"]

LOOPBACK = ["127.0.0.0/8", "::1"]


@pytest.fixture
def server() -> Iterator[LocalServer]:
    s = LocalServer()
    yield s
    s.close()


@pytest.fixture
def app(dsn: str) -> Iterator[skiplock.App]:
    """An App serving the built-ins with loopback allowed, so jobs can reach `server`."""
    application = skiplock.App(dsn)
    application.serve_builtins({"http": {"allow": LOOPBACK}, "export": {"folder": "unused"}})
    yield application
    application.close()
