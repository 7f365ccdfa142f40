"""A scrape does not grow with the data: at 10M jobs of history and 1M queued
(tests/budgets.py), GET /metrics and GET /api/v1/metrics send statements that touch a
fixed number of rows and blocks. The `scale` tier: `pytest -m scale -n 0`."""

from __future__ import annotations

from collections.abc import Iterator

import psycopg
import pytest
from starlette.testclient import TestClient

import skiplock
from budgets import reads, statements_of
from skiplock.api import create_app

pytestmark = pytest.mark.scale

# The queue counts read up to 1,000 claim-index entries a queue; the metrics history a
# few minutes of rows. Counting the queued jobs would read a million.
ROW_BUDGET = 20_000
BLOCK_BUDGET = 5_000


@pytest.fixture(scope="module")
def api(scale_dsn: str) -> Iterator[TestClient]:
    with TestClient(create_app(skiplock.App(scale_dsn))) as client:
        yield client


@pytest.mark.parametrize("path", ["/metrics", "/api/v1/metrics", "/api/v1/queues"])
def test_a_scrape_reads_within_its_budget(
    api: TestClient, scale_dsn: str, path: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    statements = statements_of(api, path, monkeypatch)
    with psycopg.connect(scale_dsn, autocommit=True) as conn:
        rows, blocks = reads(conn, statements)
    assert rows <= ROW_BUDGET and blocks <= BLOCK_BUDGET, (path, rows, blocks)
