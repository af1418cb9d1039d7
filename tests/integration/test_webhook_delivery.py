"""Webhook delivery against real receivers on 127.0.0.1: healthy, flaky, hanging, down-then-up and gone.

Time is compressed (retry_time_scale) so the whole retry schedule of an Immediate alert fits in seconds;
everything else is what production runs: retry tier topics, circuit breakers, endpoint states.
"""

from __future__ import annotations

import asyncio
import time
from collections import Counter
from collections.abc import AsyncIterator, Awaitable, Callable
from typing import Any

import aiohttp
import pytest
from aiohttp import web

from services.common.codec import Codec
from services.common.kafka import read_to_end
from services.common.ops import bound_port
from services.common.records import AlertShared, DeliverWebhook, EndpointChanged, EscalationRaised
from services.common.registry.publish import publish_registry
from services.common.settings import KafkaSettings
from services.common.topics import ALERTS_ESCALATIONS, DELIVERIES_DEAD, DELIVERIES_ENDPOINTS, agency_topic
from services.demo.receivers import Receivers
from tests.support.system import system
from tests.support.world import Cast, agreement, alert_json, eventually, new_secret, rctc, read_topic, registry

ALERTS = 12
Behaviour = Callable[[web.Request], Awaitable[web.StreamResponse]]


class Site:
    """One receiver server with a behaviour, verifying signatures with the standardwebhooks library."""

    def __init__(self, behaviour: str) -> None:
        self.behaviour = behaviour
        self.verifier = Receivers()
        self.seen: Counter[str] = Counter()  # requests per webhook-id, accepted or not
        self.first_accepted_at: dict[str, float] = {}
        self.runner: web.AppRunner | None = None
        self.port = 0

    async def handle(self, request: web.Request) -> web.StreamResponse:
        webhook_id = request.headers.get("webhook-id", "")
        self.seen[webhook_id] += 1
        if self.behaviour == "hang":
            await asyncio.sleep(60)
        if self.behaviour == "gone":
            return web.Response(status=410)
        if self.behaviour == "flaky" and self.seen[webhook_id] % 2 == 1:
            return web.Response(status=500)
        response = await self.verifier.receive(request)
        if response.status == 204:
            self.first_accepted_at.setdefault(webhook_id, time.monotonic())
        return response

    def accepted_alerts(self, agency: str) -> set[str]:
        return {p["data"]["alert_id"] for p in self.verifier.received.get(agency, {}).values()}

    async def start(self, port: int = 0) -> None:
        app = web.Application()
        app.router.add_post("/hooks/{agency}", self.handle)
        self.runner = web.AppRunner(app, access_log=None, shutdown_timeout=0.5)
        await self.runner.setup()
        await web.TCPSite(self.runner, "127.0.0.1", port).start()
        self.port = bound_port(self.runner)

    async def stop(self) -> None:
        if self.runner is not None:
            await self.runner.cleanup()


@pytest.fixture
async def sites() -> AsyncIterator[dict[str, Site]]:
    made = {name: Site(name) for name in ("healthy", "flaky", "hang", "gone", "late")}
    for name, site in made.items():
        if name != "late":
            await site.start()
    # The late receiver's port is taken now and freed, so it is "down" (connection refused) until it starts.
    probe = Site("late")
    await probe.start()
    made["late"].port = probe.port
    await probe.stop()
    try:
        yield made
    finally:
        for site in made.values():
            await site.stop()


async def test_each_receiver_gets_what_it_can_and_none_delays_the_healthy_one(
    kafka: KafkaSettings, codec: Codec, sites: dict[str, Site]
) -> None:
    """Healthy gets all at once; flaky and late get all once; gone is disabled; hanging dies with escalations."""
    cast = Cast()
    origin = cast.agency("IQ-A", "IQ")
    agencies = {
        name: cast.agency(f"{name[:2].upper()}-{name.upper()[:3]}", "JO", webhook_url=f"http://127.0.0.1:{site.port}")
        for name, site in sites.items()
    }
    # A secret rotation on the healthy endpoint: it signs with new and old; the receiver still holds the old.
    old = cast.secrets[agencies["healthy"].code][0]
    agencies["healthy"].webhook.secrets.insert(0, new_secret())  # type: ignore[union-attr]
    for name, agency in agencies.items():
        keys = [old] if name == "healthy" else cast.secrets[agency.code]
        sites[name].verifier.register(agency.code, keys)
    parties = [origin.code, *(a.code for a in agencies.values())]
    doc = registry([origin, *agencies.values()], [agreement(f"W-{cast.suffix}", parties)])
    await publish_registry(kafka, codec, doc, source="test", replication_factor=1)

    options = {
        "retry_time_scale": 0.005,
        "response_timeout_s": 1.0,
        "connect_timeout_s": 0.5,
        "breaker_cooldown_s": 0.5,
        "per_endpoint_concurrency": 4,
    }
    async with system(kafka, codec, dispatcher=options) as sys_, aiohttp.ClientSession() as http:
        ids = []
        for i in range(ALERTS):
            body = alert_json(title=f"Alert {i}", urgency="Immediate", affected_countries=["JO"])
            async with http.post(f"{sys_.url}/v1/alerts", json=body, headers=cast.bearer(origin.code)) as r:
                assert r.status == 202
                ids.append((await r.json())["alert_id"])
        submitted = time.monotonic()
        late = asyncio.get_running_loop().call_later(
            2.0, lambda: asyncio.ensure_future(sites["late"].start(sites["late"].port))
        )

        # The healthy receiver has everything within seconds, while the hanging one still hangs.
        code = {name: a.code for name, a in agencies.items()}
        await eventually(lambda: sites["healthy"].accepted_alerts(code["healthy"]) == set(ids), within_s=10)
        assert max(sites["healthy"].first_accepted_at.values()) - submitted < 5.0
        assert sites["healthy"].verifier.rejected == 0  # the old secret verified every request

        # The flaky one (500 every other request) and the late one (down, then up) end with every alert.
        await eventually(lambda: sites["flaky"].accepted_alerts(code["flaky"]) == set(ids), within_s=30)
        await eventually(lambda: sites["late"].accepted_alerts(code["late"]) == set(ids), within_s=30)
        assert sites["flaky"].verifier.rejected == sites["late"].verifier.rejected == 0

        # Gone: disabled for every replica, deliveries dead (replayable), its Kafka topic still complete.
        async def dead_for(name: str) -> set[str]:
            dead = [r async for r in read_to_end(kafka, DELIVERIES_DEAD, name="t")]
            return {
                codec.decode(r.value, DeliverWebhook).alert_id
                for r in dead
                if codec.decode(r.value, DeliverWebhook).agency == code[name]
            }

        await eventually(lambda: _equals(dead_for("gone"), set(ids)), within_s=30)
        states = {c.agency: c.state for _, c in await read_topic(kafka, codec, DELIVERIES_ENDPOINTS, EndpointChanged)}
        assert states[code["gone"]] == "disabled"
        # Only the requests already in flight when the first 410 came back reached it; none after.
        assert sites["gone"].seen.total() <= options["per_endpoint_concurrency"]
        topic = {c.alert_id for _, c in await read_topic(kafka, codec, agency_topic(code["gone"]), AlertShared)}
        assert topic == set(ids)

        # Hanging: its circuit opens, nothing piles up, and every delivery ends dead with an escalation.
        await eventually(lambda: _equals(dead_for("hang"), set(ids)), within_s=40)
        assert await _state(kafka, codec, code["hang"]) == "failing"
        escalated = {
            e.alert_id
            for _, e in await read_topic(kafka, codec, ALERTS_ESCALATIONS, EscalationRaised)
            if e.agency == code["hang"]
        }
        assert escalated == set(ids)
        assert sites["hang"].seen.total() < ALERTS * 2  # the breaker spared it most requests

        # The status API shows each recipient's webhook outcome. The tracker reads outcomes in batches (up to
        # half a second behind the dispatcher), so the last death may reach it a moment after deliveries.dead.
        async def hang_dead() -> Any:
            async with http.get(f"{sys_.url}/v1/alerts/{ids[0]}", headers=cast.bearer(origin.code)) as r:
                rows = (await r.json())["recipients"]
            return rows if rows[code["hang"]]["webhook"]["status"] == "dead" else None

        rows = await eventually(hang_dead, within_s=5)
        assert rows[code["healthy"]]["webhook"]["status"] == "delivered"
        late.cancel()

        # The hanging receiver is repaired; an operator replays its dead deliveries: every alert arrives.
        sites["hang"].behaviour = "healthy"
        code_, out, err = await rctc("deliveries", "replay", "--agency", code["hang"], kafka=kafka)
        assert (code_, out.strip()) == (0, f"replayed {ALERTS} dead deliveries"), err
        await eventually(lambda: sites["hang"].accepted_alerts(code["hang"]) == set(ids), within_s=30)


async def _equals(found: Awaitable[set[str]], expected: set[str]) -> bool:
    return await found == expected


async def _state(kafka: KafkaSettings, codec: Codec, agency: str) -> str | None:
    states = {c.agency: c.state for _, c in await read_topic(kafka, codec, DELIVERIES_ENDPOINTS, EndpointChanged)}
    return states.get(agency)
