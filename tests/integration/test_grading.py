"""Routing by grading on the real broker: an alert graded below what a subscription asks for, or below what an
agreement requires, is withheld with the rule recorded on alerts.routed and shown by `rctc explain`, while
agencies that asked for no better receive it."""

from __future__ import annotations

import asyncio
from typing import Any

import aiohttp
import msgspec

from services.common.codec import Codec
from services.common.records import AlertRouted, AlertShared
from services.common.registry import Subscription
from services.common.registry.publish import publish_registry
from services.common.settings import KafkaSettings
from services.common.topics import ALERTS_ROUTED, agency_topic
from services.demo.receivers import Receivers
from tests.support.system import system
from tests.support.world import Cast, agreement, alert_json, eventually, rctc, read_topic, registry

OPERATOR = "operator-token-for-grading"


async def test_a_low_graded_alert_is_withheld_from_whoever_asked_for_better(
    kafka: KafkaSettings, codec: Codec, receivers: tuple[str, Receivers]
) -> None:
    """A C3 alert and an ungraded one (F6) reach the agencies that asked for no grading, and the one whose own
    country is affected, but not JO (its subscription asks for B2: `below_grading`) nor KW (its agreement
    requires B: `grading_below_agreement`); an A1 alert reaches all four. Topics, webhooks, alerts.routed and
    `rctc explain` agree."""
    url, rcv = receivers
    cast = Cast()
    # Scenario: IQ originates. JO asks for B2 at least; SA asks for nothing; KW asks for nothing but its only
    # agreement with IQ requires source B; EG asks for A1 but the alerts affect EG itself.
    iq = cast.agency("IQ-A", "IQ")
    jo = cast.agency(
        "JO-B",
        "JO",
        webhook_url=url,
        subscriptions=[Subscription(categories=["*"], min_source_reliability="B", min_information_credibility=2)],
    )
    sa = cast.agency("SA-C", "SA", webhook_url=url)
    kw = cast.agency("KW-D", "KW")
    eg = cast.agency(
        "EG-E",
        "EG",
        subscriptions=[Subscription(categories=["*"], min_source_reliability="A", min_information_credibility=1)],
    )
    graded_only = msgspec.structs.replace(
        agreement(f"IQKW-{cast.suffix}", from_=[iq.code], to=[kw.code]), min_source_reliability="B"
    )
    doc = registry(
        [iq, jo, sa, kw, eg],
        [agreement(f"MULTI-{cast.suffix}", [iq.code, jo.code, sa.code, eg.code]), graded_only],
        operator_token=OPERATOR,
    )
    for code, keys in cast.secrets.items():
        rcv.register(code, keys)
    await publish_registry(kafka, codec, doc, source="grading", replication_factor=1)

    async with system(kafka, codec) as sys_, aiohttp.ClientSession() as http:

        async def submit(body: dict[str, Any]) -> str:
            async with http.post(f"{sys_.url}/v1/alerts", json=body, headers=cast.bearer(iq.code)) as r:
                assert r.status == 202, await r.text()
                return str((await r.json())["alert_id"])

        low = await submit(alert_json(source_reliability="C", information_credibility=3, affected_countries=["EG"]))
        ungraded = alert_json(affected_countries=["EG"], title="Ungraded report")
        del ungraded["source_reliability"], ungraded["information_credibility"]
        unjudged = await submit(ungraded)
        high = await submit(alert_json(source_reliability="A", information_credibility=1, affected_countries=["EG"]))

        async def decided() -> dict[str, AlertRouted]:
            found = {
                r.alert_id: r
                for _, r in await read_topic(kafka, codec, ALERTS_ROUTED, AlertRouted)
                if r.alert_id in (low, unjudged, high)
            }
            return found if len(found) == 3 else {}

        routed: dict[str, AlertRouted] = await eventually(decided, within_s=30)
        rules = {
            alert_id: {d.agency: (d.delivered, d.rule) for d in decision.decisions}
            for alert_id, decision in routed.items()
        }
        withheld = {
            iq.code: (False, "originator"),
            jo.code: (False, "below_grading"),
            sa.code: (True, "shared"),
            kw.code: (False, "grading_below_agreement"),
            eg.code: (True, "shared"),
        }
        assert rules == {
            low: withheld,
            unjudged: withheld,
            high: {**withheld, jo.code: (True, "shared"), kw.code: (True, "shared")},
        }
        reasons = {alert_id: {d.agency: d.reason for d in decision.decisions} for alert_id, decision in routed.items()}
        assert reasons[low][jo.code].startswith("graded C3: below the minimum of every subscription matching")
        assert reasons[unjudged][jo.code].startswith("graded F6 (F and 6: cannot be judged): below the minimum")
        assert reasons[low][kw.code] == f"graded C3: below the minimum of IQKW-{cast.suffix} (source B)"

        # Each agency's topic holds exactly what it was sent, and the webhooks the same.
        expected = {
            jo.code: {high},
            sa.code: {low, unjudged, high},
            kw.code: {high},
            eg.code: {low, unjudged, high},
        }
        for code, alert_ids in expected.items():
            copies = await read_topic(kafka, codec, agency_topic(code), AlertShared)
            assert sorted(c.alert_id for _, c in copies) == sorted(alert_ids), code
        await eventually(lambda: len(rcv.received[sa.code]) >= 3 and rcv.received[jo.code], within_s=30)
        await asyncio.sleep(1.0)  # a wrong delivery, if any, would arrive in this time
        assert sorted(p["data"]["alert_id"] for p in rcv.received[jo.code].values()) == [high]
        assert sorted(p["data"]["alert_id"] for p in rcv.received[sa.code].values()) == sorted([low, unjudged, high])
        assert rcv.rejected == 0

        # The operator asks `rctc explain` (the real command, in a process) why each agency did or did not
        # receive the low-graded alert.
        exit_code, printed, err = await rctc("explain", low, "--gateway", sys_.url, "--token", OPERATOR, kafka=kafka)
        assert exit_code == 0, err
        # Each line: two spaces, "->" when delivered, the agency, the rule and the reason, in columns.
        told = {line[5:].split(maxsplit=2)[0]: line[5:].split(maxsplit=2)[1:] for line in printed.splitlines()[1:]}
        assert {agency: rule for agency, (rule, _) in told.items()} == {
            agency: rule for agency, (_, rule) in withheld.items()
        }
        assert told[jo.code][1] == reasons[low][jo.code]
        assert told[kw.code][1] == reasons[low][kw.code]
