"""Worker "hosts" on one machine: each a network namespace joined to the root namespace by
a veth pair, with a private /30 (10.200.N.0/30: .1 on the root side, where PostgreSQL
listens, .2 inside). A process started under a host's `prefix` (`ip netns exec`) reaches
PostgreSQL only over that host's link, so taking the link down cuts that host off alone.

Used by tests/faults/test_many_hosts.py and bench/many_hosts.py. Needs root and the `ip`
command (iproute2); `harness.netns_unavailable()` says why not when they are missing.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

from harness import PgServer, VethLink

HERE = Path(__file__).resolve().parent
SUBNET = "10.200"  # the hosts' /30s are carved from 10.200.0.0/16, one third octet each


def _ip(*args: str) -> str:
    done = subprocess.run(["ip", *args], check=True, capture_output=True, text=True, timeout=30)
    return done.stdout


class Host(VethLink):
    """One namespace and its link (harness.VethLink): `host_ip` is the root side, where
    PostgreSQL listens, `ns_ip` the host's own."""

    def __init__(self, index: int, tag: str, subnet: str) -> None:
        super().__init__(tag, subnet)
        self.index = index


class Hosts:
    """`count` hosts, made on enter and removed on exit whatever happened: processes
    still inside a namespace are killed first (a namespace outlives its name while a
    process holds it), then the namespaces and the root ends of their links go."""

    def __init__(self, count: int) -> None:
        self.tag = os.getpid() % 100_000  # interface names: at most 15 characters
        self.count = count
        self.hosts: list[Host] = []

    def __enter__(self) -> Hosts:
        try:
            for index, octet in enumerate(self._free_octets()):
                host = Host(index, f"{self.tag}x{index}", f"{SUBNET}.{octet}")
                self.hosts.append(host)
                host.open()
        except BaseException:
            self.close()
            raise
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def __iter__(self) -> Iterator[Host]:
        return iter(self.hosts)

    def __getitem__(self, index: int) -> Host:
        return self.hosts[index]

    def __len__(self) -> int:
        return len(self.hosts)

    def _free_octets(self) -> list[int]:
        """Third octets of 10.200 that no interface of the root namespace uses yet (another
        run on this machine may hold some), starting from one derived from our pid."""
        used = _ip("-4", "-o", "addr", "show")
        free = []
        for step in range(256):
            octet = (self.tag + step) % 256
            if f" {SUBNET}.{octet}." not in used:
                free.append(octet)
            if len(free) == self.count:
                return free
        raise RuntimeError(f"no free /30 left in {SUBNET}.0.0/16")

    def close(self) -> None:
        for host in self.hosts:
            for pid in host.pids():
                try:
                    os.kill(pid, signal.SIGKILL)
                except ProcessLookupError:
                    pass
            host.close()
        self.hosts = []


def serve_hosts(server: PgServer, hosts: Hosts) -> None:
    """Make `server` listen on every host's link as well as loopback, and let each
    host's address in (trust, as for loopback: a test server); restarts it."""
    addresses = ",".join(["127.0.0.1", *(host.host_ip for host in hosts)])
    with (server.pgdata / "postgresql.conf").open("a") as conf:
        conf.write(f"listen_addresses = '{addresses}'\n")
    with (server.pgdata / "pg_hba.conf").open("a") as hba:
        hba.writelines(f"host all all {host.ns_ip}/32 trust\n" for host in hosts)
    server.stop()
    server.start()


def host_dsn(server: PgServer, host: Host) -> str:
    """The DSN a process on `host` uses: PostgreSQL over that host's link."""
    return f"host={host.host_ip} port={server.port} user={server.user} dbname=postgres"


class HostWorkers:
    """Real `skiplock worker` processes (python -m skiplock worker) over faults_app,
    each started inside a host's namespace; stdout and stderr go to a file per worker."""

    def __init__(self, server: PgServer, logs: Path, argv: list[str]) -> None:
        self.server = server
        self.logs = logs
        self.argv = argv  # the `skiplock worker` options after --app
        self.procs: dict[str, subprocess.Popen[bytes]] = {}
        self.host_of: dict[str, Host] = {}

    def start(self, host: Host) -> str:
        name = f"h{host.index}w{sum(h is host for h in self.host_of.values())}"
        env = {
            **os.environ,
            "SKIPLOCK_DSN": host_dsn(self.server, host),
            "PGAPPNAME": f"faults-{name}",
            "PYTHONPATH": os.pathsep.join([str(HERE), os.environ.get("PYTHONPATH", "")]),
        }
        argv = [sys.executable, "-m", "skiplock", "worker", "--app", "faults_app:app"]
        with (self.logs / f"worker-{name}.log").open("wb") as log:
            self.procs[name] = subprocess.Popen(
                [*host.prefix, *argv, *self.argv], stdout=log, stderr=subprocess.STDOUT, env=env
            )
        self.host_of[name] = host
        return name

    def pid(self, name: str) -> int:
        return self.procs[name].pid

    def on(self, host: Host) -> list[str]:
        return [name for name, h in self.host_of.items() if h is host]

    def kill(self, name: str) -> None:
        self.procs[name].send_signal(signal.SIGKILL)
        self.procs[name].wait(30)

    def alive(self, name: str) -> bool:
        return self.procs[name].poll() is None

    def log(self, name: str) -> str:
        return (self.logs / f"worker-{name}.log").read_text(errors="replace")

    def stop_all(self) -> dict[str, int | None]:
        """SIGTERM every worker still running and wait; their exit codes."""
        for proc in self.procs.values():
            if proc.poll() is None:
                proc.send_signal(signal.SIGTERM)
        codes: dict[str, int | None] = {}
        for name, proc in self.procs.items():
            try:
                codes[name] = proc.wait(30)
            except subprocess.TimeoutExpired:
                proc.kill()
                codes[name] = proc.wait(10)
        return codes

    def kill_all(self) -> None:
        for proc in self.procs.values():
            if proc.poll() is None:
                proc.kill()
                proc.wait(10)
