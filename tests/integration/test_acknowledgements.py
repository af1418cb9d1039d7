"""Acknowledgements, deadlines, escalation and reminders through the real broker, across a tracker restart.

Time is compressed (ack_deadline_scale): a Severe, Immediate alert's half-hour deadline becomes seconds.
"""

from __future__ import annotations

import asyncio
import uuid
from contextlib import AsyncExitStack
from typing import Any

import aiohttp
import msgspec

from services.common.codec import Codec
from services.common.internal import bearer
from services.common.kafka import producer
from services.common.records import AckSubmitted, AlertShared, EscalationRaised, utcnow
from services.common.registry.publish import publish_registry
from services.common.runner import running
from services.common.settings import KafkaSettings
from services.common.topics import ALERTS_ESCALATIONS, agency_ack_topic, agency_topic
from services.demo.receivers import Receivers
from services.tracker.service import build as build_tracker
from services.tracker.settings import InternalHttpSettings, TrackerSettings
from tests.support.system import new_internal_token, system
from tests.support.world import Cast, agreement, alert_json, eventually, read_topic, registry

OPERATOR = "operator-token-acks"
SCALE = 0.003  # 30 min (Severe 1 h x Immediate 0.5) -> 5.4 s; the duty desk one period later, at 10.8 s


async def test_four_recipients_three_channels_one_silent(
    kafka: KafkaSettings, codec: Codec, receivers: tuple[str, Receivers]
) -> None:
    """Two ack over HTTP, one over Kafka, one never: the silent one is reminded once, then the duty desk told once."""
    url, rcv = receivers
    cast = Cast()
    origin = cast.agency("IQ-A", "IQ")
    b, c, d = cast.agency("JO-B", "JO"), cast.agency("SA-C", "SA"), cast.agency("KW-D", "KW")
    e = cast.agency("AE-E", "AE", webhook_url=url)
    rcv.register(e.code, cast.secrets[e.code])
    doc = registry(
        [origin, b, c, d, e],
        [agreement(f"ACK-{cast.suffix}", [origin.code, b.code, c.code, d.code, e.code])],
        operator_token=OPERATOR,
    )
    await publish_registry(kafka, codec, doc, source="test", replication_factor=1)

    async with (
        system(
            kafka,
            codec,
            router={"ack_deadline_scale": SCALE},
            tracker={"escalation_check_s": 0.2},
            dispatcher={"retry_time_scale": 0.01},
        ) as sys_,
        aiohttp.ClientSession() as http,
    ):

        async def get(path: str, token_of: str | None = None) -> tuple[int, Any]:
            token = cast.tokens[token_of] if token_of else OPERATOR
            async with http.get(f"{sys_.url}{path}", headers={"Authorization": f"Bearer {token}"}) as r:
                return r.status, await r.json()

        body = alert_json(severity="Severe", urgency="Immediate", affected_countries=["IQ"])
        async with http.post(f"{sys_.url}/v1/alerts", json=body, headers=cast.bearer(origin.code)) as r:
            alert_id = (await r.json())["alert_id"]
        await eventually(lambda: _status_is(get(f"/v1/alerts/{alert_id}"), 200))

        # Scenario: B and C acknowledge over HTTP, D over Kafka on its own acks topic; someone writing to D's
        # topic in E's name is refused; E never acknowledges.
        for agency, response in ((b.code, "actioned"), (c.code, "no_nexus")):
            async with http.post(
                f"{sys_.url}/v1/alerts/{alert_id}/ack", json={"response": response}, headers=cast.bearer(agency)
            ) as r:
                assert r.status == 202
        p = producer(kafka, "agency-d")
        await p.start()
        try:
            for claimed in (d.code, e.code):
                ack = AckSubmitted(
                    ack_id=str(uuid.uuid4()),
                    alert_id=alert_id,
                    agency=claimed,
                    response="request_info",
                    channel="kafka",
                    submitted_at=utcnow(),
                )
                await p.send_and_wait(agency_ack_topic(d.code), codec.encode(ack))
        finally:
            await p.stop()

        async def states() -> dict[str, str]:
            status, body = await get(f"/v1/alerts/{alert_id}")
            return {k: v["state"] for k, v in body["recipients"].items()} if status == 200 else {}

        expected = {b.code: "acknowledged", c.code: "acknowledged", d.code: "acknowledged", e.code: "delivered"}
        await eventually(lambda: _equals(states(), expected), within_s=15)

        # The tracker restarts between the acks and the deadline: state and the pending deadline survive.
        await sys_.restart_tracker()
        assert await states() == expected
        _, outstanding = await get("/v1/acks/outstanding", token_of=e.code)
        assert [(o["alert_id"], o["escalation_level"]) for o in outstanding["outstanding"]] == [(alert_id, 0)]

        # E misses its deadline: reminded (webhook flagged as a reminder), then the duty desk, once each.
        async def escalations() -> list[EscalationRaised]:
            return [
                x
                for _, x in await read_topic(kafka, codec, ALERTS_ESCALATIONS, EscalationRaised)
                if x.alert_id == alert_id
            ]

        await eventually(lambda: _count(escalations(), 1), within_s=30)
        # A restart between the reminder and the duty desk must neither repeat the one nor lose the other.
        await sys_.restart_tracker()
        await eventually(lambda: _count(escalations(), 2), within_s=30)
        await asyncio.sleep(1.5)  # time enough for a doubled escalation to show
        raised = await escalations()
        assert sorted((x.agency, x.level, x.kind) for x in raised) == [
            (e.code, 1, "ack_deadline"),
            (e.code, 2, "ack_deadline"),
        ]
        # The reminder by webhook is the record on E's topic.
        hooks = await eventually(lambda: [p for p in rcv.received[e.code].values() if p["type"] == "alert.escalated"])
        [(key, on_topic)] = await reminders(kafka, codec, e.code)
        assert [msgspec.to_builtins(on_topic)] == [h["data"] for h in hooks]
        assert (key, on_topic.alert_id, on_topic.reason, on_topic.alert) == (
            f"{alert_id}:{e.code}".encode(),
            alert_id,
            "ack_overdue",
            None,
        )

        # The originator sees all four rows and the escalations; a recipient sees only itself.
        status, view = await get(f"/v1/alerts/{alert_id}", token_of=origin.code)
        assert status == 200 and {k: v["state"] for k, v in view["recipients"].items()} == expected
        assert view["recipients"][e.code]["escalation_level"] == 2
        assert view["recipients"][d.code]["ack_channel"] == "kafka"
        assert view["recipients"][b.code]["response"] == "actioned"
        status, own = await get(f"/v1/alerts/{alert_id}", token_of=c.code)
        assert (status, list(own["recipients"])) == (200, [c.code])
        _, everyone = await get(f"/v1/acks/outstanding?agency={e.code}")
        assert [o["escalation_level"] for o in everyone["outstanding"]] == [2]

        # Bad acks: unknown alert, non-recipient, forged token, repeat: each its documented answer.
        async with http.post(
            f"{sys_.url}/v1/alerts/unknown-{uuid.uuid4()}/ack", json={}, headers=cast.bearer(e.code)
        ) as r:
            assert r.status == 404
        async with http.post(f"{sys_.url}/v1/alerts/{alert_id}/ack", json={}, headers=cast.bearer(origin.code)) as r:
            assert r.status == 403
        async with http.post(
            f"{sys_.url}/v1/alerts/{alert_id}/ack", json={}, headers={"Authorization": "Bearer forged"}
        ) as r:
            assert r.status == 401
        async with http.post(f"{sys_.url}/v1/alerts/{alert_id}/ack", json={}, headers=cast.bearer(b.code)) as r:
            assert (r.status, (await r.json())["status"]) == (200, "already_acknowledged")


async def reminders(kafka: KafkaSettings, codec: Codec, code: str) -> list[tuple[bytes, AlertShared]]:
    """The reminders (alert.escalated) on an agency's own topic, with their keys."""
    copies = await read_topic(kafka, codec, agency_topic(code), AlertShared)
    return [(key, c) for key, c in copies if c.event_type == "alert.escalated"]


async def test_a_kafka_only_agency_is_reminded_once_on_its_topic(kafka: KafkaSettings, codec: Codec) -> None:
    """An agency without a webhook that misses its deadline finds one reminder on its own topic, after its
    copy under the same key, and still one after tracker restarts and the duty desk's escalation; one that
    acknowledged in time finds none."""
    cast = Cast()
    origin, quiet, prompt = cast.agency("IQ-A", "IQ"), cast.agency("JO-Q", "JO"), cast.agency("SA-P", "SA")
    doc = registry([origin, quiet, prompt], [agreement(f"REM-{cast.suffix}", [origin.code, quiet.code, prompt.code])])
    await publish_registry(kafka, codec, doc, source="test", replication_factor=1)

    async with (
        system(kafka, codec, router={"ack_deadline_scale": SCALE}, tracker={"escalation_check_s": 0.2}) as sys_,
        aiohttp.ClientSession() as http,
    ):
        body = alert_json(severity="Severe", urgency="Immediate", affected_countries=["IQ"])
        async with http.post(f"{sys_.url}/v1/alerts", json=body, headers=cast.bearer(origin.code)) as r:
            alert_id = (await r.json())["alert_id"]

        async def levels() -> list[int]:
            raised = await read_topic(kafka, codec, ALERTS_ESCALATIONS, EscalationRaised)
            return sorted(x.level for _, x in raised if x.alert_id == alert_id)

        # Scenario: P acknowledges at once; Q never does, and its reminder is written with its level-1
        # escalation, in one transaction.
        async def acknowledged() -> bool:
            url = f"{sys_.url}/v1/alerts/{alert_id}/ack"
            async with http.post(url, json={"response": "actioned"}, headers=cast.bearer(prompt.code)) as r:
                return r.status == 202

        await eventually(acknowledged)
        await eventually(lambda: _equals(levels(), [1]), within_s=30)
        [(key, reminder)] = await reminders(kafka, codec, quiet.code)
        assert (key, reminder.alert_id, reminder.origin, reminder.reason, reminder.alert) == (
            f"{alert_id}:{quiet.code}".encode(),
            alert_id,
            origin.code,
            "ack_overdue",
            None,
        )
        on_topic = await read_topic(kafka, codec, agency_topic(quiet.code), AlertShared)
        assert [c.event_type for k, c in on_topic if k == key] == ["alert.created", "alert.escalated"]

        # A restart between the reminder and the duty desk neither reminds again nor loses the duty desk.
        await sys_.restart_tracker()
        await eventually(lambda: _equals(levels(), [1, 2]), within_s=30)
        await sys_.restart_tracker()
        await asyncio.sleep(1.5)  # time enough for a doubled reminder to show
        assert (await levels(), len(await reminders(kafka, codec, quiet.code))) == ([1, 2], 1)
        assert await reminders(kafka, codec, prompt.code) == []


async def _status_is(call: Any, status: int) -> bool:
    got, _ = await call
    return bool(got == status)


async def _equals(found: Any, expected: Any) -> bool:
    return bool(await found == expected)


async def _count(found: Any, n: int) -> bool:
    return len(await found) >= n


async def test_two_trackers_split_escalations_and_both_answer(kafka: KafkaSettings, codec: Codec) -> None:
    """With two tracker replicas, either answers any query and each escalation is raised once, across a handover."""
    cast = Cast()
    origin = cast.agency("IQ-A", "IQ")
    silent = [cast.agency(f"{c}-S", c) for c in ("JO", "SA", "KW")]
    doc = registry(
        [origin, *silent],
        [agreement(f"TWO-{cast.suffix}", [origin.code, *(s.code for s in silent)])],
        operator_token=OPERATOR,
    )
    await publish_registry(kafka, codec, doc, source="test", replication_factor=1)
    token = new_internal_token()
    second = build_tracker(
        TrackerSettings(kafka=kafka, http=InternalHttpSettings(port=0), escalation_check_s=0.2, internal_token=token),
        codec,
    )
    async with (
        system(
            kafka,
            codec,
            router={"ack_deadline_scale": SCALE},
            tracker={"escalation_check_s": 0.2},
            internal_token=token,
        ) as sys_,
        aiohttp.ClientSession() as http,
    ):
        stack = AsyncExitStack()
        await stack.enter_async_context(running(second))
        try:
            body = alert_json(severity="Severe", urgency="Immediate", affected_countries=["IQ"])
            async with http.post(f"{sys_.url}/v1/alerts", json=body, headers=cast.bearer(origin.code)) as r:
                alert_id = (await r.json())["alert_id"]

            async def answered_by(port: int) -> bool:
                params = {"viewer_kind": "operator", "viewer": "desk"}
                url = f"http://127.0.0.1:{port}/internal/alerts/{alert_id}"
                async with http.get(url, params=params, headers=bearer(token)) as r:
                    return r.status == 200 and len((await r.json())["recipients"]) == 3

            await eventually(lambda: answered_by(sys_.tracker.port or 0))
            await eventually(lambda: answered_by(second.port or 0))

            async def raised() -> list[EscalationRaised]:
                return [
                    x
                    for _, x in await read_topic(kafka, codec, ALERTS_ESCALATIONS, EscalationRaised)
                    if x.alert_id == alert_id
                ]

            await eventually(lambda: _count(raised(), 3), within_s=30)
            # The second replica leaves between the reminders and the duty desk: the other takes over.
            await stack.aclose()
            await eventually(lambda: _count(raised(), 6), within_s=40)
            await asyncio.sleep(1.5)
            found = sorted((x.agency, x.level) for x in await raised())
            assert found == sorted((s.code, level) for s in silent for level in (1, 2))
            # Each silent agency's reminder is on its topic once, whichever replica raised it.
            counts = [
                len([r for _, r in await reminders(kafka, codec, s.code) if r.alert_id == alert_id]) for s in silent
            ]
            assert counts == [1, 1, 1]
        finally:
            await stack.aclose()


async def test_an_ack_sent_the_moment_the_webhook_arrives_is_accepted(
    kafka: KafkaSettings, codec: Codec, receivers: tuple[str, Receivers]
) -> None:
    """The tracker reads in batches (up to half a second behind the router); an agency whose system
    acknowledges as soon as the webhook lands must still find the alert routed to it, not a 404."""
    url, rcv = receivers
    cast = Cast()
    origin, b = cast.agency("IQ-A", "IQ"), cast.agency("JO-B", "JO", webhook_url=url)
    rcv.register(b.code, cast.secrets[b.code])
    doc = registry([origin, b], [agreement(f"FAST-{cast.suffix}", [origin.code, b.code])], operator_token=OPERATOR)
    await publish_registry(kafka, codec, doc, source="test", replication_factor=1)

    async with system(kafka, codec) as sys_, aiohttp.ClientSession() as http:
        for _ in range(3):
            body = alert_json(affected_countries=["IQ"])
            async with http.post(f"{sys_.url}/v1/alerts", json=body, headers=cast.bearer(origin.code)) as r:
                alert_id = (await r.json())["alert_id"]
            async with asyncio.timeout(30):
                while not any(p["data"]["alert_id"] == alert_id for p in rcv.received.get(b.code, {}).values()):  # noqa: ASYNC110 (a test polls the receiver as fast as it can)
                    await asyncio.sleep(0.002)
            async with http.post(
                f"{sys_.url}/v1/alerts/{alert_id}/ack", json={"response": "actioned"}, headers=cast.bearer(b.code)
            ) as r:
                assert r.status == 202, await r.text()
