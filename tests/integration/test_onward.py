"""Onward sharing end to end on the real broker (router/onward.py): a recipient of an originator-controlled
alert asks, the originator approves or refuses, the named agency gets its own copy, later versions follow the
approval, a revocation withdraws it; and every move a hostile agency could make on the way is refused.
"""

from __future__ import annotations

import uuid
from typing import Any

import aiohttp
import pytest
from confluent_kafka.admin import AdminClient

from services.common.codec import Codec
from services.common.kafka import group_id, read_to_end
from services.common.librdkafka import confluent_config
from services.common.records import AlertRouted, AlertShared
from services.common.registry.publish import publish_registry
from services.common.settings import KafkaSettings
from services.common.topics import ALERTS_ROUTED, agency_topic
from services.demo.receivers import Receivers
from tests.support.system import system
from tests.support.world import Cast, agreement, alert_json, eventually, read_topic, registry


@pytest.mark.timeout(300)  # some twenty steps, each through the whole pipeline: about a minute on two quiet cores
async def test_onward_sharing_asked_approved_followed_revoked_and_refused(
    kafka: KafkaSettings, codec: Codec, receivers: tuple[str, Receivers]
) -> None:
    url, rcv = receivers
    cast = Cast()
    iq, jo, sa, kw = (
        cast.agency("IQ-A", "IQ", webhook_url=url),
        cast.agency("JO-B", "JO", webhook_url=url),
        cast.agency("SA-C", "SA", webhook_url=url),
        cast.agency("KW-D", "KW"),
    )
    for c, keys in cast.secrets.items():
        rcv.register(c, keys)
    doc = registry(
        [iq, jo, sa, kw],
        [
            # JO's copies leave the subjects out; SA's agreement would not, KW has none with IQ.
            agreement(f"IQJO-{cast.suffix}", from_=[iq.code], to=[jo.code], redact=["subjects"]),
            agreement(f"IQSA-{cast.suffix}", from_=[iq.code], to=[sa.code]),
        ],
    )
    await publish_registry(kafka, codec, doc, source="onward", replication_factor=1)

    async with system(kafka, codec) as sys_, aiohttp.ClientSession() as http:

        async def post(path: str, code: str, body: dict[str, Any]) -> tuple[int, dict[str, Any]]:
            async with http.post(f"{sys_.url}{path}", json=body, headers=cast.bearer(code)) as r:
                return r.status, await r.json()

        async def get(path: str, code: str) -> tuple[int, dict[str, Any]]:
            async with http.get(f"{sys_.url}{path}", headers=cast.bearer(code)) as r:
                return r.status, await r.json()

        async def submit(**fields: Any) -> str:
            status, body = await post("/v1/alerts", iq.code, alert_json(**fields))
            assert status == 202, body
            return str(body["alert_id"])

        async def topic(code: str) -> list[AlertShared]:
            return [codec.decode(r.value, AlertShared) async for r in read_to_end(kafka, agency_topic(code), name="ow")]

        async def events(code: str, wanted: int) -> list[AlertShared]:
            async def enough() -> list[AlertShared] | None:
                got = await topic(code)
                return got if len(got) >= wanted else None

            result: list[AlertShared] = await eventually(enough, within_s=60)
            return result

        async def state(request_id: str, code: str, wanted: str) -> dict[str, Any]:
            async def reached() -> dict[str, Any] | None:
                status, body = await get(f"/v1/onward/{request_id}", code)
                return body if status == 200 and body["state"] == wanted else None

            result: dict[str, Any] = await eventually(reached, within_s=60)
            return result

        original = await submit(tlp="AMBER", releasable_to=[jo.code], originator_control=True, title="orcon plot")
        assert [c.event_type for c in await events(jo.code, 1)] == ["alert.created"]

        # Strangers and bad requests are refused before anything is written.
        stranger = await post(f"/v1/alerts/{original}/onward", kw.code, {"agency": sa.code, "reason": "x"})
        unknown = await post(f"/v1/alerts/{uuid.uuid4()}/onward", kw.code, {"agency": sa.code, "reason": "x"})
        assert stranger[0] == unknown[0] == 403 and stranger[1]["error"] == unknown[1]["error"] == "not_a_recipient"
        assert (await post(f"/v1/alerts/{original}/onward", jo.code, {"agency": jo.code, "reason": "x"}))[0] == 422
        assert (await post(f"/v1/alerts/{original}/onward", jo.code, {"agency": "NOPE-1", "reason": "x"}))[0] == 422
        assert (await post(f"/v1/alerts/{original}/onward", jo.code, {"agency": sa.code}))[0] == 422

        # JO asks; IQ is told on its topic and webhook, with JO's reason.
        status, asked = await post(
            f"/v1/alerts/{original}/onward", jo.code, {"agency": sa.code, "reason": "SA border police"}
        )
        assert status == 202, asked
        request_id = asked["request_id"]
        [requested] = [e for e in await events(iq.code, 1) if e.event_type == "onward.requested"]
        assert requested.onward is not None and requested.alert is None
        assert (requested.onward.requester, requested.onward.target, requested.onward.text) == (
            jo.code,
            sa.code,
            "SA border police",
        )
        pending = await state(request_id, iq.code, "requested")
        again = await post(f"/v1/alerts/{original}/onward", jo.code, {"agency": sa.code, "reason": "again"})
        assert again[0] == 409 and again[1]["error"] == "conflict"
        assert pending["reason"] == "SA border police" and pending["thread_id"] == original
        status, listed = await get("/v1/onward", iq.code)
        assert status == 200 and [r["request_id"] for r in listed["requests"]] == [request_id]
        assert (await get("/v1/onward", kw.code))[1]["requests"] == []

        # Only the originator answers: the requester is refused, the others do not learn the request exists.
        assert (await post(f"/v1/onward/{request_id}", jo.code, {"decision": "approve"}))[0] == 403
        for code in (sa.code, kw.code):
            assert (await post(f"/v1/onward/{request_id}", code, {"decision": "approve"}))[0] == 404
        assert (await post(f"/v1/onward/{uuid.uuid4()}", iq.code, {"decision": "approve"}))[0] == 404
        assert (await post(f"/v1/onward/{request_id}", iq.code, {"decision": "revoke"}))[0] == 409

        status, _ = await post(f"/v1/onward/{request_id}", iq.code, {"decision": "approve", "note": "for SA only"})
        assert status == 202
        [copy] = await events(sa.code, 1)
        assert copy.event_type == "alert.created" and copy.alert is not None
        assert copy.alert.subjects is None and "subjects" in copy.redacted_fields  # no wider than JO's copy
        approved = await state(request_id, jo.code, "approved")
        assert approved["note"] == "for SA only" and "refusal" not in approved
        told = [e for e in await events(jo.code, 2) if e.event_type == "onward.approved"]
        assert told and told[0].onward is not None and told[0].onward.text == "for SA only"
        assert (await post(f"/v1/onward/{request_id}", iq.code, {"decision": "approve"}))[0] == 409

        # SA owes an acknowledgement of its copy, like any recipient, and may give it.
        status, acked = await post(f"/v1/alerts/{original}/ack", sa.code, {"response": "actioned"})
        assert status == 202, acked

        # The approval lasts: IQ's Update (still releasable to JO alone) reaches SA, without the subjects.
        update = await submit(
            msg_type="Update", references=[original], tlp="AMBER", releasable_to=[jo.code], originator_control=True
        )
        sa_events = await events(sa.code, 2)
        assert [(e.alert_id, e.event_type) for e in sa_events] == [
            (original, "alert.created"),
            (update, "alert.updated"),
        ]
        assert sa_events[1].alert is not None and sa_events[1].alert.subjects is None

        # Revoked: SA is told to purge the thread.
        status, _ = await post(f"/v1/onward/{request_id}", iq.code, {"decision": "revoke"})
        assert status == 202
        sa_events = await events(sa.code, 3)
        assert (sa_events[2].event_type, sa_events[2].reason, sa_events[2].alert) == (
            "alert.withdrawn",
            "onward_revoked",
            None,
        )
        await state(request_id, iq.code, "revoked")

        # A second request, refused: JO is told with IQ's note, KW (named) receives nothing.
        status, asked = await post(f"/v1/alerts/{update}/onward", jo.code, {"agency": kw.code, "reason": "KW too"})
        assert status == 202, asked
        second = asked["request_id"]
        await state(second, iq.code, "requested")
        assert (await post(f"/v1/onward/{second}", iq.code, {"decision": "refuse", "note": "source protection"}))[
            0
        ] == 202
        refused = await state(second, jo.code, "refused")
        assert refused["note"] == "source protection"

        async def refusal() -> list[AlertShared] | None:
            found = [e for e in await topic(jo.code) if e.event_type == "onward.refused"]
            return found or None

        [notice] = await eventually(refusal, within_s=60)
        assert notice.onward is not None and notice.onward.text == "source protection"
        assert notice.reason == "refused_by_originator" and notice.alert is None

        # KW never received a record; every onward step is on alerts.routed for the auditor and the originator.
        assert await topic(kw.code) == []
        routed = [r for _, r in await read_topic(kafka, codec, ALERTS_ROUTED, AlertRouted) if r.onward is not None]
        steps = [(r.onward.request_id, r.onward.state) for r in routed if r.onward is not None]
        assert steps == [
            (request_id, "requested"),
            (request_id, "approved"),
            (request_id, "revoked"),
            (second, "requested"),
            (second, "refused"),
        ]

        # The webhooks carried the same events to those that have one.
        async def hooked(code: str, event: str) -> bool:
            return any(p["type"] == event for p in rcv.received[code].values())

        assert await eventually(lambda: hooked(iq.code, "onward.requested"), within_s=60)
        assert await eventually(lambda: hooked(jo.code, "onward.refused"), within_s=60)
        assert await eventually(lambda: hooked(sa.code, "alert.withdrawn"), within_s=60)


@pytest.mark.timeout(300)
async def test_steps_are_decided_once_even_when_the_routers_onward_offsets_are_gone(
    kafka: KafkaSettings, codec: Codec
) -> None:
    """Red team: the router's offsets on requests.onward belong to a group nobody joins, which Kafka expires
    after a quiet week; with them deleted, a restart re-decided every step (a revoked agency was sent a new
    version). The decisions on alerts.routed hold the progress: nothing is decided or sent twice."""
    cast = Cast()
    iq, jo, sa = cast.agency("IQ-A", "IQ"), cast.agency("JO-B", "JO"), cast.agency("SA-C", "SA")
    doc = registry(
        [iq, jo, sa],
        [
            agreement(f"IQJO-{cast.suffix}", from_=[iq.code], to=[jo.code]),
            agreement(f"IQSA-{cast.suffix}", from_=[iq.code], to=[sa.code]),
        ],
    )
    await publish_registry(kafka, codec, doc, source="onward-restart", replication_factor=1)

    async with system(kafka, codec) as sys_, aiohttp.ClientSession() as http:

        async def post(path: str, code: str, body: dict[str, Any]) -> tuple[int, dict[str, Any]]:
            async with http.post(f"{sys_.url}{path}", json=body, headers=cast.bearer(code)) as r:
                return r.status, await r.json()

        async def records(code: str) -> list[AlertShared]:
            return [codec.decode(r.value, AlertShared) async for r in read_to_end(kafka, agency_topic(code), name="ow")]

        async def state_is(request_id: str, wanted: str) -> bool:
            async with http.get(f"{sys_.url}/v1/onward/{request_id}", headers=cast.bearer(iq.code)) as r:
                return r.status == 200 and (await r.json())["state"] == wanted

        status, body = await post("/v1/alerts", iq.code, alert_json(releasable_to=[jo.code], originator_control=True))
        assert status == 202, body
        original = body["alert_id"]
        assert await eventually(lambda: _count(records(jo.code), 1), within_s=60)
        status, asked = await post(f"/v1/alerts/{original}/onward", jo.code, {"agency": sa.code, "reason": "why"})
        assert status == 202, asked
        request_id = asked["request_id"]
        assert await eventually(lambda: state_is(request_id, "requested"), within_s=60)
        assert (await post(f"/v1/onward/{request_id}", iq.code, {"decision": "approve"}))[0] == 202
        assert await eventually(lambda: state_is(request_id, "approved"), within_s=60)
        assert (await post(f"/v1/onward/{request_id}", iq.code, {"decision": "revoke"}))[0] == 202
        assert await eventually(lambda: state_is(request_id, "revoked"), within_s=60)
        before = {code: len(await records(code)) for code in (iq.code, jo.code, sa.code)}
        assert before[sa.code] == 2  # the copy, then its withdrawal

        # What Kafka does to the offsets of a group nobody joins after offsets.retention.minutes.
        assert sys_.router_settings is not None
        admin = AdminClient(confluent_config(kafka, "test-onward"))
        for future in admin.delete_consumer_groups([group_id(sys_.router_settings.kafka, "router-onward")]).values():
            future.result(timeout=30)
        await sys_.restart_router()

        # A step after the restart is decided (the router reads on), and none before it again.
        status, asked = await post(f"/v1/alerts/{original}/onward", jo.code, {"agency": sa.code, "reason": "again"})
        assert status == 202, asked
        assert await eventually(lambda: state_is(asked["request_id"], "requested"), within_s=60)
        after = {code: len(await records(code)) for code in (iq.code, jo.code, sa.code)}
        assert after == {**before, iq.code: before[iq.code] + 1}
        routed = [r for _, r in await read_topic(kafka, codec, ALERTS_ROUTED, AlertRouted) if r.onward is not None]
        mine = [(r.onward.request_id, r.onward.state) for r in routed if r.onward is not None and r.origin == iq.code]
        assert mine == [
            (request_id, "requested"),
            (request_id, "approved"),
            (request_id, "revoked"),
            (asked["request_id"], "requested"),
        ]


async def _count(pending: Any, wanted: int) -> bool:
    return len(await pending) >= wanted
