"""A real server and a real browser for the dashboard tests: uvicorn on a loopback port
over the API's app, a skiplock Worker in its own thread, and headless Chromium driven by
selenium through Debian's chromium-driver."""

from __future__ import annotations

import asyncio
import os
import shutil
import socket
import threading
from collections.abc import Callable
from typing import Any

import pytest
import uvicorn
from selenium import webdriver
from selenium.common.exceptions import (
    NoSuchElementException,
    StaleElementReferenceException,
    TimeoutException,
    WebDriverException,
)
from selenium.webdriver.chrome.service import Service
from selenium.webdriver.common.by import By
from selenium.webdriver.support.ui import WebDriverWait

import skiplock
from skiplock.api import AuthConfig, create_app
from skiplock.worker import Worker
from waiting import wait_until

CHROMEDRIVER = shutil.which("chromedriver") or "/usr/bin/chromedriver"
# Long enough for a loaded CI machine; a wait ends as soon as its condition holds.
WAIT_SECONDS = 30


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def chrome() -> webdriver.Chrome:
    """Headless Chromium; the tests skip without it, except in CI, where .ci/run
    installs chromium and chromium-driver and a missing browser is a failure."""
    if not os.path.exists(CHROMEDRIVER) and not os.environ.get("CI"):
        pytest.skip("chromium-driver is not installed (apt-get install chromium chromium-driver)")
    options = webdriver.ChromeOptions()
    for argument in ("--headless=new", "--no-sandbox", "--disable-dev-shm-usage", "--lang=en"):
        options.add_argument(argument)
    return webdriver.Chrome(options=options, service=Service(CHROMEDRIVER))


class Server:
    """The API's app (dashboard included) served by uvicorn in a thread."""

    def __init__(
        self, dsn: str, auth: AuthConfig, *, read_only: bool = False, trace_url: str | None = None
    ) -> None:
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        api = create_app(
            skiplock.App(dsn), auth=auth, dashboard_read_only=read_only, trace_url=trace_url
        )
        config = uvicorn.Config(api, host="127.0.0.1", port=self.port, log_level="warning")
        self.server = uvicorn.Server(config)
        self.thread = threading.Thread(target=self.server.run, daemon=True)
        self.thread.start()
        wait_until(lambda: self.server.started or not self.thread.is_alive(), WAIT_SECONDS)
        assert self.server.started, "uvicorn did not start"

    def stop(self) -> None:
        self.server.should_exit = True
        self.thread.join(WAIT_SECONDS)


class WorkerThread:
    """A skiplock Worker on its own event loop in a thread; `stop()` asks it to stop and
    waits for it; `done` says whether it has ended (e.g. stopped from the dashboard)."""

    def __init__(self, app: skiplock.App, queues: list[str]) -> None:
        self.worker = Worker(app, queues=queues, poll_interval=0.1)
        self.loop = asyncio.new_event_loop()
        self.thread = threading.Thread(target=self._run, daemon=True)
        self.thread.start()
        wait_until(self.worker.started.is_set, WAIT_SECONDS)

    def _run(self) -> None:
        self.loop.run_until_complete(self.worker.run())

    @property
    def done(self) -> bool:
        return not self.thread.is_alive()

    def stop(self) -> None:
        if not self.done:
            self.loop.call_soon_threadsafe(self.worker.stop)
        self.thread.join(WAIT_SECONDS)


class Page:
    """A browser on one server: open a dashboard page, log in, wait for what it shows."""

    def __init__(self, driver: webdriver.Chrome, server: Server) -> None:
        self.driver = driver
        self.server = server

    def open(self, path: str) -> None:
        self.driver.get(self.server.url + "/dashboard" + path)

    def log_in(self, **fields: str) -> None:
        self.open("/login")
        for name, value in fields.items():
            self.driver.find_element(By.ID, name).send_keys(value)
        self.driver.find_element(By.CSS_SELECTOR, "form.login button[type=submit]").click()
        self.wait(lambda: "/login" not in self.driver.current_url)

    def log_out(self) -> None:
        self.click("Log out")
        self.wait(lambda: "/login" in self.driver.current_url)

    def text(self) -> str:
        return str(self.driver.find_element(By.TAG_NAME, "body").text)

    def text_of(self, element_id: str) -> str:
        found = self.driver.find_elements(By.ID, element_id)
        return str(found[0].text) if found else ""

    def click(self, label: str) -> None:
        """Click the button or link whose text is `label`."""
        xpath = f"//button[normalize-space()='{label}'] | //a[normalize-space()='{label}']"
        self.driver.find_element(By.XPATH, xpath).click()

    def wait(self, condition: Callable[[], Any]) -> Any:
        # a page being replaced (a click that navigates) drops the elements being read
        ignored = (StaleElementReferenceException, NoSuchElementException)

        def attempt(_: Any) -> Any:
            try:
                return condition()
            except WebDriverException as exc:
                # chromedriver's other word for it, when the node goes mid-read
                if "does not belong to the document" in str(exc.msg):
                    return False
                raise

        return WebDriverWait(
            self.driver, WAIT_SECONDS, poll_frequency=0.1, ignored_exceptions=ignored
        ).until(attempt)

    def wait_for_text(self, text: str) -> None:
        try:
            self.wait(lambda: text in self.text())
        except TimeoutException:
            shown = f"{self.driver.current_url}:\n{self.text()}"
            raise AssertionError(f"{text!r} not on {shown}") from None
