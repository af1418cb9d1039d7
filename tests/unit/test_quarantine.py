"""What a quarantine entry keeps of the record it sets aside, and how it is keyed."""

from __future__ import annotations

from aiokafka import ConsumerRecord

from services.common.codec import Codec
from services.common.quarantine import MAX_VALUE_BYTES, Quarantine, quarantined
from services.common.records import Quarantined, utcnow
from services.common.settings import KafkaSettings
from services.common.topics import RECORDS_QUARANTINE


def record(value: bytes | None, key: bytes | None = b"k") -> ConsumerRecord[bytes, bytes]:
    size = 0 if value is None else len(value)
    return ConsumerRecord("agency.JO-B.acks", 0, 41, 0, 0, key, value, None, 0, size, [])


def test_an_entry_keeps_source_raw_bytes_reason_and_service(codec: Codec) -> None:
    """Topic, partition, offset, key and value as they were, with why and by whom."""
    at = utcnow()
    entry = quarantined(record(b"\x00junk"), "not an Avro record", "gateway", now=at)
    expected = Quarantined(
        topic="agency.JO-B.acks",
        partition=0,
        offset=41,
        key=b"k",
        value=b"\x00junk",
        value_size=5,
        reason="not an Avro record",
        service="gateway",
        quarantined_at=at,
    )
    assert entry == expected
    assert codec.decode(codec.encode(entry), Quarantined) == expected


def test_a_huge_value_is_cut_and_its_size_kept(codec: Codec) -> None:
    """A value over 512 KiB keeps its first 512 KiB and says how long it was, so the entry always fits."""
    entry = quarantined(record(bytes(MAX_VALUE_BYTES + 10), key=None), "oversized", "router")
    assert (len(entry.value or b""), entry.value_size, entry.key) == (MAX_VALUE_BYTES, MAX_VALUE_BYTES + 10, None)


def test_a_tombstone_is_kept_as_no_value() -> None:
    """A record without a value (a tombstone) is an entry with value null and size 0."""
    entry = quarantined(record(None), "no value", "tracker")
    assert (entry.value, entry.value_size) == (None, 0)


def test_the_transactional_entry_is_keyed_by_where_the_record_was(codec: Codec) -> None:
    """entry() gives (topic, key, value) for a transaction: records.quarantine, keyed topic/partition/offset."""
    q = Quarantine.standalone(KafkaSettings(), codec, "test")
    topic, key, value = q.entry(record(b"x"), "bad", "router")
    assert (topic, key, codec.decode(value, Quarantined).reason) == (
        RECORDS_QUARANTINE,
        b"agency.JO-B.acks/0/41",
        "bad",
    )


def test_a_value_the_reader_dropped_keeps_its_true_size() -> None:
    """A reader bounded by max_record_bytes hands over an oversized value empty, with its size beside it."""
    dropped = ConsumerRecord("agency.JO-B.acks", 0, 41, 0, 0, b"k", b"", None, 1, 16_777_216, [])
    entry = quarantined(dropped, "larger than an ack may be", "gateway")
    assert (entry.value, entry.value_size) == (b"", 16_777_216)
