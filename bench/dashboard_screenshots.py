"""Screenshots of every dashboard page, light and dark, for docs/dashboard.md.

    python bench/dashboard_screenshots.py [--out docs/dashboard]

Starts a private PostgreSQL (the `embedded` extra), migrates it and fills it with a
demo: queues `emails`, `reports` and `default`; jobs that succeeded, failed and are
retrying, dead letters, a job running on a live worker with its progress and log, a
workflow with a failed step, schedules, tasks with argument schemas, an audit trail and
a minute of metrics history. It serves the API's app (dashboard included) under uvicorn
on loopback, logs in as user `demo` with headless Chromium (Debian's chromium and
chromium-driver) at 1280x800 and saves `<page>-light.png` and `<page>-dark.png` for
each page of PAGES, the colour scheme set with the DevTools protocol's
Emulation.setEmulatedMedia. Names and arguments are fixed; times and durations are not.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import socket
import threading
from pathlib import Path
from typing import Any

import psycopg
import uvicorn
from selenium import webdriver
from selenium.webdriver.chrome.service import Service
from selenium.webdriver.common.by import By
from selenium.webdriver.support.ui import WebDriverWait

import skiplock
from skiplock import Step, store
from skiplock.api import AuthConfig, create_app
from skiplock.bench import embedded_dsn
from skiplock.migrate import migrate
from skiplock.passwords import hash_password
from skiplock.testing import run_jobs
from skiplock.worker import Worker

# (file name, dashboard route name, path below /dashboard): every page a browser opens;
# tests/dashboard/test_screenshots_cover_pages.py checks that none is missing.
# Ids are those the demo gives a fresh database (jobs and workflows count from 1).
PAGES = [
    ("login", "login", "/login"),
    ("overview", "overview", "/"),
    ("jobs", "jobs", "/jobs"),
    ("job", "job", "/jobs/{running}"),
    ("queues", "queues", "/queues"),
    ("queue", "queue", "/queues/emails"),
    ("workers", "workers", "/workers"),
    ("dead-letters", "dead_letters", "/dead-letters"),
    ("dead-letters-redrive", "bulk", "/dead-letters/redrive?queue=emails"),
    ("schedules", "schedules", "/schedules"),
    ("schedule-delete", "delete_schedule", "/schedules/weekly-report/delete"),
    ("workflows", "workflows", "/workflows"),
    ("workflow", "workflow", "/workflows/{workflow}"),
    ("tasks", "tasks", "/tasks"),
    ("enqueue", "enqueue_form", "/tasks/enqueue?task=send_email"),
    ("audit", "audit", "/audit"),
]
SCHEMES = ("light", "dark")
WIDTH, HEIGHT = 1280, 800
USER, PASSWORD = "demo", "demo password"
AUTH = AuthConfig(jwt_secret="s" * 40, jwt_issuer="skiplock-demo", jwt_audience="skiplock-demo")
CHROMEDRIVER = "/usr/bin/chromedriver"
WAIT_SECONDS = 30
EMAIL_SCHEMA = {
    "type": "object",
    "properties": {
        "to": {"type": "string", "format": "email", "description": "recipient"},
        "template": {"type": "string", "enum": ["welcome", "receipt", "reset"]},
        "retries": {"type": "integer", "minimum": 0, "maximum": 5},
    },
    "required": ["to", "template"],
}
REPORT_SCHEMA = {
    "type": "object",
    "properties": {"month": {"type": "string", "pattern": "^[0-9]{4}-[0-9]{2}$"}},
    "required": ["month"],
}


def demo_app(dsn: str, release: threading.Event) -> skiplock.App:
    app = skiplock.App(dsn)

    @app.task(name="send_email", queue="emails", args_schema=EMAIL_SCHEMA)
    def send_email(ctx: skiplock.JobContext, to: str, template: str, retries: int = 0) -> None:
        """Send one email from a template."""
        ctx.log(f"rendering {template} for {to}")
        if to.endswith("@bounce.example"):
            raise RuntimeError(f"SMTP 550: mailbox {to} unavailable")
        ctx.log("sent")

    @app.task(name="monthly_report", queue="reports", args_schema=REPORT_SCHEMA)
    def monthly_report(ctx: skiplock.JobContext, month: str) -> None:
        """Build the monthly revenue report (waits for the demo to end)."""
        ctx.log(f"loading orders of {month}")
        ctx.progress(0.25, "orders loaded")
        ctx.log("aggregating by region")
        ctx.progress(0.6, "aggregating by region")
        ctx.log("region EU has 3 orders without a currency", level="warning")
        release.wait(WAIT_SECONDS * 4)

    @app.task(name="fetch_prices")
    def fetch_prices() -> None:
        """Fetch today's prices."""

    @app.task(name="merge_prices")
    def merge_prices() -> None:
        """Merge the prices of every source."""

    @app.task(name="import_feed", max_attempts=1)
    def import_feed(source: str) -> None:
        """Import one supplier feed."""
        raise ValueError(f"feed {source}: unexpected column 'sku '")

    return app


def fill(dsn: str, app: skiplock.App) -> dict[str, int]:
    """The demo's rows; the ids the pages' paths need."""
    for i in range(12):
        app.enqueue("send_email", {"to": f"user{i}@example.com", "template": "welcome"})
    for who in ("ann@bounce.example", "bob@bounce.example"):
        app.enqueue("send_email", {"to": who, "template": "receipt"}, max_attempts=1)
    app.enqueue("send_email", {"to": "cy@bounce.example", "template": "reset"}, max_attempts=3)
    run_jobs(app, queues=["emails"])
    for i in range(6):
        app.enqueue("send_email", {"to": f"later{i}@example.com", "template": "receipt"})
    handle = app.workflow(
        Step("fetch_prices", {}, name="fetch"),
        Step("import_feed", {"source": "acme"}, name="acme", after=["fetch"]),
        Step("import_feed", {"source": "globex"}, name="globex", after=["fetch"]),
        Step("merge_prices", {}, name="merge", after=["acme", "globex"]),
        name="nightly-prices",
    )
    run_jobs(app, queues=["default"])
    running = app.enqueue("monthly_report", {"month": "2026-11"})
    with psycopg.connect(dsn, autocommit=True) as conn:
        store.create_user(USER, hash_password(PASSWORD), "admin", None).run(conn)
        for name, cron, task, args, enabled in (
            ("nightly-prices", "0 3 * * *", "fetch_prices", {}, True),
            ("monthly-report", "0 6 1 * *", "monthly_report", {"month": "2026-12"}, True),
            ("weekly-report", "0 8 * * 1", "monthly_report", {"month": "2026-12"}, False),
        ):
            store.create_schedule(
                name,
                cron=cron,
                task=task,
                args_json=json.dumps(args),
                queue=None,
                priority=None,
                timezone="Europe/Paris",
                max_attempts=None,
                enabled=enabled,
            ).run(conn)
        for action, target, status in (
            ("pause_queue", "queues/reports", 200),
            ("resume_queue", "queues/reports", 200),
            ("redrive_dead_letters", "dead-letters", 200),
            ("delete_schedule", "schedules/old-cleanup", 204),
        ):
            store.record_audit(USER, action, target, status, {}).run(conn)
        conn.execute("SELECT skiplock.sample_queue_depth()")
        conn.execute("SELECT skiplock.fold_metrics()")
    return {"running": running, "workflow": int(handle.id)}


class WorkerThread:
    """A worker on queue `reports` in a thread: a live worker and a running job."""

    def __init__(self, app: skiplock.App) -> None:
        self.worker = Worker(app, queues=["reports"], poll_interval=0.1)
        self.loop = asyncio.new_event_loop()
        self.thread = threading.Thread(target=self._run, daemon=True)
        self.thread.start()

    def _run(self) -> None:
        self.loop.run_until_complete(self.worker.run())

    def stop(self) -> None:
        self.loop.call_soon_threadsafe(self.worker.stop)
        self.thread.join(WAIT_SECONDS)


def wait_until(condition: Any) -> None:
    event = threading.Event()
    for _ in range(WAIT_SECONDS * 10):
        if condition():
            return
        event.wait(0.1)
    raise SystemExit("the demo did not get ready in time")


def browser() -> webdriver.Chrome:
    options = webdriver.ChromeOptions()
    for argument in ("--headless=new", "--no-sandbox", "--disable-dev-shm-usage", "--lang=en"):
        options.add_argument(argument)
    driver = webdriver.Chrome(options=options, service=Service(CHROMEDRIVER))
    metrics = {"width": WIDTH, "height": HEIGHT, "deviceScaleFactor": 1, "mobile": False}
    driver.execute_cdp_cmd("Emulation.setDeviceMetricsOverride", metrics)
    return driver


def shoot(driver: webdriver.Chrome, url: str, ids: dict[str, int], out: Path) -> list[Path]:
    saved: list[Path] = []
    for scheme in SCHEMES:
        feature = {"name": "prefers-color-scheme", "value": scheme}
        driver.execute_cdp_cmd("Emulation.setEmulatedMedia", {"features": [feature]})
        for name, _route, path in PAGES:
            if name == "login":
                continue  # shot by shoot_login, before logging in
            driver.get(url + "/dashboard" + path.format(**ids))
            WebDriverWait(driver, WAIT_SECONDS).until(
                lambda d: d.execute_script("return document.readyState") == "complete"
            )
            target = out / f"{name}-{scheme}.png"
            driver.save_screenshot(str(target))
            saved.append(target)
    return saved


def log_in(driver: webdriver.Chrome, url: str) -> None:
    driver.get(url + "/dashboard/login")
    driver.find_element(By.ID, "username").send_keys(USER)
    driver.find_element(By.ID, "password").send_keys(PASSWORD)
    driver.find_element(By.CSS_SELECTOR, "form.login button[type=submit]").click()
    WebDriverWait(driver, WAIT_SECONDS).until(lambda d: "/login" not in d.current_url)


def shoot_login(driver: webdriver.Chrome, url: str, out: Path) -> list[Path]:
    saved = []
    for scheme in SCHEMES:
        feature = {"name": "prefers-color-scheme", "value": scheme}
        driver.execute_cdp_cmd("Emulation.setEmulatedMedia", {"features": [feature]})
        driver.get(url + "/dashboard/login")
        driver.find_element(By.ID, "username")
        target = out / f"login-{scheme}.png"
        driver.save_screenshot(str(target))
        saved.append(target)
    return saved


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--out", type=Path, default=Path("docs/dashboard"))
    options = parser.parse_args()
    options.out.mkdir(parents=True, exist_ok=True)
    dsn = embedded_dsn()
    with psycopg.connect(dsn, autocommit=True) as conn:
        migrate(conn)
    release = threading.Event()
    app = demo_app(dsn, release)
    ids = fill(dsn, app)
    worker = WorkerThread(app)
    with psycopg.connect(dsn, autocommit=True) as conn:
        wait_until(lambda: getattr(store.get_job(ids["running"]).run(conn), "progress", None))
    port = free_port()
    api = create_app(skiplock.App(dsn), auth=AUTH)
    server = uvicorn.Server(uvicorn.Config(api, host="127.0.0.1", port=port, log_level="warning"))
    serving = threading.Thread(target=server.run, daemon=True)
    serving.start()
    wait_until(lambda: server.started)
    url = f"http://127.0.0.1:{port}"
    driver = browser()
    try:
        saved = shoot_login(driver, url, options.out)
        log_in(driver, url)
        saved += shoot(driver, url, ids, options.out)
    finally:
        driver.quit()
        release.set()
        worker.stop()
        server.should_exit = True
        serving.join(WAIT_SECONDS)
        app.close()
    print(f"{len(saved)} screenshots in {options.out}")


if __name__ == "__main__":
    main()
