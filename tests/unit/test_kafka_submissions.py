"""The gateway's reader of agencies' Kafka submissions: each record gets the verdict and the error body the
HTTP path gives the same body, on the agency's rejections topic; the rest goes on to alerts.submitted."""

from __future__ import annotations

import asyncio
import hashlib
import json
from collections.abc import AsyncIterator
from typing import Any, cast

import msgspec
import pytest
from aiohttp import web
from aiohttp.test_utils import TestClient, TestServer
from aiokafka import AIOKafkaProducer, ConsumerRecord

from services.common.codec import Codec
from services.common.records import AlertSubmitted, Quarantined, SubmissionRejected, SubmitAlert
from services.common.registry import Agency, CredentialsView, RegistryDocument, RegistryView
from services.common.registry.model import Defaults, RateLimit
from services.common.settings import KafkaSettings
from services.common.topics import ALERTS_SUBMITTED, RECORDS_QUARANTINE
from services.gateway.api import GatewayApi
from services.gateway.idempotency import KeyReuseGuard, alert_id_for
from services.gateway.kafka_submissions import KafkaSubmissions
from tests.support.views import loaded_views
from tests.support.world import alert_json

TOPIC = "agency.IQ-OK.submissions"
REJECTIONS = "agency.IQ-OK.rejections"


class FakeProducer:
    """Keeps what is sent, by topic and key; every send is acknowledged at once."""

    def __init__(self) -> None:
        self.sent: list[tuple[str, bytes | None, bytes]] = []

    async def send(self, topic: str, value: bytes, key: bytes | None = None, **_: Any) -> asyncio.Future[None]:
        self.sent.append((topic, key, value))
        done: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        done.set_result(None)
        return done

    async def send_and_wait(self, topic: str, value: bytes, key: bytes | None = None, **_: Any) -> None:
        self.sent.append((topic, key, value))


def views(codec: Codec) -> tuple[RegistryView, CredentialsView]:
    """The registry and credentials views of an agency in force and a suspended one (tokens "ok", "off")."""

    def sha(token: str) -> str:
        return hashlib.sha256(token.encode()).hexdigest()

    doc = RegistryDocument(
        agencies=[
            Agency(code="IQ-OK", name="a", country="IQ", token_sha256=[sha("ok")]),
            Agency(code="JO-OFF", name="b", country="JO", active=False, token_sha256=[sha("off")]),
        ],
        defaults=Defaults(rate_limit=RateLimit(per_second=1000.0, burst=1000)),
    )
    registry, credentials, _ = loaded_views(doc, codec)
    return registry, credentials


def view(codec: Codec) -> RegistryView:
    return views(codec)[0]


def record(offset: int, value: bytes, key: bytes | None, topic: str = TOPIC) -> ConsumerRecord[bytes, bytes]:
    return ConsumerRecord(topic, 0, offset, 0, 0, key, value, None, 0, len(value), [])


def submit(codec: Codec, body: Any) -> bytes:
    raw = body if isinstance(body, bytes) else json.dumps(body).encode()
    return codec.encode(SubmitAlert(body=raw))


def http_body(rejection: SubmissionRejected) -> dict[str, Any]:
    """A rejection as the JSON body POST /v1/alerts answers."""
    body: dict[str, Any] = {"error": rejection.error, "message": rejection.message}
    if rejection.problems:
        body["problems"] = msgspec.to_builtins(rejection.problems)
    return body


@pytest.fixture
async def http(codec: Codec) -> AsyncIterator[TestClient[Any, Any]]:
    """The HTTP path with the same registry, to compare answers with."""

    class Outbox:
        async def send(self, *_: Any) -> None:
            pass

        async def flush(self) -> None:
            pass

    async with TestClient(TestServer(web.Application())) as tracker:
        api = GatewayApi(*views(codec), Outbox, tracker.session, str(tracker.make_url("/")), KeyReuseGuard(10))  # type: ignore[arg-type]
        app = web.Application(middlewares=[api.middleware])
        app.add_routes(api.routes())
        async with TestClient(TestServer(app)) as client:
            yield client


async def handled(codec: Codec, batch: list[ConsumerRecord[bytes, bytes]]) -> FakeProducer:
    producer = FakeProducer()
    submissions = KafkaSubmissions(
        KafkaSettings(), codec, cast(AIOKafkaProducer, producer), view(codec), KeyReuseGuard(10), max_body_bytes=1024
    )
    await asyncio.wait_for(submissions.handle(batch), 5)
    return producer


async def test_each_record_is_routed_refused_or_quarantined(codec: Codec) -> None:
    """Valid keyed alerts go to alerts.submitted with the Idempotency-Key's alert id (twice for a record sent
    twice: the router routes an id once); every refusal goes to the agency's rejections topic keyed by the
    submission's key; a record that is not a SubmitAlert is also quarantined; a topic of no agency only is."""
    valid = submit(codec, alert_json())
    batch = [
        record(0, valid, b"k-1"),
        record(1, submit(codec, alert_json(tlp="PURPLE")), b"k-2"),
        record(2, valid, None),
        record(3, b"not avro", b"k-3"),
        record(4, valid, b"k-1"),
        record(5, submit(codec, alert_json(summary="x" * 2000)), b"k-4"),
        record(6, valid, b"k-5", topic="agency.JO-OFF.submissions"),
        record(7, valid, b"k-6", topic="agency.XX-GONE.submissions"),
    ]
    producer = await handled(codec, batch)
    submitted = [(k, codec.decode(v, AlertSubmitted)) for t, k, v in producer.sent if t == ALERTS_SUBMITTED]
    expected_id = alert_id_for("IQ-OK", "k-1")
    assert [(k, s.alert_id, s.origin) for k, s in submitted] == [(expected_id.encode(), expected_id, "IQ-OK")] * 2
    rejected = [(t, k, codec.decode(v, SubmissionRejected)) for t, k, v in producer.sent if "rejections" in t]
    assert [(t, k, r.offset, r.status, r.error) for t, k, r in rejected] == [
        (REJECTIONS, b"k-2", 1, 422, "invalid_alert"),
        (REJECTIONS, b"0/2", 2, 400, "bad_idempotency_key"),
        (REJECTIONS, b"k-3", 3, 415, "unsupported_record"),
        (REJECTIONS, b"k-4", 5, 413, "too_large"),
        ("agency.JO-OFF.rejections", b"k-5", 6, 403, "agency_suspended"),
    ]
    assert [(r.agency, r.idempotency_key) for _, _, r in rejected][:2] == [("IQ-OK", "k-2"), ("IQ-OK", None)]
    quarantined = [codec.decode(v, Quarantined) for t, _, v in producer.sent if t == RECORDS_QUARANTINE]
    assert [(q.topic, q.offset) for q in quarantined] == [(TOPIC, 3), ("agency.XX-GONE.submissions", 7)]


BODIES = [
    b"{",
    b"[]",
    json.dumps(alert_json(tlp="PURPLE", category="nope", indicators=[{"type": "ip"}])).encode(),
    json.dumps({**alert_json(), "origin": "IQ-OTHER"}).encode(),
    json.dumps(alert_json(tlp="RED", releasable_to=[])).encode(),
]


@pytest.mark.parametrize("body", BODIES)
async def test_a_rejection_carries_the_error_body_http_answers(
    codec: Codec, http: TestClient[Any, Any], body: bytes
) -> None:
    """For the same body and key, the rejection's status and body are exactly POST /v1/alerts's answer."""
    producer = await handled(codec, [record(0, submit(codec, body), b"k")])
    [(_, _, value)] = producer.sent
    rejection = codec.decode(value, SubmissionRejected)
    headers = {"Authorization": "Bearer ok", "Content-Type": "application/json", "Idempotency-Key": "k"}
    async with http.post("/v1/alerts", data=body, headers=headers) as answer:
        assert (answer.status, await answer.json()) == (rejection.status, http_body(rejection))


async def test_what_a_reader_dropped_as_oversized_is_refused_and_no_long_key_is_echoed(codec: Codec) -> None:
    """A key or value the reader dropped as larger than a submission may be (a compressed batch inflates: see
    librdkafka.oversized) is refused too_large, saying which part and how large; a key no idempotency key can
    be is not repeated in the rejection (its key is the record's position): a rejection as large as the key
    could be refused by the broker, and a rejection that cannot be written stalls every agency's intake."""
    valid = submit(codec, alert_json())
    dropped_value = ConsumerRecord(TOPIC, 0, 0, 0, 0, b"k-1", b"", None, 3, 300_000_000, [])
    dropped_key = ConsumerRecord(TOPIC, 0, 1, 0, 0, b"", valid, None, 16_000_000, len(valid), [])
    long_key = record(2, valid, b"k" * 1021)
    producer = await handled(codec, [dropped_value, dropped_key, long_key])
    rejected = [(k, codec.decode(v, SubmissionRejected)) for t, k, v in producer.sent if t == REJECTIONS]
    assert [(k, r.error, r.idempotency_key) for k, r in rejected] == [
        (b"k-1", "too_large", "k-1"),
        (b"0/1", "too_large", None),
        (b"0/2", "bad_idempotency_key", None),
    ]
    assert "value is 300000000 bytes" in rejected[0][1].message and "key is 16000000 bytes" in rejected[1][1].message
    assert [t for t, _, _ in producer.sent] == [REJECTIONS] * 3  # nothing else kept of them
