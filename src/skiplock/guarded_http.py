"""The HTTP client of the destination guard: httpx over a network backend that asks the
guard (skiplock.destinations) for the addresses of a name and connects to one of them,
so the address connected to is the one checked. Proxies are never used."""

from __future__ import annotations

import functools
import ssl
from collections.abc import Iterable
from typing import Any

import httpcore
import httpx

from skiplock.destinations import DestinationRefused, Destinations, Unresolvable


def guarded_client(
    destinations: Destinations,
    *,
    timeout: float,
    verify: ssl.SSLContext | None = None,
    follow_redirects: bool = False,
) -> httpx.Client:
    """An httpx client whose every connection passes `destinations` (see Destinations.client)."""
    return httpx.Client(
        transport=GuardedTransport(destinations, verify),
        timeout=timeout,
        follow_redirects=follow_redirects,
        trust_env=False,
    )


class GuardedBackend(httpcore.NetworkBackend):
    """httpcore's network backend with the guard between name and socket: the address
    connected to is one that was checked (TLS still verifies the host name)."""

    def __init__(self, destinations: Destinations) -> None:
        self.destinations = destinations
        self.plain = httpcore.SyncBackend()

    def connect_tcp(
        self,
        host: str,
        port: int,
        timeout: float | None = None,
        local_address: str | None = None,
        socket_options: Iterable[Any] | None = None,
    ) -> httpcore.NetworkStream:
        try:
            addresses = self.destinations.addresses(host, port)
        except Unresolvable as exc:
            # a name that does not resolve may resolve later: a connect error, retried
            raise httpcore.ConnectError(str(exc)) from None
        for index, address in enumerate(addresses):
            try:
                return self.plain.connect_tcp(address, port, timeout, local_address, socket_options)
            except (httpcore.ConnectError, httpcore.ConnectTimeout):
                if index == len(addresses) - 1:
                    raise
        raise AssertionError("unreachable: addresses is never empty")

    def connect_unix_socket(self, *args: Any, **kwargs: Any) -> httpcore.NetworkStream:
        raise DestinationRefused("unix sockets are not a destination")


@functools.cache
def default_tls() -> ssl.SSLContext:
    """The system's trust store, loaded once: loading it costs more than a request on a
    local network, and a context is safe to share between threads."""
    return ssl.create_default_context()


class GuardedTransport(httpx.HTTPTransport):
    """httpx's transport over a GuardedBackend, with no proxy."""

    def __init__(self, destinations: Destinations, verify: ssl.SSLContext | None = None) -> None:
        tls = verify or default_tls()
        super().__init__(verify=tls, trust_env=False)
        # httpx.HTTPTransport takes no network backend; its connection pool does.
        self._pool = httpcore.ConnectionPool(
            ssl_context=tls, network_backend=GuardedBackend(destinations)
        )
