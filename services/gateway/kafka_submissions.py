"""Alerts agencies submit over Kafka: admitted by the same code as POST /v1/alerts, or refused to the agency.

An agency produces SubmitAlert records (the JSON body of POST /v1/alerts) to its own topic
`agency.<CODE>.submissions`, keyed by an idempotency key. Only its principal may write there, so the topic
is its identity, as the bearer token is over HTTP. The gateway reads every agency's submissions topic and
gives each record to `intake.admit`, the function the HTTP handler calls: an accepted alert goes to
alerts.submitted exactly as an HTTP one does (the alert id derived from (agency, key), so a record sent
twice, or read twice after a restart, is routed once: the router de-duplicates by alert id); a refused one
becomes a SubmissionRejected on `agency.<CODE>.rejections` with the error body HTTP answers.

Taken at the agency's rate limit, as HTTP requests are, but not refused past it: the record is already stored,
so refusing it would only make the agency send it again. The reader holds the agency's topic back until its
bucket refills (ratelimit.KafkaPace), and every other agency's records go on meanwhile. Kafka's own quotas on
the agency's principal (producer_byte_rate) and the topic's max.message.bytes bound what an agency can write
in bytes, not in records; README.md, "Security model".

A record that is not a SubmitAlert goes to records.quarantine (for an operator) and the agency is told
(`unsupported_record`); a record on the topic of an agency the registry does not know goes to quarantine
only (no one may read that topic's rejections). At least once: the batch's offsets are committed after its
records and rejections are acknowledged.
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
from services.common.records import Problem, SubmissionRejected, SubmitAlert, utcnow
from services.common.registry import RegistryView
from services.common.settings import KafkaSettings
from services.common.topics import (
    AGENCY_SUBMISSIONS_PATTERN,
    ALERTS_SUBMITTED,
    agency_of,
    agency_rejection_topic,
)
from services.gateway import intake
from services.gateway.idempotency import KeyReuseGuard
from services.gateway.ratelimit import KafkaPace
from services.gateway.submission import AGENCY_SUBMISSION_MAX_BYTES

log = get_logger("rctc.gateway.submissions")

GROUP = "gateway-submissions"


def unsupported(exc: CodecError) -> intake.Refused:
    """The refusal of a record that is not a SubmitAlert (over HTTP: a body of the wrong media type, 415)."""
    return intake.Refused(
        415, "unsupported_record", f"the record is not a SubmitAlert in Avro single-object encoding: {exc}"
    )


def too_large(record: ConsumerRecord, part: str) -> intake.Refused:
    """The refusal of a record whose key or value is larger than the topic lets a batch be: it came compressed."""
    size = record.serialized_key_size if part == "key" else record.serialized_value_size
    return intake.Refused(
        413, "too_large", f"the record's {part} is {size} bytes; a submission has at most {AGENCY_SUBMISSION_MAX_BYTES}"
    )


def echoed_key(record: ConsumerRecord) -> bytes | None:
    """The record's key as a rejection repeats it: only one that could be an idempotency key. A longer one (up
    to the topic's limit, or far past it compressed) would make the rejection as large, and a rejection the
    broker refuses is retried for ever: every agency's Kafka intake would stall behind it. The rejection
    names the record's partition and offset whatever its key."""
    key = record.key
    return bytes(key) if key and len(key) <= 4 * intake.MAX_KEY_CHARS else None


def rejection(agency: str, record: ConsumerRecord, refusal: intake.Refused) -> SubmissionRejected:
    return SubmissionRejected(
        agency=agency,
        idempotency_key=intake.record_key(echoed_key(record)),
        partition=record.partition,
        offset=record.offset,
        status=refusal.status,
        error=refusal.error,
        message=refusal.message,
        problems=[Problem(field=f, message=m) for f, m in refusal.problems],
        rejected_at=utcnow(),
    )


def rejection_key(record: ConsumerRecord) -> bytes:
    """The submission's own key, so the agency matches a rejection to what it sent; its position if it had none
    (or one no idempotency key can be: echoed_key)."""
    return echoed_key(record) or f"{record.partition}/{record.offset}".encode()


class KafkaSubmissions:
    def __init__(
        self,
        kafka: KafkaSettings,
        codec: Codec,
        producer: AnyProducer,
        registry: RegistryView,
        keys: KeyReuseGuard,
        *,
        max_body_bytes: int,
    ) -> None:
        self._kafka = kafka
        self._codec = codec
        self._producer = producer
        self._registry = registry
        self._keys = keys
        self._max_body_bytes = max_body_bytes
        self._quarantine = Quarantine(producer, codec, max_value_bytes=AGENCY_VALUE_BYTES)
        self._consumer: librdkafka.GroupConsumer | None = None

    async def start(self) -> None:
        # Not a follower: a submission is on the alert's path, and waits no longer than an HTTP one. librdkafka
        # whatever kafka.hot_path_client says, and no headers read: agencies write these topics, and aiokafka cannot
        # get past a record whose header name is not UTF-8 (services/common/librdkafka.py): one agency's record
        # would stall every agency's Kafka submissions. A submission's trace starts here.
        # Bounded fetches (librdkafka.bounded_fetch): a compressed batch within the topic's limit can inflate a
        # thousand times, and each fetch holds at most about one.
        self._consumer = librdkafka.GroupConsumer(
            self._kafka,
            GROUP,
            group=GROUP,
            pattern=AGENCY_SUBMISSIONS_PATTERN,
            read_headers=False,
            max_record_bytes=AGENCY_SUBMISSION_MAX_BYTES,
            pace=KafkaPace(self._registry, lambda topic: agency_of(topic, "submissions"), "submissions"),
        )
        await self._consumer.start()

    async def run(self, stopping: asyncio.Event) -> None:
        assert self._consumer is not None
        await consume_batches(self._consumer, self.handle, stopping, service="gateway")

    async def stop(self) -> None:
        if self._consumer is not None:
            await self._consumer.stop()

    async def handle(self, records: list[ConsumerRecord]) -> None:
        outbox = Outbox(self._producer, self._codec)
        for record in records:
            await self._one(record, outbox)
        await outbox.flush()

    async def _one(self, record: ConsumerRecord, outbox: Outbox) -> None:
        agency = agency_of(record.topic, "submissions")
        registry = self._registry.current
        if agency is None or agency not in registry.agencies:
            # Nobody may read such a topic's rejections; an operator should see who wrote there and why.
            await self._quarantine.put(record, f"a submission on {record.topic}: no such agency", "gateway")
            return
        traceparent = tracing.child_of(tracing.from_headers(record.headers))
        part = librdkafka.oversized(record)
        if part is not None:  # as HTTP refuses a body too large (413), not set aside: nothing of it is kept
            await self._reject(outbox, agency, record, too_large(record, part), traceparent)
            return
        try:
            request = self._codec.decode(record.value, SubmitAlert)
        except CodecError as exc:
            await self._quarantine.put(record, str(exc), "gateway")
            await self._reject(outbox, agency, record, unsupported(exc), traceparent)
            return
        if registry.is_suspended(("agency", agency)):
            outcome: intake.Accepted | intake.Refused = intake.suspended(agency)
        else:
            outcome = intake.admit(
                agency,
                request.body,
                intake.record_key(record.key),
                now=utcnow(),
                keys=self._keys,
                max_body_bytes=self._max_body_bytes,
                key_required=True,
            )
        if isinstance(outcome, intake.Refused):
            await self._reject(outbox, agency, record, outcome, traceparent)
            return
        alert = outcome.record.alert
        await outbox.send(ALERTS_SUBMITTED, outcome.partition_key, outcome.record, traceparent)
        log.info(
            "alert.submitted",
            alert_id=outcome.record.alert_id,
            agency=agency,
            category=alert.category,
            severity=alert.severity,
            tlp=alert.tlp,
            channel="kafka",
            offset=record.offset,
            trace_id=tracing.trace_id(traceparent),
        )

    async def _reject(
        self, outbox: Outbox, agency: str, record: ConsumerRecord, refusal: intake.Refused, traceparent: str
    ) -> None:
        topic = agency_rejection_topic(agency)
        await outbox.send(topic, rejection_key(record), rejection(agency, record, refusal), traceparent)
        log.info(
            "submission.rejected",
            agency=agency,
            error=refusal.error,
            problems=len(refusal.problems),
            partition=record.partition,
            offset=record.offset,
            trace_id=tracing.trace_id(traceparent),
        )
