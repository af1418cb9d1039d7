"""Poison records on every topic a service consumes: each is set aside in records.quarantine, every good
record around it is still handled, and no service stops.

For each topic: an empty value, a truncated record, a record with one bit flipped, a record under a
fingerprint nobody knows and an oversized one (a good record followed by 900 KB), written between good
records on the same partition, with the real services running against the real broker.
"""

from __future__ import annotations

import asyncio
import json
import uuid
from datetime import UTC, datetime

import msgspec
import pytest
from aiokafka import AIOKafkaProducer
from aiokafka.errors import MessageSizeTooLargeError

from services.common.codec import MAGIC, Codec
from services.common.errors import CodecError
from services.common.kafka import producer, read_to_end
from services.common.records import (
    AckSubmitted,
    AlertRejected,
    AlertRouted,
    AlertSubmitted,
    AuditRecorded,
    DeliverWebhook,
    DeliveryAttempted,
    EndpointChanged,
    EscalationRaised,
    Quarantined,
    WatchlistEntryAdded,
    utcnow,
)
from services.common.registry.model import RegistryPublished
from services.common.registry.publish import publish_registry
from services.common.settings import KafkaSettings
from services.common.topics import (
    ACKS_SUBMITTED,
    ALERTS_ENRICHED,
    ALERTS_ESCALATIONS,
    ALERTS_REJECTED,
    ALERTS_ROUTED,
    ALERTS_SUBMITTED,
    AUDIT_EVENTS,
    DELIVERIES_ENDPOINTS,
    DELIVERIES_EVENTS,
    DELIVERIES_WEBHOOK,
    RECORDS_QUARANTINE,
    REGISTRY,
    WATCHLIST_ENTRIES,
    agency_ack_topic,
    retry_topic,
)
from services.demo.receivers import Receivers
from services.gateway.submission import AGENCY_RECORD_MAX_BYTES
from tests.support.system import system
from tests.support.world import Cast, agreement, eventually, rctc, read_topic, registry
from tests.unit.samples import enriched, sample_alert

Source = tuple[str, int, int]


def poisons(codec: Codec, good: msgspec.Struct) -> dict[str, bytes]:
    """The five kinds of bad value, made from a good record of the topic's own type."""
    data = codec.encode(good)
    flipped = next(
        candidate
        for i in range(len(data) - 1, 9, -1)  # from the end: a flip in the body, not the header
        for bit in range(8)
        if _refused(codec, candidate := data[:i] + bytes([data[i] ^ (1 << bit)]) + data[i + 1 :], type(good))
    )
    return {
        "empty": b"",
        "truncated": data[: len(data) // 2],
        "bit-flipped": flipped,
        "foreign-fingerprint": MAGIC + b"\x13\x37\xde\xad\xbe\xef\x00\x01" + data[10:],
        "oversized": data + bytes(900_000),
    }


def _refused(codec: Codec, data: bytes, into: type[msgspec.Struct]) -> bool:
    try:
        codec.decode(data, into)
    except CodecError:
        return True
    return False


async def write(p: AIOKafkaProducer, topic: str, value: bytes, key: bytes = b"fuzz") -> Source:
    """Write one record to partition 0 (all of a topic's records in one order) and say where it went."""
    meta = await p.send_and_wait(topic, value, key=key, partition=0)
    return topic, 0, meta.offset


async def test_poison_records_are_quarantined_and_their_neighbours_handled(
    kafka: KafkaSettings, codec: Codec, receivers: tuple[str, Receivers]
) -> None:
    """Every bad record on every consumed topic is in records.quarantine; every good one is handled."""
    url, rcv = receivers
    cast = Cast()
    origin, jo = cast.agency("IQ-A", "IQ", webhook_url=url), cast.agency("JO-B", "JO", webhook_url=url)
    for code, keys in cast.secrets.items():
        rcv.register(code, keys)
    first = registry([origin, jo], [agreement(f"FUZZ-{cast.suffix}", [origin.code, jo.code])])
    await publish_registry(kafka, codec, first, source="test", replication_factor=1)
    at = utcnow()
    acks = agency_ack_topic(jo.code)
    # A good record of each topic's type, to make its poison from.
    templates: dict[str, msgspec.Struct] = {
        ALERTS_SUBMITTED: AlertSubmitted(alert_id="t", origin=origin.code, submitted_at=at, alert=sample_alert()),
        ALERTS_ENRICHED: enriched(sample_alert(), origin.code, "t"),
        acks: AckSubmitted(ack_id="t", alert_id="t", agency=jo.code, channel="kafka", submitted_at=at),
        ALERTS_ROUTED: AlertRouted(
            alert_id="t",
            origin="o",
            msg_type="Alert",
            severity="Minor",
            urgency="Past",
            routed_at=at,
            registry_version=1,
            decisions=(),
        ),
        ACKS_SUBMITTED: AckSubmitted(ack_id="t", alert_id="t", agency=jo.code, channel="http", submitted_at=at),
        DELIVERIES_EVENTS: DeliveryAttempted(
            webhook_id="t", alert_id="t", agency="a", attempt=1, outcome="delivered", latency_ms=1, attempted_at=at
        ),
        ALERTS_ESCALATIONS: EscalationRaised(
            alert_id="t", agency="a", origin="o", level=1, reason="r", deadline=at, raised_at=at
        ),
        ALERTS_REJECTED: AlertRejected(alert_id="t", origin="o", stage="router", reason="r", rejected_at=at),
        DELIVERIES_WEBHOOK: DeliverWebhook(
            webhook_id="t",
            alert_id="t",
            agency="a",
            event_type="alert.created",
            urgency="Past",
            payload=b"{}",
            requested_at=at,
        ),
        retry_topic("5s"): DeliverWebhook(
            webhook_id="t",
            alert_id="t",
            agency="a",
            event_type="alert.created",
            urgency="Past",
            payload=b"{}",
            requested_at=at,
        ),
        DELIVERIES_ENDPOINTS: EndpointChanged(
            agency="a", url="https://a.example/", state="active", reason="r", changed_at=at, changed_by="t"
        ),
        REGISTRY: RegistryPublished(
            version=1,
            sha256="0" * 64,
            published_at=at,
            published_by="t",
            source="t",
            agencies=[a.entry() for a in first.agencies],
        ),
        WATCHLIST_ENTRIES: WatchlistEntryAdded(kind="ip", value="10.0.0.1", reason="r", added_by="t", added_at=at),
    }
    # A good watchlist entry written after the poison: the enricher's view still takes it up.
    watched = f"fuzz-{cast.suffix.lower()}.example"
    entry_key = f"domain:{watched}".encode()
    entry = WatchlistEntryAdded(kind="domain", value=watched, reason="r", added_by="t", added_at=at)
    alert = sample_alert(affected_countries=["IQ", "JO"], sent=datetime.now(UTC))
    good_ids: list[str] = []
    ack_ids: list[str] = []
    bad: dict[Source, str] = {}
    p = producer(kafka, "fuzz")
    await p.start()
    try:
        async with system(kafka, codec) as sys_:

            async def good_wave() -> None:
                """Good records on the topics agencies and services feed: alerts (both ways in) and acks."""
                for _ in range(2):
                    sid, eid = str(uuid.uuid4()), str(uuid.uuid4())  # alert ids as the gateway issues them
                    submitted = AlertSubmitted(alert_id=sid, origin=origin.code, submitted_at=utcnow(), alert=alert)
                    await write(p, ALERTS_SUBMITTED, codec.encode(submitted), key=sid.encode())
                    await write(p, ALERTS_ENRICHED, codec.encode(enriched(alert, origin.code, eid)), key=eid.encode())
                    good_ids.extend([sid, eid])
                    ack_id = f"fuzz-ack-{uuid.uuid4()}"
                    ack = AckSubmitted(ack_id=ack_id, alert_id=eid, agency=jo.code, channel="kafka", submitted_at=at)
                    await write(p, acks, codec.encode(ack))
                    ack_ids.append(ack_id)

            # Scenario: good records, then every kind of poison on every consumed topic, then good again.
            await good_wave()
            for topic, template in templates.items():
                for kind, value in poisons(codec, template).items():
                    if topic == acks and len(value) > AGENCY_RECORD_MAX_BYTES:
                        # An agency's own topic caps its records (max.message.bytes): the broker refuses it.
                        # From a producer of its own: a refused batch leaves an idempotent producer's
                        # sequence numbers behind the broker's.
                        agency_side = producer(kafka, "fuzz-agency")
                        await agency_side.start()
                        try:
                            with pytest.raises(MessageSizeTooLargeError):
                                await write(agency_side, topic, value)
                        finally:
                            await agency_side.stop()
                        continue
                    bad[await write(p, topic, value)] = f"{kind} on {topic}"
            await good_wave()
            await write(p, WATCHLIST_ENTRIES, codec.encode(entry), key=entry_key)
            # A registry published after the poison on registry.config is still taken up by every reader.
            second = registry([origin, jo, cast.agency("KW-C", "KW")], first.agreements)
            v2 = (await publish_registry(kafka, codec, second, source="test", replication_factor=1)).version

            async def every_good_record_handled() -> bool:
                routed = {r.alert_id for _, r in await read_topic(kafka, codec, ALERTS_ROUTED, AlertRouted)}
                audited = {r.alert_id for _, r in await read_topic(kafka, codec, AUDIT_EVENTS, AuditRecorded)}
                forwarded = {r.ack_id for _, r in await read_topic(kafka, codec, ACKS_SUBMITTED, AckSubmitted)}
                delivered = {payload["data"]["alert_id"] for payload in rcv.received[jo.code].values()}
                tracked = set(sys_.tracker.ledger.alerts)
                views = [sys_.router.registry, sys_.dispatcher.registry, sys_.gateway.registry]
                return (
                    set(good_ids) <= routed & audited & delivered & tracked
                    and set(ack_ids) <= forwarded
                    and all(v.current.version >= v2 for v in views)
                    and entry_key.decode() in sys_.enricher.watchlist.current
                )

            await eventually(every_good_record_handled, within_s=45)

            async def quarantined() -> set[Source]:
                entries = [
                    codec.decode(r.value, Quarantined)
                    async for r in read_to_end(kafka, RECORDS_QUARANTINE, name="test-quarantine")
                ]
                return {(q.topic, q.partition, q.offset) for q in entries} & set(bad)

            async def all_quarantined() -> bool:
                return await quarantined() == set(bad)

            await eventually(all_quarantined, within_s=30)
            # An operator finds the one from an agency's acks topic, and its bytes as they were.
            code, out, _ = await rctc("quarantine", "list", "--topic", acks, kafka=kafka)
            listed = [json.loads(line) for line in out.splitlines()]
            assert (code, {e["source"] for e in listed}) == (0, {"/".join(map(str, s)) for s in bad if s[0] == acks})
            empty = next(e for e in listed if e["value_size"] == 0)
            code, out, _ = await rctc("quarantine", "show", str(empty["offset"]), kafka=kafka)
            shown = json.loads(out)
            assert (code, shown["value_base64"], shown["service"]) == (0, "", "gateway")
            # A restarted tracker replays its topics, poison included, from the beginning: it starts, and
            # writes nothing to the quarantine again (only what it meets live; services/common/quarantine.py).
            before = await _entries(kafka, codec)
            assert before >= 15  # its three own topics' five kinds each
            await sys_.restart_tracker()
            assert set(good_ids) <= set(sys_.tracker.ledger.alerts)
            assert await _entries(kafka, codec) == before
            # No service stopped: each one's run task (named by runner.running) is still going.
            running = {t.get_name() for t in asyncio.all_tasks() if not t.done()}
            services = [sys_.tracker, sys_.enricher, sys_.router, sys_.auditor, sys_.dispatcher, sys_.gateway]
            assert {f"{s.name}.run" for s in services} <= running
    finally:
        await p.send_and_wait(WATCHLIST_ENTRIES, None, key=entry_key)  # this test's entry goes with it
        await p.stop()
    assert len(bad) == 5 * len(templates) - 1  # all but the oversized record the acks topic refused


async def _entries(kafka: KafkaSettings, codec: Codec) -> int:
    """How many quarantine entries the tracker wrote (other services may still be adding their own)."""
    records = [r async for r in read_to_end(kafka, RECORDS_QUARANTINE, name="test-quarantine-count")]
    return sum(1 for r in records if codec.decode(r.value, Quarantined).service == "tracker")
