"""State a service keeps from a compacted topic: replayed to the topic's end at start, then followed.

    class EndpointStates(TopicFollower[EndpointChanged]):
        topic, kind = DELIVERIES_ENDPOINTS, EndpointChanged
        async def apply(self, values: list[EndpointChanged]) -> None: ...   # one poll's records, in order

    states = EndpointStates(kafka, codec, name="dispatcher", label="endpoints")
    await states.start()        # returns once everything published before it has been applied
    ... tasks.create_task(states.run(stopping)) ...
    await states.stop()

The registry view, the registry's secret views, the dispatcher's endpoint states and the enricher's watchlist
are all this one shape, so a fix to how a follower starts, polls or stops is made once. A group-less consumer
reads committed records only; a tombstone is skipped, unless the follower keeps state by key and overrides
`apply_changes`, which receives each record's key with its value or None for a tombstone:

    async def apply_changes(self, changes: list[tuple[bytes | None, EntryAdded | None]]) -> None: ...

A record that does not decode leaves the state as it was and is either
quarantined (once live: the replay at every start would write it again, quarantine.py) or, for topics whose
raw bytes may hold secrets that the quarantine's readers may not read, only logged and counted.
"""

from __future__ import annotations

import asyncio
import time
from typing import ClassVar, Generic, TypeVar

import msgspec
from aiokafka import AIOKafkaConsumer, ConsumerRecord

from services.common.codec import Codec
from services.common.errors import CodecError
from services.common.kafka import consumer, partitions_of, replay_from_beginning
from services.common.quarantine import Quarantine, noted
from services.common.settings import KafkaSettings

T = TypeVar("T", bound=msgspec.Struct)


class TopicFollower(Generic[T]):
    topic: ClassVar[str]
    kind: type[T]
    # False for topics whose raw bytes may hold secrets: an unreadable record is then only logged and counted.
    quarantine_unreadable: ClassVar[bool] = True
    # How far back the state reaches, in seconds (None: the whole topic, as a compacted topic's state needs).
    history_s: float | None = None

    def __init__(self, kafka: KafkaSettings, codec: Codec, *, name: str, label: str) -> None:
        self._kafka = kafka
        self._codec = codec
        self._name = name
        self._label = label  # the consumer's client id is `<name>-<label>`
        self._consumer: AIOKafkaConsumer | None = None
        self.loaded = False
        self._quarantine = (
            Quarantine.standalone(kafka, codec, f"{name}-{label}") if self.quarantine_unreadable else None
        )

    async def apply(self, values: list[T]) -> None:
        """Take one poll's decoded records, in the topic's order."""
        raise NotImplementedError

    async def apply_changes(self, changes: list[tuple[bytes | None, T | None]]) -> None:
        """Take one poll's records as (key, decoded value or None for a tombstone), in the topic's order.

        By default the tombstones are dropped and the values go to `apply`: a state kept by key overrides this.
        """
        values = [value for _, value in changes if value is not None]
        if values:
            await self.apply(values)

    async def start(self) -> None:
        c = consumer(self._kafka, f"{self._name}-{self._label}", group=None, follower=True)
        self._consumer = c  # kept before start, so stop() closes it even if start fails
        await c.start()
        since_ms = None if self.history_s is None else int((time.time() - self.history_s) * 1000)
        await replay_from_beginning(c, await partitions_of(c, [self.topic]), self._poll, since_ms=since_ms)
        self.loaded = True

    async def run(self, stopping: asyncio.Event) -> None:
        while not stopping.is_set():
            await self._poll(500)

    async def stop(self) -> None:
        if self._consumer is not None:
            await self._consumer.stop()
            self._consumer = None
        if self._quarantine is not None:
            await self._quarantine.close()

    async def _poll(self, timeout_ms: int) -> None:
        assert self._consumer is not None
        changes: list[tuple[bytes | None, T | None]] = []
        for records in (await self._consumer.getmany(timeout_ms=timeout_ms)).values():
            for record in records:
                if record.value is None:
                    changes.append((record.key, None))  # a tombstone: what the key held is gone
                    continue
                try:
                    changes.append((record.key, self._codec.decode(record.value, self.kind)))
                except CodecError as exc:
                    # What was applied before stays in force: a bad record must not take the service down.
                    await self._refuse(record, str(exc))
        if changes:
            await self.apply_changes(changes)

    async def _refuse(self, record: ConsumerRecord, reason: str) -> None:
        if self._quarantine is not None and self.loaded:
            await self._quarantine.put(record, reason, self._name, best_effort=True)
        else:
            noted(record, reason, self._name, written=False)
