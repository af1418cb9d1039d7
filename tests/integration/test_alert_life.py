"""The life of an alert after its first routing, on the real broker: every version decided by the whole policy.

The red team's case (an AMBER alert to JO, SA and KW, then a TLP:RED Update releasable to JO only) must
withdraw the thread from SA and KW, never give them the RED content, and end what they owe; a TLP downgrade
must re-disseminate to the agencies newly permitted, who then owe an acknowledgement of their own.
"""

from __future__ import annotations

from typing import Any

import aiohttp

from services.common.codec import Codec
from services.common.kafka import read_to_end
from services.common.records import AlertRouted, AlertShared
from services.common.registry.publish import publish_registry
from services.common.settings import KafkaSettings
from services.common.topics import ALERTS_ROUTED, agency_topic
from services.demo.receivers import Receivers
from tests.support.system import system
from tests.support.world import Cast, agreement, alert_json, eventually, read_topic, registry

SECRET_TITLE = "red content only JO may read"


async def test_a_red_update_is_withdrawn_from_amber_partners_and_a_downgrade_re_disseminates(
    kafka: KafkaSettings, codec: Codec, receivers: tuple[str, Receivers]
) -> None:
    """AMBER to JO, SA, KW; RED to JO only: SA and KW are told to purge and owe nothing, by topic and webhook,
    and no record of theirs holds the RED content; back to AMBER: SA and KW get the current version again."""
    url, rcv = receivers
    cast = Cast()
    iq, jo, sa, kw = (
        cast.agency("IQ-A", "IQ"),
        cast.agency("JO-B", "JO"),
        cast.agency("SA-C", "SA", webhook_url=url),
        cast.agency("KW-D", "KW"),
    )
    for c, keys in cast.secrets.items():
        rcv.register(c, keys)
    doc = registry(
        [iq, jo, sa, kw],
        [
            agreement(f"IQJO-{cast.suffix}", from_=[iq.code], to=[jo.code], max_tlp="RED"),
            agreement(f"IQGULF-{cast.suffix}", from_=[iq.code], to=[sa.code, kw.code], max_tlp="AMBER"),
        ],
    )
    await publish_registry(kafka, codec, doc, source="life", replication_factor=1)

    async with system(kafka, codec) as sys_, aiohttp.ClientSession() as http:

        async def submit(**fields: Any) -> str:
            body = alert_json(affected_countries=["IQ"], **fields)
            async with http.post(f"{sys_.url}/v1/alerts", json=body, headers=cast.bearer(iq.code)) as r:
                assert r.status == 202, await r.text()
                return str((await r.json())["alert_id"])

        async def decided(alert_id: str) -> AlertRouted:
            async def found() -> AlertRouted | None:
                routed = await read_topic(kafka, codec, ALERTS_ROUTED, AlertRouted)
                return next((r for _, r in routed if r.alert_id == alert_id), None)

            result: AlertRouted = await eventually(found, within_s=30)
            return result

        async def owed(code: str) -> set[str]:
            params = {"agency": code}
            async with http.get(f"{sys_.url}/v1/acks/outstanding", params=params, headers=cast.bearer(code)) as r:
                assert r.status == 200, await r.text()
                return {row["alert_id"] for row in (await r.json())["outstanding"]}

        original = await submit(tlp="AMBER", severity="Severe", title="amber plot")
        first = await decided(original)
        assert {d.agency: d.event for d in first.decisions if d.delivered} == dict.fromkeys(
            (jo.code, sa.code, kw.code), "alert.created"
        )
        assert await eventually(lambda: _equal(owed(sa.code), {original}))

        red = await submit(
            msg_type="Update",
            references=[original],
            tlp="RED",
            releasable_to=[jo.code],
            severity="Extreme",
            title=SECRET_TITLE,
        )
        second = await decided(red)
        sent = {d.agency: (d.event, d.ack_due is not None) for d in second.decisions if d.delivered}
        assert sent == {
            jo.code: ("alert.updated", True),  # severity rose: JO's wait restarts on the update
            sa.code: ("alert.withdrawn", False),
            kw.code: ("alert.withdrawn", False),
        }
        # The withdrawal ends what SA and KW owe; JO owes the update instead of the original.
        assert await eventually(lambda: _equal(owed(sa.code), set()))
        assert await eventually(lambda: _equal(owed(kw.code), set()))
        assert await eventually(lambda: _equal(owed(jo.code), {red}))

        amber = await submit(
            msg_type="Update", references=[original], tlp="AMBER", severity="Extreme", title="amber again"
        )
        third = await decided(amber)
        assert {d.agency: d.event for d in third.decisions if d.delivered} == {
            jo.code: "alert.updated",
            sa.code: "alert.created",
            kw.code: "alert.created",
        }
        assert await eventually(lambda: _equal(owed(kw.code), {amber}))

        for code in (sa.code, kw.code):
            copies = [
                codec.decode(r.value, AlertShared) async for r in read_to_end(kafka, agency_topic(code), name="life")
            ]
            thread = [(c.alert_id, c.event_type) for c in copies]
            assert thread == [
                (original, "alert.created"),
                (red, "alert.withdrawn"),
                (amber, "alert.created"),
            ], code
            withdrawn = copies[1]
            assert (withdrawn.alert, withdrawn.reason, withdrawn.redacted_fields) == (None, "not_releasable", [])
            assert {c.thread_id for c in copies} == {original}
            assert all(c.alert is None or c.alert.tlp == "AMBER" for c in copies)
            assert not any(SECRET_TITLE in repr(c) for c in copies)

        # SA's webhook receiver got the same three events, and no RED content either.
        async def hooked() -> list[dict[str, Any]] | None:
            got = list(rcv.received[sa.code].values())
            return got if len(got) >= 3 else None

        payloads = sorted(await eventually(hooked, within_s=30), key=lambda p: p["timestamp"])
        assert [p["type"] for p in payloads] == ["alert.created", "alert.withdrawn", "alert.created"]
        assert payloads[1]["data"]["alert"] is None and payloads[1]["data"]["reason"] == "not_releasable"
        assert not any(SECRET_TITLE in str(p) for p in payloads)

        # A recipient of the withdrawal notice asking about the RED version learns neither severity nor urgency.
        async with http.get(f"{sys_.url}/v1/alerts/{red}", headers=cast.bearer(sa.code)) as r:
            assert r.status == 200, await r.text()
            status = await r.json()
        assert "severity" not in status and "urgency" not in status
        assert list(status["recipients"]) == [sa.code]


async def _equal(pending: Any, expected: set[str]) -> bool:
    return bool(await pending == expected)
