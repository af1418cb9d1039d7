"""Records that cannot be used go to `records.quarantine`, and their neighbours go on.

A consumer that meets a record it cannot decode (`CodecError`) or validate puts it here and moves its
offset on, the same way everywhere, so one bad record never loops, crashes or stalls a consumer:

    quarantine = Quarantine(producer, codec)               # a plain (non-transactional) producer
    try:
        request = codec.decode(record.value, DeliverWebhook)
    except CodecError as exc:
        await quarantine.put(record, str(exc), service="dispatcher")
        continue

A consumer that writes through a Kafka transaction (the router, the auditor) adds the entry to the
transaction instead, so the quarantine record commits with the offsets that move past it, and notes it
once the transaction has committed:

    topic, key, value = quarantine.entry(record, reason, service="router")
    outputs.add(topic, value, key=key, headers=[])
    ...                                                     # the transaction commits
    noted(record, reason, service="router")

Each entry keeps the source's topic, partition, offset, key and raw value (cut to a size the topic takes,
with the whole length), the reason and the service. Its key is `<topic>/<partition>/<offset>`, so the
entries one record got from several services (every service follows `registry.config`) share it
(`source` in `rctc quarantine list`).

Followers that read a topic from its beginning on every start (the registry view in every service, the
tracker, the dispatcher's endpoint states) would quarantine the same old record again at each start.
They log and count what they meet while replaying (`noted(..., written=False)`) and write only what they
meet live, once caught up, so a restart writes nothing twice. What arrives while such a reader is down
is written by another one reading live (every replica of every service follows `registry.config`), or
else only logged and counted at its next start: the topics only the tracker follows (deliveries.events,
acks.submitted, alerts.escalations) are written by our own services alone, never by an agency.
`Quarantine.standalone(kafka, codec, name)` gives such a reader its own small producer, opened only when
a first record needs it.
"""

from __future__ import annotations

from datetime import datetime

from aiokafka import AIOKafkaProducer, ConsumerRecord
from prometheus_client import Counter

from services.common.codec import Codec
from services.common.consume import RETRYABLE
from services.common.kafka import AnyProducer
from services.common.kafka import producer as new_producer
from services.common.logs import get_logger
from services.common.records import Quarantined, utcnow
from services.common.settings import KafkaSettings
from services.common.topics import RECORDS_QUARANTINE

log = get_logger(__name__)

QUARANTINED = Counter(
    "rctc_records_quarantined_total",
    "Records a service could not decode or validate and set aside (records.quarantine), by source topic.",
    ["service", "topic"],
)

# What an entry keeps of the source, so it always fits a default 1 MiB message: the rest stays on the
# source topic (its topic, partition and offset are in the entry) until that topic's retention ends.
MAX_KEY_BYTES = 16 * 1024
MAX_VALUE_BYTES = 512 * 1024
# What an entry keeps of a value an agency wrote (its own submissions and acks topics): enough to see what it
# is. An agency can make every record of a compressed batch an entry, so an entry that kept the whole value
# would turn a 230 KB batch into 230 MB on records.quarantine, which is kept for ever; the record itself stays
# on the agency's topic (where the entry says) for that topic's retention.
AGENCY_VALUE_BYTES = 4 * 1024
MAX_REASON_CHARS = 1000


def source_key(record: ConsumerRecord) -> bytes:
    """The key of a quarantine entry: where its source record is, `<topic>/<partition>/<offset>`."""
    return f"{record.topic}/{record.partition}/{record.offset}".encode()


def quarantined(
    record: ConsumerRecord,
    reason: str,
    service: str,
    now: datetime | None = None,
    *,
    max_value_bytes: int = MAX_VALUE_BYTES,
) -> Quarantined:
    """The entry for `record`, refused by `service` for `reason`, keeping at most `max_value_bytes` of its value."""
    key, value = _raw(record.key), _raw(record.value)
    return Quarantined(
        topic=record.topic,
        partition=record.partition,
        offset=record.offset,
        key=None if key is None else key[:MAX_KEY_BYTES],
        value=None if value is None else value[: min(max_value_bytes, MAX_VALUE_BYTES)],
        # A reader that drops an oversized value (librdkafka.oversized) says how large it was.
        value_size=0 if value is None else max(len(value), record.serialized_value_size),
        reason=reason[:MAX_REASON_CHARS],
        service=service,
        quarantined_at=now or utcnow(),
    )


def noted(record: ConsumerRecord, reason: str, service: str, *, written: bool = True) -> None:
    """The log line `record.quarantined` and the metric, for an entry written (or, replaying, only seen)."""
    QUARANTINED.labels(service, record.topic).inc()
    log.error(
        "record.quarantined",
        service=service,
        topic=record.topic,
        partition=record.partition,
        offset=record.offset,
        reason=reason[:MAX_REASON_CHARS],
        written=written,
    )


class Quarantine:
    """Writes quarantine entries with a plain producer, or builds them for a transaction (`entry`)."""

    def __init__(
        self,
        producer: AnyProducer | None,
        codec: Codec,
        *,
        kafka: KafkaSettings | None = None,
        name: str = "quarantine",
        max_value_bytes: int = MAX_VALUE_BYTES,
    ) -> None:
        if producer is None and kafka is None:
            raise ValueError("Quarantine needs a producer, or Kafka settings to open its own")
        self._producer = producer
        self._codec = codec
        self._kafka = kafka
        self._name = name
        self._max_value_bytes = max_value_bytes  # AGENCY_VALUE_BYTES for what agencies write
        self._own: AIOKafkaProducer | None = None

    @classmethod
    def standalone(cls, kafka: KafkaSettings, codec: Codec, name: str) -> Quarantine:
        """A quarantine with its own producer, opened at the first `put` and closed by `close()`."""
        return cls(None, codec, kafka=kafka, name=name)

    def entry(self, record: ConsumerRecord, reason: str, service: str) -> tuple[str, bytes, bytes]:
        """(topic, key, value) of the entry for `record`, to add to a transaction's outputs."""
        entry = quarantined(record, reason, service, max_value_bytes=self._max_value_bytes)
        return RECORDS_QUARANTINE, source_key(record), self._codec.encode(entry)

    async def put(self, record: ConsumerRecord, reason: str, service: str, *, best_effort: bool = False) -> None:
        """Write the entry for `record` and wait for the broker to have it; then log and count it.

        A Kafka error propagates, so a consumer that commits retries its batch and the record is quarantined
        later rather than skipped unrecorded. A follower, which cannot rewind, passes `best_effort`: a
        failed write is logged (`quarantine.write_failed`) and the record still logged and counted.
        """
        topic, key, value = self.entry(record, reason, service)
        try:
            p = await self._writer()
            await p.send_and_wait(topic, value, key=key)
        except RETRYABLE as exc:
            if not best_effort:
                raise
            log.warning("quarantine.write_failed", service=service, error=repr(exc))
            noted(record, reason, service, written=False)
            return
        noted(record, reason, service)

    async def close(self) -> None:
        """Close the producer this quarantine opened itself (a given producer is its owner's to close)."""
        if self._own is not None:
            own, self._own = self._own, None
            await own.stop()

    async def _writer(self) -> AnyProducer:
        if self._producer is not None:
            return self._producer
        if self._own is None:
            assert self._kafka is not None
            p = new_producer(self._kafka, f"{self._name}-quarantine")
            try:
                await p.start()
            except BaseException:
                await p.stop()
                raise
            self._own = p
        return self._own


def _raw(data: object) -> bytes | None:
    """A record's key or value as bytes (consumers here deserialise nothing, so it already is)."""
    if data is None:
        return None
    if isinstance(data, bytes | bytearray | memoryview):
        return bytes(data)
    return repr(data).encode()
