"""Fixtures of the core tests: an App on this test's database."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

import skiplock

# re-exported: test modules import them as `from conftest import ...` (see waiting.py)
from waiting import async_wait_until, wait_until

__all__ = ["async_wait_until", "wait_until"]


@pytest.fixture
def app(dsn: str) -> Iterator[skiplock.App]:
    """An App on this test's database with no tasks yet; its pools closed at teardown."""
    application = skiplock.App(dsn)
    yield application
    application.close()
