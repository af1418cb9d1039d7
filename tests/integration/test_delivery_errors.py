"""A failed delivery tells records and the originator its class only; where the receiver is stays in the log.

Receivers on 127.0.0.1: one port that refuses connections, one server that never answers. Every record the
deliveries leave (attempts, retry tiers, dead letters, escalations) and the originator's status view must
name the failure's class (`connection_refused`, `timeout`) and never the receiver's URL, host or port.
"""

from __future__ import annotations

import asyncio
import socket
from collections.abc import AsyncIterator
from typing import Any

import aiohttp
import msgspec
import pytest
import structlog
from aiohttp import web

from services.common.codec import Codec
from services.common.kafka import read_to_end
from services.common.ops import bound_port
from services.common.records import DeliverWebhook, DeliveryAttempted, EscalationRaised
from services.common.registry.publish import publish_registry
from services.common.settings import KafkaSettings
from services.common.topics import (
    ALERTS_ESCALATIONS,
    DELIVERIES_DEAD,
    DELIVERIES_EVENTS,
    retry_topic,
)
from services.dispatcher.schedule import TIERS
from tests.support.system import system
from tests.support.world import Cast, agreement, alert_json, eventually, registry


@pytest.fixture
async def hanging() -> AsyncIterator[int]:
    """A receiver on 127.0.0.1 that accepts the request and never answers; yields its port."""

    async def handle(request: web.Request) -> web.StreamResponse:
        await asyncio.sleep(60)
        return web.Response(status=204)

    app = web.Application()
    app.router.add_post("/hooks/{agency}", handle)
    runner = web.AppRunner(app, access_log=None, shutdown_timeout=0.1)
    await runner.setup()
    await web.TCPSite(runner, "127.0.0.1", 0).start()
    try:
        yield bound_port(runner)
    finally:
        await runner.cleanup()


@pytest.fixture
def refusing() -> int:
    """A port on 127.0.0.1 that nothing listens on: a connection there is refused."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port: int = s.getsockname()[1]
    return port


async def test_records_and_the_originators_view_carry_the_class_never_the_address(
    kafka: KafkaSettings, codec: Codec, hanging: int, refusing: int
) -> None:
    """Refused and hanging deliveries end dead; no record or status view names 127.0.0.1 or either port."""
    cast = Cast()
    origin = cast.agency("IQ-A", "IQ")
    refused = cast.agency("JO-R", "JO", webhook_url=f"http://127.0.0.1:{refusing}")
    hung = cast.agency("JO-H", "JO", webhook_url=f"http://127.0.0.1:{hanging}")
    parties = [origin.code, refused.code, hung.code]
    doc = registry([origin, refused, hung], [agreement(f"E-{cast.suffix}", parties)])
    await publish_registry(kafka, codec, doc, source="test", replication_factor=1)
    options = {
        "retry_time_scale": 0.002,
        "response_timeout_s": 0.3,
        "connect_timeout_s": 0.3,
        "breaker_cooldown_s": 0.2,
    }
    leaks = ("127.0.0.1", str(refusing), str(hanging), "http://", "/hooks/")

    with structlog.testing.capture_logs() as lines:
        async with system(kafka, codec, dispatcher=options) as sys_, aiohttp.ClientSession() as http:
            body = alert_json(urgency="Immediate", affected_countries=["JO"])
            async with http.post(f"{sys_.url}/v1/alerts", json=body, headers=cast.bearer(origin.code)) as r:
                assert r.status == 202
                alert_id = (await r.json())["alert_id"]

            # Scenario: both deliveries fail on every attempt until the schedule ends, each with an escalation.
            async def both_dead() -> Any:
                async with http.get(f"{sys_.url}/v1/alerts/{alert_id}", headers=cast.bearer(origin.code)) as r:
                    text = await r.text()
                if r.status != 200:
                    return None  # not routed yet
                rows = msgspec.json.decode(text)["recipients"]
                hooks = [(rows[c].get("webhook") or {}).get("status") for c in (refused.code, hung.code)]
                escalated = all(rows[c].get("escalations") for c in (refused.code, hung.code))
                return (rows, text) if hooks == ["dead", "dead"] and escalated else None

            rows, view = await eventually(both_dead, within_s=60)

    # The originator's view says what kind of failure each was, and nothing about where the receiver is.
    assert [word for word in leaks if word in view] == []
    assert rows[refused.code]["webhook"]["last_error"] in ("connection_refused", "circuit_open")
    assert rows[hung.code]["webhook"]["last_error"] in ("timeout", "circuit_open")

    # Every record the deliveries left: attempts, retries, dead letters, escalations.
    mine = {refused.code, hung.code}
    found: list[Any] = []
    for topic, kind in [
        (DELIVERIES_EVENTS, DeliveryAttempted),
        (DELIVERIES_DEAD, DeliverWebhook),
        (ALERTS_ESCALATIONS, EscalationRaised),
        *((retry_topic(tier), DeliverWebhook) for tier in TIERS),
    ]:
        async for record in read_to_end(kafka, topic, name="leak-reader"):
            decoded = codec.decode(record.value, kind)
            if decoded.alert_id == alert_id and decoded.agency in mine:
                found.append(decoded)
    texts = [repr(r) for r in found]
    assert [t for t in texts if any(word in t for word in leaks)] == []
    attempts = [r for r in found if isinstance(r, DeliveryAttempted)]
    classes = {(r.agency, r.error) for r in attempts}
    assert {(refused.code, "connection_refused"), (hung.code, "timeout")} <= classes
    assert {r.error for r in attempts} <= {"connection_refused", "timeout", "circuit_open"}
    reasons = [r.reason for r in found if isinstance(r, EscalationRaised)]
    assert len(reasons) == 2 and all(r.startswith("webhook delivery failed after") for r in reasons)

    # The operators' log line has the detail: which URL, and what the connection said.
    failed = [line for line in lines if line["event"] in ("delivery.failed", "delivery.dead")]
    refused_lines = [line for line in failed if line.get("url") == f"http://127.0.0.1:{refusing}/hooks/{refused.code}"]
    assert refused_lines and any(line.get("detail") for line in refused_lines)


async def test_content_in_a_retry_tier_is_never_posted_to_an_agency_suspended_since(
    kafka: KafkaSettings, codec: Codec
) -> None:
    """A copy routed while JO was active, failing and waiting for a retry when JO is suspended, dies as
    `agency_inactive` without another POST, though JO's receiver is back up."""
    posts: list[float] = []
    healthy = asyncio.Event()

    async def handle(request: web.Request) -> web.StreamResponse:
        posts.append(asyncio.get_running_loop().time())
        return web.Response(status=204 if healthy.is_set() else 503)

    app = web.Application()
    app.router.add_post("/hooks/{agency}", handle)
    runner = web.AppRunner(app, access_log=None)
    await runner.setup()
    await web.TCPSite(runner, "127.0.0.1", 0).start()
    try:
        cast = Cast()
        origin = cast.agency("IQ-A", "IQ")
        jo = cast.agency("JO-S", "JO", webhook_url=f"http://127.0.0.1:{bound_port(runner)}")
        doc = registry([origin, jo], [agreement(f"S-{cast.suffix}", [origin.code, jo.code])])
        await publish_registry(kafka, codec, doc, source="test", replication_factor=1)
        async with system(kafka, codec, dispatcher={"retry_time_scale": 0.05}) as sys_, aiohttp.ClientSession() as http:
            body = alert_json(urgency="Immediate", affected_countries=["JO"])
            async with http.post(f"{sys_.url}/v1/alerts", json=body, headers=cast.bearer(origin.code)) as r:
                assert r.status == 202
                alert_id = (await r.json())["alert_id"]
            await eventually(lambda: posts, within_s=30)

            jo.active = False
            suspended = await publish_registry(
                kafka, codec, registry([origin, jo], doc.agreements), source="test", replication_factor=1
            )
            async with asyncio.timeout(10):
                await sys_.dispatcher.registry.wait_for_version(suspended.version)
            since = asyncio.get_running_loop().time()
            healthy.set()

            async def died() -> DeliveryAttempted | None:
                async for record in read_to_end(kafka, DELIVERIES_EVENTS, name="suspended-reader"):
                    attempt = codec.decode(record.value, DeliveryAttempted)
                    if attempt.alert_id == alert_id and attempt.outcome == "dead":
                        return attempt
                return None

            dead = await eventually(died, within_s=60)
    finally:
        await runner.cleanup()
    assert dead.error == "agency_inactive"
    assert [t for t in posts if t > since] == []
