"""The gateway's HTTP layer when its dependencies fail: the caller gets a retryable 503, never a 500."""

from __future__ import annotations

import hashlib
import uuid
from collections.abc import AsyncIterator
from typing import Any

import aiohttp
import fastavro
import msgspec
import pytest
from aiohttp import web
from aiokafka.errors import KafkaConnectionError

from services.common.codec import Codec, fingerprint
from services.common.ops import bound_port
from services.common.registry import Agency, RegistryDocument
from services.gateway.api import GatewayApi
from services.gateway.idempotency import KeyReuseGuard
from tests.support.views import loaded_views
from tests.support.world import alert_json


class BrokerDown:
    """Stands in for the Kafka outbox when the broker cannot be reached (this tests HTTP, not Kafka)."""

    async def send(self, topic: str, key: bytes, record: msgspec.Struct, traceparent: str) -> None:
        raise KafkaConnectionError("broker unreachable")

    async def flush(self) -> None:
        raise AssertionError("not reached")


@pytest.fixture
async def gateway_url(codec: Codec) -> AsyncIterator[str]:
    agency = Agency(code="IQ-A", name="a", country="IQ", token_sha256=[hashlib.sha256(b"tok").hexdigest()])
    view, credentials, _ = loaded_views(RegistryDocument(agencies=[agency]), codec)
    async with aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=2)) as tracker:
        api = GatewayApi(view, credentials, lambda: BrokerDown(), tracker, "http://127.0.0.1:9", KeyReuseGuard(10))  # type: ignore[arg-type, return-value]
        app = web.Application(middlewares=[api.middleware])
        app.add_routes(api.routes())
        runner = web.AppRunner(app, access_log=None)
        await runner.setup()
        await web.TCPSite(runner, "127.0.0.1", 0).start()
        try:
            yield f"http://127.0.0.1:{bound_port(runner)}"
        finally:
            await runner.cleanup()


async def post(url: str, body: Any) -> tuple[int, dict[str, Any], Any]:
    async with aiohttp.ClientSession() as http, http.post(url, json=body, headers={"Authorization": "Bearer tok"}) as r:
        return r.status, await r.json(), r.headers


async def test_broker_down_is_a_retryable_503(gateway_url: str) -> None:
    """When Kafka cannot take the alert, the answer is 503 with Retry-After, not a 202 or a 500."""
    status, body, headers = await post(f"{gateway_url}/v1/alerts", alert_json())
    assert (status, body["error"], headers["Retry-After"]) == (503, "unavailable", "5")
    assert "Idempotency-Key" in body["message"]


async def test_tracker_down_is_a_503_for_acks(gateway_url: str) -> None:
    """Without the tracker the gateway cannot tell a recipient from a stranger: 503, never a guess."""
    status, body, _ = await post(f"{gateway_url}/v1/alerts/{uuid.uuid4()}/ack", {"response": "actioned"})
    assert (status, body["error"]) == (503, "unavailable")


async def test_a_writer_schema_is_served_by_the_fingerprint_in_a_records_header(gateway_url: str) -> None:
    """GET /v1/schemas/{fingerprint} answers the schema whose fingerprint the header holds, in either byte order,
    self-contained; an unknown or malformed fingerprint is 404, and nothing is answered without a token."""
    codec = Codec.from_directory()
    wire = codec.fingerprints()["rctc.AlertShared"]
    async with aiohttp.ClientSession() as http:
        for fp in (wire, bytes.fromhex(wire)[::-1].hex()):
            async with http.get(f"{gateway_url}/v1/schemas/{fp}", headers={"Authorization": "Bearer tok"}) as r:
                assert r.status == 200
                schema = await r.json()
            assert schema["name"] == "rctc.AlertShared"
            assert fingerprint(fastavro.parse_schema(schema, _write_hint=False)).hex() == wire
        for fp in ("0123456789abcdef", wire.upper(), "xyz"):
            async with http.get(f"{gateway_url}/v1/schemas/{fp}", headers={"Authorization": "Bearer tok"}) as r:
                assert (r.status, (await r.json())["error"]) == (404, "not_found")
        async with http.get(f"{gateway_url}/v1/schemas/{wire}") as r:
            assert r.status == 401
