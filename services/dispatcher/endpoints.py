"""Webhook endpoint states shared by every dispatcher replica, on the compacted topic deliveries.endpoints.

`disabled` (the receiver answered 410 Gone, or an operator said so) stops deliveries: they go to
deliveries.dead at once, replayable once the endpoint is enabled again, while the agency's Kafka topic
keeps receiving every alert. `failing` says a circuit breaker opened; `active` is the normal state.
Operators see the states with `rctc endpoints list` and re-enable with `rctc endpoints enable CODE`.
"""

from __future__ import annotations

import asyncio

from aiokafka import AIOKafkaConsumer, AIOKafkaProducer

from services.common.codec import Codec
from services.common.errors import CodecError
from services.common.kafka import consumer, partitions_of, replay_from_beginning
from services.common.logs import get_logger
from services.common.quarantine import Quarantine, noted
from services.common.records import EndpointChanged, EndpointState, utcnow
from services.common.settings import KafkaSettings
from services.common.topics import DELIVERIES_ENDPOINTS

log = get_logger("rctc.dispatcher.endpoints")


class EndpointStates:
    def __init__(self, kafka: KafkaSettings, codec: Codec, *, name: str) -> None:
        self._kafka = kafka
        self._codec = codec
        self._name = name
        self._consumer: AIOKafkaConsumer | None = None
        self.current: dict[str, EndpointChanged] = {}
        self._live = False
        self._quarantine = Quarantine.standalone(kafka, codec, f"{name}-endpoints")

    def state(self, agency: str, url: str) -> EndpointState:
        """An endpoint's state; a change recorded for another URL (the agency moved) no longer applies."""
        change = self.current.get(agency)
        return change.state if change is not None and change.url == url else "active"

    async def start(self) -> None:
        self._consumer = c = consumer(self._kafka, f"{self._name}-endpoints", group=None, follower=True)
        await c.start()
        await replay_from_beginning(c, await partitions_of(c, [DELIVERIES_ENDPOINTS]), self._poll)
        self._live = True

    async def run(self, stopping: asyncio.Event) -> None:
        while not stopping.is_set():
            await self._poll(500)

    async def stop(self) -> None:
        if self._consumer is not None:
            await self._consumer.stop()
        await self._quarantine.close()

    async def _poll(self, timeout_ms: int) -> None:
        assert self._consumer is not None
        for records in (await self._consumer.getmany(timeout_ms=timeout_ms)).values():
            for r in records:
                if r.value is None:
                    continue  # a compaction tombstone: nothing was recorded there
                try:
                    change = self._codec.decode(r.value, EndpointChanged)
                except CodecError as exc:
                    # Written only once caught up: the replay at every start would write it again
                    # (services/common/quarantine.py).
                    if self._live:
                        await self._quarantine.put(r, str(exc), self._name, best_effort=True)
                    else:
                        noted(r, str(exc), self._name, written=False)
                    continue
                self.current[change.agency] = change


async def publish_state(
    producer: AIOKafkaProducer, codec: Codec, agency: str, url: str, state: EndpointState, reason: str, by: str
) -> EndpointChanged:
    change = EndpointChanged(agency=agency, url=url, state=state, reason=reason, changed_at=utcnow(), changed_by=by)
    await producer.send_and_wait(DELIVERIES_ENDPOINTS, codec.encode(change), key=agency.encode())
    return change
