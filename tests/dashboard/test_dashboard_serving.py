"""How the dashboard is served: `skiplock serve` prints its URL and takes read-only mode
and the trace URL from the environment (a bad trace URL is one line and exit 2, from
`serve` and `dev`), `skiplock dev` prints its URL, and the wheel carries its templates
and static files."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import zipfile
from importlib.util import find_spec
from pathlib import Path

import httpx
import psycopg
import pytest
from click.testing import CliRunner
from dashboard_browser import free_port
from dashboard_checks import PASSWORD, add_user, csrf_of

from conftest import wait_until
from skiplock.cli import main
from skiplock.cli.dev import banner

ROOT = Path(__file__).resolve().parents[2]
PACKAGE = ROOT / "src" / "skiplock" / "dashboard"
TRACE_ID = "4bf92f3577b34da6a3ce929d0e0e4736"


def test_dev_prints_the_dashboard_url() -> None:
    lines = banner("postgresql:///x", "127.0.0.1", 8123, "demo:app", ["default"]).splitlines()
    assert (
        "dashboard at http://127.0.0.1:8123/dashboard/ (log in as admin or with the API token)"
        in lines
    )


@pytest.mark.parametrize("command", ["serve", "dev"])
def test_a_bad_trace_url_is_one_line_naming_flag_or_variable(command: str) -> None:
    bad = "ftp://traces.example.com/{trace_id}"
    why = f"must be an http or https URL with a host, got '{bad}'"
    by_flag = CliRunner().invoke(main, [command, "--trace-url", bad])
    assert by_flag.exit_code == 2 and by_flag.stderr.splitlines() == [f"error: --trace-url: {why}"]
    by_env = CliRunner().invoke(main, [command], env={"SKIPLOCK_TRACE_URL": bad})
    assert by_env.exit_code == 2
    assert by_env.stderr.splitlines() == [f"error: SKIPLOCK_TRACE_URL: {why}"]
    placeholder = CliRunner().invoke(main, [command, "--trace-url", "https://t/{id}"])
    assert placeholder.stderr.splitlines() == [
        "error: --trace-url: unknown placeholder {id}: use {trace_id} and {span_id}"
    ]


@pytest.mark.slow
def test_serve_prints_the_dashboard_url_and_reads_read_only_from_the_environment(
    dsn: str, conn: psycopg.Connection
) -> None:
    add_user(conn, "boss", "admin")
    port = free_port()
    env = {
        **os.environ,
        "PYTHONUNBUFFERED": "1",
        "SKIPLOCK_JWT_SECRET": "x" * 40,
        "SKIPLOCK_JWT_ISSUER": "test",
        "SKIPLOCK_JWT_AUDIENCE": "test",
        "SKIPLOCK_DASHBOARD_READ_ONLY": "1",
        "SKIPLOCK_TRACE_URL": "https://traces.example.com/trace/{trace_id}",
    }
    traced = conn.execute(
        "SELECT skiplock.enqueue('t', meta => %s::jsonb)",
        (json.dumps({"trace": {"traceparent": f"00-{TRACE_ID}-00f067aa0ba902b7-01"}}),),
    ).fetchone()[0]
    command = [sys.executable, "-m", "skiplock", "--dsn", dsn, "serve", "--port", str(port)]
    proc = subprocess.Popen(
        command, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True, env=env
    )
    try:
        assert proc.stdout is not None
        first = proc.stdout.readline().rstrip("\n")
        url = f"http://127.0.0.1:{port}"
        assert first == f"skiplock serve: API at {url}/api/v1, dashboard at {url}/dashboard/"
        with httpx.Client(base_url=url) as client:

            def up() -> bool:
                try:
                    return client.get("/health").status_code == 200
                except httpx.TransportError:
                    return False

            wait_until(up, 60)
            form = {"csrf": csrf_of(client.get("/dashboard/login").text)}
            client.post("/dashboard/login", data={**form, "username": "boss", "password": PASSWORD})
            queues = client.get("/dashboard/queues")
            assert "boss · admin" in queues.text and "read-only" in queues.text
            refused = client.post("/dashboard/queues/default/pause", data={"csrf": "x"})
            assert refused.status_code == 403
            job_page = client.get(f"/dashboard/jobs/{traced}").text
            assert f'href="https://traces.example.com/trace/{TRACE_ID}"' in job_page
            # An open event stream never ends by itself: the server stops anyway, after
            # its short graceful-shutdown wait (a stream lasts up to a minute).
            with client.stream("GET", "/dashboard/events", params={"page": "/queues"}) as live:
                assert live.status_code == 200
                proc.terminate()
                # uvicorn re-raises the SIGTERM it handled once it has shut down
                assert proc.wait(30) in (0, -signal.SIGTERM)
    finally:
        proc.terminate()
        proc.wait(30)


@pytest.mark.slow
def test_the_wheel_carries_the_templates_and_static_files(tmp_path: Path) -> None:
    cmd = [sys.executable, "-m", "build", "--wheel", "--outdir", str(tmp_path)]
    if find_spec("hatchling") is not None:
        cmd.append("--no-isolation")  # the backend is installed: build offline
    subprocess.run([*cmd, str(ROOT)], check=True, capture_output=True, cwd=tmp_path)
    (wheel,) = tmp_path.glob("skiplock-*.whl")
    with zipfile.ZipFile(wheel) as zf:
        names = set(zf.namelist())
    files = sorted(p for p in PACKAGE.rglob("*") if p.is_file() and p.suffix != ".pyc")
    assert any(p.suffix == ".html" for p in files) and any(p.suffix == ".js" for p in files)
    for path in files:
        assert f"skiplock/dashboard/{path.relative_to(PACKAGE).as_posix()}" in names
