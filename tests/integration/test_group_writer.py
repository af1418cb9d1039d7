"""Records from many concurrent tasks, written a batch at a time: all acknowledged, where send() puts them."""

from __future__ import annotations

import asyncio
import uuid

from services.common.kafka import producer, read_to_end
from services.common.outputs import GroupWriter
from services.common.partitioner import partition_for
from services.common.settings import KafkaSettings
from tests.support.world import create_topic


async def test_concurrent_records_are_each_acknowledged_in_their_keys_partition_and_order(kafka: KafkaSettings) -> None:
    topic = f"test-group-writer-{uuid.uuid4().hex[:8]}"
    await create_topic(kafka, topic, partitions=3)
    p = producer(kafka, "test-group-writer")
    await p.start()
    writer = GroupWriter(p)
    keys = [f"key-{k}".encode() for k in range(7)]

    async def task(n: int) -> None:
        for i in range(20):  # each task's records one after another, as a delivery's outcome would be
            await writer.submit(topic, keys[n % 7], f"{n}:{i}".encode(), [("h", b"v")])

    try:
        await asyncio.wait_for(asyncio.gather(*(task(n) for n in range(50))), 60)
        await writer.close()
    finally:
        await p.stop()

    records = [r async for r in read_to_end(kafka, topic, name="test-group-writer-reader")]
    assert len(records) == 50 * 20
    for r in records:
        assert r.partition == partition_for(r.key, [0, 1, 2])  # where the producer's own send puts the key
        assert dict(r.headers) == {"h": b"v"}
    for n in range(50):  # a task's records, written in turn, are in order within their partition
        mine = [r for r in records if r.value.decode().startswith(f"{n}:")]
        assert [int(r.value.decode().split(":")[1]) for r in sorted(mine, key=lambda r: r.offset)] == list(range(20))
