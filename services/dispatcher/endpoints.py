"""Webhook endpoint states shared by every dispatcher replica, on the compacted topic deliveries.endpoints.

`disabled` (the receiver answered 410 Gone, or an operator said so) stops deliveries: they go to
deliveries.dead at once, replayable once the endpoint is enabled again, while the agency's Kafka topic
keeps receiving every alert. `failing` says a circuit breaker opened; `active` is the normal state.
Operators see the states with `rctc endpoints list` and re-enable with `rctc endpoints enable CODE`.
"""

from __future__ import annotations

from aiokafka import AIOKafkaProducer

from services.common.codec import Codec
from services.common.follower import TopicFollower
from services.common.records import EndpointChanged, EndpointState, utcnow
from services.common.settings import KafkaSettings
from services.common.topics import DELIVERIES_ENDPOINTS


class EndpointStates(TopicFollower[EndpointChanged]):
    topic = DELIVERIES_ENDPOINTS
    kind = EndpointChanged

    def __init__(self, kafka: KafkaSettings, codec: Codec, *, name: str) -> None:
        super().__init__(kafka, codec, name=name, label="endpoints")
        self.current: dict[str, EndpointChanged] = {}

    def state(self, agency: str, url: str) -> EndpointState:
        """An endpoint's state; a change recorded for another URL (the agency moved) no longer applies."""
        change = self.current.get(agency)
        return change.state if change is not None and change.url == url else "active"

    async def apply(self, values: list[EndpointChanged]) -> None:
        for change in values:
            self.current[change.agency] = change


def endpoint_change(agency: str, url: str, state: EndpointState, reason: str, by: str) -> EndpointChanged:
    return EndpointChanged(agency=agency, url=url, state=state, reason=reason, changed_at=utcnow(), changed_by=by)


async def publish_change(producer: AIOKafkaProducer, codec: Codec, change: EndpointChanged) -> None:
    await producer.send_and_wait(DELIVERIES_ENDPOINTS, codec.encode(change), key=change.agency.encode())


async def publish_state(
    producer: AIOKafkaProducer, codec: Codec, agency: str, url: str, state: EndpointState, reason: str, by: str
) -> EndpointChanged:
    change = endpoint_change(agency, url, state, reason, by)
    await publish_change(producer, codec, change)
    return change
