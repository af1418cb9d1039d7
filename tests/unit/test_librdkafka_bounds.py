"""What a reader of agency-written topics asks of librdkafka, and how it tells a part it dropped as oversized."""

from __future__ import annotations

from aiokafka import ConsumerRecord

from services.common.librdkafka import GroupConsumer, bounded_fetch, oversized
from services.common.settings import KafkaSettings

PLAIN = KafkaSettings(security_protocol="PLAINTEXT")  # nothing is connected: only the configuration is read


def test_a_bounded_reader_fetches_about_one_batch_at_a_time() -> None:
    """Every librdkafka limit on what one fetch brings is the record limit (fetch.max.bytes would otherwise be
    rounded up to message.max.bytes, 1 MB), and a partition waits while 1 MiB of it is not handed over."""
    limits = bounded_fetch(266_240)
    assert limits == {
        "fetch.max.bytes": 266_240,
        "max.partition.fetch.bytes": 266_240,
        "message.max.bytes": 266_240,
        "queued.max.messages.kbytes": 1024,
    }
    assert bounded_fetch(10)["message.max.bytes"] == 1000  # librdkafka's least
    consumer = GroupConsumer(PLAIN, "t", "agency.X.acks", group="g", max_record_bytes=65_536)
    assert {k: consumer._config[k] for k in bounded_fetch(65_536)} == bounded_fetch(65_536)
    unbounded = GroupConsumer(PLAIN, "t", "alerts.routed", group="g")
    assert "fetch.max.bytes" not in unbounded._config


def test_oversized_names_the_part_handed_over_empty() -> None:
    def rec(key: bytes | None, value: bytes | None, key_size: int, value_size: int) -> ConsumerRecord[bytes, bytes]:
        return ConsumerRecord("t", 0, 0, 0, 0, key, value, None, key_size, value_size, [])

    assert oversized(rec(b"k", b"v", 1, 1)) is None
    assert oversized(rec(None, None, -1, -1)) is None
    assert oversized(rec(b"", b"v", 9_000_000, 1)) == "key"
    assert oversized(rec(b"k", b"", 1, 9_000_000)) == "value"
