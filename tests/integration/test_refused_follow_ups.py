"""A refused follow-up on the real broker: its sender is told, on its own rejections topic and in GET
/v1/alerts/{id}, and a hostile sender learns nothing of another agency's thread from it.

B holds A's thread (it received the original), so it knows the id. Its Update of that thread, over HTTP and
over Kafka, must be told exactly what its Update of an id nobody has is told; nothing B reads may name A; A's
recipients receive nothing. Only A, the originator, learns that its own thread was cancelled.
"""

from __future__ import annotations

import json
import uuid
from typing import Any

import aiohttp

from services.common.codec import Codec
from services.common.kafka import producer, read_to_end
from services.common.records import AlertRejected, AlertRouted, AlertShared, SubmissionRejected, SubmitAlert
from services.common.registry.publish import publish_registry
from services.common.settings import KafkaSettings
from services.common.topics import (
    ALERTS_REJECTED,
    ALERTS_ROUTED,
    agency_rejection_topic,
    agency_submission_topic,
    agency_topic,
)
from services.gateway.idempotency import alert_id_for
from tests.support.system import system
from tests.support.world import Cast, agreement, alert_json, decisions, eventually, rctc, read_topic, registry


async def test_a_refused_follow_up_is_told_to_its_sender_alone_and_names_no_other_agency(
    kafka: KafkaSettings, codec: Codec
) -> None:
    """B's Updates of A's thread (HTTP, Kafka) and of an unknown id: one code and message on B's rejections
    topic, none naming A; nothing reaches A's recipients; A's Update of its cancelled thread: thread_cancelled."""
    cast = Cast()
    a, b, c = cast.agency("IQ-A", "IQ"), cast.agency("JO-B", "JO"), cast.agency("SA-C", "SA")
    desk = f"desk-{uuid.uuid4().hex}"
    doc = registry([a, b, c], [agreement(f"REF-{cast.suffix}", [a.code, b.code, c.code])], operator_token=desk)
    await publish_registry(kafka, codec, doc, source="refusals", replication_factor=1)

    async with system(kafka, codec) as sys_, aiohttp.ClientSession() as http:

        async def submit(code: str, **fields: Any) -> str:
            body = alert_json(affected_countries=["IQ"], **fields)
            async with http.post(f"{sys_.url}/v1/alerts", json=body, headers=cast.bearer(code)) as r:
                assert r.status == 202, await r.text()  # accepted: the refusal comes after
                return str((await r.json())["alert_id"])

        async def told(code: str, ids: set[str]) -> dict[str, tuple[bytes, SubmissionRejected]]:
            async def found() -> dict[str, tuple[bytes, SubmissionRejected]] | None:
                records = await read_topic(kafka, codec, agency_rejection_topic(code), SubmissionRejected)
                got = {r.alert_id: (key, r) for key, r in records if r.alert_id in ids}
                return got if set(got) == ids else None

            result: dict[str, tuple[bytes, SubmissionRejected]] = await eventually(found, within_s=30)
            return result

        async def status(alert_id: str, token: dict[str, str]) -> tuple[int, Any]:
            async with http.get(f"{sys_.url}/v1/alerts/{alert_id}", headers=token) as r:
                return r.status, await r.json()

        async def thread_ids(code: str) -> list[str]:
            return [s.alert_id for _, s in await read_topic(kafka, codec, agency_topic(code), AlertShared)]

        original = await submit(a.code, title="A's plot")

        async def routed() -> AlertRouted | None:
            found = await read_topic(kafka, codec, ALERTS_ROUTED, AlertRouted)
            return next((r for _, r in found if r.alert_id == original), None)

        first = await eventually(routed, within_s=30)
        assert {d.agency for d in first.decisions if d.delivered} == {b.code, c.code}

        # Scenario: B updates A's thread over HTTP and over Kafka, and an id nobody has.
        forged = await submit(b.code, msg_type="Update", references=[original], title="B rewrites A's plot")
        probe = await submit(b.code, msg_type="Update", references=[str(uuid.uuid4())], title="is this one A's?")
        body = json.dumps(alert_json(msg_type="Update", references=[original], title="B again, over Kafka"))
        p = producer(kafka, "agency-b")
        await p.start()
        try:
            record = codec.encode(SubmitAlert(body=body.encode()))
            await p.send_and_wait(agency_submission_topic(b.code), record, key=b"b-key-1")
        finally:
            await p.stop()
        over_kafka = alert_id_for(b.code, "b-key-1")

        to_b = await told(b.code, {forged, probe, over_kafka})
        answers = {(r.error, r.status, r.message, r.stage, r.agency) for _, r in to_b.values()}
        assert len(answers) == 1, answers  # the same code and message, word for word
        ((error, http_status, _, stage, agency),) = answers
        assert (error, http_status, stage, agency) == ("thread_not_found", 404, "router", b.code)
        assert (to_b[over_kafka][0], to_b[over_kafka][1].idempotency_key) == (b"b-key-1", "b-key-1")
        assert (to_b[forged][0], to_b[forged][1].idempotency_key) == (forged.encode(), None)
        raw = [r.value async for r in read_to_end(kafka, agency_rejection_topic(b.code), name="refusals")]
        assert not any(a.code.encode() in value for value in raw)
        # Operators keep the full reason, which does name the thread's originator.
        rejected = {r.alert_id: r for _, r in await read_topic(kafka, codec, ALERTS_REJECTED, AlertRejected)}
        assert (a.code in rejected[forged].reason, rejected[forged].error) == (True, "thread_not_found")
        # Nothing was decided for them, and A's recipients hold the original alone; A is told nothing.
        assert await decisions(kafka, codec, {forged, probe, over_kafka}) == {}
        assert (await thread_ids(b.code), await thread_ids(c.code)) == ([original], [original])
        assert await read_topic(kafka, codec, agency_rejection_topic(a.code), SubmissionRejected) == []

        # B asks about its refused Update: the safe code, nothing of A; C and A get what an unknown id gets.
        code, shown = await status(forged, cast.bearer(b.code))
        assert (code, shown["rejected"]["error"], shown["recipients"]) == (200, "thread_not_found", {})
        assert a.code not in json.dumps(shown)
        unknown = str(uuid.uuid4())
        for stranger in (a.code, c.code):
            hidden, missing = await status(forged, cast.bearer(stranger)), await status(unknown, cast.bearer(stranger))
            assert (hidden[0], json.dumps(hidden[1]).replace(forged, unknown)) == (404, json.dumps(missing[1]))
        code, shown = await status(forged, {"Authorization": f"Bearer {desk}"})
        assert (code, a.code in shown["rejected"]["reason"]) == (200, True)
        exit_code, out, err = await rctc("status", forged, "--gateway", sys_.url, "--token", desk, kafka=kafka)
        assert (exit_code, f"refused, thread_not_found: {to_b[forged][1].message}" in out) == (0, True), err
        assert f"by the router: only {a.code}" in out

        # A cancels its thread, then updates it: only A learns it was cancelled; B is told what it was told.
        cancel = await submit(a.code, msg_type="Cancel", references=[original], title="called off")
        late = await submit(a.code, msg_type="Update", references=[original], title="A, too late")
        after = await submit(b.code, msg_type="Update", references=[original], title="B, after the cancel")
        to_a = await told(a.code, {late})
        assert (to_a[late][1].error, to_a[late][1].status) == ("thread_cancelled", 409)
        assert (await told(b.code, {after}))[after][1].message == to_b[probe][1].message
        assert await decisions(kafka, codec, {cancel, late, after}) == {cancel: 1}
        code, shown = await status(late, cast.bearer(a.code))
        assert (code, shown["rejected"]["error"]) == (200, "thread_cancelled")
