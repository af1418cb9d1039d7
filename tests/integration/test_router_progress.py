"""Where a restarted router resumes: after its last decision in the routed log, or after the offsets that a
transaction ending without a decision committed; and its group's offsets still follow for lag monitoring.

The consumed offsets are left out of routing transactions whose last record has a decision (that decision
carries the offset), so a router killed between two offset commits must resume from the log, not from
the group's offset, however old its last decision is.
"""

from __future__ import annotations

import asyncio
import signal
import uuid
from collections import Counter

from aiokafka import AIOKafkaConsumer, TopicPartition

from services.common.codec import Codec
from services.common.errors import CodecError
from services.common.kafka import connection, group_id, partitions_of, produce_all, read_to_end
from services.common.records import AlertEnriched, AlertRejected, AlertRouted, AlertShared, Quarantined, utcnow
from services.common.registry.publish import publish_registry
from services.common.settings import KafkaSettings
from services.common.topics import ALERTS_ENRICHED, ALERTS_REJECTED, ALERTS_ROUTED, RECORDS_QUARANTINE, agency_topic
from tests.support.world import (
    Cast,
    agreement,
    decisions,
    end_offsets,
    eventually,
    read_topic,
    registry,
    start_service,
)
from tests.unit.samples import sample_alert


def enriched(alert_id: str, origin: str) -> AlertEnriched:
    now = utcnow()
    return AlertEnriched(
        alert_id=alert_id, origin=origin, submitted_at=now, enriched_at=now, priority=2, alert=sample_alert()
    )


async def committed(kafka: KafkaSettings) -> dict[TopicPartition, int | None]:
    """The router group's committed offsets on alerts.enriched."""
    checker = AIOKafkaConsumer(**connection(kafka), group_id=group_id(kafka, "router"))
    await checker.start()
    try:
        return {tp: await checker.committed(tp) for tp in await partitions_of(checker, [ALERTS_ENRICHED])}
    finally:
        await checker.stop()


async def kill(process: asyncio.subprocess.Process) -> None:
    if process.returncode is None:
        process.send_signal(signal.SIGKILL)
        await process.wait()


async def test_a_router_killed_between_offset_commits_resumes_after_its_last_decision(
    kafka: KafkaSettings, codec: Codec
) -> None:
    """No offset commit at all (an hour apart), and the decisions older than the dedup window by the restart:
    the restarted router still routes nothing twice, and routes what came after."""
    cast = Cast()
    origin, b = cast.agency("IQ-A", "IQ"), cast.agency("JO-B", "JO")
    doc = registry([origin, b], [agreement(f"K-{cast.suffix}", [origin.code, b.code])])
    await publish_registry(kafka, codec, doc, source="test", replication_factor=1)
    first = [f"progress-{uuid.uuid4()}" for _ in range(40)]
    later = [f"progress-{uuid.uuid4()}" for _ in range(10)]
    env = {"RCTC_MAX_BATCH": "5", "RCTC_OFFSET_COMMIT_INTERVAL_S": "3600", "RCTC_DEDUP_WINDOW_HOURS": "0.0003"}

    router = await start_service("router", kafka, **env)
    try:
        await produce_all(
            kafka, "feed", ALERTS_ENRICHED, [(i.encode(), codec.encode(enriched(i, origin.code))) for i in first]
        )
        await eventually(lambda: _all_routed(kafka, codec, set(first)), within_s=60)
        # The routing transactions carried no offsets: on every partition these alerts went to, the group's
        # committed offset is short of where routing is.
        ends, offsets = await end_offsets(kafka, ALERTS_ENRICHED), await committed(kafka)
        mine = await partitions_holding(kafka, codec, set(first))
        assert mine and all((offsets[tp] or 0) < ends[tp] for tp in ends if tp.partition in mine)
        await kill(router)
        await asyncio.sleep(1.5)  # past the dedup window (about 1 s): the decisions are now out of it

        router = await start_service("router", kafka, **env)
        await produce_all(
            kafka, "feed", ALERTS_ENRICHED, [(i.encode(), codec.encode(enriched(i, origin.code))) for i in later]
        )
        await eventually(lambda: _all_routed(kafka, codec, set(later)), within_s=60)
        await asyncio.sleep(1)  # anything routed twice would have been by now: it comes before `later`
    finally:
        await kill(router)

    everything = set(first) | set(later)
    assert set((await decisions(kafka, codec, everything)).values()) == {1}
    copies = Counter(r.alert_id for _, r in await read_topic(kafka, codec, agency_topic(b.code), AlertShared))
    assert {k: v for k, v in copies.items() if k in everything} == dict.fromkeys(everything, 1)


async def _all_routed(kafka: KafkaSettings, codec: Codec, ids: set[str]) -> bool:
    return set(await decisions(kafka, codec, ids)) == ids


async def test_a_batch_ending_without_a_decision_commits_its_offsets_with_it(
    kafka: KafkaSettings, codec: Codec
) -> None:
    """An unreadable record rejected at the end of a batch leaves no decision to resume after: its offset
    must commit in that transaction, or a restart would reject it a second time. The group's offsets then
    catch up with routing on their own interval."""
    cast = Cast()
    origin, b = cast.agency("IQ-A", "IQ"), cast.agency("JO-B", "JO")
    doc = registry([origin, b], [agreement(f"K-{cast.suffix}", [origin.code, b.code])])
    await publish_registry(kafka, codec, doc, source="test", replication_factor=1)
    key = f"poison-{uuid.uuid4()}"
    ids = [f"{key}-{n}" for n in range(5)]
    # One key for all, so one partition, the unreadable record last on it.
    records = [(key.encode(), codec.encode(enriched(i, origin.code))) for i in ids] + [(key.encode(), b"\x00junk")]

    async def rejections() -> int:
        return sum(1 for _, r in await read_topic(kafka, codec, ALERTS_REJECTED, AlertRejected) if r.alert_id == key)

    router = await start_service("router", kafka, RCTC_OFFSET_COMMIT_INTERVAL_S="3600")
    try:
        await produce_all(kafka, "feed", ALERTS_ENRICHED, records)
        await eventually(rejections, within_s=60)
        await kill(router)

        # Restarted, with offsets committed every half second: after a sentinel on the same partition is
        # routed, the junk has been read again if it was going to be, and the group's offsets reach the end.
        router = await start_service("router", kafka, RCTC_OFFSET_COMMIT_INTERVAL_S="0.5")
        sentinel = f"{key}-sentinel"
        last = [(key.encode(), codec.encode(enriched(sentinel, origin.code)))]
        await produce_all(kafka, "feed", ALERTS_ENRICHED, last)
        await eventually(lambda: _all_routed(kafka, codec, {sentinel}), within_s=60)
        ends = await end_offsets(kafka, ALERTS_ENRICHED)
        (partition,) = await partitions_holding(kafka, codec, {sentinel})
        tp = TopicPartition(ALERTS_ENRICHED, partition)

        async def caught_up() -> bool:
            return (await committed(kafka)).get(tp) == ends[tp]

        await eventually(caught_up, within_s=20)
    finally:
        await kill(router)
    assert await rejections() == 1
    assert set((await decisions(kafka, codec, set(ids))).values()) == {1}
    # Its raw bytes are in the quarantine once too: written in the same transaction as the rejection.
    entries = await read_topic(kafka, codec, RECORDS_QUARANTINE, Quarantined)
    assert [(q.value, q.service) for _, q in entries if q.key == key.encode()] == [(b"\x00junk", "router")]


async def partitions_holding(kafka: KafkaSettings, codec: Codec, ids: set[str]) -> set[int]:
    """The alerts.routed partitions of these alerts' decisions: the numbers of their input partitions."""
    found = set()
    async for r in read_to_end(kafka, ALERTS_ROUTED, name="test-partitions"):
        try:
            decision = codec.decode(r.value, AlertRouted)
        except CodecError:
            continue  # test_record_fuzz.py's poison on the shared topic
        if decision.alert_id in ids:
            found.add(int(r.partition))
    return found
