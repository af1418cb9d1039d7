"""Ten agencies, several agreements, alerts from several originators, then a registry change, an Update and
a Cancel: every agency's topic and webhook hold exactly what the expected matrix says, in order."""

from __future__ import annotations

import asyncio
from typing import Any

import aiohttp

from services.common.codec import Codec
from services.common.kafka import read_to_end
from services.common.records import AlertRejected, AlertRouted, AlertShared
from services.common.registry import Subscription
from services.common.registry.publish import publish_registry
from services.common.settings import KafkaSettings
from services.common.topics import ALERTS_REJECTED, ALERTS_ROUTED, agency_topic
from services.demo.receivers import Receivers
from tests.support.system import system
from tests.support.world import Cast, agreement, alert_json, eventually, read_topic, registry

REGIONS = {"GULF": ["SA", "AE", "KW", "OM", "QA", "BH"], "LEVANT": ["IQ", "JO", "LB"]}


async def test_matrix_of_ten_agencies_with_update_and_cancel(
    kafka: KafkaSettings, codec: Codec, receivers: tuple[str, Receivers]
) -> None:
    """Each agency gets its row of the matrix, by topic and webhook; every version is decided whole: the Update
    is withdrawn from the agency that left the agreement and created for the one that joined it, and the Cancel
    reaches whoever holds the thread."""
    url, rcv = receivers
    cast = Cast()
    every = [Subscription(categories=["*"])]
    ag = {
        "IQ": cast.agency("IQ-A", "IQ", subscriptions=every),
        "JO": cast.agency("JO-B", "JO", subscriptions=every, webhook_url=url),
        "SA": cast.agency("SA-C", "SA", subscriptions=every, webhook_url=url),
        "AE": cast.agency("AE-D", "AE", subscriptions=every),
        "EG": cast.agency(
            "EG-E", "EG", subscriptions=[Subscription(categories=["terrorism.*"], min_severity="Severe")]
        ),
        "KW": cast.agency("KW-F", "KW", subscriptions=every, webhook_url=url),
        "LB": cast.agency("LB-G", "LB", subscriptions=every, webhook_url=url),
        "OM": cast.agency("OM-H", "OM", subscriptions=every, active=False),
        "QA": cast.agency("QA-I", "QA", subscriptions=[Subscription(categories=["cyber.*"])], webhook_url=url),
        "BH": cast.agency("BH-J", "BH", subscriptions=every, webhook_url=url),
    }
    code = {k: a.code for k, a in ag.items()}
    for c, keys in cast.secrets.items():
        rcv.register(c, keys)

    def agreements(multi: list[str]) -> list[Any]:
        gulf = agreement(
            f"GULF-{cast.suffix}",
            [code[k] for k in ("SA", "AE", "KW", "QA")],
            categories=["cyber.*"],
            max_tlp="AMBER+STRICT",
        )
        gulf.countries.append("GULF")
        return [
            agreement(
                f"MULTI-{cast.suffix}",
                [code[k] for k in multi],
                categories=["terrorism.*", "cbrn"],
                redact=["subjects"],
            ),
            gulf,
            agreement(f"IQJO-{cast.suffix}", from_=[code["IQ"]], to=[code["JO"]], max_tlp="RED"),
            agreement(f"JOIQ-{cast.suffix}", from_=[code["JO"]], to=[code["IQ"]], max_tlp="RED"),
            agreement(
                f"EGSA-{cast.suffix}",
                from_=[code["EG"]],
                to=[code["SA"]],
                categories=["terrorism.financing"],
                max_tlp="GREEN",
                redact=["subjects", "indicators"],
            ),
        ]

    first = registry(list(ag.values()), agreements(["IQ", "JO", "SA", "AE", "EG", "KW", "OM"]), regions=REGIONS)
    await publish_registry(kafka, codec, first, source="matrix-1", replication_factor=1)

    async with system(kafka, codec) as sys_, aiohttp.ClientSession() as http:

        async def submit(origin: str, **fields: Any) -> str:
            async with http.post(
                f"{sys_.url}/v1/alerts", json=alert_json(**fields), headers=cast.bearer(code[origin])
            ) as r:
                assert r.status == 202, await r.text()
                return str((await r.json())["alert_id"])

        async def decided(*alert_ids: str) -> dict[str, AlertRouted]:
            async def all_there() -> dict[str, AlertRouted]:
                found = {
                    r.alert_id: r
                    for _, r in await read_topic(kafka, codec, ALERTS_ROUTED, AlertRouted)
                    if r.alert_id in alert_ids
                }
                return found if len(found) == len(alert_ids) else {}

            result: dict[str, AlertRouted] = await eventually(all_there, within_s=30)
            return result

        a1 = await submit("IQ", category="terrorism.attack_plot", severity="Severe", affected_countries=["IQ"])
        a2 = await submit(
            "SA",
            category="cyber.ransomware",
            severity="Moderate",
            tlp="AMBER+STRICT",
            affected_countries=["SA", "AE"],
            subjects=[],
        )
        a3 = await submit(
            "EG", category="terrorism.financing", severity="Moderate", tlp="GREEN", affected_countries=["EG"]
        )
        a4 = await submit(
            "JO", category="terrorism.travel", tlp="RED", releasable_to=[code["IQ"]], affected_countries=["JO"]
        )
        await decided(a1, a2, a3, a4)

        # The registry changes: KW leaves the multilateral agreement, LB joins it.
        second = registry(list(ag.values()), agreements(["IQ", "JO", "SA", "AE", "EG", "LB", "OM"]), regions=REGIONS)
        published = await publish_registry(kafka, codec, second, source="matrix-2", replication_factor=1)
        async with asyncio.timeout(10):
            await sys_.router.registry.wait_for_version(published.version)

        u1 = await submit(
            "IQ",
            msg_type="Update",
            references=[a1],
            category="terrorism.attack_plot",
            severity="Extreme",
            affected_countries=["IQ"],
            title="Attack imminent",
        )
        c1 = await submit(
            "IQ",
            msg_type="Cancel",
            references=[a1],
            category="terrorism.attack_plot",
            severity="Minor",
            affected_countries=["IQ"],
            title="Plot disrupted",
        )
        forged = await submit(
            "JO",
            msg_type="Cancel",
            references=[a1],
            category="terrorism.attack_plot",
            affected_countries=["IQ"],
            title="Not mine to cancel",
        )
        decisions = await decided(u1, c1)

        async def refused() -> AlertRejected | None:
            return next(
                (r for _, r in await read_topic(kafka, codec, ALERTS_REJECTED, AlertRejected) if r.alert_id == forged),
                None,
            )

        rejection = await eventually(refused)
        assert f"only {code['IQ']}" in rejection.reason

        a1_recipients = {code[k] for k in ("JO", "SA", "AE", "EG", "KW")}
        expected = {
            code["IQ"]: {a3, a4},
            code["JO"]: {a1, a3, u1, c1},
            code["SA"]: {a1, a3, u1, c1},
            code["AE"]: {a1, a2, a3, u1, c1},
            code["EG"]: {a1, u1, c1},
            code["KW"]: {a1, a2, a3, u1},  # left the agreement: u1 withdraws a1 from it; no cancel to give
            code["LB"]: {u1, c1},  # joined the agreement: u1 is its first version of the thread
            code["OM"]: set(),  # suspended
            code["QA"]: {a2},
            code["BH"]: set(),  # subscribed, party to no agreement
        }
        events = {d.agency: d.event for d in decisions[u1].decisions if d.delivered}
        assert events == {
            **{a: "alert.updated" for a in a1_recipients - {code["KW"]}},
            code["KW"]: "alert.withdrawn",
            code["LB"]: "alert.created",
        }
        holders = a1_recipients - {code["KW"]} | {code["LB"]}
        assert {d.agency: d.event for d in decisions[c1].decisions if d.delivered} == dict.fromkeys(
            holders, "alert.cancelled"
        )
        threads = {
            code["KW"]: ["alert.created", "alert.withdrawn"],
            code["LB"]: ["alert.created", "alert.cancelled"],
            **{a: ["alert.created", "alert.updated", "alert.cancelled"] for a in holders - {code["LB"]}},
        }

        mine = {a1, a2, a3, a4, u1, c1, forged}
        for agency, alert_ids in expected.items():
            copies = [
                (r.partition, r.offset, codec.decode(r.value, AlertShared))
                async for r in read_to_end(kafka, agency_topic(agency), name="matrix")
            ]
            got = [c for _, _, c in copies if c.alert_id in mine]
            assert sorted(c.alert_id for c in got) == sorted(alert_ids), agency
            # The thread of a1 arrives in order, on one partition.
            thread = sorted((p, o, c.event_type) for p, o, c in copies if c.alert_id in (a1, u1, c1))
            assert [e for _, _, e in thread] == threads.get(agency, []), agency
            assert len({p for p, _, _ in thread}) <= 1
            for _, _, c in copies:
                # A notice carries nothing of the content.
                assert (c.alert is None) == (c.event_type in ("alert.withdrawn", "alert.cancelled"))

        # Redaction follows the permitting agreement: JO-B under IQ->JO sees subjects, SA-C under MULTI does not.
        def copy_of(agency: str, alert_id: str) -> AlertShared:
            return next(c for _, c in shared[agency] if c.alert_id == alert_id)

        shared = {a: await read_topic(kafka, codec, agency_topic(code[a]), AlertShared) for a in ("JO", "SA")}
        assert copy_of("JO", a1).alert.subjects is not None and copy_of("JO", a1).redacted_fields == []
        assert copy_of("SA", a1).alert.subjects is None and copy_of("SA", a1).redacted_fields == ["subjects"]
        updated = copy_of("SA", u1).alert
        assert updated is not None and updated.subjects is None
        withdrawn = next(
            c for _, c in await read_topic(kafka, codec, agency_topic(code["KW"]), AlertShared) if c.alert_id == u1
        )
        assert (withdrawn.event_type, withdrawn.reason, withdrawn.alert) == ("alert.withdrawn", "no_agreement", None)

        # Webhooks hold the same rows as the topics for every agency that has one.
        hooked = ("JO", "SA", "KW", "LB", "QA", "BH")

        async def webhooks_done() -> bool:
            return all(len(rcv.received[code[k]]) >= len(expected[code[k]]) for k in hooked)

        await eventually(webhooks_done, within_s=30)
        await asyncio.sleep(0.5)
        for k in hooked:
            received = sorted(p["data"]["alert_id"] for p in rcv.received[code[k]].values())
            assert received == sorted(expected[code[k]]), k
        assert rcv.rejected == 0
