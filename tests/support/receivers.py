"""For tests of what webhook receivers can do to the dispatcher: a hostile DNS (every name is 127.0.0.1, so a
test's receivers can have real names) and a delivery to make."""

from __future__ import annotations

import socket
from datetime import UTC, datetime

from aiohttp.abc import AbstractResolver, ResolveResult

from services.common.records import DeliverWebhook


class LoopbackDNS(AbstractResolver):
    """A hostile DNS: every name resolves to 127.0.0.1."""

    async def resolve(
        self, host: str, port: int = 0, family: socket.AddressFamily = socket.AF_INET
    ) -> list[ResolveResult]:
        return [{"hostname": host, "host": "127.0.0.1", "port": port, "family": socket.AF_INET, "proto": 0, "flags": 0}]

    async def close(self) -> None:
        return None


def delivery(n: int, agency: str = "JO-B") -> DeliverWebhook:
    """The n-th request to deliver an (empty) alert to `agency`'s webhook."""
    return DeliverWebhook(
        webhook_id=f"msg_{n}",
        alert_id=f"a-{n}",
        agency=agency,
        event_type="alert.shared",
        urgency="Immediate",
        payload=b"{}",
        requested_at=datetime.now(UTC),
    )
