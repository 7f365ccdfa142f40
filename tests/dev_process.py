"""`skiplock dev` as a real process on a test's database: its banner read, its log kept,
its API on a free loopback port."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import threading
from collections.abc import Iterator
from contextlib import contextmanager

import httpx

from conftest import wait_until

TOKEN_LINE = "API token (dev, admin; replaced at every start): "
SECRET_LINE = "webhook secret ("


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


class DevProcess:
    """A running `skiplock dev`: `banner` (stdout up to "Ctrl-C to stop."), `log`
    (stderr lines, read as they come), `api` (an httpx client with the dev token)."""

    def __init__(self, dsn: str, *args: str, env: dict[str, str] | None = None) -> None:
        self.port = free_port()
        command = [sys.executable, "-m", "skiplock", "--dsn", dsn, "dev"]
        self.proc = subprocess.Popen(
            [*command, "--port", str(self.port), *args],
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
            env=env if env is not None else dict(os.environ),
        )
        try:
            self._start()
        except BaseException:
            self.proc.kill()
            self.proc.wait(30)
            raise

    def _start(self) -> None:
        assert self.proc.stdout is not None and self.proc.stderr is not None
        self.log: list[str] = []
        self._reader = threading.Thread(target=self._read_log, daemon=True)
        self._reader.start()
        self.banner: list[str] = []
        for line in self.proc.stdout:
            self.banner.append(line.rstrip("\n"))
            if line.startswith("Ctrl-C to stop."):
                break
        assert self.banner and self.banner[-1].startswith("Ctrl-C"), (self.banner, self.log)
        token = self.banner_value(TOKEN_LINE)
        self.api = httpx.Client(
            base_url=f"http://127.0.0.1:{self.port}",
            headers={"Authorization": f"Bearer {token}"},
            timeout=30,
        )
        wait_until(self._api_up, timeout=60)

    def _read_log(self) -> None:
        assert self.proc.stderr is not None
        for line in self.proc.stderr:
            self.log.append(line.rstrip("\n"))

    def _api_up(self) -> bool:
        try:
            return self.api.get("/health").status_code == 200
        except httpx.TransportError:
            return False

    def banner_value(self, prefix: str) -> str:
        """What follows `): ` on the banner line that starts with `prefix`."""
        (line,) = [line for line in self.banner if line.startswith(prefix)]
        return line.split("): ", 1)[1]

    def logged(self, text: str) -> bool:
        return any(text in line for line in self.log)

    def stop(self) -> int:
        """SIGINT, as Ctrl-C; the exit code."""
        self.api.close()
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGINT)
        code = self.proc.wait(60)
        self._reader.join(10)
        return code


@contextmanager
def run_dev(dsn: str, *args: str, env: dict[str, str] | None = None) -> Iterator[DevProcess]:
    dev = DevProcess(dsn, *args, env=env)
    try:
        yield dev
    finally:
        dev.stop()
        if dev.proc.poll() is None:
            dev.proc.kill()
