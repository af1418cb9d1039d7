"""Acknowledgements agencies produce to Kafka themselves, checked and forwarded to acks.submitted.

An agency writes AckSubmitted records to its own topic `agency.<CODE>.acks`; in a secured cluster only its
principal may write there, so the topic is its identity, as the bearer token is over HTTP. The gateway
(which owns authentication) reads every agency's acks topic, refuses a record whose `agency` is not the
topic's, and forwards the rest to acks.submitted, where the tracker treats them like HTTP acks (a repeat
or a non-recipient's changes nothing). At least once: forwarding twice is harmless. A record that is not
an AckSubmitted, or names another agency than its topic's, goes to records.quarantine and the rest go on.
"""

from __future__ import annotations

import asyncio

from aiokafka import ConsumerRecord

from services.common import librdkafka, tracing
from services.common.codec import Codec
from services.common.consume import consume_batches
from services.common.errors import CodecError
from services.common.kafka import AnyProducer, Outbox
from services.common.logs import get_logger
from services.common.quarantine import AGENCY_VALUE_BYTES, Quarantine
from services.common.records import AckSubmitted, recipient_key, utcnow
from services.common.registry import RegistryView
from services.common.settings import KafkaSettings
from services.common.topics import ACKS_SUBMITTED, AGENCY_ACKS_PATTERN, agency_of_ack_topic
from services.gateway.ratelimit import KafkaPace
from services.gateway.submission import AGENCY_RECORD_MAX_BYTES, kafka_ack_problem

log = get_logger("rctc.gateway.acks")


class KafkaAcks:
    def __init__(
        self, kafka: KafkaSettings, codec: Codec, producer: AnyProducer, registry: RegistryView | None = None
    ) -> None:
        self._kafka = kafka
        self._codec = codec
        self._producer = producer
        # The registry in force: an ack from an agency it suspends or no longer lists is refused, as over HTTP
        # (records written before its ACLs went, or on a broker whose ACLs an apply skipped).
        self._registry = registry
        self._quarantine = Quarantine(producer, codec, max_value_bytes=AGENCY_VALUE_BYTES)
        self._consumer: librdkafka.GroupConsumer | None = None

    async def start(self) -> None:
        # librdkafka whatever kafka.hot_path_client says, and no headers read: agencies write these topics, and
        # aiokafka cannot get past a record whose header name is not UTF-8 (services/common/librdkafka.py).
        self._consumer = librdkafka.GroupConsumer(
            self._kafka,
            "gateway-acks",
            group="gateway-acks",
            pattern=AGENCY_ACKS_PATTERN,
            follower=True,
            read_headers=False,
            max_record_bytes=AGENCY_RECORD_MAX_BYTES,  # librdkafka.bounded_fetch: compressed batches inflate
            pace=KafkaPace(self._registry, agency_of_ack_topic, "acks"),  # at the agency's rate limit, as HTTP acks
        )
        await self._consumer.start()

    async def run(self, stopping: asyncio.Event) -> None:
        assert self._consumer is not None
        await consume_batches(self._consumer, self.forward, stopping, service="gateway")

    async def stop(self) -> None:
        if self._consumer is not None:
            await self._consumer.stop()

    def _in_force(self, agency: str | None) -> bool:
        assert self._registry is not None
        entry = self._registry.current.agencies.get(agency or "")
        return entry is not None and entry.active

    async def forward(self, records: list[ConsumerRecord]) -> None:
        outbox = Outbox(self._producer, self._codec)
        for record in records:
            agency = agency_of_ack_topic(record.topic)
            part = librdkafka.oversized(record)
            if part is not None:
                await self._quarantine.put(record, f"the record's {part} is larger than an ack may be", "gateway")
                continue
            try:
                ack = self._codec.decode(record.value, AckSubmitted)
            except CodecError as exc:
                await self._quarantine.put(record, str(exc), "gateway")
                continue
            problem = kafka_ack_problem(ack, agency, record.topic)
            if problem is None and self._registry is not None and not self._in_force(agency):
                problem = f"{agency} is suspended or not in the registry in force"
            if problem is not None or agency is None:
                # Refused, not dropped: an agency writing acks in another's name, or past the limits an HTTP ack
                # has, is worth an operator's look.
                await self._quarantine.put(record, problem or "not an acks topic", "gateway")
                continue
            forwarded = AckSubmitted(
                ack_id=ack.ack_id,
                alert_id=ack.alert_id,
                agency=agency,
                response=ack.response,
                note=ack.note,
                channel="kafka",
                submitted_at=utcnow(),
            )
            traceparent = tracing.child_of(tracing.from_headers(record.headers))
            await outbox.send(ACKS_SUBMITTED, recipient_key(ack.alert_id, agency), forwarded, traceparent)
            log.info("ack.submitted", alert_id=ack.alert_id, agency=agency, response=ack.response, channel="kafka")
        await outbox.flush()
