"""The slice, end to end, through the real broker, real HTTP and real signatures.

An agency submits an alert to the gateway; the enricher extracts indicators; the router shares it with the
agencies that an agreement and a subscription allow, and with no one else; the dispatcher delivers signed
webhooks that the `standardwebhooks` library verifies; a recipient acknowledges and the tracker shows it.
"""

from __future__ import annotations

import asyncio
from typing import Any

import aiohttp

from services.common.codec import Codec
from services.common.records import AlertEnriched, AlertRouted, AlertShared
from services.common.registry import Subscription
from services.common.registry.publish import publish_registry
from services.common.settings import KafkaSettings
from services.common.topics import ALERTS_ENRICHED, ALERTS_ROUTED, agency_topic
from services.demo.receivers import Receivers
from tests.support.system import system
from tests.support.world import Cast, agreement, alert_json, eventually, read_topic, registry

OPERATOR = "operator-token-for-tests"


async def test_alert_flows_to_entitled_agencies_only(
    kafka: KafkaSettings, codec: Codec, receivers: tuple[str, Receivers]
) -> None:
    """Entitled agencies get a redacted copy on their topic and a verified webhook; others get nothing."""
    url, rcv = receivers
    cast = Cast()
    # Scenario: IQ originates. JO is a party to the agreement and subscribed (webhook + topic); KW is a
    # party with no webhook (topic only); SA is subscribed but party to no agreement; OM is a party but
    # suspended; EG is a party but subscribed to cyber only and not affected.
    origin = cast.agency("IQ-A", "IQ", webhook_url=url)
    jo = cast.agency("JO-B", "JO", webhook_url=url)
    kw = cast.agency("KW-C", "KW")
    sa = cast.agency("SA-D", "SA", webhook_url=url)
    om = cast.agency("OM-E", "OM", webhook_url=url, active=False)
    eg = cast.agency("EG-F", "EG", webhook_url=url, subscriptions=[Subscription(categories=["cyber.*"])])
    parties = [origin.code, jo.code, kw.code, om.code, eg.code]
    doc = registry(
        [origin, jo, kw, sa, om, eg],
        [agreement(f"MULTI-{cast.suffix}", parties, redact=["subjects"])],
        operator_token=OPERATOR,
    )
    for code, keys in cast.secrets.items():
        rcv.register(code, keys)
    await publish_registry(kafka, codec, doc, source="test", replication_factor=1)

    async with system(kafka, codec) as sys_, aiohttp.ClientSession() as http:
        # The originator submits, and retries as a client whose connection dropped would: same
        # Idempotency-Key, same alert id. The alert must still reach each recipient once.
        ids = []
        for _ in range(2):
            async with http.post(
                f"{sys_.url}/v1/alerts",
                json=alert_json(affected_countries=["IQ", "JO"]),
                headers={**cast.bearer(origin.code), "Idempotency-Key": "submit-1"},
            ) as response:
                assert response.status == 202, await response.text()
                ids.append((await response.json())["alert_id"])
        assert ids[0] == ids[1]
        alert_id = ids[0]

        # The routing decision arrives; the tracker knows the alert.
        async def routed() -> AlertRouted | None:
            for _, record in await read_topic(kafka, codec, ALERTS_ROUTED, AlertRouted):
                if record.alert_id == alert_id:
                    return record
            return None

        decision = await eventually(routed)
        verdicts = {d.agency: (d.delivered, d.rule) for d in decision.decisions}
        assert verdicts == {
            origin.code: (False, "originator"),
            jo.code: (True, "shared"),
            kw.code: (True, "shared"),
            sa.code: (False, "no_agreement"),
            om.code: (False, "agency_inactive"),
            eg.code: (False, "not_subscribed"),
        }

        # The enricher extracted the indicators from the summary (and passed both submissions on).
        async def both_enriched() -> list[AlertEnriched]:
            found = [
                r for _, r in await read_topic(kafka, codec, ALERTS_ENRICHED, AlertEnriched) if r.alert_id == alert_id
            ]
            return found if len(found) == 2 else []

        enriched = await eventually(both_enriched)
        assert {(i.type, i.value) for i in enriched[0].alert.indicators} == {
            ("email", "karim@mailbox.example"),
            ("url", "https://relay.example/k"),
        }

        await asyncio.sleep(0.5)  # time for a second routing, if the router failed to refuse it
        routings = [r for _, r in await read_topic(kafka, codec, ALERTS_ROUTED, AlertRouted) if r.alert_id == alert_id]
        assert len(routings) == 1
        # Each entitled agency's topic holds exactly one copy, with subjects redacted and the name masked.
        for code in (jo.code, kw.code):
            copies = [
                r for _, r in await read_topic(kafka, codec, agency_topic(code), AlertShared) if r.alert_id == alert_id
            ]
            assert len(copies) == 1
            copy = copies[0]
            assert copy.recipient == code
            assert copy.redacted_fields == ["subjects"]
            assert copy.alert.subjects is None
            assert "Abu Karim" not in (copy.alert.summary or "")
            # The e-mail names the redacted subject (karim@...), so it goes with the subjects; the URL stays.
            assert copy.alert.indicators is not None
            assert [i.type for i in copy.alert.indicators] == ["url"]
        # Nobody else's topic holds anything.
        for code in (sa.code, om.code, eg.code, origin.code):
            assert await read_topic(kafka, codec, agency_topic(code), AlertShared) == []

        # Webhooks: JO received exactly one verified request; SA, OM, EG and the originator none.
        await eventually(lambda: rcv.received[jo.code])
        await asyncio.sleep(1.0)  # a wrong delivery, if any, would arrive in this time
        assert rcv.rejected == 0
        assert len(rcv.received[jo.code]) == 1
        payload = next(iter(rcv.received[jo.code].values()))
        assert payload["type"] == "alert.created"
        assert payload["data"]["alert_id"] == alert_id
        assert payload["data"]["alert"]["subjects"] is None
        for code in (sa.code, om.code, eg.code, origin.code):
            assert rcv.received[code] == {}

        # The recipient acknowledges; the originator sees every recipient, the recipient only itself.
        async def delivered() -> bool:
            async with http.get(f"{sys_.url}/v1/alerts/{alert_id}", headers=cast.bearer(origin.code)) as r:
                body = await r.json()
                return r.status == 200 and body["recipients"][jo.code]["webhook"]["status"] == "delivered"

        await eventually(delivered)
        async with http.post(
            f"{sys_.url}/v1/alerts/{alert_id}/ack", json={"response": "actioned"}, headers=cast.bearer(jo.code)
        ) as r:
            assert r.status == 202, await r.text()

        async def acknowledged() -> dict[str, Any] | None:
            async with http.get(f"{sys_.url}/v1/alerts/{alert_id}", headers=cast.bearer(origin.code)) as r:
                body: dict[str, Any] = await r.json()
                return body if body["recipients"][jo.code]["state"] == "acknowledged" else None

        status = await eventually(acknowledged)
        assert set(status["recipients"]) == {jo.code, kw.code}
        assert status["recipients"][jo.code]["response"] == "actioned"
        assert status["recipients"][kw.code]["state"] == "delivered"

        async with http.get(f"{sys_.url}/v1/alerts/{alert_id}", headers=cast.bearer(kw.code)) as r:
            assert r.status == 200
            assert set((await r.json())["recipients"]) == {kw.code}
        async with http.get(f"{sys_.url}/v1/alerts/{alert_id}", headers=cast.bearer(sa.code)) as r:
            assert r.status == 404  # as for an alert that does not exist: a stranger learns nothing

        # The routing explanation is for the originator and operators only.
        async with http.get(
            f"{sys_.url}/v1/alerts/{alert_id}/routing", headers={"Authorization": f"Bearer {OPERATOR}"}
        ) as r:
            assert r.status == 200
            rules = {d["agency"]: d["rule"] for d in (await r.json())["decisions"]}
            assert rules[sa.code] == "no_agreement"
        async with http.get(f"{sys_.url}/v1/alerts/{alert_id}/routing", headers=cast.bearer(jo.code)) as r:
            assert r.status == 403

        # Acks: a repeat changes nothing, a non-recipient is refused, an unknown alert is not found.
        async with http.post(f"{sys_.url}/v1/alerts/{alert_id}/ack", json={}, headers=cast.bearer(jo.code)) as r:
            assert (r.status, (await r.json())["status"]) == (200, "already_acknowledged")
        async with http.post(f"{sys_.url}/v1/alerts/{alert_id}/ack", json={}, headers=cast.bearer(sa.code)) as r:
            assert r.status == 403
        async with http.post(f"{sys_.url}/v1/alerts/no-such-alert/ack", json={}, headers=cast.bearer(jo.code)) as r:
            assert r.status == 404
