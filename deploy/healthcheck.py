"""The image's HEALTHCHECK (deploy/Dockerfile): healthy when what the container runs is.

`skiplock serve`: GET /health on its port answers 200. `skiplock worker`: the live
workers registered from this host (the container's hostname) are there and say they are
healthy in skiplock.worker_stats: no stuck handler thread, no failing loop, a recent
heartbeat. Any other command: healthy while it runs. Exit 0 healthy, 1 not.
"""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
import urllib.request


def container_command(path: str = "/proc/1/cmdline") -> list[str]:
    with open(path, "rb") as file:
        return [arg.decode() for arg in file.read().split(b"\0") if arg]


def option(args: list[str], flag: str, default: str) -> str:
    for i, arg in enumerate(args):
        if arg == flag and i + 1 < len(args):
            return args[i + 1]
        if arg.startswith(flag + "="):
            return arg.split("=", 1)[1]
    return default


def healthy(args: list[str]) -> bool:
    if "serve" in args:
        port = option(args, "--port", os.environ.get("SKIPLOCK_PORT", "8000"))
        try:
            with urllib.request.urlopen(f"http://127.0.0.1:{port}/health", timeout=5) as r:
                return bool(r.status == 200)
        except OSError:
            return False
    if "worker" in args:
        listed = subprocess.run(
            ["skiplock", "workers", "--json"], capture_output=True, timeout=8, check=False
        )
        if listed.returncode != 0:
            return False
        host = socket.gethostname()
        # alive: a worker that ran here before a restart may still be listed, silent
        mine = [w for w in json.loads(listed.stdout) if w["host"] == host and w["alive"]]
        return bool(mine) and all(w["healthy"] for w in mine)
    return True


if __name__ == "__main__":
    sys.exit(0 if healthy(container_command()) else 1)
