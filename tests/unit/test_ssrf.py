"""SSRF by construction: no spelling of an internal address reaches it through the dispatcher's real send path.

The matrix drives `Dispatcher._attempt` (the check, then the POST on the session and connector the
dispatcher builds) with `allow_private_endpoints` off, against listeners on 127.0.0.1 (plain and TLS) that
count every TCP accept: each form must end dead as a refused destination, and no listener may see a
connection. The embedding rules of `is_public` are property-tested over every IPv4.
"""

from __future__ import annotations

import asyncio
import ipaddress
import random
import subprocess
from collections.abc import AsyncIterator, Iterator
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from datetime import UTC, datetime
from ipaddress import IPv4Address, IPv6Address
from pathlib import Path
from typing import Any

import aiohttp
import pytest
from aiohttp.abc import AbstractResolver
from hypothesis import given
from hypothesis import strategies as st

from services.common.codec import Codec
from services.common.records import DeliverWebhook
from services.common.registry import WebhookEntry
from services.dispatcher.outcome import Observed, decide
from services.dispatcher.safety import UnsafeDestination, check_url, guarded_socket, is_public
from services.dispatcher.service import Dispatcher
from services.dispatcher.settings import DispatcherSettings
from tests.support.receivers import LoopbackDNS
from tests.support.world import new_secret

# The error's class: "refused destination: <reason>" today, "refused_destination" once delivery errors
# carry a class only (issue 13); either way the prefix names it.
REFUSED = "refused_destination"


def ended(observed: Observed) -> tuple[str, str | None]:
    """How the dispatcher's decision ends a first attempt that observed this: (outcome, failure class)."""
    decision = decide(observed, attempt=1, urgency="Immediate", waited_s=0.0, rng=random.Random(0))
    return decision.outcome, decision.failure


# Every form points at 127.0.0.1 (or another internal address) on the listener's port, spelled so that
# some parser, normaliser or resolver on the way could read it as an internal host.
FORMS = [
    # Unicode digits and dots that IDNA/NFKC (yarl) folds to ASCII
    "https://①②⑦.⓪.⓪.①:{port}/hook",
    "https://\uff11\uff12\uff17.\uff10.\uff10.\uff11:{port}/hook",  # fullwidth digits
    "https://127\u30020\u30020\u30021:{port}/hook",  # ideographic full stops
    "https://127\uff0e0\uff0e0\uff0e1:{port}/hook",  # fullwidth full stops
    "https://127\uff610\uff610\uff611:{port}/hook",  # halfwidth ideographic full stops
    "https://\U0001d7cf\U0001d7d0\U0001d7d5.\U0001d7ce.\U0001d7ce.\U0001d7cf:{port}/hook",  # mathematical bold
    "https://①②⑦.0.0.1:{port}/hook",
    "https://ⓛⓞⓒⓐⓛⓗⓞⓢⓣ:{port}/hook",
    "https://local\u00adhost:{port}/hook",  # soft hyphen, mapped to nothing by IDNA
    "https://127.0.\u200b0.1:{port}/hook",  # zero-width space
    # Numeric IPv4 forms that inet_aton or WHATWG parsers read as 127.0.0.1
    "https://2130706433:{port}/hook",
    "https://0177.0.0.1:{port}/hook",
    "https://127.1:{port}/hook",
    "https://127.0.1:{port}/hook",
    "https://0x7f.1:{port}/hook",
    "https://0x7f000001:{port}/hook",
    "https://0x7f.0x0.0x0.0x1:{port}/hook",
    "https://017700000001:{port}/hook",
    "https://127.000.000.001:{port}/hook",
    "https://127.0.0.1.:{port}/hook",
    "https://0:{port}/hook",
    "https://0.0.0.0:{port}/hook",
    # Plain loopback, scheme and userinfo tricks
    "https://127.0.0.1:{port}/hook",
    "HTTPS://127.0.0.1:{port}/hook",
    "http://127.0.0.1:{port}/hook",
    "https://evil.example@127.0.0.1:{port}/hook",
    "https://evil.example:pw@127.0.0.1:{port}/hook",
    "https://127.0.0.1:{port}@evil.example/hook",
    "https://receiver.example\\@127.0.0.1:{port}/hook",
    "https://127.0.0.1:0{port}/hook",
    "https://127.0.0.1:{port}:{port}/hook",
    "https://[127.0.0.1]:{port}/hook",
    # Percent-encoding, whitespace and control characters
    "https://%31%32%37.0.0.1:{port}/hook",
    "https://%6c%6f%63%61%6c%68%6f%73%74:{port}/hook",
    "https://127.0.0.\t1:{port}/hook",
    "https://127.0.0.\n1:{port}/hook",
    "https://127.0.0.1\r:{port}/hook",
    " https://127.0.0.1:{port}/hook",
    # Names of the local host
    "https://localhost:{port}/hook",
    "https://localhost.:{port}/hook",
    "https://LOCALHOST:{port}/hook",
    # IPv6 loopback and the IPv6 forms that embed 127.0.0.1
    "https://[::1]:{port}/hook",
    "https://[0:0:0:0:0:0:0:1]:{port}/hook",
    "https://[::1%25lo]:{port}/hook",
    "https://[::]:{port}/hook",
    "https://[::ffff:127.0.0.1]:{port}/hook",
    "https://[::ffff:7f00:1]:{port}/hook",
    "https://[0:0:0:0:0:ffff:7f00:1]:{port}/hook",
    "https://[::7f00:1]:{port}/hook",  # IPv4-compatible
    "https://[::127.0.0.1]:{port}/hook",
    "https://[64:ff9b::7f00:1]:{port}/hook",  # NAT64
    "https://[64:ff9b::127.0.0.1]:{port}/hook",
    "https://[64:ff9b:1::7f00:1]:{port}/hook",  # local-use NAT64
    "https://[2002:7f00:1::]:{port}/hook",  # 6to4
    "https://[2001:0:4136:e378:8000:63bf:80ff:fffe]:{port}/hook",  # Teredo, client 127.0.0.1 (XORed)
    # Other internal and special-purpose addresses
    "https://10.0.0.1:{port}/hook",
    "https://169.254.169.254:{port}/latest/meta-data",
    "https://100.64.0.1:{port}/hook",
    "https://198.18.0.1:{port}/hook",
    "https://192.0.2.1:{port}/hook",
    "https://[fe80::1]:{port}/hook",
    "https://[fc00::1]:{port}/hook",
]


@dataclass
class Listener:
    """A TCP listener on 127.0.0.1 that counts every accepted connection (TLS: then does the handshake)."""

    tls: Any = None
    accepts: int = 0
    server: asyncio.Server | None = None
    tasks: set[asyncio.Task[None]] = field(default_factory=set)

    @property
    def port(self) -> int:
        assert self.server is not None
        return int(self.server.sockets[0].getsockname()[1])

    async def start(self) -> None:
        async def handle(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
            self.accepts += 1
            try:
                if self.tls is not None:
                    await writer.start_tls(self.tls)
                await asyncio.wait_for(reader.read(65536), 1)
                writer.write(b"HTTP/1.1 204 No Content\r\nConnection: close\r\n\r\n")
                await writer.drain()
            except (OSError, TimeoutError):
                pass
            finally:
                writer.close()

        self.server = await asyncio.start_server(handle, "127.0.0.1", 0)


@pytest.fixture(scope="session")
def tls_context(tmp_path_factory: pytest.TempPathFactory) -> Any:
    """A server TLS context with a throwaway self-signed certificate for 127.0.0.1."""
    import ssl

    folder: Path = tmp_path_factory.mktemp("tls")
    key, cert = folder / "key.pem", folder / "cert.pem"
    subprocess.run(
        [
            *("openssl", "req", "-x509", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1", "-nodes"),
            *("-subj", "/CN=127.0.0.1", "-days", "1", "-keyout", str(key), "-out", str(cert)),
        ],
        check=True,
        capture_output=True,
    )
    context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    context.load_cert_chain(cert, key)
    return context


@pytest.fixture
async def listeners(tls_context: Any) -> AsyncIterator[tuple[Listener, Listener]]:
    """A plain and a TLS listener on 127.0.0.1."""
    plain, tls = Listener(), Listener(tls=tls_context)
    await plain.start()
    await tls.start()
    yield plain, tls
    for listener in (plain, tls):
        assert listener.server is not None
        listener.server.close()
        await listener.server.wait_closed()


@asynccontextmanager
async def sending(codec: Codec, resolver: AbstractResolver | None = None, **settings: Any) -> AsyncIterator[Dispatcher]:
    """A Dispatcher with the HTTP sessions it starts with (no Kafka), closed afterwards."""
    service = Dispatcher(DispatcherSettings(connect_timeout_s=1.0, response_timeout_s=2.0, **settings), codec)
    service._open_sessions(resolver)
    try:
        yield service
    finally:
        for session in (service._public, service._private):
            if session is not None:
                await session.close()


@pytest.fixture
async def dispatcher(codec: Codec) -> AsyncIterator[Dispatcher]:
    """The deployment default (private endpoints off) with the system's DNS (/etc/hosts: localhost)."""
    async with sending(codec) as service:
        assert service.settings.allow_private_endpoints is False
        yield service


@pytest.fixture
async def hostile_dns_dispatcher(codec: Codec) -> AsyncIterator[Dispatcher]:
    """The deployment default with a DNS that answers 127.0.0.1 for every name."""
    async with sending(codec, LoopbackDNS()) as service:
        yield service


def delivery() -> DeliverWebhook:
    return DeliverWebhook(
        webhook_id="msg_ssrf",
        alert_id="a-ssrf",
        agency="JO-B",
        event_type="alert.shared",
        urgency="Immediate",
        payload=b"{}",
        requested_at=datetime.now(UTC),
    )


def target(form: str, plain: Listener, tls: Listener) -> str:
    """The form aimed at the plain listener if it says http, else at the TLS one."""
    port = plain.port if form.lstrip().lower().startswith("http:") else tls.port
    return form.format(port=port)


async def test_the_listeners_count_every_connection(listeners: tuple[Listener, Listener]) -> None:
    """The control: a plain connection to each listener is counted, so a zero below means none was made."""
    for listener in listeners:
        _, writer = await asyncio.open_connection("127.0.0.1", listener.port)
        writer.close()
        await writer.wait_closed()
    await asyncio.sleep(0.05)
    assert tuple(listener.accepts for listener in listeners) == (1, 1)


def test_the_matrix_is_at_least_forty_forms() -> None:
    """The issue asks for at least 40 URL forms, each different."""
    assert len(FORMS) >= 40 and len(set(FORMS)) == len(FORMS)


@pytest.mark.parametrize("allow_private", [False, True], ids=["public", "registry-says-private"])
@pytest.mark.parametrize("form", FORMS)
async def test_internal_destinations_are_refused_and_never_connected(
    dispatcher: Dispatcher, listeners: tuple[Listener, Listener], form: str, allow_private: bool
) -> None:
    """Every spelling of an internal host ends dead as a refused destination, and 127.0.0.1 sees no connection,
    whatever the registry says when the deployment does not allow private endpoints."""
    plain, tls = listeners
    webhook = WebhookEntry(url=target(form, plain, tls), allow_private=allow_private)
    result = await dispatcher._attempt(delivery(), webhook, [new_secret()])
    assert (*ended(result), result.status, plain.accepts, tls.accepts) == ("dead", REFUSED, None, 0, 0)


@pytest.mark.parametrize(
    "form",
    [
        "https://127.0.0.1:{port}/hook",
        "http://127.0.0.1:{port}/hook",
        "https://[::ffff:7f00:1]:{port}/hook",
        "https://[::ffff:127.0.0.1]:{port}/hook",
        "https://①②⑦.⓪.⓪.①:{port}/hook",
        "https://[64:ff9b::7f00:1]:{port}/hook",
        "https://receiver.example:{port}/hook",  # resolves to 127.0.0.1 (LoopbackDNS)
        "https://evil.example@receiver.example:{port}/hook",
    ],
)
async def test_the_connector_refuses_internal_addresses_without_the_url_check(
    hostile_dns_dispatcher: Dispatcher, listeners: tuple[Listener, Listener], form: str
) -> None:
    """Past check_url (called directly: `_post`), the session's resolver and socket factory still refuse:
    IP literals never reach a resolver, so the socket factory is what stops them."""
    plain, tls = listeners
    webhook = WebhookEntry(url=target(form, plain, tls))
    result = await hostile_dns_dispatcher._post(delivery(), webhook, [new_secret()])
    assert (*ended(result), plain.accepts, tls.accepts) == ("dead", REFUSED, 0, 0)


async def test_the_socket_guard_stops_a_resolver_that_lets_loopback_through(
    listeners: tuple[Listener, Listener],
) -> None:
    """With a resolver that does no filtering at all, the socket factory alone keeps 127.0.0.1 unreached."""
    plain, _ = listeners
    connector = aiohttp.TCPConnector(resolver=LoopbackDNS(), socket_factory=guarded_socket)
    async with aiohttp.ClientSession(connector=connector) as session:
        with pytest.raises(aiohttp.ClientConnectorError) as caught:
            await session.get(f"http://receiver.example:{plain.port}/")
    assert isinstance(caught.value.__cause__, UnsafeDestination)
    assert plain.accepts == 0


async def test_private_endpoints_are_reached_only_when_the_deployment_allows_them(
    codec: Codec, listeners: tuple[Listener, Listener]
) -> None:
    """allow_private_endpoints on (make run, tests): the registry's allow_private reaches 127.0.0.1 over http;
    the setting off: it does not (the matrix above); and a webhook the registry does not mark private never."""
    plain, _ = listeners
    url = f"http://127.0.0.1:{plain.port}/hook"
    async with sending(codec, allow_private_endpoints=True) as service:
        marked = await service._attempt(delivery(), WebhookEntry(url=url, allow_private=True), [new_secret()])
        unmarked = await service._attempt(delivery(), WebhookEntry(url=url), [new_secret()])
    assert (ended(marked), marked.status) == (("delivered", None), 204)
    assert ended(unmarked) == ("dead", REFUSED)
    assert plain.accepts == 1


def test_the_setting_is_off_unless_the_environment_turns_it_on(monkeypatch: pytest.MonkeyPatch) -> None:
    """DispatcherSettings.allow_private_endpoints defaults to false; RCTC_ALLOW_PRIVATE_ENDPOINTS sets it."""
    assert DispatcherSettings().allow_private_endpoints is False
    monkeypatch.setenv("RCTC_ALLOW_PRIVATE_ENDPOINTS", "true")
    assert DispatcherSettings().allow_private_endpoints is True


# -- check_url on its own -----------------------------------------------------------------------------


@pytest.mark.parametrize(
    "url",
    [
        "https://receiver.example/hooks/JO-B",
        "https://Receiver.Example:8443/hooks?x=1#frag",
        "https://xn--bcher-kva.example/hook",  # IDNA already in its ASCII form
        "https://a-b.c1.example:65535/",
        "https://8.8.8.8/hook",
        "https://[2606:4700:4700::1111]/hook",
        "https://[64:ff9b::808:808]/hook",  # NAT64 of a public IPv4
        "https://1.2.3.example/hook",
    ],
)
def test_canonical_public_urls_pass(url: str) -> None:
    """Public destinations written canonically pass the check (any port from 1 to 65535)."""
    check_url(url, allow_private=False)


@pytest.mark.parametrize(
    "url",
    [
        "https://bücher.example/hook",
        "https://receiver.example./hook",
        "https://receiver..example/hook",
        "https://-receiver.example/hook",
        "https://receiver.example:0/hook",
        "https://receiver.example:65536/hook",
        "https://receiver.example:/hook",
        "https://receiver/hook",
        "https://receiver.0x1/hook",
        "https://[2606:4700:4700:0:0:0:0:1111]/hook",
        "https:receiver.example/hook",
        "https:/receiver.example/hook",
    ],
)
def test_non_canonical_public_urls_are_refused(url: str) -> None:
    """Non-ASCII names, trailing dots, odd ports, single labels, numeric last labels, long IPv6: all refused."""
    with pytest.raises(UnsafeDestination):
        check_url(url, allow_private=False)


def test_the_spelling_rules_apply_to_private_endpoints_too() -> None:
    """allow_private lifts the address rules and allows http, not the spelling rules."""
    check_url("http://127.0.0.1:8701/hooks/JO-B", allow_private=True)
    for url in ("http://2130706433:8701/", "http://①②⑦.⓪.⓪.①:8701/", "http://a@127.0.0.1:8701/"):
        with pytest.raises(UnsafeDestination):
            check_url(url, allow_private=True)


# -- is_public over the embedding forms ---------------------------------------------------------------

NOT_PUBLIC_V4 = [
    "0.0.0.0/8",
    "10.0.0.0/8",
    "100.64.0.0/10",
    "127.0.0.0/8",
    "169.254.0.0/16",
    "172.16.0.0/12",
    "192.0.0.0/24",
    "192.0.2.0/24",
    "192.88.99.0/24",
    "192.168.0.0/16",
    "198.18.0.0/15",
    "198.51.100.0/24",
    "203.0.113.0/24",
    "224.0.0.0/4",
    "240.0.0.0/4",
]


def _in(network: str) -> st.SearchStrategy[IPv4Address]:
    net = ipaddress.IPv4Network(network)
    return st.integers(int(net.network_address), int(net.broadcast_address)).map(IPv4Address)


internal_v4 = st.sampled_from(NOT_PUBLIC_V4).flatmap(_in)
any_v4 = st.integers(0, 2**32 - 1).map(IPv4Address)
low_bits = st.integers(0, 2**80 - 1)


def embeddings(v4: IPv4Address, rest: int) -> Iterator[tuple[str, IPv6Address]]:
    """Every IPv6 form that carries `v4`, built from the RFCs' layouts (not from `ipaddress`'s helpers)."""
    n = int(v4)
    yield "mapped", IPv6Address((0xFFFF << 32) | n)
    yield "compatible", IPv6Address(n)
    yield "nat64", IPv6Address((0x0064FF9B << 96) | n)
    yield "nat64-local", IPv6Address((0x0064FF9B0001 << 80) | (rest & (2**48 - 1)) << 32 | n)
    yield "6to4", IPv6Address((0x2002 << 112) | (n << 80) | (rest & (2**80 - 1)))
    yield "teredo-client", IPv6Address((0x20010000 << 96) | (int(IPv4Address("8.8.8.8")) << 64) | n ^ 0xFFFFFFFF)
    yield "teredo-server", IPv6Address((0x20010000 << 96) | (n << 64) | int(IPv4Address("8.8.4.4")) ^ 0xFFFFFFFF)


@given(internal_v4, low_bits)
def test_an_internal_ipv4_embedded_any_way_is_never_public(v4: IPv4Address, rest: int) -> None:
    """Mapped, IPv4-compatible, NAT64 (both prefixes), 6to4 and Teredo (either end) of an internal IPv4."""
    assert not is_public(v4)
    assert [name for name, v6 in embeddings(v4, rest) if is_public(v6)] == []


@given(any_v4, low_bits)
def test_translated_forms_are_judged_by_the_ipv4_inside(v4: IPv4Address, rest: int) -> None:
    """Mapped, NAT64, 6to4 and Teredo forms are exactly as public as their IPv4; the deprecated and local
    ones never are."""
    expected = {
        "mapped": is_public(v4),
        "compatible": False,
        "nat64": is_public(v4),
        "nat64-local": False,
        "6to4": is_public(v4),
        "teredo-client": is_public(v4),
        "teredo-server": is_public(v4),
    }
    assert expected == {name: is_public(v6) for name, v6 in embeddings(v4, rest)}


@pytest.mark.parametrize(
    "address",
    [
        "::",
        "::1",
        "fe80::1",
        "fec0::1",  # site-local
        "fc00::1",
        "fd12:3456::1",
        "ff02::1",
        "ff0e::1",
        "100::1",  # discard
        "2001:db8::1",
        "3fff::1",
        "2001:2::1",  # benchmarking
        "2001:10::1",
        "2001:20::1",
        "5f00::1",
        "4000::1",  # outside 2000::/3
        "fe80::1%eth0",
        "2606:4700:4700::1111%eth0",
    ],
)
def test_special_ipv6_blocks_are_not_public(address: str) -> None:
    """Loopback, unspecified, link- and site-local, unique-local, multicast, documentation, benchmarking,
    discard, ORCHID, SRv6, unallocated and zoned addresses are not destinations."""
    assert not is_public(address)


@pytest.mark.parametrize("address", ["8.8.8.8", "1.1.1.1", "2606:4700:4700::1111", "2a00:1450:4001::1"])
def test_public_addresses_are_public(address: str) -> None:
    """Ordinary global unicast addresses pass."""
    assert is_public(address)
