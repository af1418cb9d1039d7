"""Alerts submitted over Kafka, through the real broker and every service: routed as HTTP ones are, refused
with the HTTP error body on the agency's rejections topic, and routed once however often a record is sent.

The agency's producer here is the bootstrap admin (as every test's is); that only the agency may write its
submissions topic is tests/integration/test_acl_matrix.py's to prove, on a broker with real principals.
"""

from __future__ import annotations

import asyncio
import json
from collections import Counter
from datetime import UTC, datetime
from typing import Any

import aiohttp
import msgspec

from services.common.codec import Codec
from services.common.kafka import producer
from services.common.records import AlertShared, AlertSubmitted, SubmissionRejected, SubmitAlert
from services.common.registry.publish import publish_registry
from services.common.settings import KafkaSettings
from services.common.topics import ALERTS_SUBMITTED, agency_rejection_topic, agency_submission_topic, agency_topic
from services.gateway.idempotency import alert_id_for
from tests.support.system import system
from tests.support.world import (
    Cast,
    agreement,
    alert_json,
    eventually,
    read_topic,
    registry,
    write_with_raw_header_name,
)


def http_body(rejection: SubmissionRejected) -> dict[str, Any]:
    """A rejection as the JSON body POST /v1/alerts answers."""
    body: dict[str, Any] = {"error": rejection.error, "message": rejection.message}
    if rejection.problems:
        body["problems"] = [{"field": p.field, "message": p.message} for p in rejection.problems]
    return body


async def test_an_alert_submitted_over_kafka_is_routed_like_an_http_one(kafka: KafkaSettings, codec: Codec) -> None:
    """A SubmitAlert on A's submissions topic reaches B's agency topic as the same body POSTed does; sent
    twice with one key it is routed once; an invalid one is refused on A's rejections topic with exactly the
    status and body POST /v1/alerts answers for it."""
    cast = Cast()
    a, b = cast.agency("IQ-A", "IQ"), cast.agency("JO-B", "JO")
    doc = registry([a, b], [agreement(f"KAFKA-{cast.suffix}", [a.code, b.code])])
    await publish_registry(kafka, codec, doc, source="test", replication_factor=1)
    body = json.dumps(alert_json(title="Over Kafka", affected_countries=["JO"])).encode()
    invalid = json.dumps(alert_json(tlp="PURPLE", indicators=[{"type": "ip"}], origin="JO-B")).encode()

    async with system(kafka, codec) as sys_, aiohttp.ClientSession() as http:
        # Scenario: A submits over HTTP and over Kafka (the Kafka record twice, as a producer retrying would),
        # and one invalid alert over Kafka.
        async with http.post(
            f"{sys_.url}/v1/alerts", data=body, headers={**cast.bearer(a.code), "Content-Type": "application/json"}
        ) as r:
            assert r.status == 202
            over_http = (await r.json())["alert_id"]
        p = producer(kafka, "agency-a")
        await p.start()
        try:
            for key, raw in ((b"kafka-1", body), (b"kafka-1", body), (b"kafka-bad", invalid)):
                await p.send_and_wait(agency_submission_topic(a.code), codec.encode(SubmitAlert(body=raw)), key=key)
        finally:
            await p.stop()
        over_kafka = alert_id_for(a.code, "kafka-1")

        async def copies() -> Counter[str]:
            shared = await read_topic(kafka, codec, agency_topic(b.code), AlertShared)
            return Counter(c.alert_id for _, c in shared)

        await eventually(lambda: _has(copies(), {over_http, over_kafka}), within_s=30)
        # Both sends reached the pipeline (the gateway forwarded each), and the router routed the id once.
        submitted = await read_topic(kafka, codec, ALERTS_SUBMITTED, AlertSubmitted)
        assert [s.origin for _, s in submitted if s.alert_id == over_kafka] == [a.code, a.code]
        await asyncio.sleep(2.0)  # time enough for a second copy to show
        got = await copies()
        assert (got[over_http], got[over_kafka]) == (1, 1)
        shared = {c.alert_id: c for _, c in await read_topic(kafka, codec, agency_topic(b.code), AlertShared)}
        assert _essence(shared[over_kafka]) == _essence(shared[over_http])
        assert (shared[over_kafka].origin, shared[over_kafka].alert.title) == (a.code, "Over Kafka")

        rejections = await eventually(
            lambda: read_topic(kafka, codec, agency_rejection_topic(a.code), SubmissionRejected), within_s=15
        )
        [(key, rejection)] = rejections
        headers = {**cast.bearer(a.code), "Content-Type": "application/json", "Idempotency-Key": "kafka-bad"}
        async with http.post(f"{sys_.url}/v1/alerts", data=invalid, headers=headers) as r:
            answer = (r.status, await r.json())
        assert answer == (rejection.status, http_body(rejection))
        assert (key, rejection.error, rejection.agency, rejection.idempotency_key) == (
            b"kafka-bad",
            "invalid_alert",
            a.code,
            "kafka-bad",
        )
        assert {"$.tlp", "$.indicators[0].value", "$.origin"} <= {p.field for p in rejection.problems}


def _essence(copy: AlertShared) -> Any:
    """A copy without what differs between two submissions of one body (its id, its times)."""
    alert = msgspec.structs.replace(copy.alert, sent=datetime(2000, 1, 1, tzinfo=UTC))
    return (copy.recipient, copy.origin, copy.event_type, copy.agreement_id, copy.redacted_fields, alert)


async def _has(counter: Any, ids: set[str]) -> bool:
    return ids <= set(await counter)


async def test_a_header_name_not_utf8_stalls_no_agencys_kafka_intake(kafka: KafkaSettings, codec: Codec) -> None:
    """A hostile agency writes, on its own submissions topic, a record whose header name is not UTF-8 (its own
    client can). On aiokafka every fetch of it raised, so the gateway's one consumer of every agency's
    submissions would have stopped there for good. The record is taken without its headers, and the next
    submission of another agency goes through."""
    cast = Cast()
    a, b = cast.agency("IQ-A", "IQ"), cast.agency("JO-B", "JO")
    doc = registry([a, b], [agreement(f"KAFKA-{cast.suffix}", [a.code, b.code])])
    await publish_registry(kafka, codec, doc, source="test", replication_factor=1)
    odd = json.dumps(alert_json(title="Odd header", affected_countries=["JO"])).encode()
    after = json.dumps(alert_json(title="After it", affected_countries=["IQ"])).encode()

    async with system(kafka, codec):
        await write_with_raw_header_name(
            kafka, agency_submission_topic(a.code), b"odd-1", codec.encode(SubmitAlert(body=odd)), b"\xff\xfe"
        )
        p = producer(kafka, "agency-b")
        await p.start()
        try:
            await p.send_and_wait(agency_submission_topic(b.code), codec.encode(SubmitAlert(body=after)), key=b"b-1")
        finally:
            await p.stop()
        expected = {alert_id_for(a.code, "odd-1"), alert_id_for(b.code, "b-1")}

        async def submitted() -> set[str]:
            return {s.alert_id for _, s in await read_topic(kafka, codec, ALERTS_SUBMITTED, AlertSubmitted)}

        assert await eventually(lambda: _has(submitted(), expected), within_s=30)
