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

from services.common.codec import Codec
from services.common.follower import TopicFollower
from services.common.logs import get_logger
from services.common.registry.model import Registry, RegistryPublished
from services.common.settings import KafkaSettings
from services.common.topics import REGISTRY

log = get_logger(__name__)


class RegistryView(TopicFollower[RegistryPublished]):
    topic = REGISTRY
    kind = RegistryPublished

    def __init__(self, kafka: KafkaSettings, codec: Codec, *, name: str) -> None:
        super().__init__(kafka, codec, name=name, label="registry")
        self.current = Registry.empty()
        self._changed = asyncio.Condition()

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

    async def apply(self, values: list[RegistryPublished]) -> None:
        """The newest of what arrived replaces the whole registry at once (never an older version)."""
        latest = max(values, key=lambda v: v.version)
        if latest.version <= self.current.version:
            return
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
