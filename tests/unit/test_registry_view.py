"""A registry view meets a record on registry.config it cannot decode: the last good registry stays in force."""

from __future__ import annotations

import asyncio
from typing import Any

import structlog
from aiokafka import ConsumerRecord, TopicPartition

from services.common.codec import Codec
from services.common.records import utcnow
from services.common.registry.model import RegistryPublished
from services.common.registry.view import RegistryView
from services.common.settings import KafkaSettings
from services.common.topics import REGISTRY

TP = TopicPartition(REGISTRY, 0)


class FakeConsumer:
    def __init__(self, values: list[bytes | None]) -> None:
        self.records = [
            ConsumerRecord(REGISTRY, 0, i, 0, 0, b"registry", v, None, 0, 0, []) for i, v in enumerate(values)
        ]

    async def getmany(self, timeout_ms: int = 0) -> dict[TopicPartition, list[Any]]:
        await asyncio.sleep(0)
        records, self.records = self.records, []
        return {TP: records} if records else {}


def published(codec: Codec, version: int) -> bytes:
    snapshot = RegistryPublished(
        version=version, sha256="0" * 64, published_at=utcnow(), published_by="t", source="t", agencies=[]
    )
    return codec.encode(snapshot)


async def test_poison_on_registry_config_keeps_the_last_good_registry(codec: Codec) -> None:
    """Version 1, then an empty, a truncated and a tombstone record: version 1 stays; replayed ones are only
    logged and counted (written=False), since a replay at every start would quarantine them again."""
    good = published(codec, 1)
    view = RegistryView(KafkaSettings(), codec, name="test")
    view._consumer = FakeConsumer([good, b"", good[:30], None])  # type: ignore[assignment]
    with structlog.testing.capture_logs() as logs:
        await view._poll(0)
    quarantined = [(e["offset"], e["written"]) for e in logs if e["event"] == "record.quarantined"]
    assert (view.current.version, quarantined) == (1, [(1, False), (2, False)])
