"""Fixtures of the dashboard tests: the API's app on this test's database, with auth."""

from __future__ import annotations

from collections.abc import Callable, Iterator

import pytest
from dashboard_checks import CONFIG
from starlette.testclient import TestClient

import skiplock
from skiplock.api import AuthConfig, create_app

# re-exported: test modules import them as `from conftest import ...` (see waiting.py)
from waiting import async_wait_until, wait_until

__all__ = ["async_wait_until", "wait_until"]


@pytest.fixture
def make_client(dsn: str) -> Iterator[Callable[..., TestClient]]:
    """TestClients on the API of this test's database: `make_client(read_only=True)`,
    `make_client(trace_url="https://…/{trace_id}")`."""
    clients: list[TestClient] = []

    def make(
        *, read_only: bool = False, auth: AuthConfig | None = CONFIG, trace_url: str | None = None
    ) -> TestClient:
        api = create_app(
            skiplock.App(dsn), auth=auth, dashboard_read_only=read_only, trace_url=trace_url
        )
        client = TestClient(api)
        client.__enter__()
        clients.append(client)
        return client

    yield make
    for client in clients:
        client.__exit__(None, None, None)


@pytest.fixture
def client(make_client: Callable[..., TestClient]) -> TestClient:
    return make_client()
