"""Exactly once into agency topics, across a router killed with SIGKILL in the middle of a stream."""

from __future__ import annotations

import asyncio
import signal
import uuid
from collections import Counter
from collections.abc import Awaitable, Callable
from pathlib import Path

from services.common.codec import Codec
from services.common.kafka import Outbox, producer
from services.common.records import AlertEnriched, AlertRouted, AlertShared, utcnow
from services.common.registry.publish import publish_registry
from services.common.settings import KafkaSettings
from services.common.topics import ALERTS_ENRICHED, ALERTS_ROUTED, agency_topic
from tests.support.world import Cast, agreement, eventually, read_topic, registry, start_service
from tests.unit.samples import sample_alert

ROOT = Path(__file__).resolve().parents[2]
TOTAL = 300


async def start_router(kafka: KafkaSettings) -> asyncio.subprocess.Process:
    return await start_service("router", kafka, RCTC_MAX_BATCH="20")


async def test_sigkill_mid_stream_leaves_each_copy_exactly_once(kafka: KafkaSettings, codec: Codec) -> None:
    """Kill the router while it routes a stream, restart it: every entitled topic holds each alert once."""
    cast = Cast()
    origin, b, c = cast.agency("IQ-A", "IQ"), cast.agency("JO-B", "JO"), cast.agency("KW-C", "KW")
    outsider = cast.agency("SA-D", "SA")
    doc = registry([origin, b, c, outsider], [agreement(f"K-{cast.suffix}", [origin.code, b.code, c.code])])
    await publish_registry(kafka, codec, doc, source="test", replication_factor=1)
    ids = [f"crash-{uuid.uuid4()}" for _ in range(TOTAL)]

    async def feed(chunk: list[str]) -> None:
        p = producer(kafka, "feed")
        await p.start()
        try:
            outbox = Outbox(p, codec)
            for alert_id in chunk:
                now = utcnow()
                record = AlertEnriched(
                    alert_id=alert_id,
                    origin=origin.code,
                    submitted_at=now,
                    enriched_at=now,
                    priority=2,
                    alert=sample_alert(),
                )
                await outbox.send(ALERTS_ENRICHED, alert_id.encode(), record, "00-" + "a" * 32 + "-" + "b" * 16 + "-01")
            await outbox.flush()
        finally:
            await p.stop()

    async def routed_count() -> int:
        mine = set(ids)
        return sum(1 for _, r in await read_topic(kafka, codec, ALERTS_ROUTED, AlertRouted) if r.alert_id in mine)

    # Scenario: the router works through the first half; it is killed mid-stream while the rest arrives.
    router = await start_router(kafka)
    try:
        await feed(ids[: TOTAL // 2])
        await eventually(lambda: at_least(routed_count, 40), within_s=60)
        router.send_signal(signal.SIGKILL)
        await router.wait()
        await feed(ids[TOTAL // 2 :])
        # A new router takes over the same transactional ids, fencing whatever the dead one left open.
        router = await start_router(kafka)
        await eventually(lambda: at_least(routed_count, TOTAL), within_s=90)
    finally:
        if router.returncode is None:
            router.send_signal(signal.SIGTERM)
            await router.wait()

    for code in (b.code, c.code):
        copies = Counter(r.alert_id for _, r in await read_topic(kafka, codec, agency_topic(code), AlertShared))
        assert set(copies) == set(ids), f"{code} misses {len(set(ids) - set(copies))} alerts"
        assert max(copies.values()) == 1, f"{code} holds duplicates: {[k for k, n in copies.items() if n > 1][:3]}"
    assert await read_topic(kafka, codec, agency_topic(outsider.code), AlertShared) == []
    decisions = Counter(
        r.alert_id for _, r in await read_topic(kafka, codec, ALERTS_ROUTED, AlertRouted) if r.alert_id in set(ids)
    )
    assert set(decisions.values()) == {1}


async def at_least(count: Callable[[], Awaitable[int]], n: int) -> bool:
    return await count() >= n
