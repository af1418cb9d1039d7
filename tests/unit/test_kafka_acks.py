"""The gateway's forwarder of agencies' own Kafka acks: a bad record in a batch is quarantined with its
reason, and the good ones around it are forwarded."""

from __future__ import annotations

import asyncio
from typing import Any, cast

from aiokafka import AIOKafkaProducer, ConsumerRecord

from services.common.codec import Codec
from services.common.records import AckSubmitted, Quarantined, utcnow
from services.common.registry import Agency, RegistryDocument
from services.common.settings import KafkaSettings
from services.common.topics import ACKS_SUBMITTED, RECORDS_QUARANTINE
from services.gateway.kafka_acks import KafkaAcks
from tests.support.views import loaded_views


class FakeProducer:
    """Keeps what is sent, by topic; every send is acknowledged at once."""

    def __init__(self) -> None:
        self.sent: list[tuple[str, bytes]] = []

    async def send(self, topic: str, value: bytes, **_: Any) -> asyncio.Future[None]:
        self.sent.append((topic, value))
        done: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        done.set_result(None)
        return done

    async def send_and_wait(self, topic: str, value: bytes, **_: Any) -> None:
        self.sent.append((topic, value))


def on_topic(topic: str, offset: int, value: bytes) -> ConsumerRecord[bytes, bytes]:
    return ConsumerRecord(topic, 0, offset, 0, 0, None, value, None, 0, len(value), [])


async def test_poison_and_acks_in_another_agencys_name_are_quarantined_and_the_rest_forwarded(codec: Codec) -> None:
    """Empty, corrupt and impersonating records go to records.quarantine with their reasons; good acks go on."""
    producer = FakeProducer()
    acks = KafkaAcks(KafkaSettings(), codec, cast(AIOKafkaProducer, producer))
    topic = "agency.JO-B.acks"

    def ack(agency: str, ack_id: str) -> bytes:
        return codec.encode(
            AckSubmitted(
                ack_id=ack_id,
                alert_id="5b0e7a52-9c1e-4a57-8d9e-2f7b1c3d4e5f",
                agency=agency,
                channel="kafka",
                submitted_at=utcnow(),
            )
        )

    good = ack("JO-B", "good-1")
    batch = [
        on_topic(topic, 0, good),
        on_topic(topic, 1, b""),
        on_topic(topic, 2, good[:20]),
        on_topic(topic, 3, ack("IQ-A", "forged")),
        on_topic(topic, 4, ack("JO-B", "good-2")),
    ]
    await asyncio.wait_for(acks.forward(batch), 5)
    forwarded = [codec.decode(v, AckSubmitted).ack_id for t, v in producer.sent if t == ACKS_SUBMITTED]
    quarantined = [codec.decode(v, Quarantined) for t, v in producer.sent if t == RECORDS_QUARANTINE]
    assert forwarded == ["good-1", "good-2"]
    assert [(q.offset, q.service) for q in quarantined] == [(1, "gateway"), (2, "gateway"), (3, "gateway")]
    assert quarantined[2].reason == "an ack for 'IQ-A' written to agency.JO-B.acks"


async def test_an_ack_from_a_suspended_or_unknown_agency_is_refused_as_over_http(codec: Codec) -> None:
    """The registry in force decides: a suspended agency's ack (and one from an agency it no longer lists) is
    quarantined, not forwarded, however it reached its topic (review finding)."""
    doc = RegistryDocument(
        agencies=[
            Agency(code="JO-B", name="b", country="JO"),
            Agency(code="OM-S", name="s", country="OM", active=False),
        ]
    )
    registry, _, _ = loaded_views(doc, codec)
    producer = FakeProducer()
    acks = KafkaAcks(KafkaSettings(), codec, cast(AIOKafkaProducer, producer), registry)

    def ack(agency: str) -> bytes:
        return codec.encode(
            AckSubmitted(
                ack_id=f"from-{agency}",
                alert_id="5b0e7a52-9c1e-4a57-8d9e-2f7b1c3d4e5f",
                agency=agency,
                channel="kafka",
                submitted_at=utcnow(),
            )
        )

    batch = [
        on_topic("agency.JO-B.acks", 0, ack("JO-B")),
        on_topic("agency.OM-S.acks", 0, ack("OM-S")),
        on_topic("agency.XX-GONE.acks", 0, ack("XX-GONE")),
    ]
    await asyncio.wait_for(acks.forward(batch), 5)
    forwarded = [codec.decode(v, AckSubmitted).ack_id for t, v in producer.sent if t == ACKS_SUBMITTED]
    refused = [codec.decode(v, Quarantined).reason for t, v in producer.sent if t == RECORDS_QUARANTINE]
    assert forwarded == ["from-JO-B"]
    assert refused == [
        "OM-S is suspended or not in the registry in force",
        "XX-GONE is suspended or not in the registry in force",
    ]
