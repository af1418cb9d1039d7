"""services/common/librdkafka.py without a broker: what a reader of agency-written topics asks of librdkafka,
how it tells a part it dropped as oversized, and what a producer does when its poller thread dies."""

from __future__ import annotations

import asyncio
import threading

import confluent_kafka
import pytest
from aiokafka import ConsumerRecord

from services.common import librdkafka
from services.common.librdkafka import GroupConsumer, PollerFailed, bounded_fetch, oversized
from services.common.ops import free_port
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


async def test_a_poller_that_dies_fails_every_waiting_send_and_the_next(monkeypatch: pytest.MonkeyPatch) -> None:
    """A callback that raises stops the poller thread (poll() re-raises it). Without a guard the futures would
    wait for ever (reports, even timeouts, come only through poll()) and the service would hang; now each fails
    with PollerFailed, which no loop retries, and so does every later send."""

    armed = threading.Event()  # from the first send on: the refused connection is reported again and again

    def raising(error: confluent_kafka.KafkaError) -> None:
        if armed.is_set():
            raise ValueError(f"a callback's bug ({error.name()})")

    monkeypatch.setattr(librdkafka, "_log_error", raising)  # called from poll() on the refused connection below
    settings = KafkaSettings(security_protocol="PLAINTEXT", bootstrap_servers=f"127.0.0.1:{free_port()}")
    producer = librdkafka.Producer(settings, "t")
    await producer.start()
    try:
        waiting = await producer.send("t", b"v")
        armed.set()
        with pytest.raises(PollerFailed, match="a callback's bug"):
            await asyncio.wait_for(waiting, 10)
        with pytest.raises(PollerFailed):
            await producer.send("t", b"w")
    finally:
        await asyncio.wait_for(producer.stop(), 10)


def test_a_repeating_consume_error_is_logged_once_a_minute_and_always_counted(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """An agency can make the same error at will (a batch librdkafka cannot decompress): the first of each per
    partition is logged, the rest counted into the next line a minute later; the metric counts them all."""
    lines: list[dict[str, object]] = []
    monkeypatch.setattr(librdkafka.log, "warning", lambda event, **kw: lines.append({"event": event, **kw}))
    clock = [1000.0]
    monkeypatch.setattr(librdkafka.time, "monotonic", lambda: clock[0])
    errors = librdkafka._ErrorLog("gateway-submissions")
    bad = confluent_kafka.KafkaError(confluent_kafka.KafkaError._BAD_COMPRESSION)
    counted = librdkafka.CONSUME_ERRORS.labels("gateway-submissions", bad.name())
    before = counted._value.get()
    for _ in range(500):
        errors.seen(bad, "agency.X.submissions", 0)
    errors.seen(bad, "agency.Y.submissions", 0)
    clock[0] += 61
    errors.seen(bad, "agency.X.submissions", 0)
    assert [(line["topic"], line["repeated"]) for line in lines] == [
        ("agency.X.submissions", 0),
        ("agency.Y.submissions", 0),
        ("agency.X.submissions", 499),
    ]
    assert counted._value.get() - before == 502
