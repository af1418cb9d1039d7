"""Who the gateway lets in after authentication: suspended agencies get 403, agencies over their limit 429."""

from __future__ import annotations

import hashlib
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from typing import Any

import msgspec
import pytest
from aiohttp import web
from aiohttp.test_utils import TestClient, TestServer

from services.common.codec import Codec
from services.common.registry import Agency, RegistryDocument
from services.common.registry.model import Defaults, Operator, RateLimit
from services.gateway.api import GatewayApi
from services.gateway.idempotency import KeyReuseGuard
from services.gateway.ratelimit import RateLimiter
from tests.support.views import loaded_views
from tests.support.world import alert_json

ALERT_ID = "0b7e3c1e-8f4a-4d2b-9c55-2f1e6a7b8c9d"
ENDPOINTS = [
    ("POST", "/v1/alerts"),
    ("POST", f"/v1/alerts/{ALERT_ID}/ack"),
    ("GET", f"/v1/alerts/{ALERT_ID}"),
    ("GET", f"/v1/alerts/{ALERT_ID}/routing"),
    ("GET", "/v1/acks/outstanding"),
]


def sha(token: str) -> str:
    return hashlib.sha256(token.encode()).hexdigest()


class Clock:
    def __init__(self) -> None:
        self.now = 0.0

    def __call__(self) -> float:
        return self.now


@dataclass
class Outbox:
    """Stands in for Kafka: keeps what would have been produced."""

    sent: list[str] = field(default_factory=list)

    async def send(self, topic: str, key: bytes, record: msgspec.Struct, traceparent: str) -> None:
        self.sent.append(topic)

    async def flush(self) -> None:
        pass


@dataclass
class World:
    gateway: TestClient[Any, Any]
    tracker_calls: list[str]
    outbox: Outbox
    clock: Clock


@pytest.fixture
async def world(codec: Codec) -> AsyncIterator[World]:
    calls: list[str] = []

    async def tracker(request: web.Request) -> web.Response:
        calls.append(request.path)
        return web.json_response({"recipient": True, "state": "pending", "outstanding": []})

    tracker_app = web.Application()
    tracker_app.router.add_route("*", "/{tail:.*}", tracker)
    view, credentials, _ = loaded_views(
        RegistryDocument(
            agencies=[
                Agency(code="IQ-OK", name="a", country="IQ", token_sha256=[sha("ok")]),
                Agency(code="JO-OFF", name="b", country="JO", active=False, token_sha256=[sha("off")]),
                Agency(
                    code="SA-SLOW",
                    name="c",
                    country="SA",
                    token_sha256=[sha("slow")],
                    rate_limit=RateLimit(per_second=0.5, burst=2),
                ),
            ],
            operators=[Operator(name="desk", token_sha256=[sha("desk")])],
            defaults=Defaults(rate_limit=RateLimit(per_second=1.0, burst=3)),
        ),
        codec,
    )
    outbox, clock = Outbox(), Clock()
    async with TestClient(TestServer(tracker_app)) as tracker_client:
        api = GatewayApi(
            view,
            credentials,
            lambda: outbox,  # type: ignore[arg-type, return-value]
            tracker_client.session,
            str(tracker_client.make_url("/")),
            KeyReuseGuard(10),
            limiter=RateLimiter(clock),
        )
        app = web.Application(middlewares=[api.middleware])
        app.add_routes(api.routes())
        async with TestClient(TestServer(app)) as gateway:
            yield World(gateway, calls, outbox, clock)


async def call(world: World, method: str, path: str, token: str) -> tuple[int, dict[str, Any], str | None]:
    body = alert_json() if path == "/v1/alerts" else {"response": "actioned"} if method == "POST" else None
    async with world.gateway.request(method, path, json=body, headers={"Authorization": f"Bearer {token}"}) as r:
        return r.status, await r.json(), r.headers.get("Retry-After")


@pytest.mark.parametrize(("method", "path"), ENDPOINTS)
async def test_a_suspended_agency_is_told_so_and_does_nothing(world: World, method: str, path: str) -> None:
    """A suspended agency authenticates but gets 403 agency_suspended: nothing produced, the tracker not asked."""
    status, body, _ = await call(world, method, path, "off")
    assert (status, body["error"], world.outbox.sent, world.tracker_calls) == (403, "agency_suspended", [], [])


async def test_an_active_agency_is_served(world: World) -> None:
    """The same requests from an active agency reach the handlers (the check refuses only the suspended)."""
    statuses = [(await call(world, method, path, "ok"))[0] for method, path in ENDPOINTS[:2]]
    assert (statuses, world.outbox.sent) == ([202, 202], ["alerts.submitted", "acks.submitted"])


async def test_an_agency_over_its_limit_gets_429_with_retry_after(world: World) -> None:
    """Past its burst an agency gets 429 rate_limited with Retry-After in whole seconds; waiting it is enough."""
    first = [(await call(world, "GET", "/v1/acks/outstanding", "slow"))[0] for _ in range(2)]
    status, body, retry_after = await call(world, "GET", "/v1/acks/outstanding", "slow")
    assert (first, status, body["error"], retry_after) == ([200, 200], 429, "rate_limited", "2")
    assert len(world.tracker_calls) == 2  # the refused request did no work
    world.clock.now += 2
    assert (await call(world, "GET", "/v1/acks/outstanding", "slow"))[0] == 200


async def test_the_registry_default_applies_and_agencies_are_limited_apart(world: World) -> None:
    """An agency without its own limit gets the registry's default; one agency's refusals leave others alone."""
    statuses = [(await call(world, "GET", "/v1/acks/outstanding", "ok"))[0] for _ in range(4)]
    assert statuses == [200, 200, 200, 429]
    assert (await call(world, "GET", "/v1/acks/outstanding", "slow"))[0] == 200


async def test_operators_are_not_rate_limited(world: World) -> None:
    """Operators are the center's own staff: many requests in the same instant are all served."""
    statuses = {(await call(world, "GET", "/v1/acks/outstanding", "desk"))[0] for _ in range(20)}
    assert statuses == {200}
