"""No dashboard page scans the job tables: with 10M jobs of history and 1M queued
(skiplock.bench.scale), every statement a page sends is replayed in a transaction and
the rows and buffers it touched in skiplock's tables and indexes (the transaction's
pg_stat_get_xact_* figures) must stay within a fixed budget: a page reads what it shows,
not what the database holds. Counts, not timings; the page times are in
bench/dashboard_pages.py.

The `scale` tier (`pytest -m scale -n 0`): building the data takes a minute or two.
SKIPLOCK_SCALE_HISTORY and SKIPLOCK_SCALE_QUEUED make it smaller while working on it
(tests/budgets.py)."""

from __future__ import annotations

from collections.abc import Iterator

import psycopg
import pytest
from dashboard_checks import CONFIG, PASSWORD, add_user, log_in
from starlette.testclient import TestClient

import skiplock
from budgets import HISTORY, QUEUED, reads, statements_of
from skiplock.api import create_app
from skiplock.bench.scale import dashboard_pages

pytestmark = pytest.mark.scale

# Per page, over every statement it sends: a scan of the history alone would read
# 10M rows in ~300,000 blocks.
ROW_BUDGET = 60_000
BLOCK_BUDGET = 6_000

PAGES = dashboard_pages(HISTORY)


@pytest.fixture(scope="module")
def client(scale_dsn: str) -> Iterator[TestClient]:
    with psycopg.connect(scale_dsn, autocommit=True) as conn:
        add_user(conn, "boss", "admin")
    with TestClient(create_app(skiplock.App(scale_dsn), auth=CONFIG)) as client:
        assert log_in(client, username="boss", password=PASSWORD).status_code == 303
        yield client


@pytest.mark.parametrize("path", PAGES)
def test_a_page_reads_within_its_budget(
    client: TestClient, scale_dsn: str, path: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    statements = statements_of(client, "/dashboard" + path, monkeypatch)
    with psycopg.connect(scale_dsn, autocommit=True) as conn:
        rows, blocks = reads(conn, statements)
    assert rows <= ROW_BUDGET and blocks <= BLOCK_BUDGET, (path, rows, blocks)


def test_the_budget_catches_a_scan(scale_dsn: str) -> None:
    """The measure sees what a scan reads: counting the jobs touches every one."""
    with psycopg.connect(scale_dsn, autocommit=True) as conn:
        rows, _ = reads(conn, [("SELECT count(*) FROM skiplock.all_jobs", ())])
    assert rows >= HISTORY + QUEUED, rows
