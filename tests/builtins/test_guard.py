"""The destination guard: which addresses it refuses by default, the allow-list, and that
the address connected to is the one checked, on every hop. Traffic goes to loopback only:
a stub resolver maps names to loopback or to private addresses, which are refused before
any connection is made."""

from __future__ import annotations

import dataclasses
import ipaddress
from collections.abc import Sequence
from pathlib import Path

import httpx
import psycopg
import pytest
from local_http import Answer, LocalServer, self_signed

import skiplock
from skiplock.builtins.http import HttpSettings, send
from skiplock.destinations import DestinationRefused, Destinations, kind_of
from skiplock.errors import ConfigError, Discard
from skiplock.testing import run_jobs


class StubResolver:
    """Answers names from a table, counting lookups; connects nowhere."""

    def __init__(self, table: dict[str, Sequence[Sequence[str]]]) -> None:
        # name -> the answers of the first, second, … lookup (the last one repeats)
        self.table = table
        self.lookups: list[str] = []

    def __call__(self, host: str, port: int) -> list[str]:
        answers = self.table[host]
        self.lookups.append(host)
        count = sum(1 for looked in self.lookups if looked == host)
        return list(answers[min(count, len(answers)) - 1])


def guard(allow: list[str], table: dict[str, Sequence[Sequence[str]]]) -> Destinations:
    return dataclasses.replace(Destinations.parse(allow), resolver=StubResolver(table))


@pytest.mark.parametrize(
    ("address", "kind"),
    [
        ("127.0.0.1", "loopback"),
        ("127.8.9.10", "loopback"),
        ("::1", "loopback"),
        ("10.1.2.3", "private"),
        ("172.16.0.1", "private"),
        ("172.31.255.254", "private"),
        ("192.168.1.1", "private"),
        ("169.254.10.1", "link-local"),
        ("fe80::1", "link-local"),
        ("fd12:3456::1", "unique-local"),
        ("100.64.0.1", "CGNAT"),
        ("169.254.169.254", "cloud metadata"),
        ("fd00:ec2::254", "cloud metadata"),
        ("100.100.100.200", "cloud metadata"),
        ("0.0.0.0", "unspecified"),
        ("::", "unspecified"),
        ("::ffff:127.0.0.1", "loopback"),
        ("::ffff:10.0.0.1", "private"),
        ("64:ff9b::a00:1", "private"),
        ("224.0.0.1", "reserved"),
        ("240.0.0.1", "reserved"),
        ("192.0.2.1", "reserved"),
        ("8.8.8.8", None),
        ("172.32.0.1", None),
        ("2606:4700:4700::1111", None),
    ],
)
def test_kind_of_each_address_class(address: str, kind: str | None) -> None:
    # pure classification: no packet is sent to any of these
    assert kind_of(ipaddress.ip_address(address)) == kind


def test_allow_list_takes_cidrs_addresses_and_host_names() -> None:
    allowed = Destinations.parse(["10.0.0.0/8", "::1", "Internal.Example.test."])
    assert allowed.refusal("10.9.9.9", ipaddress.ip_address("10.9.9.9")) is None
    assert allowed.refusal("::1", ipaddress.ip_address("::1")) is None
    assert allowed.refusal("internal.example.test", ipaddress.ip_address("192.168.0.9")) is None
    refused = allowed.refusal("other.example.test", ipaddress.ip_address("192.168.0.9"))
    assert refused == (
        "destination other.example.test (192.168.0.9) is a private address, not in the allow-list"
    )
    # an IPv4-mapped address is judged as the IPv4 address it carries
    assert allowed.refusal("x", ipaddress.ip_address("::ffff:10.1.1.1")) is None


@pytest.mark.parametrize("allow", [["not a host!"], [""], [5], "127.0.0.1", ["10.0.0.0/33"]])
def test_bad_allow_entries_are_config_errors_naming_the_setting(allow: object) -> None:
    with pytest.raises(ConfigError, match=r"^http\.allow"):
        Destinations.parse(allow, what="http.allow")  # type: ignore[arg-type]


def test_loopback_is_refused_by_default_and_never_connected(server: LocalServer) -> None:
    with Destinations().client(timeout=5) as client, pytest.raises(DestinationRefused) as refused:
        client.get(server.url)
    assert "is a loopback address, not in the allow-list" in str(refused.value)
    assert server.connections == 0


def test_ipv4_mapped_loopback_literal_is_refused(server: LocalServer) -> None:
    url = f"http://[::ffff:127.0.0.1]:{server.port}/"
    with Destinations().client(timeout=5) as client, pytest.raises(DestinationRefused):
        client.get(url)
    assert server.connections == 0


def test_loopback_in_the_allow_list_is_reached(server: LocalServer) -> None:
    with Destinations.parse(["127.0.0.0/8"]).client(timeout=5) as client:
        assert client.get(server.url + "/ok").status_code == 200
    assert server.requests[0].path == "/ok"


def test_a_name_is_resolved_once_and_the_checked_address_is_the_one_connected(
    server: LocalServer,
) -> None:
    # the second lookup would answer a private address (DNS rebinding): there is none
    destinations = guard(["127.0.0.0/8"], {"api.example.test": [["127.0.0.1"], ["10.0.0.7"]]})
    with destinations.client(timeout=5) as client:
        response = client.get(f"http://api.example.test:{server.port}/hook")
    assert response.status_code == 200
    assert destinations.resolver.lookups == ["api.example.test"]  # type: ignore[attr-defined]
    assert server.requests[0].headers["Host"] == f"api.example.test:{server.port}"


def test_a_name_that_resolves_to_a_private_address_is_refused_before_connecting() -> None:
    destinations = guard([], {"intranet.example.test": [["10.20.30.40"]]})
    with destinations.client(timeout=5) as client, pytest.raises(DestinationRefused) as refused:
        client.get("http://intranet.example.test/")
    assert str(refused.value) == (
        "destination intranet.example.test (10.20.30.40) is a private address,"
        " not in the allow-list"
    )


def test_tls_verifies_the_name_while_connecting_to_the_checked_address(tmp_path: Path) -> None:
    server_tls, client_tls = self_signed("secure.example.test", tmp_path)
    server = LocalServer(tls=server_tls)
    table = {"secure.example.test": [["127.0.0.1"]], "other.example.test": [["127.0.0.1"]]}
    destinations = guard(["127.0.0.0/8"], table)
    try:
        with destinations.client(timeout=5, verify=client_tls) as client:
            assert client.get(f"https://secure.example.test:{server.port}/").status_code == 200
            # the same address under a name the certificate does not carry: refused by TLS
            with pytest.raises(httpx.ConnectError, match="CERTIFICATE_VERIFY_FAILED"):
                client.get(f"https://other.example.test:{server.port}/")
        assert server.requests[0].headers["Host"] == f"secure.example.test:{server.port}"
    finally:
        server.close()


def test_a_name_with_any_refused_answer_is_refused_whole(server: LocalServer) -> None:
    destinations = guard(["127.0.0.0/8"], {"mixed.example.test": [["127.0.0.1", "10.0.0.1"]]})
    with destinations.client(timeout=5) as client, pytest.raises(DestinationRefused):
        client.get(f"http://mixed.example.test:{server.port}/")
    assert server.connections == 0


def test_an_allowed_host_name_may_resolve_to_loopback(server: LocalServer) -> None:
    destinations = guard(["partner.example.test"], {"partner.example.test": [["127.0.0.1"]]})
    with destinations.client(timeout=5) as client:
        assert client.get(f"http://partner.example.test:{server.port}/").status_code == 200


def test_an_unresolvable_name_is_a_connect_error_to_retry() -> None:
    def nothing(host: str, port: int) -> list[str]:
        raise OSError("Name or service not known")

    destinations = dataclasses.replace(Destinations(), resolver=nothing)
    with destinations.client(timeout=5) as client, pytest.raises(httpx.ConnectError):
        client.get("http://nowhere.example.test/")


def test_every_redirect_hop_passes_the_guard(server: LocalServer) -> None:
    # a.example.test is allowed by name; it redirects to b.example.test, which resolves
    # to the same loopback server but is not allowed: the hop is refused, never sent
    table = {"a.example.test": [["127.0.0.1"]], "b.example.test": [["127.0.0.1"]]}
    destinations = guard(["a.example.test"], table)
    location = f"http://b.example.test:{server.port}/inside"
    server.answer(Answer(302, headers={"Location": location}), Answer(200, b"secret"))
    args = {"url": f"http://a.example.test:{server.port}/start", "follow_redirects": True}
    with pytest.raises(Discard, match=r"b.example.test \(127.0.0.1\) is a loopback address"):
        send(args, settings=HttpSettings(), destinations=destinations)
    assert [seen.path for seen in server.requests] == ["/start"]


def test_environment_proxies_are_ignored(
    server: LocalServer, monkeypatch: pytest.MonkeyPatch
) -> None:
    # through a proxy the guard would check the proxy, not the destination
    proxy = LocalServer()
    try:
        for variable in ("HTTP_PROXY", "http_proxy", "ALL_PROXY"):
            monkeypatch.setenv(variable, proxy.url)
        monkeypatch.delenv("NO_PROXY", raising=False)
        monkeypatch.delenv("no_proxy", raising=False)
        with Destinations.parse(["127.0.0.1/32"]).client(timeout=5) as client:
            assert client.get(server.url).status_code == 200
        assert proxy.connections == 0
        assert len(server.requests) == 1
    finally:
        proxy.close()


# ---- result webhooks go through the same guard ----------------------------------------


def test_a_webhook_to_a_refused_address_is_dead_unsent(
    dsn: str, server: LocalServer, conn: psycopg.Connection
) -> None:
    app = skiplock.App(dsn)
    app.webhook_secret = "s3cret"
    app.task(name="ok")(lambda: None)
    try:
        app.enqueue("ok", callback_url=server.url + "/hook")
        assert run_jobs(app) == 2  # the job, then its delivery
        ((task, attempt, error),) = conn.execute(
            "SELECT task, attempt, last_error FROM skiplock.dead_letters"
        ).fetchall()
        assert (task, attempt) == ("skiplock.webhook", 1)
        assert "is a loopback address, not in the allow-list" in error
        assert server.connections == 0
    finally:
        app.close()


def test_the_http_allow_list_lets_webhooks_reach_the_address(dsn: str, server: LocalServer) -> None:
    app = skiplock.App(dsn)
    app.webhook_secret = "s3cret"
    app.serve_builtins({"http": {"allow": ["127.0.0.1/32"]}})
    app.task(name="ok")(lambda: None)
    try:
        app.enqueue("ok", callback_url=server.url + "/hook")
        assert run_jobs(app) == 2
        assert [seen.path for seen in server.requests] == ["/hook"]
    finally:
        app.close()
