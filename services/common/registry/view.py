"""A live, read-only view of the latest registry, followed from the compacted topic `registry.config`.

Every service runs one. `start()` returns once the latest published registry has been read (or the topic
was found empty), so a service is never ready with a stale or empty view by accident; `run()` then keeps
following the topic, and a new version replaces the whole `Registry` at once, so a reader never sees half
of an apply. A record that does not decode is quarantined (services/common/quarantine.py) and the last
good registry stays in force. What decodes is not validated again here: `rctc registry apply` validated it,
and rules that tighten later (document.py) must not make every service drop a registry already in force.
"""

from __future__ import annotations

import asyncio

from aiokafka import AIOKafkaConsumer, ConsumerRecord, TopicPartition

from services.common.codec import Codec
from services.common.errors import CodecError
from services.common.kafka import consumer, replay_from_beginning
from services.common.logs import get_logger
from services.common.quarantine import Quarantine, noted
from services.common.registry.model import Registry, RegistryPublished
from services.common.settings import KafkaSettings
from services.common.topics import REGISTRY

log = get_logger(__name__)


class RegistryView:
    def __init__(self, kafka: KafkaSettings, codec: Codec, *, name: str) -> None:
        self._kafka = kafka
        self._codec = codec
        self._name = name
        self._consumer: AIOKafkaConsumer | None = None
        self.current = Registry.empty()
        self.loaded = False
        self._changed = asyncio.Condition()
        self._quarantine = Quarantine.standalone(kafka, codec, f"{name}-registry")

    async def start(self) -> None:
        c = consumer(self._kafka, f"{self._name}-registry", group=None, follower=True)
        self._consumer = c  # kept before start, so stop() closes it even if start fails
        await c.start()
        await replay_from_beginning(c, [TopicPartition(REGISTRY, 0)], self._poll)
        self.loaded = True

    async def run(self, stopping: asyncio.Event) -> None:
        while not stopping.is_set():
            await self._poll(500)

    async def stop(self) -> None:
        if self._consumer is not None:
            await self._consumer.stop()
            self._consumer = None
        await self._quarantine.close()

    async def _refuse(self, record: ConsumerRecord, reason: str) -> None:
        """Quarantine what arrives live; only log and count what the start replays (quarantine.py says why)."""
        if self.loaded:
            await self._quarantine.put(record, reason, self._name, best_effort=True)
        else:
            noted(record, reason, self._name, written=False)

    async def wait_for_version(self, version: int) -> Registry:
        """Wait until at least `version` is loaded (bound it with asyncio.timeout)."""
        async with self._changed:
            await self._changed.wait_for(lambda: self.current.version >= version)
        return self.current

    async def wait_until_published(self, stopping: asyncio.Event) -> bool:
        """Wait for the first published registry; False when `stopping` is set first.

        Routing or delivering against an empty registry would share with nobody and commit, so the
        services that decide wait here before they consume.
        """
        published = asyncio.create_task(self.wait_for_version(1))
        stopped = asyncio.create_task(stopping.wait())
        await asyncio.wait({published, stopped}, return_when=asyncio.FIRST_COMPLETED)
        for task in (published, stopped):
            task.cancel()
        return self.current.version > 0

    async def _poll(self, timeout_ms: int) -> None:
        assert self._consumer is not None
        batches = await self._consumer.getmany(timeout_ms=timeout_ms)
        latest: RegistryPublished | None = None
        for records in batches.values():
            for record in records:
                if record.value is None:
                    continue  # a compaction tombstone: nothing was published there
                try:
                    snapshot = self._codec.decode(record.value, RegistryPublished)
                except CodecError as exc:
                    # Keep serving the last good registry: a bad record must not take routing down.
                    await self._refuse(record, str(exc))
                else:
                    latest = snapshot
        if latest is not None and latest.version > self.current.version:
            self.current = Registry(latest)
            log.info(
                "registry.loaded",
                version=latest.version,
                agencies=len(latest.agencies),
                agreements=len(latest.agreements),
                sha256=latest.sha256[:12],
            )
            async with self._changed:
                self._changed.notify_all()
