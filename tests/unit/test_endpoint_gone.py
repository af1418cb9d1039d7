"""A 410 Gone disables the endpoint on this replica before the request gives up its concurrency slot, and the
record that tells the other replicas is written after, so the requests queued for the slot do not wait on it.

Drives `Dispatcher._attempt` against a receiver on 127.0.0.1, with a producer that holds the record until the
test lets it go: a broker that is slow to take a write, which a real one cannot be made to be on demand.
"""

from __future__ import annotations

import asyncio
from datetime import UTC, datetime

from aiohttp import web
from aiohttp.test_utils import TestServer

from services.common.codec import Codec
from services.common.records import DeliverWebhook, EndpointChanged
from services.common.registry import WebhookEntry
from services.common.topics import DELIVERIES_ENDPOINTS
from services.dispatcher.service import Dispatcher
from services.dispatcher.settings import DispatcherSettings
from tests.support.world import new_secret


class SlowBroker:
    """A producer whose writes are taken only once `release` is set."""

    def __init__(self, codec: Codec) -> None:
        self.codec = codec
        self.writing = asyncio.Event()
        self.release = asyncio.Event()
        self.written: list[EndpointChanged] = []

    async def send_and_wait(self, topic: str, value: bytes, key: bytes) -> None:
        assert topic == DELIVERIES_ENDPOINTS
        self.writing.set()
        await self.release.wait()
        self.written.append(self.codec.decode(value, EndpointChanged))


def delivery(n: int) -> DeliverWebhook:
    return DeliverWebhook(
        webhook_id=f"msg_{n}",
        alert_id=f"a-{n}",
        agency="JO-B",
        event_type="alert.created",
        urgency="Immediate",
        payload=b"{}",
        requested_at=datetime.now(UTC),
    )


async def test_requests_queued_behind_a_410_find_the_endpoint_disabled_while_the_record_is_written(
    codec: Codec,
) -> None:
    """One slot: the second request, queued behind the first (answered 410), ends endpoint_disabled without
    reaching the receiver while the first's record of the change still waits on the broker; the record follows."""
    hits = 0

    async def gone(_: web.Request) -> web.Response:
        nonlocal hits
        hits += 1
        return web.Response(status=410)

    app = web.Application()
    app.router.add_post("/hook", gone)
    dispatcher = Dispatcher(DispatcherSettings(per_endpoint_concurrency=1, allow_private_endpoints=True), codec)
    broker = SlowBroker(codec)
    dispatcher._producer = broker  # type: ignore[assignment]
    dispatcher._open_sessions()
    async with TestServer(app, host="127.0.0.1") as server:
        webhook = WebhookEntry(url=str(server.make_url("/hook")), allow_private=True)
        secrets = [new_secret()]
        try:
            first = asyncio.create_task(dispatcher._attempt(delivery(1), webhook, secrets))
            second = asyncio.create_task(dispatcher._attempt(delivery(2), webhook, secrets))
            await asyncio.wait_for(broker.writing.wait(), 10)

            queued = await asyncio.wait_for(second, 5)
            still_writing = not first.done()
            broker.release.set()
            answered = await asyncio.wait_for(first, 10)
        finally:
            broker.release.set()
            for session in (dispatcher._public, dispatcher._private):
                if session is not None:
                    await session.close()

    assert (queued.failure, still_writing, answered.status, hits) == ("endpoint_disabled", True, 410, 1)
    assert [(c.agency, c.state) for c in broker.written] == [("JO-B", "disabled")]
    assert dispatcher.endpoints.state("JO-B", webhook.url) == "disabled"
