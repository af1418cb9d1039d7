"""At least once, across a dispatcher killed with SIGKILL mid-stream: no delivery is lost."""

from __future__ import annotations

import asyncio
import signal
import uuid
from collections.abc import AsyncIterator

import pytest
from aiohttp import web

from services.common.codec import Codec
from services.common.kafka import producer
from services.common.ops import bound_port
from services.common.records import utcnow
from services.common.registry.publish import publish_registry
from services.common.settings import KafkaSettings
from services.common.topics import DELIVERIES_WEBHOOK
from services.demo.receivers import Receivers
from services.router.payload import recipient_copy, webhook_request
from services.router.policy import Verdict
from tests.support.world import Cast, agreement, eventually, registry, start_service
from tests.unit.samples import enriched, sample_alert

TOTAL = 150


@pytest.fixture
async def slow_receiver() -> AsyncIterator[tuple[str, Receivers]]:
    """A verifying receiver that takes 20 ms per request, so the kill lands with deliveries in flight."""
    receivers = Receivers()

    async def handle(request: web.Request) -> web.StreamResponse:
        await asyncio.sleep(0.02)
        return await receivers.receive(request)

    app = web.Application()
    app.router.add_post("/hooks/{agency}", handle)
    runner = web.AppRunner(app, access_log=None, shutdown_timeout=0.5)
    await runner.setup()
    await web.TCPSite(runner, "127.0.0.1", 0).start()
    try:
        yield f"http://127.0.0.1:{bound_port(runner)}", receivers
    finally:
        await runner.cleanup()


async def start_dispatcher(kafka: KafkaSettings) -> asyncio.subprocess.Process:
    return await start_service("dispatcher", kafka, RCTC_CONCURRENCY="16", RCTC_ALLOW_PRIVATE_ENDPOINTS="true")


async def test_sigkill_mid_stream_loses_no_delivery(
    kafka: KafkaSettings, codec: Codec, slow_receiver: tuple[str, Receivers]
) -> None:
    """Kill the dispatcher while it delivers, restart it: every webhook arrives (duplicates share a webhook-id)."""
    url, receivers = slow_receiver
    cast = Cast()
    origin, recipient = cast.agency("IQ-A", "IQ"), cast.agency("JO-B", "JO", webhook_url=url)
    receivers.register(recipient.code, cast.secrets[recipient.code])
    doc = registry([origin, recipient], [agreement(f"D-{cast.suffix}", [origin.code, recipient.code])])
    await publish_registry(kafka, codec, doc, source="test", replication_factor=1)

    ids = [f"disp-{uuid.uuid4()}" for _ in range(TOTAL)]
    p = producer(kafka, "feed")
    await p.start()
    try:
        now = utcnow()
        verdict = Verdict(recipient.code, True, "shared", "test", f"D-{cast.suffix}")
        for alert_id in ids:
            shared = recipient_copy(enriched(sample_alert(), origin=origin.code, alert_id=alert_id), verdict, now)
            request = webhook_request(shared, "Immediate", now)
            await p.send(DELIVERIES_WEBHOOK, codec.encode(request), key=f"{alert_id}:{recipient.code}".encode())
        await p.flush()
    finally:
        await p.stop()

    def delivered() -> set[str]:
        return {payload["data"]["alert_id"] for payload in receivers.received[recipient.code].values()}

    # Scenario: the dispatcher gets part way, is killed without warning, and a new one takes over.
    dispatcher = await start_dispatcher(kafka)
    try:
        await eventually(lambda: len(delivered() & set(ids)) >= 30, within_s=60)
        dispatcher.send_signal(signal.SIGKILL)
        await dispatcher.wait()
        assert len(delivered() & set(ids)) < TOTAL, "the kill came too late to prove anything"
        dispatcher = await start_dispatcher(kafka)
        await eventually(lambda: set(ids) <= delivered(), within_s=90)
    finally:
        if dispatcher.returncode is None:
            dispatcher.send_signal(signal.SIGTERM)
            await dispatcher.wait()
    assert receivers.rejected == 0
