"""Where a webhook may be sent: https to public addresses only, by construction.

Three checks, each on what will really be used, so that no spelling of an internal address gets through:

1. `check_url`, before a request: the URL must be written the one way every parser reads alike, and the
   host it names must be the host the URL library (yarl, which aiohttp uses) will connect to.

   | refused                                        | why                                                 |
   |------------------------------------------------|-----------------------------------------------------|
   | anything but printable ASCII; spaces, tabs,    | yarl normalises `①②⑦.⓪.⓪.①`, fullwidth digits and |
   | newlines, backslashes, `%` in the authority    | ideographic dots to 127.0.0.1, drops tabs/newlines; |
   |                                                | IDNA names are accepted only already in `xn--` form |
   | a scheme other than `https` (`http` only for   | exactly as written: no `HTTPS://`                   |
   | an endpoint allowed to be private)             |                                                     |
   | userinfo (`user@`)                             | `https://evil.example@127.0.0.1/` reads as evil     |
   | an IPv4 literal that is not a canonical dotted | `2130706433`, `0177.0.0.1`, `127.1`, `0x7f.1` are   |
   | quad; a name whose last label does not start   | 127.0.0.1 to inet_aton and to WHATWG parsers; a     |
   | with a letter; single-label names; a trailing  | label starting with a letter is numeric to none     |
   | dot; an empty label                            |                                                     |
   | an IPv6 literal with a zone or not in its      | `[0:0:0:0:0:ffff:7f00:1]` is `[::ffff:7f00:1]`      |
   | canonical compressed form                      |                                                     |
   | a port of 0, with leading zeros, or empty      | `:0443` and `:` are read as 443 by yarl             |
   | yarl reading host, port or scheme otherwise    | the last word: what we checked is what is used      |
   | a non-public IP literal                        | `is_public`                                         |

   Any port from 1 to 65535 is allowed: the address is public, so a port reaches nothing internal, and
   the registry (which only the operator writes) is where a deployment would narrow ports if it wanted.

2. `SafeResolver`: a name is resolved once per connection and only its public addresses are kept;
   aiohttp connects to exactly those, so a DNS answer that changes after the check (rebinding) cannot
   reach an internal host.

3. `guarded_socket`, the connector's socket factory: called with the very address aiohttp is about to
   connect to, after every resolver and cache, and for IP literals too (which never reach a resolver).
   It refuses a non-public address before the socket exists. This is the check nothing can slip past.

`allow_private` (the registry's, honoured only when the dispatcher's own `allow_private_endpoints`
setting is on) lifts the address rules and allows plain http; the spelling rules always apply.
"""

from __future__ import annotations

import ipaddress
import re
import socket
from ipaddress import IPv4Address, IPv4Network, IPv6Address, IPv6Network

import yarl
from aiohappyeyeballs import AddrInfoType
from aiohttp.abc import AbstractResolver, ResolveResult
from aiohttp.resolver import ThreadedResolver


class UnsafeDestination(OSError):
    """The webhook URL or the addresses it resolves to are not allowed.

    An OSError, so that raised inside aiohttp's resolver or socket factory it surfaces as a connection
    error like any other (the dispatcher then finds it in the exception's causes).
    """


# IPv4 blocks that are never a webhook receiver (IANA special-purpose registry, RFC 6890 and successors).
# Checked in addition to `ipaddress`'s own is_global, whose table varies between Python versions and
# counts some of these (192.0.0.9, 192.88.99.0/24) as global.
_V4_NOT_PUBLIC = tuple(
    IPv4Network(n)
    for n in (
        "0.0.0.0/8",  # "this network"; 0.0.0.0 reaches the local host on Linux
        "10.0.0.0/8",  # private
        "100.64.0.0/10",  # shared address space (carrier-grade NAT)
        "127.0.0.0/8",  # loopback
        "169.254.0.0/16",  # link-local, cloud metadata services
        "172.16.0.0/12",  # private
        "192.0.0.0/24",  # IETF protocol assignments
        "192.0.2.0/24",  # documentation (TEST-NET-1)
        "192.88.99.0/24",  # deprecated 6to4 relay anycast
        "192.168.0.0/16",  # private
        "198.18.0.0/15",  # benchmarking
        "198.51.100.0/24",  # documentation (TEST-NET-2)
        "203.0.113.0/24",  # documentation (TEST-NET-3)
        "224.0.0.0/4",  # multicast
        "240.0.0.0/4",  # reserved, and the broadcast address
    )
)

# Only 2000::/3 is allocated as global unicast; inside it, these are not destinations.
_V6_GLOBAL_UNICAST = IPv6Network("2000::/3")
_V6_NOT_PUBLIC = tuple(
    IPv6Network(n)
    for n in (
        "2001:2::/48",  # benchmarking
        "2001:10::/28",  # ORCHID
        "2001:20::/28",  # ORCHIDv2
        "2001:db8::/32",  # documentation
        "3fff::/20",  # documentation (RFC 9637)
    )
)
# IPv6 forms that carry an IPv4 address, which is where a packet to them ends up.
_V4_MAPPED = IPv6Network("::ffff:0:0/96")
_V4_COMPATIBLE = IPv6Network("::/96")  # deprecated (RFC 4291); includes :: and ::1
_NAT64 = IPv6Network("64:ff9b::/96")  # well-known NAT64 prefix: the IPv4 is the low 32 bits
_NAT64_LOCAL = IPv6Network("64:ff9b:1::/48")  # local-use NAT64 (RFC 8215): the operator picks the layout
_SIX_TO_FOUR = IPv6Network("2002::/16")  # the IPv4 is bits 16-47
_TEREDO = IPv6Network("2001::/32")  # server IPv4, and the client IPv4 XORed with all ones


def _public_v4(ip: IPv4Address) -> bool:
    return ip.is_global and not any(ip in net for net in _V4_NOT_PUBLIC)


def _public_v6(ip: IPv6Address) -> bool:
    if ip.scope_id is not None:
        return False  # a zone only makes sense for link-local and other local scopes
    if ip in _V4_MAPPED or ip in _NAT64:
        return _public_v4(IPv4Address(int(ip) & 0xFFFFFFFF))
    if ip in _V4_COMPATIBLE or ip in _NAT64_LOCAL:
        return False  # no public host is reached through either
    if ip in _SIX_TO_FOUR:
        assert ip.sixtofour is not None
        return _public_v4(ip.sixtofour)
    if ip in _TEREDO:
        assert ip.teredo is not None
        server, client = ip.teredo  # ipaddress has already undone the client's XOR
        return _public_v4(server) and _public_v4(client)
    return ip in _V6_GLOBAL_UNICAST and ip.is_global and not any(ip in net for net in _V6_NOT_PUBLIC)


def is_public(address: str | IPv4Address | IPv6Address) -> bool:
    """Whether a webhook may be sent to this address: a public unicast one, judged by the IPv4 inside
    for the IPv6 forms that embed one (mapped, NAT64, 6to4, Teredo).

    >>> is_public("8.8.8.8"), is_public("64:ff9b::7f00:1"), is_public("2002:a00:1::")
    (True, False, False)
    """
    ip = ipaddress.ip_address(address) if isinstance(address, str) else address
    if isinstance(ip, IPv4Address):
        return _public_v4(ip)
    return _public_v6(ip)


# A DNS name as the URL must spell it: letters, digits and hyphens, at least two labels, the last one
# starting with a letter (so that no parser can read the name as a number), no trailing dot.
_LABEL = r"(?!-)[a-z0-9-]{1,63}(?<!-)"
_NAME = re.compile(rf"(?:{_LABEL}\.)+(?=[a-z]){_LABEL}")
_PORT = re.compile(r"[1-9][0-9]{0,4}")
_DEFAULT_PORTS = {"https": 443, "http": 80}


def check_url(url: str, allow_private: bool) -> None:
    """Refuse a webhook URL that is not spelled canonically, or (unless allow_private) names a host that
    is not public. Raises UnsafeDestination with the reason.

    >>> check_url("https://receiver.example/hooks/1", allow_private=False)
    >>> check_url("https://①②⑦.⓪.⓪.①/", allow_private=False)
    Traceback (most recent call last):
    ...
    services.dispatcher.safety.UnsafeDestination: the URL must be printable ASCII without spaces
    """
    if not url.isascii() or not url.isprintable() or " " in url or "\\" in url:
        raise UnsafeDestination("the URL must be printable ASCII without spaces")
    scheme, sep, rest = url.partition("://")
    if not sep or scheme not in (("https", "http") if allow_private else ("https",)):
        raise UnsafeDestination("the URL must start with https://")
    authority = re.split(r"[/?#]", rest, maxsplit=1)[0]
    if "@" in authority:
        raise UnsafeDestination("the URL must not carry userinfo")
    if "%" in authority:
        raise UnsafeDestination("the host must not be percent-encoded")
    host, port = _split_authority(authority.lower())
    literal = _literal(host)
    if literal is None and (len(host) > 253 or not _NAME.fullmatch(host)):
        raise UnsafeDestination("the host is neither a canonical IP address nor a DNS name")
    # The last word goes to the URL library aiohttp uses: it must read exactly what we checked.
    try:
        parsed = yarl.URL(url)
    except ValueError as exc:
        raise UnsafeDestination("the URL does not parse") from exc
    expected = (scheme, host, port or _DEFAULT_PORTS[scheme], None, None)
    if (parsed.scheme, parsed.raw_host, parsed.port, parsed.raw_user, parsed.raw_password) != expected:
        raise UnsafeDestination("the URL library reads a different destination")
    if literal is not None and not allow_private and not is_public(literal):
        raise UnsafeDestination("the host is not a public address")


def _split_authority(authority: str) -> tuple[str, int | None]:
    """Host (IPv6 without brackets) and port of an authority that has no userinfo."""
    if authority.startswith("["):
        host, bracket, after = authority[1:].partition("]")
        if not bracket or not host:
            raise UnsafeDestination("brackets in the host are not a well-formed IPv6 literal")
        if after and not after.startswith(":"):
            raise UnsafeDestination("brackets in the host are not a well-formed IPv6 literal")
        port_text = after[1:] if after else None
        if _literal(host) is None or ":" not in host:
            raise UnsafeDestination("brackets in the host are not a canonical IPv6 literal")
    else:
        host, colon, port_text_ = authority.partition(":")
        port_text = port_text_ if colon else None
        if "[" in host or "]" in host:
            raise UnsafeDestination("brackets in the host are not a well-formed IPv6 literal")
    if port_text is None:
        return host, None
    if not _PORT.fullmatch(port_text) or int(port_text) > 65535:
        raise UnsafeDestination("the port must be a number from 1 to 65535 without leading zeros")
    return host, int(port_text)


def _literal(host: str) -> IPv4Address | IPv6Address | None:
    """The address, if the host is an IP literal in its one canonical spelling; None otherwise."""
    try:
        ip = ipaddress.ip_address(host)
    except ValueError:
        return None
    if str(ip) != host:
        raise UnsafeDestination("an IP address must be written in its canonical form")
    return ip


# How long what the dispatcher sent may go unacknowledged before the kernel drops the connection. On a timeout
# aiohttp closes the transport, and asyncio keeps the socket open until its write buffer drains: a receiver
# that never reads and advertises a zero window held each such descriptor for good (red team, 8 MB bodies on
# loopback). Twice the response timeout: the answer is waited for no longer than that anyway.
USER_TIMEOUT_MS = 20_000


def open_socket(addr_info: AddrInfoType) -> socket.socket:
    """The socket for a delivery's connection (the private endpoints' connector's factory; `guarded_socket`'s)."""
    family, type_, proto, _, _ = addr_info
    sock = socket.socket(family=family, type=type_, proto=proto)
    if hasattr(socket, "TCP_USER_TIMEOUT"):  # Linux, where the services run
        sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_USER_TIMEOUT, USER_TIMEOUT_MS)
    return sock


def guarded_socket(addr_info: AddrInfoType) -> socket.socket:
    """The connector's socket factory: the socket for an address aiohttp is about to connect to, if public.

    aiohappyeyeballs calls it with each address right before connecting, whether the address came from
    the resolver, its cache or an IP literal in the URL.
    """
    sockaddr = addr_info[4]
    if not is_public(str(sockaddr[0])):
        raise UnsafeDestination("the destination address is not public")
    return open_socket(addr_info)


class SafeResolver(AbstractResolver):
    """Resolves through the system resolver (or `inner`: tests play a hostile DNS) and keeps only public
    addresses."""

    def __init__(self, inner: AbstractResolver | None = None) -> None:
        self._inner = inner or ThreadedResolver()

    async def resolve(
        self, host: str, port: int = 0, family: socket.AddressFamily = socket.AF_INET
    ) -> list[ResolveResult]:
        results = await self._inner.resolve(host, port, family)
        public = [r for r in results if is_public(r["host"])]
        if not public:
            raise UnsafeDestination("the name resolves only to non-public addresses")
        return public

    async def close(self) -> None:
        await self._inner.close()

    def __repr__(self) -> str:  # pragma: no cover - diagnostics only
        return "SafeResolver()"
