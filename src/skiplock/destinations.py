"""The destination guard: where a worker may send an HTTP request on a job's behalf.

Whoever can enqueue a job chooses its URL, so a worker would otherwise reach whatever
its own network reaches: the database, an admin port on loopback, the cloud's metadata
service. The guard refuses every address that is not globally routable (loopback,
private, link-local, unique-local, CGNAT, cloud metadata, reserved) unless the
operator's allow-list names its network or its host.

It is checked after DNS resolution, inside the connection itself: the client resolves a
name once, checks every address it got, and connects to a checked address. No second
lookup happens between check and connect, so a name that answers a public address to the
check and a private one to the connect (DNS rebinding) gains nothing. Every connection
goes through it, so every redirect hop does too. Proxies from the environment are
ignored: through a proxy the guard would check the proxy, not the destination. The
client that does this is skiplock.guarded_http's.
"""

from __future__ import annotations

import ipaddress
import socket
import ssl
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

from skiplock.errors import ConfigError

if TYPE_CHECKING:
    import httpx

IPAddress = ipaddress.IPv4Address | ipaddress.IPv6Address
IPNetwork = ipaddress.IPv4Network | ipaddress.IPv6Network
# name, port -> the addresses to try, in order (tests pass a stub that maps names)
Resolver = Callable[[str, int], Sequence[str]]

# Named so a refusal says what the address is; anything else not global is "reserved".
_KINDS: tuple[tuple[str, IPNetwork], ...] = tuple(
    (kind, ipaddress.ip_network(net))
    for kind, net in (
        ("cloud metadata", "169.254.169.254/32"),
        ("cloud metadata", "fd00:ec2::254/128"),
        ("cloud metadata", "100.100.100.200/32"),
        ("loopback", "127.0.0.0/8"),
        ("loopback", "::1/128"),
        ("private", "10.0.0.0/8"),
        ("private", "172.16.0.0/12"),
        ("private", "192.168.0.0/16"),
        ("link-local", "169.254.0.0/16"),
        ("link-local", "fe80::/10"),
        ("unique-local", "fc00::/7"),
        ("CGNAT", "100.64.0.0/10"),
        ("unspecified", "0.0.0.0/8"),
        ("unspecified", "::/128"),
    )
)
# IPv6 forms that carry an IPv4 address: judged by the address they carry.
_NAT64 = ipaddress.ip_network("64:ff9b::/96")


class DestinationRefused(Exception):
    """The guard refused a destination; the message names the host, the address and why."""


class Unresolvable(ConnectionError):
    """A name gave no address: a connection error, which a later attempt may not meet."""


def system_resolver(host: str, port: int) -> list[str]:
    """The addresses the system's resolver gives for `host` (IPv4 and IPv6, in its order)."""
    infos = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM)
    return list(dict.fromkeys(str(info[4][0]) for info in infos))


def carried(address: IPAddress) -> IPAddress:
    """The IPv4 address an IPv4-mapped or NAT64 IPv6 address stands for, else itself."""
    if isinstance(address, ipaddress.IPv6Address):
        if address.ipv4_mapped is not None:
            return address.ipv4_mapped
        if address in _NAT64:
            return ipaddress.IPv4Address(int(address) & 0xFFFFFFFF)
    return address


def kind_of(address: IPAddress) -> str | None:
    """Why `address` is refused by default ("loopback", "private", …), None if global."""
    address = carried(address)
    for kind, network in _KINDS:
        if address.version == network.version and address in network:
            return kind
    return None if address.is_global and not address.is_multicast else "reserved"


@dataclass(frozen=True)
class Destinations:
    """The operator's allow-list (networks and host names) and the resolver to use.

    An address is allowed when it is global, or in an allowed network, or when the
    host name itself is allowed (then whatever it resolves to is allowed)."""

    networks: tuple[IPNetwork, ...] = ()
    hosts: frozenset[str] = frozenset()
    resolver: Resolver = field(default=system_resolver, compare=False)

    @classmethod
    def parse(cls, allow: Iterable[str], *, what: str = "allow") -> Destinations:
        """The allow-list from its entries: CIDRs or addresses, or host names;
        ConfigError naming `what` and the entry otherwise."""
        if isinstance(allow, str) or not isinstance(allow, Iterable):
            raise ConfigError(f"{what} must be a list of CIDRs or host names, got {allow!r}")
        networks: list[IPNetwork] = []
        hosts: set[str] = set()
        for entry in allow:
            if not isinstance(entry, str) or not entry.strip():
                raise ConfigError(f"{what} entries must be CIDRs or host names, got {entry!r}")
            try:
                networks.append(ipaddress.ip_network(entry.strip(), strict=False))
                continue
            except ValueError:
                pass
            name = entry.strip().lower().rstrip(".")
            if not _is_host_name(name):
                raise ConfigError(f"{what} entry is neither a CIDR nor a host name: {entry!r}")
            hosts.add(name)
        return cls(tuple(networks), frozenset(hosts))

    def refusal(self, host: str, address: IPAddress) -> str | None:
        """Why connecting to `address` (resolved from `host`) is refused, None if allowed."""
        kind = kind_of(address)
        if kind is None or host.lower().rstrip(".") in self.hosts:
            return None
        plain = carried(address)
        if any(a.version == n.version and a in n for n in self.networks for a in {address, plain}):
            return None
        shown = host if host == str(address) else f"{host} ({address})"
        return f"destination {shown} is a {kind} address, not in the allow-list"

    def addresses(self, host: str, port: int) -> list[str]:
        """The addresses to connect to for `host`: resolved once, every one checked.
        DestinationRefused when any is refused (a name that mixes public and private
        answers is refused whole); Unresolvable when the name does not resolve."""
        try:
            literal: IPAddress | None = ipaddress.ip_address(host.strip("[]"))
        except ValueError:
            literal = None
        if literal is not None:
            found = [str(literal)]
        else:
            try:
                found = list(self.resolver(host, port))
            except OSError as exc:
                raise Unresolvable(f"cannot resolve {host}: {exc}") from None
            if not found:
                raise Unresolvable(f"cannot resolve {host}: no address")
        for text in found:
            reason = self.refusal(host, ipaddress.ip_address(text))
            if reason is not None:
                raise DestinationRefused(reason)
        return found

    def client(
        self,
        *,
        timeout: float,
        verify: ssl.SSLContext | None = None,
        follow_redirects: bool = False,
    ) -> httpx.Client:
        """An httpx client whose every connection passes this guard (proxies ignored)."""
        # httpx loads in a tenth of a second: only the processes that send pay for it
        from skiplock.guarded_http import guarded_client

        return guarded_client(
            self, timeout=timeout, verify=verify, follow_redirects=follow_redirects
        )


def _is_host_name(name: str) -> bool:
    labels = name.split(".")
    return 0 < len(name) <= 253 and all(
        0 < len(label) <= 63 and label.replace("-", "").isalnum() and label.isascii()
        for label in labels
    )
