"""Retention in the tracker through the real broker: settled alerts leave its memory, their summaries go to the
compacted alerts.retired, queries answer from them, and a restarted tracker does not rebuild them.

Time is compressed: a retention of seconds, looked at five times a second.
"""

from __future__ import annotations

import asyncio
from typing import Any

import aiohttp

from services.common.codec import Codec
from services.common.records import AlertRetired
from services.common.registry.publish import publish_registry
from services.common.settings import KafkaSettings
from services.common.topics import ALERTS_RETIRED
from services.tracker.state import Ledger
from tests.support.system import system
from tests.support.world import Cast, agreement, alert_json, eventually, read_topic, registry

OPERATOR = "operator-token-retention"


def held(ledger: Ledger, ids: set[str]) -> dict[str, set[str]]:
    """Which of `ids` each of the ledger's per-alert structures still holds."""
    return {
        "alerts": ids & ledger.alerts.keys(),
        "routing": ids & ledger.routing.keys(),
        "partition_of": ids & ledger.partition_of.keys(),
        "open": ids & set(ledger._open),
    }


NONE_HELD = {"alerts": set(), "routing": set(), "partition_of": set(), "open": set()}


async def test_settled_alerts_retire_and_stay_retired_across_a_restart(kafka: KafkaSettings, codec: Codec) -> None:
    """Three alerts both recipients acknowledge retire; one still awaited stays; answers come from the summaries,
    and after a restart the retired are neither rebuilt nor forgotten."""
    cast = Cast()
    origin, b, c = cast.agency("IQ-A", "IQ"), cast.agency("JO-B", "JO"), cast.agency("SA-C", "SA")
    stranger = cast.agency("KW-D", "KW")
    doc = registry(
        [origin, b, c, stranger],
        [agreement(f"RET-{cast.suffix}", [origin.code, b.code, c.code])],
        operator_token=OPERATOR,
    )
    await publish_registry(kafka, codec, doc, source="test", replication_factor=1)

    async with (
        system(kafka, codec, tracker={"retention_s": 2.0, "retire_check_s": 0.2}) as sys_,
        aiohttp.ClientSession() as http,
    ):

        async def get(path: str, token_of: str | None = None) -> tuple[int, Any]:
            token = cast.tokens[token_of] if token_of else OPERATOR
            async with http.get(f"{sys_.url}{path}", headers={"Authorization": f"Bearer {token}"}) as r:
                return r.status, await r.json()

        async def ack(alert_id: str, agency: str) -> int:
            url = f"{sys_.url}/v1/alerts/{alert_id}/ack"
            async with http.post(
                url, json={"response": "actioned", "note": "a name"}, headers=cast.bearer(agency)
            ) as r:
                return r.status

        async def routed(alert_id: str) -> bool:
            return (await get(f"/v1/alerts/{alert_id}"))[0] == 200

        # Scenario: four Severe alerts (each owes an ack); B and C acknowledge the first three, only B the fourth.
        ids = []
        for _ in range(4):
            body = alert_json(severity="Severe", urgency="Immediate", affected_countries=["IQ"])
            async with http.post(f"{sys_.url}/v1/alerts", json=body, headers=cast.bearer(origin.code)) as r:
                ids.append((await r.json())["alert_id"])
        for alert_id in ids:
            await eventually(lambda a=alert_id: routed(a))
        for alert_id in ids[:3]:
            assert [await ack(alert_id, b.code), await ack(alert_id, c.code)] == [202, 202]
        assert await ack(ids[3], b.code) == 202
        settled, awaited = set(ids[:3]), ids[3]

        # The settled three leave the tracker's memory once older than the retention; the awaited one stays.
        ledger = sys_.tracker.ledger
        await eventually(lambda: settled <= ledger.retired.keys(), within_s=20)
        assert held(ledger, settled) == NONE_HELD
        assert awaited in ledger.alerts and awaited in ledger._open
        on_topic = [r for _, r in await read_topic(kafka, codec, ALERTS_RETIRED, AlertRetired) if r.alert_id in settled]
        assert sorted(settled) == sorted(r.alert_id for r in on_topic)

        async def answers() -> dict[str, Any]:
            first = ids[0]
            return {
                "operator": await get(f"/v1/alerts/{first}"),
                "origin": await get(f"/v1/alerts/{first}", origin.code),
                "recipient": await get(f"/v1/alerts/{first}", c.code),
                "stranger": (await get(f"/v1/alerts/{first}", stranger.code))[0],
                "routing_origin": (await get(f"/v1/alerts/{first}/routing", origin.code))[0],
                "routing_recipient": (await get(f"/v1/alerts/{first}/routing", b.code))[0],
            }

        before = await answers()
        status, body = before["operator"]
        assert (200, {b.code: "acknowledged", c.code: "acknowledged"}) == (
            status,
            {k: v["state"] for k, v in body["recipients"].items()},
        )
        assert "retired_at" in body and "note" not in body["recipients"][b.code]
        assert before["origin"] == before["operator"]
        status, own = before["recipient"]
        assert (200, [c.code]) == (status, list(own["recipients"]))
        assert (before["stranger"], before["routing_origin"], before["routing_recipient"]) == (404, 200, 403)
        # A late ack of a retired alert: the gateway is told the agency already acknowledged it.
        async with http.post(
            f"{sys_.url}/v1/alerts/{ids[0]}/ack", json={"response": "other"}, headers=cast.bearer(b.code)
        ) as r:
            assert (r.status, (await r.json())["status"]) == (200, "already_acknowledged")

        # The tracker restarts: it reads the summaries first and skips the retired alerts' records.
        await sys_.restart_tracker()
        ledger = sys_.tracker.ledger
        assert held(ledger, settled) == NONE_HELD
        assert settled <= ledger.retired.keys()
        assert awaited in ledger.alerts
        assert before == await answers()
        await asyncio.sleep(1.0)  # time enough for the new tracker to retire (and write) them again, were it to
        again = [r for _, r in await read_topic(kafka, codec, ALERTS_RETIRED, AlertRetired) if r.alert_id in settled]
        assert sorted(settled) == sorted(r.alert_id for r in again)

        # The fourth, acknowledged by C at last, retires too.
        assert await ack(awaited, c.code) == 202
        await eventually(lambda: awaited in ledger.retired, within_s=20)
        assert held(ledger, {awaited}) == NONE_HELD
