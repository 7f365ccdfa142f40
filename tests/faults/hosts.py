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
from dataclasses import dataclass
from pathlib import Path

from harness import PgServer

HERE = Path(__file__).resolve().parent
SUBNET = "10.200"  # the hosts' /30s are carved from 10.200.0.0/16, one third octet each


def _ip(*args: str) -> str:
    done = subprocess.run(["ip", *args], check=True, capture_output=True, text=True, timeout=30)
    return done.stdout


@dataclass
class Host:
    """One namespace and its link: `server_ip` is the root side, `ip` the host's own."""

    index: int
    ns: str
    root_if: str
    ns_if: str
    server_ip: str
    ip: str

    @property
    def prefix(self) -> list[str]:
        """Command prefix that runs a program on this host (`ip netns exec` execs it, so
        the process id is the program's own)."""
        return ["ip", "netns", "exec", self.ns]

    def down(self) -> None:
        """Pull the cable: packets to and from the host vanish, nothing is refused."""
        _ip("link", "set", self.root_if, "down")

    def up(self) -> None:
        _ip("link", "set", self.root_if, "up")

    def pids(self) -> list[int]:
        """The processes inside this host's namespace (all started by whoever made it)."""
        done = subprocess.run(["ip", "netns", "pids", self.ns], capture_output=True, text=True)
        return [int(pid) for pid in done.stdout.split()]


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
                host = Host(
                    index=index,
                    ns=f"skiplock-{self.tag}-h{index}",
                    root_if=f"sk{self.tag}r{index}",
                    ns_if=f"sk{self.tag}n{index}",
                    server_ip=f"{SUBNET}.{octet}.1",
                    ip=f"{SUBNET}.{octet}.2",
                )
                self.hosts.append(host)
                self._make(host)
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

    @staticmethod
    def _make(host: Host) -> None:
        # leftovers of a killed earlier run with the same pid
        subprocess.run(["ip", "netns", "del", host.ns], capture_output=True, timeout=30)
        subprocess.run(["ip", "link", "del", host.root_if], capture_output=True, timeout=30)
        _ip("netns", "add", host.ns)
        _ip("link", "add", host.root_if, "type", "veth", "peer", "name", host.ns_if)
        _ip("link", "set", host.ns_if, "netns", host.ns)
        _ip("addr", "add", f"{host.server_ip}/30", "dev", host.root_if)
        _ip("link", "set", host.root_if, "up")
        inside = ("netns", "exec", host.ns, "ip")
        _ip(*inside, "addr", "add", f"{host.ip}/30", "dev", host.ns_if)
        _ip(*inside, "link", "set", host.ns_if, "up")
        _ip(*inside, "link", "set", "lo", "up")

    def close(self) -> None:
        for host in self.hosts:
            for pid in host.pids():
                try:
                    os.kill(pid, signal.SIGKILL)
                except ProcessLookupError:
                    pass
            # Deleting the namespace destroys its end of the pair and with it the pair;
            # the root end is deleted too in case the namespace was already gone.
            subprocess.run(["ip", "netns", "del", host.ns], capture_output=True, timeout=30)
            subprocess.run(["ip", "link", "del", host.root_if], capture_output=True, timeout=30)
        self.hosts = []


def serve_hosts(server: PgServer, hosts: Hosts) -> None:
    """Make `server` listen on every host's link as well as loopback, and let each
    host's address in (trust, as for loopback: a test server); restarts it."""
    addresses = ",".join(["127.0.0.1", *(host.server_ip for host in hosts)])
    with (server.pgdata / "postgresql.conf").open("a") as conf:
        conf.write(f"listen_addresses = '{addresses}'\n")
    with (server.pgdata / "pg_hba.conf").open("a") as hba:
        hba.writelines(f"host all all {host.ip}/32 trust\n" for host in hosts)
    server.stop()
    server.start()


def host_dsn(server: PgServer, host: Host) -> str:
    """The DSN a process on `host` uses: PostgreSQL over that host's link."""
    return f"host={host.server_ip} port={server.port} user={server.user} dbname=postgres"


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
