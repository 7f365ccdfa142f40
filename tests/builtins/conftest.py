"""Fixtures of the built-in tasks' tests: a local HTTP server that answers from a script,
and an App serving the built-ins on this test's database."""

from __future__ import annotations

import ipaddress
import socket
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from local_http import LocalServer

import skiplock

# re-exported: test modules import them as `from conftest import ...` (see waiting.py)
from waiting import async_wait_until, wait_until

__all__ = ["async_wait_until", "wait_until"]

LOOPBACK = ["127.0.0.0/8", "::1"]


@pytest.fixture(autouse=True)
def _in_own_directory(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Each test runs in its own directory: serving the built-ins makes the export folder
    (relative, `exports` by default), which must not land in the checkout."""
    monkeypatch.chdir(tmp_path)


@pytest.fixture(autouse=True)
def _loopback_only(monkeypatch: pytest.MonkeyPatch) -> None:
    """Whatever the code under test does, a test here connects to loopback alone: a guard
    that let a stub's private address through fails the test instead of sending a packet."""
    connect = socket.socket.connect

    def checked(self: socket.socket, address: Any) -> None:
        if self.family in (socket.AF_INET, socket.AF_INET6):
            host = ipaddress.ip_address(str(address[0]).split("%")[0])
            if not host.is_loopback:
                raise AssertionError(f"a test tried to connect to {host}")
        connect(self, address)

    monkeypatch.setattr(socket.socket, "connect", checked)


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
