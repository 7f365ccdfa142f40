"""Fixtures of the API tests: a TestClient on the API of this test's database."""

from __future__ import annotations

from collections.abc import Iterator

import pytest
from starlette.testclient import TestClient

import skiplock
from skiplock.api import create_app

# re-exported: test modules import them as `from conftest import ...` (see waiting.py)
from waiting import async_wait_until, wait_until

__all__ = ["async_wait_until", "wait_until"]


@pytest.fixture
def client(dsn: str) -> Iterator[TestClient]:
    """The API on this test's database; `with` runs its lifespan and keeps one event loop
    for every request, which the App's async pool needs."""
    with TestClient(create_app(skiplock.App(dsn))) as c:
        yield c
