"""skiplock through a real PgBouncer in transaction pooling mode: every transaction may
run on another server connection, so nothing may rely on a session (prepared
statements, SET, LISTEN). Enqueue, the API and the worker must work through it; LISTEN
goes to a direct DSN, or the worker says once that it polls."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import shutil
import socket
import subprocess
import sys
import tempfile
import threading
from collections import Counter
from collections.abc import Callable, Iterator
from functools import partial
from pathlib import Path
from typing import Any

import psycopg
import pytest
from click.testing import CliRunner
from psycopg.conninfo import conninfo_to_dict, make_conninfo
from psycopg_pool import AsyncConnectionPool
from starlette.testclient import TestClient

import skiplock
from conftest import wait_until
from skiplock.api import create_app
from skiplock.cli import main
from skiplock.errors import ConfigError
from skiplock.worker import Worker
from skiplock.worker.listener import Listener

PGBOUNCER = shutil.which("pgbouncer") or "/usr/sbin/pgbouncer"
DEAF_WARNING = "LISTEN does not work through this connection"
POLLING_WARNING = "LISTEN cannot work through a transaction-mode pooler"

pytestmark = pytest.mark.slow


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _run_as(host: str) -> list[str]:
    """PgBouncer refuses to run as root: then run it as the owner of the server's socket
    directory (the embedded server's user), or as nobody for a TCP server."""
    if os.geteuid() != 0:
        return []
    user = Path(host).owner() if host.startswith("/") else "nobody"
    return ["-u", user]


def _accepts(dsn: str) -> bool:
    try:
        with psycopg.connect(dsn, connect_timeout=2, prepare_threshold=None) as c:
            c.execute("SELECT 1")
        return True
    except psycopg.OperationalError:
        return False


@pytest.fixture
def bouncer(dsn: str) -> Iterator[Callable[..., str]]:
    """Start a PgBouncer (pool_mode=transaction) in front of this test's database and
    return the DSN that goes through it; stopped at teardown."""
    if not os.access(PGBOUNCER, os.X_OK):
        if os.environ.get("CI"):  # CI must run these against a real PgBouncer
            pytest.fail("pgbouncer is not installed (.ci/run installs it)")
        pytest.skip("needs pgbouncer (.ci/run installs it)")
    started: list[tuple[subprocess.Popen[bytes], str]] = []

    def start(pool_size: int = 10) -> str:
        params = conninfo_to_dict(dsn)
        # readable by the user PgBouncer drops to (see _run_as)
        home = tempfile.mkdtemp(prefix="skiplock-pgbouncer-")
        os.chmod(home, 0o755)
        port = _free_port()
        user = str(params["user"])
        password = params.get("password")
        server = (
            f"host={params['host']} port={params['port']} dbname={params['dbname']}"
            f" user={user}" + (f" password={password}" if password else "")
        )
        (Path(home) / "userlist.txt").write_text(f'"{user}" ""\n')
        ini = Path(home) / "pgbouncer.ini"
        ini.write_text(
            "[databases]\n"
            f"{params['dbname']} = {server}\n"
            "[pgbouncer]\n"
            "listen_addr = 127.0.0.1\n"
            f"listen_port = {port}\n"
            "unix_socket_dir =\n"
            "auth_type = trust\n"
            f"auth_file = {home}/userlist.txt\n"
            "pool_mode = transaction\n"
            f"default_pool_size = {pool_size}\n"
            "max_client_conn = 500\n"
            "ignore_startup_parameters = extra_float_digits\n"
        )
        for path in Path(home).iterdir():
            path.chmod(0o644)
        with (Path(home) / "pgbouncer.log").open("wb") as log:
            proc = subprocess.Popen(
                [PGBOUNCER, *_run_as(str(params["host"])), str(ini)],
                stdout=log,
                stderr=subprocess.STDOUT,
            )
        started.append((proc, home))
        through = make_conninfo(host="127.0.0.1", port=port, user=user, dbname=params["dbname"])
        wait_until(lambda: proc.poll() is not None or _accepts(through), 30)
        assert proc.poll() is None, (Path(home) / "pgbouncer.log").read_text()
        return through

    yield start
    for proc, home in started:
        proc.terminate()
        proc.wait(10)
        shutil.rmtree(home, ignore_errors=True)


class WorkerThread:
    """A Worker running in its own thread and event loop while the test drives it."""

    def __init__(self, app: skiplock.App, **settings: Any) -> None:
        self.worker = Worker(app, **settings)
        self.failure: BaseException | None = None
        self._loop = asyncio.new_event_loop()
        self._thread = threading.Thread(target=self._run, name="skiplock-test-worker")

    def _run(self) -> None:
        try:
            self._loop.run_until_complete(self.worker.run())
        except BaseException as exc:
            self.failure = exc
        finally:
            self._loop.close()

    @property
    def alive(self) -> bool:
        return self._thread.is_alive()

    def __enter__(self) -> WorkerThread:
        self._thread.start()
        wait_until(lambda: self.worker.started.is_set() or not self.alive, 30)
        return self

    def __exit__(self, *exc: object) -> None:
        if self.alive:
            self._loop.call_soon_threadsafe(self.worker.stop)
        self._thread.join(60)
        assert not self.alive
        if self.failure is not None:
            raise AssertionError(f"the worker failed: {self.failure!r}") from self.failure


def counting_app(dsn: str) -> tuple[skiplock.App, Counter[int]]:
    """An App whose task `count` counts its executions per job id."""
    app = skiplock.App(dsn)
    runs: Counter[int] = Counter()

    @app.task(name="count")
    async def count(ctx: skiplock.JobContext, **args: Any) -> None:
        runs[ctx.id] += 1

    return app, runs


def statuses(dsn: str) -> Counter[str]:
    with psycopg.connect(dsn) as c:
        rows = c.execute("SELECT status, count(*) FROM skiplock.all_jobs GROUP BY 1").fetchall()
    return Counter({status: count for status, count in rows})


def all_done(dsn: str, jobs: int, running: WorkerThread) -> bool:
    """`jobs` succeeded, or the worker is gone (its failure is raised on leaving)."""
    return statuses(dsn)["succeeded"] == jobs or not running.alive


def skiplock_warnings(caplog: pytest.LogCaptureFixture) -> list[str]:
    return [
        r.getMessage()
        for r in caplog.records
        if r.name.startswith("skiplock") and r.levelno >= logging.WARNING
    ]


def test_a_thousand_jobs_through_the_api_and_a_worker(
    dsn: str,
    bouncer: Callable[..., str],
    monkeypatch: pytest.MonkeyPatch,
    caplog: pytest.LogCaptureFixture,
) -> None:
    monkeypatch.setenv("SKIPLOCK_POOLER", "transaction")
    through = bouncer()
    worker_app, runs = counting_app(through)
    api_app = skiplock.App(through)
    caplog.set_level(logging.INFO, "skiplock")
    with WorkerThread(worker_app, concurrency=20, poll_interval=0.1) as running:
        with TestClient(create_app(api_app)) as client:
            answers = [
                client.post("/api/v1/jobs", json={"task": "count", "args": {"n": n}})
                for n in range(1000)
            ]
            # the API's reads go through the pooler too
            reads = [client.get(f"/api/v1/jobs/{a.json()['id']}") for a in answers[:100]]
        assert [a.status_code for a in answers if a.status_code != 201] == []
        assert [r.status_code for r in reads if r.status_code != 200] == []
        ids = [a.json()["id"] for a in answers]
        ids += [api_app.enqueue("count", {"n": n}) for n in range(100)]
        api_app.close()
        wait_until(partial(all_done, dsn, 1100, running), 120)
    assert statuses(dsn) == {"succeeded": 1100}
    assert runs == Counter({job_id: 1 for job_id in ids})  # each job ran exactly once
    # Said once at start, and nothing else went wrong.
    assert skiplock_warnings(caplog) == [
        "LISTEN cannot work through a transaction-mode pooler; polling every 0.1 s;"
        " give a direct --listen-dsn / SKIPLOCK_LISTEN_DSN for instant pickup"
    ]


def test_a_worker_starts_again_on_a_warm_pool(
    dsn: str, bouncer: Callable[..., str], monkeypatch: pytest.MonkeyPatch
) -> None:
    """The second worker gets server connections the first one used: no statement may
    have been left prepared on them (psycopg names them _pg3_0, _pg3_1, ... again)."""
    monkeypatch.setenv("SKIPLOCK_POOLER", "transaction")
    through = bouncer(pool_size=2)
    app, runs = counting_app(through)
    ids: list[int] = []
    for start in (1, 2):
        ids += [app.enqueue("count", {}) for _ in range(30)]
        # one job per claim: the claim statement runs often on the same connection
        with WorkerThread(app, concurrency=2, batch_size=1, poll_interval=0.05) as running:
            wait_until(partial(all_done, dsn, 30 * start, running), 60)
    app.close()
    assert statuses(dsn) == {"succeeded": 60}
    assert runs == Counter({job_id: 1 for job_id in ids})


def test_the_claim_leaves_no_session_settings_on_the_pooled_connection(
    dsn: str, bouncer: Callable[..., str], monkeypatch: pytest.MonkeyPatch
) -> None:
    """One server connection behind the pooler: whatever the worker SETs for its claims
    would reach every other client (synchronous_commit off for their enqueues)."""
    monkeypatch.setenv("SKIPLOCK_POOLER", "transaction")
    through = bouncer(pool_size=1)
    app, _ = counting_app(through)
    job_id = app.enqueue("count", {})
    with WorkerThread(app, poll_interval=0.05) as running:
        wait_until(partial(all_done, dsn, 1, running), 30)
        with psycopg.connect(through, prepare_threshold=None) as other:
            settings = other.execute(
                "SELECT current_setting('synchronous_commit'), current_setting('enable_seqscan'),"
                " current_setting('plan_cache_mode')"
            ).fetchone()
    app.close()
    assert job_id and settings == ("on", "on", "auto")


def test_listen_through_the_pooler_is_noticed_once_without_reconnecting(
    bouncer: Callable[..., str], caplog: pytest.LogCaptureFixture
) -> None:
    """The probe never comes back through the pooler: one plain warning, the connection
    kept, the worker polling; more probes change nothing."""
    through = bouncer()
    caplog.set_level(logging.INFO, "skiplock")

    async def main() -> Listener:
        pool = AsyncConnectionPool(
            through,
            min_size=1,
            max_size=2,
            open=False,
            kwargs={"autocommit": True, "prepare_threshold": None},
        )
        await pool.open()
        listener = Listener(
            through,
            ["skiplock_jobs"],
            lambda channel, payload: None,
            probe_channel="skiplock_probe_test",
            probe_pool=pool,
            probe_timeout=0.5,
        )
        task = asyncio.create_task(listener.run())
        try:
            await asyncio.wait_for(listener.connected.wait(), 10)
            for _ in range(4):
                assert not await listener.probe_once()
                # the run loop would act on a reconnect request within its 1 s slice
                await asyncio.sleep(0)
            await asyncio.wait_for(listener.connected.wait(), 10)
        finally:
            task.cancel()
            await asyncio.gather(task, return_exceptions=True)
            await pool.close()
        return listener

    listener = asyncio.run(main())
    assert listener.deaf
    assert listener.reconnects == 0
    assert skiplock_warnings(caplog) == [
        f"{DEAF_WARNING} (a transaction-mode pooler?); polling every 1 s; give a direct"
        " --listen-dsn / SKIPLOCK_LISTEN_DSN for instant pickup"
    ]


@pytest.fixture
def worker_process(tmp_path: Path) -> Iterator[Callable[..., subprocess.Popen[bytes]]]:
    procs: list[subprocess.Popen[bytes]] = []

    def start(*args: str) -> subprocess.Popen[bytes]:
        with (tmp_path / "worker.log").open("wb") as log:
            proc = subprocess.Popen(
                [sys.executable, "-m", "skiplock", *args], stdout=log, stderr=subprocess.STDOUT
            )
        procs.append(proc)
        return proc

    yield start
    for proc in procs:
        if proc.poll() is None:
            proc.terminate()
        with contextlib.suppress(subprocess.TimeoutExpired):
            proc.wait(30)
        if proc.poll() is None:
            proc.kill()
            proc.wait(10)


def test_a_direct_listen_dsn_picks_jobs_up_on_notify(
    dsn: str,
    bouncer: Callable[..., str],
    worker_process: Callable[..., subprocess.Popen[bytes]],
    tmp_path: Path,
) -> None:
    """`skiplock --pooler transaction worker --listen-dsn DIRECT`: everything but LISTEN
    through the pooler; with a poll interval of a minute, only NOTIFY can start the job
    within the wait."""
    through = bouncer()
    proc = worker_process(
        "--dsn", through, "--pooler", "transaction",
        "worker", "--app", "skiplock.demo:app", "--listen-dsn", dsn, "--poll-interval", "60",
    )  # fmt: skip
    with psycopg.connect(dsn, autocommit=True) as direct:

        def listening() -> bool:
            row = direct.execute(
                "SELECT count(*) FROM pg_stat_activity"
                " WHERE datname = current_database() AND query LIKE 'LISTEN %%'"
            ).fetchone()
            return proc.poll() is None and row is not None and row[0] > 0

        wait_until(lambda: listening() or proc.poll() is not None, 30)
        assert proc.poll() is None, (tmp_path / "worker.log").read_text()

        def succeeded(job_id: int) -> bool:
            row = direct.execute(
                "SELECT status FROM skiplock.all_jobs WHERE id = %s", (job_id,)
            ).fetchone()
            return row is not None and row[0] == "succeeded"

        with psycopg.connect(through, autocommit=True, prepare_threshold=None) as producer:
            for n in range(3):
                row = producer.execute(
                    "SELECT skiplock.enqueue('echo', %s::jsonb)", (f'{{"n": {n}}}',)
                ).fetchone()
                assert row is not None
                wait_until(partial(succeeded, int(row[0])), 30)
    log = (tmp_path / "worker.log").read_text()
    assert DEAF_WARNING not in log and POLLING_WARNING not in log


def test_where_the_pooler_mode_and_the_listen_dsn_come_from(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.delenv("SKIPLOCK_POOLER", raising=False)
    monkeypatch.delenv("SKIPLOCK_LISTEN_DSN", raising=False)
    app = skiplock.App("dbname=pooled")
    assert (app.pooler, app.listen_dsn) == ("none", "dbname=pooled")
    assert app.connection_kwargs == {"autocommit": True}
    monkeypatch.setenv("SKIPLOCK_POOLER", "transaction")
    # nowhere to LISTEN: through the pooler it would hear nothing
    assert (app.pooler, app.listen_dsn) == ("transaction", None)
    assert app.connection_kwargs == {"autocommit": True, "prepare_threshold": None}
    monkeypatch.setenv("SKIPLOCK_LISTEN_DSN", "dbname=direct")
    assert app.listen_dsn == "dbname=direct"
    # the App's own arguments win over the environment
    mine = skiplock.App("dbname=pooled", pooler="session", listen_dsn="dbname=mine")
    assert (mine.pooler, mine.listen_dsn) == ("session", "dbname=mine")
    assert mine.connection_kwargs == {"autocommit": True}
    with pytest.raises(ConfigError, match="pooler must be one of none, session, transaction"):
        skiplock.App(pooler="statement")


def test_an_unknown_pooler_mode_is_refused() -> None:
    result = CliRunner().invoke(
        main,
        ["--dsn", "postgresql://127.0.0.1:1/nothing", "worker", "--app", "skiplock.demo:app"],
        env={"SKIPLOCK_POOLER": "statement"},
    )
    assert result.exit_code == 2  # a bad value from the environment: a usage error
    assert result.output.strip().splitlines() == [
        "error: invalid SKIPLOCK_POOLER (for --pooler): 'statement' is not one of 'none',"
        " 'session', 'transaction'."
    ]
