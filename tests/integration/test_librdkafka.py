"""The librdkafka client behind aiokafka's interface (services/common/librdkafka.py), on the real broker: it
must put, read and commit records exactly as the aiokafka client it replaces on the hot path."""

from __future__ import annotations

import asyncio
import random
import uuid
from typing import Any

import pytest
from aiokafka import TopicPartition
from aiokafka.errors import KafkaError

from services.common import librdkafka
from services.common.consume import consume_batches
from services.common.kafka import consumer, producer, read_to_end
from services.common.partitioner import partition_for
from services.common.settings import KafkaSettings
from services.gateway.ratelimit import RateLimiter
from tests.support.world import create_topic, eventually, write_with_raw_header_name


def _name(what: str) -> str:
    return f"test-rd-{what}-{uuid.uuid4().hex[:8]}"


async def _drain(c: librdkafka.GroupConsumer, want: int, within_s: float = 30) -> list[object]:
    got: list[object] = []
    async with asyncio.timeout(within_s):
        while len(got) < want:
            for records in (await c.getmany(timeout_ms=200, max_records=100)).values():
                got.extend(records)
    return got


async def test_keyed_records_land_where_kafkas_rule_and_aiokafka_put_them(kafka: KafkaSettings) -> None:
    topic = _name("partition")
    await create_topic(kafka, topic, partitions=6)
    p = librdkafka.Producer(kafka, "test-rd-producer")
    await p.start()
    keys = [f"alert-{i}:JO-GID".encode() for i in range(120)]
    try:
        futures = [await p.send(topic, b"v", key=k, headers=[("traceparent", b"00-x")]) for k in keys]
        await asyncio.wait_for(asyncio.gather(*futures), 30)
        assert await p.partitions_for(topic) == set(range(6))
    finally:
        await p.stop()
    records = [r async for r in read_to_end(kafka, topic, name="test-rd-reader")]
    assert sorted(r.key for r in records) == sorted(keys)
    for r in records:
        assert r.partition == partition_for(r.key, list(range(6)))
        assert dict(r.headers) == {"traceparent": b"00-x"}


async def test_a_refused_record_fails_its_future_with_a_kafka_error(kafka: KafkaSettings) -> None:
    """A record the broker will never take (larger than the topic allows) fails, as aiokafka's send does: the
    services' retry policy (consume.RETRYABLE) must see a KafkaError, not wait for ever."""
    topic = _name("too-big")
    await create_topic(kafka, topic, partitions=1, **{"max.message.bytes": "1024"})
    p = librdkafka.Producer(kafka, "test-rd-refused")
    await p.start()
    try:
        future = await p.send(topic, b"x" * 4096, key=b"k")
        with pytest.raises(librdkafka.LibrdkafkaError, match="MSG_SIZE_TOO_LARGE"):
            await asyncio.wait_for(future, 30)
        await p.send_and_wait(topic, b"small", key=b"k")  # the producer goes on
    finally:
        await p.stop()


async def test_the_consumer_reads_only_committed_records_in_order_with_their_metadata(kafka: KafkaSettings) -> None:
    topic = _name("committed")
    await create_topic(kafka, topic, partitions=1)
    tx = producer(kafka, "test-rd-tx", transactional_id=_name("tx"))
    await tx.start()
    try:
        await tx.begin_transaction()
        await tx.send(topic, b"aborted", key=b"a")
        await tx.flush()
        await tx.abort_transaction()
        await tx.begin_transaction()
        for i in range(5):
            await tx.send(topic, f"kept-{i}".encode(), key=b"k", headers=[("h", b"v")])
        await tx.commit_transaction()
    finally:
        await tx.stop()
    c = librdkafka.GroupConsumer(kafka, "test-rd-consumer", topic, group=_name("group"))
    await c.start()
    try:
        records = await _drain(c, 5)
        assert c.assignment() == frozenset({TopicPartition(topic, 0)})
    finally:
        await c.stop()
    assert [r.value for r in records] == [f"kept-{i}".encode() for i in range(5)]  # type: ignore[attr-defined]
    first = records[0]
    assert (first.topic, first.partition, first.key) == (topic, 0, b"k")  # type: ignore[attr-defined]
    assert dict(first.headers) == {"h": b"v"}  # type: ignore[attr-defined]
    assert first.timestamp > 0 and first.timestamp_type == 0  # type: ignore[attr-defined]  # CreateTime


async def test_commits_hold_across_a_restart_and_a_seek_reads_again(kafka: KafkaSettings) -> None:
    topic, group = _name("commit"), _name("group")
    await create_topic(kafka, topic, partitions=1)
    p = librdkafka.Producer(kafka, "test-rd-commit")
    await p.start()
    for i in range(10):
        await p.send(topic, str(i).encode(), key=b"k")
    await p.flush()
    await p.stop()
    tp = TopicPartition(topic, 0)

    c = librdkafka.GroupConsumer(kafka, "test-rd-first", topic, group=group)
    await c.start()
    try:
        first = await _drain(c, 10)
        c.seek(tp, 4)  # as consume_batches rewinds a batch whose handling hit an outage
        again = await _drain(c, 6)
        await c.commit({tp: 7})  # only what it is given: records 7.. are not done
    finally:
        await c.stop()
    assert [int(r.value) for r in first] == list(range(10))  # type: ignore[attr-defined]
    assert [int(r.value) for r in again] == list(range(4, 10))  # type: ignore[attr-defined]

    c = librdkafka.GroupConsumer(kafka, "test-rd-second", topic, group=group)
    await c.start()
    try:
        resumed = await _drain(c, 3)
    finally:
        await c.stop()
    assert [int(r.value) for r in resumed] == [7, 8, 9]  # type: ignore[attr-defined]


async def test_a_record_whose_header_name_is_not_utf8_stalls_aiokafka_and_not_a_reader_without_headers(
    kafka: KafkaSettings,
) -> None:
    """Whoever may write a topic can put any bytes in a header name (an agency, on its submissions and acks
    topics). aiokafka raises at every fetch of such a record, so its partition never moves again; a reader
    that reads no headers (the gateway's of agency topics) takes it and the records either side of it."""
    topic = _name("raw-header")
    await create_topic(kafka, topic, partitions=1)
    p = librdkafka.Producer(kafka, "test-rd-raw-header")
    await p.start()
    await p.send_and_wait(topic, b"before", key=b"k", headers=[("traceparent", b"00-a")])
    await write_with_raw_header_name(kafka, topic, b"k", b"odd", b"\xff\xfe-not-utf8")
    await p.send_and_wait(topic, b"after", key=b"k", headers=[("traceparent", b"00-b")])
    await p.stop()

    aiokafka_reader = consumer(kafka, "test-rd-raw-header-aiokafka", topic, group=_name("group"))
    await aiokafka_reader.start()
    try:  # the failure this reader avoids, shown on the same record
        with pytest.raises(UnicodeDecodeError):
            async with asyncio.timeout(30):
                while True:
                    await aiokafka_reader.getmany(timeout_ms=200)
    finally:
        await aiokafka_reader.stop()

    c = librdkafka.GroupConsumer(kafka, "test-rd-raw-header", topic, group=_name("group"), read_headers=False)
    await c.start()
    try:
        records = await _drain(c, 3)
        assert not await c.getmany(timeout_ms=500)  # and the reader goes on
    finally:
        await c.stop()
    assert [(r.value, r.headers) for r in records] == [(b"before", ()), (b"odd", ()), (b"after", ())]  # type: ignore[attr-defined]


class _PacedReader:
    """consume_batches over a paced GroupConsumer (at most `per_second` records a second per partition after a
    burst), noting every (partition, offset) it handled; a share of its batches fail with a retryable error
    (the loop rewinds and hands them over again)."""

    def __init__(
        self, kafka: KafkaSettings, topic: str, group: str, per_second: float, burst: int, fail: float
    ) -> None:
        limiter = RateLimiter()

        def pace(tp: TopicPartition, n: int) -> tuple[int, float]:
            return limiter.take(str(tp.partition), n, per_second=per_second, burst=burst)

        self.consumer = librdkafka.GroupConsumer(kafka, _name("paced"), topic, group=group, pace=pace)
        self.handled: set[tuple[int, int]] = set()
        self._fail, self._rng = fail, random.Random(7)
        self._stopping = asyncio.Event()
        self._task: asyncio.Task[None] | None = None

    async def _handle(self, records: list[Any]) -> None:
        if self._rng.random() < self._fail:
            raise KafkaError("a retryable failure, injected")
        self.handled.update((r.partition, r.offset) for r in records)

    async def start(self) -> None:
        await self.consumer.start()
        self._task = asyncio.create_task(consume_batches(self.consumer, self._handle, self._stopping, service="t"))

    async def stop(self) -> None:
        self._stopping.set()
        assert self._task is not None
        await self._task
        await self.consumer.stop()


async def _fill(kafka: KafkaSettings, topic: str, n: int) -> set[tuple[int, int]]:
    """`n` records over the topic's partitions; where each landed."""
    p = librdkafka.Producer(kafka, "test-rd-fill")
    await p.start()
    try:
        await asyncio.wait_for(asyncio.gather(*[await p.send(topic, b"v", key=b"%d" % i) for i in range(n)]), 30)
    finally:
        await p.stop()
    return {(r.partition, r.offset) async for r in read_to_end(kafka, topic, name="test-rd-fill-reader")}


async def test_a_paced_reader_loses_nothing_across_holds_rewinds_and_a_rebalance(kafka: KafkaSettings) -> None:
    """`pace` holds a partition back (paused, then read again from the first record not handed over). Every
    record is handled, through holds, rewinds after failed batches, and a second member joining the group mid-hold
    and leaving: librdkafka keeps a pause across a rebalance, and a partition held at that moment stayed paused
    for good (red team: 410 records never read) until the reader resumed what it is assigned."""
    topic = _name("paced")
    await create_topic(kafka, topic, partitions=2)
    records = await _fill(kafka, topic, 300)
    assert {p for p, _ in records} == {0, 1}
    group = _name("paced-group")
    first = _PacedReader(kafka, topic, group, per_second=20.0, burst=30, fail=0.2)
    await first.start()
    try:
        await eventually(lambda: _at_least(first.handled, 30), within_s=30)
        second = _PacedReader(kafka, topic, group, per_second=20.0, burst=30, fail=0.0)
        await second.start()
        await asyncio.sleep(6)
        await second.stop()
        assert await eventually(lambda: _all_of(records, first.handled | second.handled), within_s=40)
    finally:
        await first.stop()


async def _at_least(handled: set[tuple[int, int]], n: int) -> bool:
    return len(handled) >= n


async def _all_of(wanted: set[tuple[int, int]], handled: set[tuple[int, int]]) -> bool:
    return wanted <= handled
