"""What idle dashboard viewers cost the API process: `--viewers` event streams
(GET /dashboard/events) stay open for `--seconds` while jobs flow through another queue,
and the CPU time of the API's process (from /proc) is read before and after.

    python bench/dashboard_sse.py [--dsn DSN] [--viewers 10] [--seconds 60] [--rounds 3]

Without --dsn it starts a private PostgreSQL (the `embedded` extra). The API runs in a
process of its own (uvicorn, as `skiplock serve` runs it); a worker in this process runs
the jobs a producer enqueues at `--rate` a second in queue `busy`, so the API's LISTEN
connection hears a wake-up and a finish for each. Half the viewers watch the jobs list of
queue `quiet`, half the page of a finished job in it: pages nothing changes. Each round
measures the API with no viewer, then with the viewers, and prints % of one core; the
dashboard's LISTEN connection opens with the first viewer and stays open, so from the
second round on the no-viewer figure is what listening alone costs.
"""

from __future__ import annotations

import argparse
import asyncio
import re
import socket
import subprocess
import sys
import threading
import time

import httpx
import psycopg

import skiplock
from skiplock import store
from skiplock.bench import embedded_dsn
from skiplock.bench.measure import cpu_seconds, load_average, summarize
from skiplock.migrate import migrate
from skiplock.passwords import hash_password
from skiplock.testing import run_jobs
from skiplock.worker import Worker

SECRET = "b" * 40
PASSWORD = "bench password"
CSRF = re.compile(r'name="csrf" value="([^"]+)"')
# before each measurement: the viewers have connected and read their first event
SETTLE_SECONDS = 3.0


def serve(dsn: str, port: int) -> None:
    """The API process: `skiplock serve`'s app under uvicorn."""
    import uvicorn

    from skiplock.api import AuthConfig, create_app

    auth = AuthConfig(jwt_secret=SECRET, jwt_issuer="bench", jwt_audience="bench")
    uvicorn.run(create_app(skiplock.App(dsn), auth=auth), port=port, log_level="warning")


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def start_api(dsn: str) -> tuple[subprocess.Popen[bytes], str]:
    port = free_port()
    process = subprocess.Popen([sys.executable, __file__, "--serve", str(port), "--dsn", dsn])
    url = f"http://127.0.0.1:{port}"
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        try:
            httpx.get(f"{url}/health", timeout=1)
            return process, url
        except httpx.TransportError:
            time.sleep(0.1)
    process.kill()
    raise SystemExit("the API did not start")


def session_cookies(url: str) -> httpx.Cookies:
    with httpx.Client(base_url=url) as client:
        page = client.get("/dashboard/login")
        found = CSRF.search(page.text)
        assert found, page.text
        form = {"csrf": found.group(1), "username": "bench", "password": PASSWORD}
        answer = client.post("/dashboard/login", data=form)
        assert answer.status_code == 303, answer.text
        return client.cookies


class Flow:
    """Jobs through queue `busy`: a producer at `rate` a second, a worker running them."""

    def __init__(self, dsn: str, rate: float) -> None:
        self.app = skiplock.App(dsn)
        self.app.task(name="noop")(lambda: None)
        self.rate = rate
        self.enqueued = 0
        self.started = time.monotonic()
        self.stopping = threading.Event()
        self.worker = Worker(self.app, queues=["busy"], concurrency=4)
        self.loop = asyncio.new_event_loop()
        self.threads = [
            threading.Thread(target=self.loop.run_until_complete, args=(self.worker.run(),)),
            threading.Thread(target=self.produce),
        ]
        for thread in self.threads:
            thread.start()

    def produce(self) -> None:
        while not self.stopping.wait(1 / self.rate):
            self.app.enqueue("noop", {}, queue="busy")
            self.enqueued += 1

    def stop(self) -> None:
        self.stopping.set()
        self.loop.call_soon_threadsafe(self.worker.stop)
        for thread in self.threads:
            thread.join()
        self.app.close()


async def watch(client: httpx.AsyncClient, page: str, counts: list[int]) -> None:
    async with client.stream("GET", "/dashboard/events", params={"page": page}) as response:
        assert response.status_code == 200
        async for line in response.aiter_lines():
            if line.startswith("event:"):
                counts[0] += 1


async def measure(
    url: str, cookies: httpx.Cookies, pages: list[str], seconds: float, pid: int
) -> tuple[float, int]:
    """(% of a core the API process used over `seconds`, events the viewers got)."""
    counts = [0]
    timeout = httpx.Timeout(5, read=None)
    limits = httpx.Limits(max_connections=len(pages) + 1)
    async with httpx.AsyncClient(
        base_url=url, cookies=cookies, timeout=timeout, limits=limits
    ) as client:
        viewers = [asyncio.create_task(watch(client, page, counts)) for page in pages]
        await asyncio.sleep(SETTLE_SECONDS)
        before, events_before = cpu_seconds(pid), counts[0]
        await asyncio.sleep(seconds)
        after, events = cpu_seconds(pid), counts[0] - events_before
        for viewer in viewers:
            viewer.cancel()
        await asyncio.gather(*viewers, return_exceptions=True)
    assert before is not None and after is not None
    return 100 * (after - before) / seconds, events


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--dsn")
    parser.add_argument("--serve", type=int, help=argparse.SUPPRESS)
    parser.add_argument("--viewers", type=int, default=10)
    parser.add_argument("--seconds", type=float, default=60.0)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--rate", type=float, default=50.0, help="jobs a second in queue busy")
    options = parser.parse_args()
    if options.serve:
        serve(options.dsn, options.serve)
        return
    dsn = options.dsn or embedded_dsn()
    with psycopg.connect(dsn, autocommit=True) as conn:
        migrate(conn)
        store.create_user("bench", hash_password(PASSWORD), "admin", None).run(conn)
    app = skiplock.App(dsn)
    app.task(name="noop")(lambda: None)
    quiet_job = app.enqueue("noop", {}, queue="quiet")
    app.enqueue("noop", {}, queue="quiet_other")  # a quiet list has its rows too
    run_jobs(app, queues=["quiet"])
    app.close()
    pages = [
        "/jobs?queue=quiet" if n % 2 == 0 else f"/jobs/{quiet_job}" for n in range(options.viewers)
    ]
    process, url = start_api(dsn)
    flow = Flow(dsn, options.rate)
    try:
        cookies = session_cookies(url)
        idle, watched, received = [], [], []
        for number in range(1, options.rounds + 1):
            cpu, _ = asyncio.run(measure(url, cookies, [], options.seconds, process.pid))
            idle.append(cpu)
            cpu, events = asyncio.run(measure(url, cookies, pages, options.seconds, process.pid))
            watched.append(cpu)
            received.append(events)
            print(
                f"round {number}: API process {idle[-1]:.2f}% of a core with no viewer,"
                f" {cpu:.2f}% with {options.viewers} idle viewers ({events} events to them)",
                flush=True,
            )
    finally:
        flow.stop()
        process.terminate()
        process.wait(30)
    for label, values in (("no viewer", idle), (f"{options.viewers} idle viewers", watched)):
        figures = summarize(values)
        print(
            f"{label}: min {figures['min']:.2f}%, median {figures['median']:.2f}%,"
            f" max {figures['max']:.2f}% of a core over {options.seconds:.0f} s"
        )
    rate = flow.enqueued / (time.monotonic() - flow.started)
    print(f"jobs: {rate:.0f} a second through queue busy; load average {load_average()}")


if __name__ == "__main__":
    main()
