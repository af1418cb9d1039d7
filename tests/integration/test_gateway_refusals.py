"""Every bad submission gets a clear 4xx from the real gateway, and nothing reaches Kafka."""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Any

import aiohttp
import pytest

from services.common.codec import Codec
from services.common.registry.publish import publish_registry
from services.common.runner import running
from services.common.settings import KafkaSettings
from services.common.topics import ALERTS_SUBMITTED
from services.gateway.service import Gateway, build
from services.gateway.settings import GatewaySettings, HttpSettings
from tests.support.system import new_internal_token
from tests.support.world import Cast, agreement, alert_json, end_offsets, registry

OPERATOR = "operator-token-refusals"


@pytest.fixture
async def gateway(kafka: KafkaSettings, codec: Codec) -> AsyncIterator[tuple[Gateway, Cast]]:
    cast = Cast()
    origin = cast.agency("IQ-A", "IQ")
    other = cast.agency("JO-B", "JO")
    doc = registry([origin, other], [agreement(f"A-{cast.suffix}", [origin.code, other.code])], operator_token=OPERATOR)
    await publish_registry(kafka, codec, doc, source="test", replication_factor=1)
    settings = GatewaySettings(
        kafka=kafka, http=HttpSettings(port=0), tracker_url="http://127.0.0.1:9", internal_token=new_internal_token()
    )
    gw = build(settings, codec)
    async with running(gw):
        yield gw, cast


CASES: list[tuple[str, dict[str, str], Any, int, str]] = [
    ("no token", {}, alert_json(), 401, "unauthenticated"),
    ("wrong token", {"Authorization": "Bearer not-a-token"}, alert_json(), 401, "unauthenticated"),
    ("operator submitting", {"Authorization": f"Bearer {OPERATOR}"}, alert_json(), 403, "forbidden"),
    ("malformed JSON", {}, b'{"category": "cbrn", ', 400, "malformed_json"),
    ("missing field", {}, {k: v for k, v in alert_json().items() if k != "title"}, 422, "invalid_alert"),
    ("wrong type", {}, alert_json(information_credibility="two"), 422, "invalid_alert"),
    ("unknown category", {}, alert_json(category="terrorism.unknown"), 422, "invalid_alert"),
    ("origin smuggled in", {}, alert_json(origin="JO-B"), 422, "invalid_alert"),
    ("RED without releasable_to", {}, alert_json(tlp="RED"), 422, "invalid_alert"),
    ("bad country", {}, alert_json(affected_countries=["Iraq"]), 422, "invalid_alert"),
]


@pytest.mark.parametrize(("case", "headers", "body", "status", "code"), CASES, ids=[c[0] for c in CASES])
async def test_refused_and_nothing_produced(
    gateway: tuple[Gateway, Cast],
    kafka: KafkaSettings,
    case: str,
    headers: dict[str, str],
    body: Any,
    status: int,
    code: str,
) -> None:
    """A bad submission is answered with its status and a readable reason; alerts.submitted is unchanged."""
    gw, cast = gateway
    origin = cast.code("IQ-A")
    before = await end_offsets(kafka, ALERTS_SUBMITTED)
    sent_headers = {**cast.bearer(origin), "Content-Type": "application/json", **headers}
    if case == "no token":
        sent_headers.pop("Authorization")
    data = body if isinstance(body, bytes) else aiohttp.JsonPayload(body)
    async with (
        aiohttp.ClientSession() as http,
        http.post(f"http://127.0.0.1:{gw.port}/v1/alerts", data=data, headers=sent_headers) as response,
    ):
        answer = await response.json()
    assert (response.status, answer["error"]) == (status, code)
    assert answer["message"]
    if status == 422:
        assert answer["problems"] and all(p["field"].startswith("$") for p in answer["problems"])
    assert await end_offsets(kafka, ALERTS_SUBMITTED) == before


async def test_idempotency_key_returns_same_alert_id(gateway: tuple[Gateway, Cast], kafka: KafkaSettings) -> None:
    """A retried submission with the same Idempotency-Key answers the same alert id; another body is refused."""
    gw, cast = gateway
    url = f"http://127.0.0.1:{gw.port}/v1/alerts"
    headers = {**cast.bearer(cast.code("IQ-A")), "Idempotency-Key": "retry-1"}
    async with aiohttp.ClientSession() as http:
        async with http.post(url, json=alert_json(), headers=headers) as first:
            assert first.status == 202
            first_id = (await first.json())["alert_id"]
        async with http.post(url, json=alert_json(), headers=headers) as second:
            assert second.status == 202
            assert (await second.json())["alert_id"] == first_id
        async with http.post(url, json=alert_json(title="Another alert"), headers=headers) as third:
            assert (third.status, (await third.json())["error"]) == (422, "idempotency_key_reused")
