"""A hostile agency writes odd records to its own submissions and acks topics with its own raw client: the
gateway's readers of those topics (one group over every agency's) must take each one (accept, refuse or set
it aside) and keep going, for every other agency and for the hostile agency's later records.

A record whose header name is not UTF-8 is tests/integration/test_kafka_submissions.py's.
"""

from __future__ import annotations

import asyncio
import json
import time
import uuid
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

import confluent_kafka

from services.common.codec import Codec
from services.common.kafka import producer
from services.common.librdkafka import confluent_config
from services.common.records import (
    AckSubmitted,
    AlertSubmitted,
    Quarantined,
    SubmissionRejected,
    SubmitAlert,
    utcnow,
)
from services.common.registry.publish import publish_registry
from services.common.settings import KafkaSettings
from services.common.topics import (
    ACKS_SUBMITTED,
    ALERTS_SUBMITTED,
    RECORDS_QUARANTINE,
    agency_ack_topic,
    agency_rejection_topic,
    agency_submission_topic,
)
from services.gateway.idempotency import alert_id_for
from tests.support.system import system
from tests.support.world import Cast, agreement, alert_json, eventually, read_topic, registry


def raw_producer(kafka: KafkaSettings, name: str, **extra: Any) -> confluent_kafka.Producer:
    """The hostile agency's own client (librdkafka, as anyone can run)."""
    return confluent_kafka.Producer({**confluent_config(kafka, name), **extra})


def produce(p: confluent_kafka.Producer, topic: str, value: bytes | None, key: bytes | None = None, **kw: Any) -> None:
    errors: list[Any] = []
    p.produce(topic, value, key, on_delivery=lambda err, _m: errors.append(err), **kw)
    assert p.flush(30) == 0
    assert errors == [None], errors


def try_produce(p: confluent_kafka.Producer, topic: str, value: bytes | None, key: bytes | None, **kw: Any) -> Any:
    errors: list[Any] = []
    p.produce(topic, value, key, on_delivery=lambda err, _m: errors.append(err), **kw)
    p.flush(30)
    return errors[0]


async def setup(kafka: KafkaSettings, codec: Codec) -> tuple[Cast, Any, Any]:
    cast = Cast()
    a, b = cast.agency("IQ-A", "IQ"), cast.agency("JO-B", "JO")
    doc = registry([a, b], [agreement(f"KAFKA-{cast.suffix}", [a.code, b.code])])
    await publish_registry(kafka, codec, doc, source="test", replication_factor=1)
    return cast, a, b


def body(title: str, country: str) -> bytes:
    return json.dumps(alert_json(title=title, affected_countries=[country])).encode()


async def submitted_ids(kafka: KafkaSettings, codec: Codec) -> set[str]:
    return {s.alert_id for _, s in await read_topic(kafka, codec, ALERTS_SUBMITTED, AlertSubmitted)}


async def has(kafka: KafkaSettings, codec: Codec, ids: set[str]) -> bool:
    return ids <= await submitted_ids(kafka, codec)


async def send_good(kafka: KafkaSettings, codec: Codec, code: str, key: str, title: str, country: str) -> str:
    p = producer(kafka, f"agency-{code}-good")
    await p.start()
    try:
        await p.send_and_wait(
            agency_submission_topic(code), codec.encode(SubmitAlert(body=body(title, country))), key=key.encode()
        )
    finally:
        await p.stop()
    return alert_id_for(code, key)


async def ack_from(kafka: KafkaSettings, codec: Codec, code: str) -> Callable[[], Awaitable[bool]]:
    """`code` writes an ack to its acks topic; the check that the gateway forwarded it to acks.submitted."""
    alert_id = str(uuid.uuid4())
    ack = AckSubmitted(ack_id=f"ack-{code}", alert_id=alert_id, agency=code, channel="kafka", submitted_at=utcnow())
    p = producer(kafka, f"agency-{code}-acks")
    await p.start()
    try:
        await p.send_and_wait(agency_ack_topic(code), codec.encode(ack))
    finally:
        await p.stop()

    async def forwarded() -> bool:
        got = await read_topic(kafka, codec, ACKS_SUBMITTED, AckSubmitted)
        return any(x.alert_id == alert_id and x.agency == code for _, x in got)

    return forwarded


async def test_a_huge_record_key_stalls_no_agencys_kafka_intake(kafka: KafkaSettings, codec: Codec) -> None:
    """A's record key is as long as its topic lets it be (~264 KB): refused (bad_idempotency_key), and the
    rejection does not repeat it (its key is the record's position): a rejection as large as the key could be
    refused by the broker, and would then be retried for ever, stalling every agency's Kafka intake."""
    _cast, a, b = await setup(kafka, codec)
    async with system(kafka, codec):
        raw = raw_producer(kafka, "agency-a-raw")
        produce(raw, agency_submission_topic(a.code), codec.encode(SubmitAlert(body=body("k", "JO"))), b"k" * 264_000)
        after_b = await send_good(kafka, codec, b.code, "b-1", "From B", "IQ")
        after_a = await send_good(kafka, codec, a.code, "a-2", "From A after", "JO")
        assert await eventually(lambda: has(kafka, codec, {after_b, after_a}), within_s=30)
        rejections = await read_topic(kafka, codec, agency_rejection_topic(a.code), SubmissionRejected)
        assert [(k, r.error, r.idempotency_key) for k, r in rejections] == [(b"0/0", "bad_idempotency_key", None)]


async def test_odd_submission_records_stall_no_agencys_kafka_intake(kafka: KafkaSettings, codec: Codec) -> None:
    """Tombstone, empty value, null key, non-UTF-8 key, 2000 null-valued headers, timestamps at 0 / year 9999,
    and one valid record in each compression codec: all taken (rejected or accepted), and B's goes through."""
    _cast, a, b = await setup(kafka, codec)
    topic = agency_submission_topic(a.code)
    good = codec.encode(SubmitAlert(body=body("ok", "JO")))
    async with system(kafka, codec):
        raw = raw_producer(kafka, "agency-a-raw")
        produce(raw, topic, None, b"tomb")
        produce(raw, topic, b"", b"empty")
        produce(raw, topic, good, None)
        produce(raw, topic, good, b"\xff\xfe\xfd")
        produce(raw, topic, good, b"hdrs", headers=[(f"h{i}", None) for i in range(2000)])
        expected = {alert_id_for(a.code, "hdrs")}
        # The broker may refuse timestamps out of message.timestamp.{before,after}.max.ms: expect those it took.
        for k, ts in ((b"ts-zero", 1), (b"ts-past", 86_400_000), (b"ts-future", 253402300799000)):
            if try_produce(raw, topic, good, k, timestamp=ts) is None:
                expected.add(alert_id_for(a.code, k.decode()))
        for codec_name in ("gzip", "snappy", "lz4", "zstd"):
            zp = raw_producer(kafka, f"agency-a-{codec_name}", **{"compression.type": codec_name})
            produce(zp, topic, good, codec_name.encode())
            expected.add(alert_id_for(a.code, codec_name))
        expected.add(await send_good(kafka, codec, b.code, "b-1", "From B", "IQ"))
        expected.add(await send_good(kafka, codec, a.code, "a-last", "From A last", "JO"))
        assert await eventually(lambda: has(kafka, codec, expected), within_s=40)

        async def rejected() -> set[str]:
            got = await read_topic(kafka, codec, agency_rejection_topic(a.code), SubmissionRejected)
            return {f"{r.offset}:{r.error}" for _, r in got}

        # tombstone, empty -> unsupported_record; null key, non-UTF-8 key -> bad_idempotency_key
        assert await eventually(lambda: _count(rejected(), 4), within_s=20)


async def _count(coro: Any, n: int) -> bool:
    return len(await coro) >= n


async def test_odd_ack_records_stall_no_agencys_ack_intake(kafka: KafkaSettings, codec: Codec) -> None:
    _cast, a, b = await setup(kafka, codec)
    topic = agency_ack_topic(a.code)
    async with system(kafka, codec):
        raw = raw_producer(kafka, "agency-a-raw-acks")
        produce(raw, topic, None, None)
        produce(raw, topic, b"", b"x" * 60_000)
        produce(raw, topic, b"\x00" * 60_000, None, headers=[(f"h{i}", None) for i in range(500)])
        # 16 MiB of zeros in a gzip batch of 16 KB: set aside without its value (larger than an ack may be).
        zipped = raw_producer(kafka, "agency-a-gzip-acks", **{"compression.type": "gzip", "message.max.bytes": 10**9})
        produce(zipped, topic, bytes(16 * 1024 * 1024), b"zip")
        assert await eventually(await ack_from(kafka, codec, b.code), within_s=40)

        async def big() -> list[Quarantined]:
            entries = await read_topic(kafka, codec, RECORDS_QUARANTINE, Quarantined)
            return [q for _, q in entries if q.topic == topic and q.value_size == 16 * 1024 * 1024]

        # A's own records, a batch a fetch, may come after B's ack: each agency's topic is its own partition.
        assert await eventually(lambda: _count(big(), 1), within_s=20)
        [entry] = await big()
        assert entry.value == b"" and "larger than an ack may be" in entry.reason


async def test_an_open_transaction_on_one_agencys_topic_holds_up_no_other(kafka: KafkaSettings, codec: Codec) -> None:
    """A begins a transaction on its submissions topic and never commits. The read_committed reader cannot pass
    it on A's topic until the broker aborts it (transaction.timeout.ms, at most transaction.max.timeout.ms, 15
    min by default): A stalls its own Kafka intake, and nobody else's (each agency has its own topic)."""
    _cast, a, b = await setup(kafka, codec)
    topic = agency_submission_topic(a.code)
    good = codec.encode(SubmitAlert(body=body("txn", "JO")))
    async with system(kafka, codec):
        tx = raw_producer(
            kafka, "agency-a-tx", **{"transactional.id": f"agency-{a.code}.tx", "transaction.timeout.ms": 20_000}
        )
        tx.init_transactions(30)
        tx.begin_transaction()
        tx.produce(topic, good, b"in-txn")
        assert tx.flush(30) == 0
        opened = time.monotonic()
        after_a = await send_good(kafka, codec, a.code, "a-after-txn", "A after", "JO")
        after_b = await send_good(kafka, codec, b.code, "b-1", "From B", "IQ")
        assert await eventually(lambda: has(kafka, codec, {after_b}), within_s=15), "B held up by A's open txn"
        took_b = time.monotonic() - opened
        assert not await has(kafka, codec, {after_a})
        # A's own later record: waits for the broker's abort of the hanging transaction.
        assert await eventually(lambda: has(kafka, codec, {after_a}), within_s=90)
        took_a = time.monotonic() - opened
        assert took_a > 15 > took_b  # A's waited for the broker's abort of its transaction; B's did not
        assert alert_id_for(a.code, "in-txn") not in await submitted_ids(kafka, codec)
        del tx


def _vm(field: str) -> int:
    """This process's /proc status `field` (VmRSS, VmHWM), in bytes."""
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith(field + ":"):
            return int(line.split()[1]) * 1024
    raise AssertionError(field)


def _reset_peak_rss() -> None:
    with open("/proc/self/clear_refs", "w") as f:
        f.write("5")  # VmHWM starts again from VmRSS (Linux 4.0+)


BOMB = 192 * 1024 * 1024  # a gzip batch of ~190 KB, under the submissions topic's 260 KB


async def test_a_compression_bomb_stays_out_of_the_gateways_memory(kafka: KafkaSettings, codec: Codec) -> None:
    """A writes gzip batches under its topic's limit that decompress to 192 MiB each (a value of zeros, four
    times) and one whose key is 16 MiB: each is refused (too_large), B's submission goes
    through, and the gateway never holds more than about one such batch at a time (the services run in this
    process: its peak RSS is theirs). Before, a fetch took every bomb at once and copied each value into
    Python: well over a GiB; and a rejection carried the 16 MiB key, which no topic takes, so the gateway
    stopped, and after a restart met the same record again: every agency's Kafka intake stalled."""
    _cast, a, b = await setup(kafka, codec)
    topic = agency_submission_topic(a.code)
    bomber = raw_producer(
        kafka, "agency-a-bomb", **{"compression.type": "gzip", "message.max.bytes": 1_000_000_000, "linger.ms": 0}
    )
    for _ in range(4):
        produce(bomber, topic, bytes(BOMB), b"bomb")
    produce(bomber, topic, codec.encode(SubmitAlert(body=body("key bomb", "JO"))), b"k" * (16 * 1024 * 1024))
    del bomber
    before = _vm("VmRSS")
    _reset_peak_rss()
    async with system(kafka, codec):
        after_b = await send_good(kafka, codec, b.code, "b-1", "From B", "IQ")
        after_a = await send_good(kafka, codec, a.code, "a-after", "From A after", "JO")
        assert await eventually(lambda: has(kafka, codec, {after_b, after_a}), within_s=60)
        rejections = await read_topic(kafka, codec, agency_rejection_topic(a.code), SubmissionRejected)
        assert [(k, r.error) for k, r in rejections] == [(b"bomb", "too_large")] * 4 + [(b"0/4", "too_large")]
        assert "key is 16777216 bytes" in rejections[-1][1].message
        grew = _vm("VmHWM") - before
    # Bounded: a bomb decompressed (librdkafka) and copied (confluent-kafka) at a time, and the next one's
    # fetch perhaps under way: 416 MiB measured. Unbounded, one fetch took all four: 993 MiB.
    assert grew < 3.5 * BOMB, f"the gateway's peak grew by {grew >> 20} MiB reading four {BOMB >> 20} MiB bombs"


def one_batch(kafka: KafkaSettings, name: str, topic: str, n: int, value: bytes, key: bytes | None) -> None:
    """`n` records in one gzip batch (the red team's: a batch as large as the producer allows, sent at flush)."""
    p = raw_producer(
        kafka,
        name,
        **{
            "compression.type": "gzip",
            "message.max.bytes": 1_000_000_000,
            "batch.size": 2_000_000_000,
            "batch.num.messages": 1_000_000,
            "queue.buffering.max.messages": 2_000_000,
            "linger.ms": 60_000,
        },
    )
    errors: list[Any] = []
    for _ in range(n):
        p.produce(topic, value, key, on_delivery=lambda err, _m: errors.append(err) if err else None)
    assert p.flush(60) == 0 and not errors, errors[:3]


async def test_one_batch_of_many_records_holds_up_no_other_agency(kafka: KafkaSettings, codec: Codec) -> None:
    """A writes one gzip batch of 20,000 empty records (28 KB; a batch within the topic's limit holds 180,000):
    each is a rejection and a quarantine entry. Handled in the order fetched, B's submission waited behind all
    of them (the red team's run: not there after 90 s). Now A's records are taken at A's rate limit (the
    registry's default, 20 a second after a burst of 100) and A's topic is held back meanwhile: B's goes
    through at once, and what A made the gateway write stays within the limit."""
    _cast, a, b = await setup(kafka, codec)
    topic = agency_submission_topic(a.code)
    async with system(kafka, codec):
        warm = await send_good(kafka, codec, a.code, "a-warm", "A warm", "JO")
        assert await eventually(lambda: has(kafka, codec, {warm}), within_s=30)
        one_batch(kafka, "agency-a-many", topic, 20_000, b"", None)
        flooded = time.monotonic()
        await asyncio.sleep(2)
        after_b = await send_good(kafka, codec, b.code, "b-1", "From B", "IQ")
        assert await eventually(lambda: has(kafka, codec, {after_b}), within_s=15)

        async def rejected() -> list[tuple[bytes, SubmissionRejected]]:
            return await read_topic(kafka, codec, agency_rejection_topic(a.code), SubmissionRejected)

        # A's first burst may still be on its way when B's is through (a loaded CI run read none 3.2 s in).
        assert await eventually(lambda: _count(rejected(), 100), within_s=15)
        rejections = await rejected()
        elapsed = time.monotonic() - flooded
        assert 100 <= len(rejections) <= 1 + 100 + 20 * elapsed, (len(rejections), elapsed)
        assert {r.error for _, r in rejections} == {"unsupported_record"}
        # Taken in order, none skipped: A's records wait on its topic, not lost.
        offsets = [r.offset for _, r in rejections]
        assert offsets == list(range(offsets[0], offsets[0] + len(offsets)))


async def test_one_batch_of_many_acks_holds_up_no_other_agencys_ack(kafka: KafkaSettings, codec: Codec) -> None:
    """The same on the acks topic (64 KB a batch): 20,000 empty acks from A, set aside at A's rate; B's ack is
    forwarded at once."""
    _cast, a, b = await setup(kafka, codec)
    async with system(kafka, codec):
        one_batch(kafka, "agency-a-acks-many", agency_ack_topic(a.code), 20_000, b"", None)
        await asyncio.sleep(2)
        assert await eventually(await ack_from(kafka, codec, b.code), within_s=15)


async def test_what_an_agency_writes_is_not_multiplied_on_records_quarantine(
    kafka: KafkaSettings, codec: Codec
) -> None:
    """One gzip batch of 200 records of 260,000 zero bytes each (50 KB written): each is under the record limit
    and not Avro, so set aside. An entry that kept the whole value turned such a batch into 50 MB on
    records.quarantine, kept for ever (the red team's: 223 MiB from one 230 KB batch). An entry of an agency's
    record keeps its first 4 KiB and its size; the record stays on the agency's topic."""
    _cast, a, _b = await setup(kafka, codec)
    topic = agency_submission_topic(a.code)
    async with system(kafka, codec):
        one_batch(kafka, "agency-a-amp", topic, 200, bytes(260_000), b"amp")

        async def entries() -> list[Quarantined]:
            return [q for _, q in await read_topic(kafka, codec, RECORDS_QUARANTINE, Quarantined) if q.topic == topic]

        assert await eventually(lambda: _count(entries(), 100), within_s=30)
        got = await entries()
        assert all(q.value == bytes(4096) and q.value_size == 260_000 for q in got)
