"""Exactly once into agency topics, across a router killed with SIGKILL in the middle of a stream."""

from __future__ import annotations

import asyncio
import json
import signal
import uuid
from collections import Counter
from collections.abc import Awaitable, Callable
from pathlib import Path

from services.common.codec import Codec
from services.common.kafka import Outbox, produce_all, producer
from services.common.records import AlertEnriched, AlertShared, utcnow
from services.common.registry.publish import publish_registry
from services.common.settings import KafkaSettings
from services.common.topics import ALERTS_ENRICHED, agency_topic
from tests.support.world import Cast, agreement, decisions, eventually, read_topic, registry, start_service
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

    async def routed() -> int:
        return await routed_count(kafka, codec, ids)

    # Scenario: the router works through the first half; it is killed mid-stream while the rest arrives.
    router = await start_router(kafka)
    try:
        await feed(ids[: TOTAL // 2])
        await eventually(lambda: at_least(routed, 40), within_s=60)
        router.send_signal(signal.SIGKILL)
        await router.wait()
        await feed(ids[TOTAL // 2 :])
        # A new router takes over the same transactional ids, fencing whatever the dead one left open.
        router = await start_router(kafka)
        await eventually(lambda: at_least(routed, TOTAL), within_s=90)
    finally:
        if router.returncode is None:
            router.send_signal(signal.SIGTERM)
            await router.wait()

    for code in (b.code, c.code):
        copies = Counter(r.alert_id for _, r in await read_topic(kafka, codec, agency_topic(code), AlertShared))
        assert set(copies) == set(ids), f"{code} misses {len(set(ids) - set(copies))} alerts"
        assert max(copies.values()) == 1, f"{code} holds duplicates: {[k for k, n in copies.items() if n > 1][:3]}"
    assert await read_topic(kafka, codec, agency_topic(outsider.code), AlertShared) == []
    assert set((await decisions(kafka, codec, set(ids))).values()) == {1}


async def routed_count(kafka: KafkaSettings, codec: Codec, ids: list[str]) -> int:
    return sum((await decisions(kafka, codec, set(ids))).values())


async def at_least(count: Callable[[], Awaitable[int]], n: int) -> bool:
    return await count() >= n


async def test_a_backlog_is_routed_once_from_the_claimed_position(
    kafka: KafkaSettings, codec: Codec, tmp_path: Path
) -> None:
    """A router starting on a backlog routes every alert exactly once and takes none for a duplicate.

    aiokafka hands out records of a new assignment while the router's claim (fence, read the routed log,
    seek) still runs; routing those would handle records twice and log real alerts as duplicates."""
    cast = Cast()
    origin, b = cast.agency("IQ-A", "IQ"), cast.agency("JO-B", "JO")
    doc = registry([origin, b], [agreement(f"K-{cast.suffix}", [origin.code, b.code])])
    await publish_registry(kafka, codec, doc, source="test", replication_factor=1)
    ids = [f"backlog-{uuid.uuid4()}" for _ in range(TOTAL)]
    now = utcnow()
    records = [
        AlertEnriched(
            alert_id=i, origin=origin.code, submitted_at=now, enriched_at=now, priority=2, alert=sample_alert()
        )
        for i in ids
    ]
    await produce_all(kafka, "feed", ALERTS_ENRICHED, [(r.alert_id.encode(), codec.encode(r)) for r in records])

    log = tmp_path / "router.log"
    router = await start_service("router", kafka, log_to=log, RCTC_MAX_BATCH="50")
    try:
        await eventually(lambda: at_least(lambda: routed_count(kafka, codec, ids), TOTAL), within_s=90)
    finally:
        router.send_signal(signal.SIGTERM)
        await router.wait()

    lines = [json.loads(line) for line in log.read_text().splitlines() if line.startswith("{")]
    outcomes = Counter((line["event"], line["alert_id"]) for line in lines if line.get("alert_id") in set(ids))
    assert not [k for k in outcomes if k[0] != "alert.routed"], "an alert of the backlog was not simply routed"
    assert set(outcomes.values()) == {1} and len(outcomes) == TOTAL
