"""`rctc tail TOPIC`: print a topic's records decoded, one JSON line each.

No topic it knows carries a secret: the registry's token hashes and webhook secrets are on topics of their
own (`registry.credentials`, `registry.webhook-secrets`) that it does not print.
"""

from __future__ import annotations

import msgspec

from services.common import topics
from services.common.codec import Codec
from services.common.errors import CodecError, RctcError
from services.common.kafka import consumer, partitions_of
from services.common.records import (
    AckSubmitted,
    AlertCorrelated,
    AlertEnriched,
    AlertRejected,
    AlertRouted,
    AlertShared,
    AlertSubmitted,
    AuditCheckpointed,
    AuditRecorded,
    DeliverWebhook,
    DeliveryAttempted,
    EndpointChanged,
    EscalationRaised,
    IndicatorIndexed,
    IndicatorSighted,
    OnwardAction,
    Quarantined,
    ReleaseIssued,
    ReleaseScheduled,
    ResendRequested,
    SubmissionRejected,
    SubmitAlert,
    WatchlistEntryAdded,
)
from services.common.registry import RegistryPublished
from services.common.settings import KafkaSettings

RECORD_TYPES: dict[str, type[msgspec.Struct]] = {
    topics.ALERTS_SUBMITTED: AlertSubmitted,
    topics.ALERTS_ENRICHED: AlertEnriched,
    topics.ALERTS_REJECTED: AlertRejected,
    topics.ALERTS_ROUTED: AlertRouted,
    topics.ALERTS_CORRELATED: AlertCorrelated,
    topics.CORRELATOR_SIGHTINGS: IndicatorSighted,
    topics.CORRELATOR_INDEX_CHANGELOG: IndicatorIndexed,
    topics.ALERTS_ESCALATIONS: EscalationRaised,
    topics.ALERTS_SCHEDULED: ReleaseScheduled,
    topics.ACKS_SUBMITTED: AckSubmitted,
    topics.DELIVERIES_WEBHOOK: DeliverWebhook,
    topics.DELIVERIES_DEAD: DeliverWebhook,
    topics.DELIVERIES_EVENTS: DeliveryAttempted,
    topics.DELIVERIES_ENDPOINTS: EndpointChanged,
    topics.REGISTRY: RegistryPublished,
    topics.RECORDS_QUARANTINE: Quarantined,
    topics.AUDIT_EVENTS: AuditRecorded,
    topics.AUDIT_CHECKPOINTS: AuditCheckpointed,
    topics.REQUESTS_RESEND: ResendRequested,
    topics.REQUESTS_ONWARD: OnwardAction,
    topics.WATCHLIST_ENTRIES: WatchlistEntryAdded,
}


# Other record types a topic carries beside its main one: each such record is read as the type it names.
ALSO_ON: dict[str, tuple[type[msgspec.Struct], ...]] = {topics.ALERTS_SCHEDULED: (ReleaseIssued,)}


# The record type of each agency topic, by its last part (`agency.<CODE>.<kind>`).
AGENCY_RECORD_TYPES: dict[str, type[msgspec.Struct]] = {
    "alerts": AlertShared,
    "acks": AckSubmitted,
    "submissions": SubmitAlert,
    "rejections": SubmissionRejected,
}


def record_type(topic: str) -> type[msgspec.Struct]:
    kind = topic.rpartition(".")[2]
    if topic.startswith("agency.") and kind in AGENCY_RECORD_TYPES:
        return AGENCY_RECORD_TYPES[kind]
    if topic.startswith("deliveries.retry."):
        return DeliverWebhook
    try:
        return RECORD_TYPES[topic]
    except KeyError:
        raise RctcError(f"no record type is known for topic {topic}") from None


async def tail(kafka: KafkaSettings, topic: str, *, from_beginning: bool, count: int) -> int:
    kind = record_type(topic)
    others = {t.__name__: t for t in ALSO_ON.get(topic, ())}
    codec = Codec.from_directory()
    c = consumer(kafka, "tail", group=None, from_beginning=from_beginning)
    await c.start()
    seen = 0
    try:
        partitions = await partitions_of(c, [topic])
        c.assign(partitions)
        if from_beginning:
            await c.seek_to_beginning(*partitions)
        else:
            await c.seek_to_end(*partitions)
        while count == 0 or seen < count:
            for records in (await c.getmany(timeout_ms=1000)).values():
                for r in records:
                    try:
                        written = others.get(codec.record_name(r.value) or "", kind)
                        # A tombstone (a compacted topic's removal: a watchlist entry) prints as null.
                        value = None if r.value is None else msgspec.to_builtins(codec.decode(r.value, written))
                    except CodecError as exc:
                        value = {"unreadable": str(exc)}
                    line = {
                        "partition": r.partition,
                        "offset": r.offset,
                        "key": (r.key or b"").decode(),
                        "value": value,
                    }
                    print(msgspec.json.encode(line).decode(), flush=True)
                    seen += 1
    finally:
        await c.stop()
    return 0
