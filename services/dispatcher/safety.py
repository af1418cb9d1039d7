"""Where a webhook may be sent: https only and public addresses only, unless the registry allows the
endpoint otherwise (the local demo does).

A hostname is resolved once per attempt by `SafeResolver`, which drops private, loopback, link-local and
other non-public addresses; aiohttp then connects to exactly the addresses the resolver returned, so a
DNS answer that changes between the check and the connection (rebinding) cannot reach an internal host.
IP literals never reach a resolver, so `check_url` refuses non-public ones before any request.
"""

from __future__ import annotations

import ipaddress
import socket
from urllib.parse import urlsplit

from aiohttp.abc import AbstractResolver, ResolveResult
from aiohttp.resolver import ThreadedResolver


class UnsafeDestination(OSError):
    """The webhook URL or the addresses it resolves to are not allowed.

    An OSError, so that raised inside aiohttp's resolver it surfaces as a connection error like any other.
    """


def is_public(address: str) -> bool:
    ip = ipaddress.ip_address(address)
    if isinstance(ip, ipaddress.IPv6Address) and ip.ipv4_mapped is not None:
        ip = ip.ipv4_mapped
    return ip.is_global and not ip.is_multicast


def check_url(url: str, allow_private: bool) -> None:
    parts = urlsplit(url)
    if parts.scheme != "https" and not allow_private:
        raise UnsafeDestination(f"{url} is not https")
    if not parts.hostname:
        raise UnsafeDestination(f"{url} has no host")
    if not allow_private:
        try:
            literal = ipaddress.ip_address(parts.hostname)
        except ValueError:
            return  # a name: SafeResolver checks what it resolves to
        if not is_public(str(literal)):
            raise UnsafeDestination(f"{parts.hostname} is not a public address")


class SafeResolver(AbstractResolver):
    """Resolves through the system resolver and keeps only public addresses."""

    def __init__(self) -> None:
        self._inner = ThreadedResolver()

    async def resolve(
        self, host: str, port: int = 0, family: socket.AddressFamily = socket.AF_INET
    ) -> list[ResolveResult]:
        results = await self._inner.resolve(host, port, family)
        public = [r for r in results if is_public(r["host"])]
        if not public:
            raise UnsafeDestination(f"{host} resolves only to non-public addresses")
        return public

    async def close(self) -> None:
        await self._inner.close()

    def __repr__(self) -> str:  # pragma: no cover - diagnostics only
        return "SafeResolver()"
