"""Fail fast: an unexpected exception inside the router's or the dispatcher's loop stops the process (exit 1),
moves no position past unfinished work, and after a restart every alert is routed once and every delivery made.

The fault is injected in-process into a pure function the real service calls (the routing policy, the
key of a delivery's records), with the real service served by `runner.serve` on the real broker: what a
process would do is what `serve` does, SystemExit(1).
"""

from __future__ import annotations

import asyncio
import gc
import uuid
from collections.abc import Iterator
from typing import Any

import pytest
import structlog
from aiokafka import AIOKafkaConsumer, TopicPartition

import services.dispatcher.service as dispatcher_module
import services.router.service as router_module
from services.common.codec import Codec
from services.common.kafka import connection, group_id, produce_all, producer, read_to_end
from services.common.records import AlertEnriched, AlertShared, DeliveryAttempted, utcnow
from services.common.registry.publish import publish_registry
from services.common.runner import Service, running, serve
from services.common.settings import KafkaSettings, ServiceSettings
from services.common.topics import ALERTS_ENRICHED, DELIVERIES_EVENTS, DELIVERIES_WEBHOOK, agency_topic
from services.demo.receivers import Receivers
from services.dispatcher.service import build as build_dispatcher
from services.dispatcher.settings import DispatcherSettings
from services.router.payload import recipient_copy, webhook_request
from services.router.policy import Verdict
from services.router.service import build as build_router
from services.router.settings import RouterSettings
from tests.support.world import Cast, agreement, decisions, eventually, read_topic, registry
from tests.unit.samples import enriched, sample_alert

TOTAL = 60


class Injected(RuntimeError):
    """The fault: a bug nobody expected, raised from inside the service's loop."""


@pytest.fixture
def gc_restored() -> Iterator[None]:
    """`serve` freezes the collector's generations once started (gc_pauses.settle): undo it for other tests."""
    threshold = gc.get_threshold()
    yield
    gc.unfreeze()
    gc.set_threshold(*threshold)


async def serve_until_it_exits(service: Service, settings: ServiceSettings) -> tuple[int | str | None, list[Any]]:
    """Serve `service` as its process would; return serve's exit code and the log lines it wrote."""
    with structlog.testing.capture_logs() as lines:
        async with asyncio.timeout(60):
            with pytest.raises(SystemExit) as exited:
                await serve(service, settings)
    return exited.value.code, lines


async def committed(kafka: KafkaSettings, group: str, tp: TopicPartition) -> int | None:
    checker = AIOKafkaConsumer(**connection(kafka), group_id=group, enable_auto_commit=False)
    await checker.start()
    try:
        offset: int | None = await checker.committed(tp)
        return offset
    finally:
        await checker.stop()


async def test_a_bug_in_the_routers_loop_stops_it_and_a_restart_routes_the_failed_batch_once(
    kafka: KafkaSettings, codec: Codec, monkeypatch: pytest.MonkeyPatch, gc_restored: None
) -> None:
    """The router exits 1 on an unexpected exception mid-batch; restarted, it routes every alert exactly once."""
    cast = Cast()
    origin, recipient = cast.agency("IQ-A", "IQ"), cast.agency("JO-B", "JO")
    doc = registry([origin, recipient], [agreement(f"F-{cast.suffix}", [origin.code, recipient.code])])
    await publish_registry(kafka, codec, doc, source="test", replication_factor=1)
    ids = [f"fault-{uuid.uuid4()}" for _ in range(TOTAL)]
    poison = ids[TOTAL // 2]
    now, alert = utcnow(), sample_alert()
    records = [
        AlertEnriched(alert_id=i, origin=origin.code, submitted_at=now, enriched_at=now, priority=2, alert=alert)
        for i in ids
    ]
    await produce_all(kafka, "feed", ALERTS_ENRICHED, [(r.alert_id.encode(), codec.encode(r)) for r in records])

    # Scenario: the routing policy raises for one alert (a bug), in the middle of a batch of ten.
    real_decide = router_module.fan_out

    def faulty(alert: AlertEnriched, *args: Any, **kwargs: Any) -> Any:
        if alert.alert_id == poison:
            raise Injected(f"routing {alert.alert_id}")
        return real_decide(alert, *args, **kwargs)

    monkeypatch.setattr(router_module, "fan_out", faulty)
    settings = RouterSettings(kafka=kafka, max_batch=10, offset_commit_interval_s=0.0)
    code, lines = await serve_until_it_exits(build_router(settings, codec), settings)

    # It stopped by itself with exit code 1, the traceback logged, and the poison's batch not routed.
    assert code == 1
    crashed = [line for line in lines if line["event"] == "loop.crashed"]
    assert crashed and crashed[0]["service"] == "router" and isinstance(crashed[0]["exc_info"], Injected)
    assert poison not in await decisions(kafka, codec, set(ids))
    [where] = [r async for r in read_to_end(kafka, ALERTS_ENRICHED, name="fault-reader") if r.key == poison.encode()]
    position = await committed(kafka, group_id(kafka, "router"), TopicPartition(ALERTS_ENRICHED, where.partition))
    assert position is None or position <= where.offset, "the router committed past the batch that failed"

    # A restart without the fault routes what is left, the failed batch included, each alert exactly once.
    monkeypatch.setattr(router_module, "fan_out", real_decide)
    async with running(build_router(settings, codec)):
        await eventually(lambda: _all_decided(kafka, codec, ids), within_s=60)
    assert set((await decisions(kafka, codec, set(ids))).values()) == {1}
    copies = [c.alert_id for _, c in await read_topic(kafka, codec, agency_topic(recipient.code), AlertShared)]
    assert sorted(copies) == sorted(ids)


async def test_a_bug_in_the_dispatchers_loop_stops_it_and_a_restart_makes_every_delivery(
    kafka: KafkaSettings,
    codec: Codec,
    receivers: tuple[str, Receivers],
    monkeypatch: pytest.MonkeyPatch,
    gc_restored: None,
) -> None:
    """The dispatcher exits 1 on an unexpected exception in a delivery; restarted, every delivery is made."""
    url, rcv = receivers
    cast = Cast()
    origin, recipient = cast.agency("IQ-A", "IQ"), cast.agency("JO-B", "JO", webhook_url=url)
    rcv.register(recipient.code, cast.secrets[recipient.code])
    doc = registry([origin, recipient], [agreement(f"G-{cast.suffix}", [origin.code, recipient.code])])
    await publish_registry(kafka, codec, doc, source="test", replication_factor=1)
    ids = [f"fault-{uuid.uuid4()}" for _ in range(TOTAL)]
    poison = ids[TOTAL // 2]
    verdict = Verdict(recipient.code, True, "shared", "test", f"G-{cast.suffix}")
    p = producer(kafka, "feed")
    await p.start()
    try:
        now = utcnow()
        sent = {}
        for alert_id in ids:
            shared = recipient_copy(enriched(sample_alert(), origin=origin.code, alert_id=alert_id), verdict, now)
            request = webhook_request(shared, "Immediate", now)
            key = f"{alert_id}:{recipient.code}".encode()
            sent[alert_id] = await p.send(DELIVERIES_WEBHOOK, codec.encode(request), key=key)
        await p.flush()
        where = await sent[poison]
    finally:
        await p.stop()

    # Scenario: a pure function every delivery calls raises for one of them (a bug), with others in flight.
    real_key = dispatcher_module.recipient_key
    poisoned: list[str] = []

    def faulty(alert_id: str, agency: str) -> bytes:
        if alert_id == poison:
            poisoned.append(poison)
            raise Injected(f"delivering {poison}")
        return real_key(alert_id, agency)

    monkeypatch.setattr(dispatcher_module, "recipient_key", faulty)
    settings = DispatcherSettings(kafka=kafka, concurrency=8, allow_private_endpoints=True)
    code, lines = await serve_until_it_exits(build_dispatcher(settings, codec), settings)

    # It stopped by itself with exit code 1, the traceback logged, and no commit past the failed delivery.
    assert (code, poisoned) == (1, [poison])
    crashed = [line for line in lines if line["event"] == "loop.crashed"]
    assert crashed and crashed[0]["service"] == "dispatcher" and isinstance(crashed[0]["exc_info"], Injected)
    position = await committed(
        kafka, group_id(kafka, "dispatcher"), TopicPartition(DELIVERIES_WEBHOOK, where.partition)
    )
    assert position is None or position <= where.offset, "the dispatcher committed past the delivery that failed"
    assert poison not in await _recorded_delivered(kafka, codec, set(ids))

    # A restart without the fault makes every delivery, the failed one included, and records each delivered.
    monkeypatch.setattr(dispatcher_module, "recipient_key", real_key)
    async with running(build_dispatcher(settings, codec)):
        await eventually(lambda: _recorded_delivered_all(kafka, codec, ids), within_s=60)
    received = {payload["data"]["alert_id"] for payload in rcv.received[recipient.code].values()}
    assert set(ids) <= received
    assert rcv.rejected == 0


async def _all_decided(kafka: KafkaSettings, codec: Codec, ids: list[str]) -> bool:
    return set(await decisions(kafka, codec, set(ids))) == set(ids)


async def _recorded_delivered(kafka: KafkaSettings, codec: Codec, ids: set[str]) -> set[str]:
    events = await read_topic(kafka, codec, DELIVERIES_EVENTS, DeliveryAttempted)
    return {e.alert_id for _, e in events if e.alert_id in ids and e.outcome == "delivered"}


async def _recorded_delivered_all(kafka: KafkaSettings, codec: Codec, ids: list[str]) -> bool:
    return await _recorded_delivered(kafka, codec, set(ids)) == set(ids)
