"""Resend and replay through the router's decision, on the real broker: `rctc deliveries resend` becomes a request
the router decides (a decision in alerts.routed, an audit entry, a tracker row, a copy), and `rctc deliveries
replay` decides each dead delivery again under today's registry."""

from __future__ import annotations

from collections import Counter
from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta
from typing import Any

import aiohttp
import msgspec
import pytest
from aiohttp import web

from services.common.codec import Codec
from services.common.ops import bound_port
from services.common.records import AlertRejected, AlertRouted, AlertShared, AuditRecorded, DeliverWebhook
from services.common.registry import RegistryDocument
from services.common.registry.publish import publish_registry
from services.common.settings import KafkaSettings
from services.common.topics import (
    ALERTS_REJECTED,
    ALERTS_ROUTED,
    AUDIT_EVENTS,
    DELIVERIES_DEAD,
    DELIVERIES_WEBHOOK,
    agency_topic,
)
from services.demo.receivers import Receivers
from tests.support.system import System, system
from tests.support.world import Cast, agreement, alert_json, eventually, rctc, read_topic, registry

OPERATOR = "operator-token-resend"


async def publish(kafka: KafkaSettings, codec: Codec, doc: RegistryDocument, sys_: System | None = None) -> None:
    """Publish `doc`, and wait until the router decides under it."""
    await publish_registry(kafka, codec, doc, source="test", replication_factor=1)
    if sys_ is not None:
        wanted = {a.id for a in doc.agreements}
        await eventually(lambda: {a.id for a in sys_.router.registry.current.agreements} == wanted)


async def submit(sys_: System, http: aiohttp.ClientSession, cast: Cast, origin: str) -> str:
    body = alert_json(severity="Severe", urgency="Immediate", affected_countries=["IQ"], tlp="AMBER")
    async with http.post(f"{sys_.url}/v1/alerts", json=body, headers=cast.bearer(origin)) as r:
        assert r.status == 202, await r.text()
        alert_id: str = (await r.json())["alert_id"]
    return alert_id


async def routed(kafka: KafkaSettings, codec: Codec, alert_id: str) -> list[AlertRouted]:
    return [r for _, r in await read_topic(kafka, codec, ALERTS_ROUTED, AlertRouted) if r.alert_id == alert_id]


async def resent(kafka: KafkaSettings, codec: Codec, alert_id: str, agency: str) -> list[tuple[str, Any]]:
    """The resend decisions about `agency`'s copy of the alert: (request id, the decision)."""
    return [
        (r.request_id, d)
        for r in await routed(kafka, codec, alert_id)
        if r.request_id is not None
        for d in r.decisions
        if d.agency == agency
    ]


async def resend(kafka: KafkaSettings, agency: str, since: datetime) -> str:
    code, out, err = await rctc("deliveries", "resend", "--agency", agency, "--since", since.isoformat(), kafka=kafka)
    assert code == 0, (out, err)
    return out.split()[1]  # "resend <request id> requested for ..."


async def test_a_resend_is_decided_by_the_router_and_leaves_the_whole_trail(
    kafka: KafkaSettings, codec: Codec, receivers: tuple[str, Receivers]
) -> None:
    """A newly entitled agency gets a copy with a decision, an audit entry and a tracker row it can ack; an agency
    no longer permitted is told to purge; one never permitted is refused with its rule; a request is done once."""
    url, rcv = receivers
    cast = Cast()
    origin = cast.agency("IQ-A", "IQ")
    jo, ae = cast.agency("JO-B", "JO"), cast.agency("AE-E", "AE")
    sa, kw = cast.agency("SA-C", "SA", webhook_url=url), cast.agency("KW-D", "KW", webhook_url=url)
    for agency in (sa, kw):
        rcv.register(agency.code, cast.secrets[agency.code])
    agencies = [origin, jo, sa, kw, ae]
    first = agreement(f"R1-{cast.suffix}", [origin.code, jo.code, kw.code])
    await publish(kafka, codec, registry(agencies, [first], operator_token=OPERATOR))
    since = datetime.now(UTC) - timedelta(minutes=1)

    async with system(kafka, codec) as sys_, aiohttp.ClientSession() as http:
        # Scenario: the alert is routed to JO and KW; SA has no agreement yet, and the trail says so.
        alert_id = await submit(sys_, http, cast, origin.code)
        decision = (await eventually(lambda: routed(kafka, codec, alert_id)))[0]
        assert {d.agency: d.rule for d in decision.decisions if d.agency != origin.code} == {
            jo.code: "shared",
            kw.code: "shared",
            sa.code: "no_agreement",
            ae.code: "no_agreement",
        }

        # SA is given an agreement; KW's ends. An operator resends SA everything since before the alert.
        second = agreement(f"R2-{cast.suffix}", [origin.code, sa.code])
        jo_only = agreement(f"R1-{cast.suffix}", [origin.code, jo.code])
        await publish(kafka, codec, registry(agencies, [jo_only, second], operator_token=OPERATOR), sys_)
        request_id = await resend(kafka, sa.code, since)

        # The router decided it: a decision carrying the request, an alert.created copy awaiting an ack.
        found = await eventually(lambda: resent(kafka, codec, alert_id, sa.code))
        assert [(request_id, True, "shared", "alert.created", second.id)] == [
            (r, d.delivered, d.rule, d.event, d.agreement_id) for r, d in found
        ]
        assert found[0][1].ack_due is not None
        # ... the copy on SA's own topic ...
        copies = [c for _, c in await read_topic(kafka, codec, agency_topic(sa.code), AlertShared)]
        assert [(alert_id, "alert.created", second.id)] == [(c.alert_id, c.event_type, c.agreement_id) for c in copies]

        # ... an audit entry: the copy delivered to SA, beside the withheld one of the first routing ...
        async def audit() -> list[tuple[str, str]]:
            entries = await read_topic(kafka, codec, AUDIT_EVENTS, AuditRecorded)
            return [(e.kind, e.rule) for _, e in entries if e.alert_id == alert_id and e.agency == sa.code]

        await eventually(lambda: _equals(audit(), [("withheld", "no_agreement"), ("delivered", "shared")]))

        # ... and a tracker row SA acknowledges like any recipient.
        async def row() -> Any:
            async with http.get(f"{sys_.url}/v1/alerts/{alert_id}", headers=cast.bearer(sa.code)) as r:
                return (await r.json())["recipients"] if r.status == 200 else None

        assert (await eventually(row))[sa.code]["state"] == "delivered"
        await eventually(lambda: [p["type"] for p in rcv.received[sa.code].values()] == ["alert.created"])
        ack = {"response": "actioned"}
        async with http.post(f"{sys_.url}/v1/alerts/{alert_id}/ack", json=ack, headers=cast.bearer(sa.code)) as r:
            assert r.status == 202, await r.text()
        await eventually(lambda: _state(row(), sa.code, "acknowledged"))

        # KW held the alert and no agreement covers it now: a resend withdraws it (a notice, no content).
        await resend(kafka, kw.code, since)
        withdrawn = await eventually(lambda: resent(kafka, codec, alert_id, kw.code))
        assert [(d.delivered, d.rule, d.event) for _, d in withdrawn] == [(True, "withdrawn", "alert.withdrawn")]
        kw_copies = [c for _, c in await read_topic(kafka, codec, agency_topic(kw.code), AlertShared)]
        assert [(c.event_type, c.alert is not None) for c in kw_copies] == [
            ("alert.created", True),
            ("alert.withdrawn", False),
        ]
        # Its receiver gets the notice as a webhook of its own id: not dropped as a repeat of the first copy.
        hooks = ["alert.created", "alert.withdrawn"]
        await eventually(lambda: [p["type"] for p in rcv.received[kw.code].values()] == hooks)

        # AE never had an agreement: refused, the rule recorded, nothing on its topic.
        await resend(kafka, ae.code, since)
        refused = await eventually(lambda: resent(kafka, codec, alert_id, ae.code))
        assert [(d.delivered, d.rule, d.event) for _, d in refused] == [(False, "no_agreement", None)]
        assert await read_topic(kafka, codec, agency_topic(ae.code), AlertShared) == []

        # The tracker restarts (it rebuilds from the topics) and the router restarts (it decides every request of
        # its window again): nothing is sent twice, SA's acknowledgement stands.
        await sys_.restart_tracker()
    async with system(kafka, codec) as sys_, aiohttp.ClientSession() as http:
        await resend(kafka, jo.code, since)  # a request after the restart: decided, so the old ones were seen
        await eventually(lambda: resent(kafka, codec, alert_id, jo.code))
        assert [request_id] == [r for r, _ in await resent(kafka, codec, alert_id, sa.code)]
        assert len(await read_topic(kafka, codec, agency_topic(sa.code), AlertShared)) == 1
        async with http.get(f"{sys_.url}/v1/alerts/{alert_id}", headers=cast.bearer(sa.code)) as r:
            assert (await r.json())["recipients"][sa.code]["state"] == "acknowledged"


@pytest.fixture
async def gone() -> AsyncIterator[str]:
    """A webhook receiver that answers 410 Gone: every delivery to it is dead at its first attempt."""

    async def gone_(_: web.Request) -> web.Response:
        return web.Response(status=410)

    app = web.Application()
    app.router.add_post("/hooks/{code}", gone_)
    runner = web.AppRunner(app, access_log=None)
    await runner.setup()
    await web.TCPSite(runner, "127.0.0.1", 0).start()
    try:
        yield f"http://127.0.0.1:{bound_port(runner)}"
    finally:
        await runner.cleanup()


async def test_replay_drops_a_dead_delivery_to_an_agency_suspended_since(
    kafka: KafkaSettings, codec: Codec, gone: str
) -> None:
    """Two dead deliveries; one agency is suspended since: its delivery is dropped with a recorded reason, the
    other's is replayed."""
    cast = Cast()
    origin = cast.agency("IQ-A", "IQ")
    jo, sa = (cast.agency(f"{c}-R", c, webhook_url=gone) for c in ("JO", "SA"))
    share = agreement(f"P-{cast.suffix}", [origin.code, jo.code, sa.code])
    await publish(kafka, codec, registry([origin, jo, sa], [share], operator_token=OPERATOR))

    async with system(kafka, codec) as sys_, aiohttp.ClientSession() as http:
        alert_id = await submit(sys_, http, cast, origin.code)

        async def dead() -> set[str]:
            records = await read_topic(kafka, codec, DELIVERIES_DEAD, DeliverWebhook)
            return {d.agency for _, d in records if d.alert_id == alert_id}

        await eventually(lambda: _equals(dead(), {jo.code, sa.code}), within_s=30)

    # SA is suspended since its delivery died; an operator replays both agencies' dead deliveries.
    suspended = msgspec.structs.replace(sa, active=False)
    await publish(kafka, codec, registry([origin, jo, suspended], [share], operator_token=OPERATOR))
    requests_before = await _requests(kafka, codec, alert_id)

    code, out, err = await rctc("deliveries", "replay", "--agency", sa.code, kafka=kafka)
    assert code == 0, err
    lines = out.strip().splitlines()
    assert lines[-1] == "replayed 0 dead deliveries, dropped 1"
    assert "agency_inactive" in lines[0] and sa.code in lines[0]
    rejected = [r for _, r in await read_topic(kafka, codec, ALERTS_REJECTED, AlertRejected) if r.alert_id == alert_id]
    assert [(r.stage, f"to {sa.code} " in r.reason and "agency_inactive" in r.reason) for r in rejected] == [
        ("replay", True)
    ]

    code, out, err = await rctc("deliveries", "replay", "--agency", jo.code, kafka=kafka)
    assert (code, out.strip()) == (0, "replayed 1 dead deliveries"), err
    after = await _requests(kafka, codec, alert_id)
    assert after - requests_before == {jo.code: 1}


async def _requests(kafka: KafkaSettings, codec: Codec, alert_id: str) -> Counter[str]:
    """How many webhook requests deliveries.webhook holds for the alert, by agency."""
    records = await read_topic(kafka, codec, DELIVERIES_WEBHOOK, DeliverWebhook)
    return Counter(r.agency for _, r in records if r.alert_id == alert_id)


async def _equals(found: Any, expected: Any) -> bool:
    return await found == expected


async def _state(rows: Any, agency: str, state: str) -> bool:
    found = await rows
    return found is not None and found[agency]["state"] == state
