"""What an operator reaches for, on the real broker through every service: `rctc alerts list` (JSON and the table,
filtered by state), `rctc acks outstanding --agency` and `rctc lag --json` as the command line prints them, each
checked for its content; and the functions the operators' console calls instead of the command line
(replay_dead, change_endpoint, read_to_end's progress)."""

from __future__ import annotations

import json
from typing import Any

import aiohttp
import pytest

from services.cli.deliveries import NoWebhookError, ReplayResult, change_endpoint, replay_dead
from services.common.codec import Codec
from services.common.kafka import read_to_end
from services.common.lag import fetch_lag
from services.common.registry.publish import publish_registry
from services.common.settings import KafkaSettings
from services.common.topics import ALERTS_ROUTED
from tests.support.system import system
from tests.support.world import Cast, agreement, alert_json, eventually, rctc, registry

OPERATOR = "operator-token-cli"


async def test_an_operator_lists_alerts_acks_owed_and_lag(kafka: KafkaSettings, codec: Codec) -> None:
    """IQ-A sends two alerts and SA-C one, each to the two others; both recipients acknowledge IQ-A's first. The
    list shows IQ-A's newest first with what each awaits; --state open leaves out the settled one; JO-B owes the
    two it has not acknowledged; and the lag names this system's groups with their offsets."""
    cast = Cast()
    a, b, c = cast.agency("IQ-A", "IQ"), cast.agency("JO-B", "JO"), cast.agency("SA-C", "SA")
    doc = registry([a, b, c], [agreement(f"S-{cast.suffix}", [a.code, b.code, c.code])], operator_token=OPERATOR)
    published = await publish_registry(kafka, codec, doc, source="test", replication_factor=1)
    desk = {"Authorization": f"Bearer {OPERATOR}"}
    async with system(kafka, codec) as sys_, aiohttp.ClientSession() as http:
        where = ("--gateway", sys_.url, "--token", OPERATOR)

        async def submit(origin: str, title: str) -> str:
            body = alert_json(title=title, affected_countries=["IQ", "JO", "SA"])
            async with http.post(f"{sys_.url}/v1/alerts", json=body, headers=cast.bearer(origin)) as r:
                assert r.status == 202, await r.text()
                return str((await r.json())["alert_id"])

        # Scenario: one at a time, so that their routing times are in this order.
        first = await submit(a.code, "first")
        await eventually(lambda: routed(http, sys_.url, first, desk))
        second = await submit(a.code, "second")
        await eventually(lambda: routed(http, sys_.url, second, desk))
        other = await submit(c.code, "other")
        await eventually(lambda: routed(http, sys_.url, other, desk))
        for agency in (b.code, c.code):
            ack = {"response": "actioned"}
            async with http.post(f"{sys_.url}/v1/alerts/{first}/ack", json=ack, headers=cast.bearer(agency)) as r:
                assert r.status == 202, await r.text()

        async def settled() -> bool:
            async with http.get(
                f"{sys_.url}/v1/alerts", params={"state": "settled", "origin": a.code}, headers=desk
            ) as r:
                return [x["alert_id"] for x in (await r.json())["alerts"]] == [first]

        await eventually(settled)

        # Scenario: the whole list of IQ-A's alerts as JSON, newest first, with what each awaits.
        code, out, err = await rctc("alerts", "list", "--origin", a.code, "--json", *where, kafka=kafka)
        assert code == 0, err
        listed = json.loads(out)
        assert [(x["alert_id"], x["origin"], x["awaiting"], x["overdue"], x["thread_id"]) for x in listed] == [
            (second, a.code, 2, 0, second),
            (first, a.code, 0, 0, first),
        ]
        assert [sorted(x["recipients"]) for x in listed] == [sorted([b.code, c.code])] * 2
        assert listed[1]["recipients"][b.code]["state"] == "acknowledged"

        # Scenario: the open ones as a table: IQ-A's second and SA-C's alert, not the settled first.
        code, out, err = await rctc("alerts", "list", "--state", "open", "--since", "10m", *where, kafka=kafka)
        assert code == 0, err
        rows = {cells[0]: cells for cells in (from_id(line, (second, other)) for line in out.splitlines()) if cells}
        assert (first in out, set(rows)) == (False, {second, other})
        assert rows[second][1:] == [a.code, "Alert", listed[0]["severity"], "2", "2", "0", "0"]
        assert rows[other][1:3] == [c.code, "Alert"]

        # Scenario: what JO-B still owes: the two alerts it has not acknowledged, soonest deadline first.
        code, out, err = await rctc("acks", "outstanding", "--agency", b.code, *where, kafka=kafka)
        assert code == 0, err
        # due (ISO and "in 29m"), agency, alert, origin, severity, state, escalation
        owed = [cells for cells in (from_id(line, (b.code,)) for line in out.splitlines()) if cells]
        assert sorted((row[1], row[2], row[4], row[5]) for row in owed) == sorted(
            [(second, a.code, "delivered", "0"), (other, c.code, "delivered", "0")]
        )
        code, out, _ = await rctc("acks", "outstanding", "--agency", b.code, "--json", *where, kafka=kafka)
        assert sorted(o["alert_id"] for o in json.loads(out)) == sorted([second, other])

        # Scenario: the lag of this system's groups (this test's client-id prefix): the enricher has committed
        # what it read of alerts.submitted, the three submissions at least.
        prefix = f"{kafka.client_id_prefix}-"

        async def lag_rows() -> list[dict[str, Any]] | None:
            code, out, err = await rctc("lag", "--json", kafka=kafka)
            assert code == 0, err
            rows: list[dict[str, Any]] = json.loads(out)
            enricher = [r for r in rows if (r["group"], r["topic"]) == (f"{prefix}enricher", "alerts.submitted")]
            return rows if enricher and enricher[0]["committed"] >= 3 else None

        rows = await eventually(lag_rows, within_s=30)
        assert all(r["group"].startswith(prefix) for r in rows), rows
        assert all(r["end"] >= r["committed"] and r["lag"] == r["end"] - r["committed"] for r in rows), rows
        assert {f"{prefix}enricher", f"{prefix}router"} <= {r["group"] for r in rows}
        only = await fetch_lag(kafka, groups=[f"{prefix}enricher"])
        assert {r.group for r in only} == {f"{prefix}enricher"}

    # Scenario: the console's calls. No dead delivery of SA-C's: nothing replayed, under the registry applied.
    result = await replay_dead(kafka, c.code, None, None)
    assert result == ReplayResult(replayed=0, dropped=(), registry_version=published.version)
    with pytest.raises(NoWebhookError, match=f"{b.code} has no webhook endpoint"):
        await change_endpoint(kafka, b.code, "disabled", "test", by="operator:test")
    told: list[tuple[int, int]] = []
    async for _ in read_to_end(kafka, ALERTS_ROUTED, name="progress", progress=lambda d, t: told.append((d, t))):
        pass
    assert told[-1][0] == told[-1][1] > 0 and told[0][0] == 0


async def routed(http: aiohttp.ClientSession, url: str, alert_id: str, desk: dict[str, str]) -> bool:
    async with http.get(f"{url}/v1/alerts/{alert_id}", headers=desk) as r:
        return r.status == 200


def from_id(line: str, ids: tuple[str, ...]) -> list[str] | None:
    """A table row's cells from the first of `ids` on (the time before it is one to three words: "(now)",
    "(3s ago)")."""
    cells = line.split()
    found = [n for n, cell in enumerate(cells) if cell in ids]
    return cells[found[0] :] if found else None
