"""The duty desk sees every correlation (issue 16), on the real broker: a correlation on alerts.correlated (written
twice, as the correlator may) and the router's decision about it on alerts.routed, both produced here directly
(the correlator and the router's notices are not what this tests), reach an operator through the tracker and the
gateway, and `rctc correlations`, with whom the router told; every agency is refused; and the decision is no
version of the alert it names."""

from __future__ import annotations

import uuid
from datetime import datetime, timedelta

import aiohttp
import msgspec

from services.common.codec import Codec
from services.common.kafka import produce_all
from services.common.records import AlertCorrelated, AlertRouted, CorrelatedAlert, RoutingDecision, utcnow
from services.common.registry.publish import publish_registry
from services.common.settings import KafkaSettings
from services.common.topics import ALERTS_CORRELATED, ALERTS_ROUTED
from tests.support.system import system
from tests.support.world import Cast, agreement, eventually, rctc, registry

OPERATOR = "operator-token-desk"


async def test_an_operator_sees_a_correlation_and_whom_the_router_told_and_an_agency_is_refused(
    kafka: KafkaSettings, codec: Codec
) -> None:
    """Operator: the correlation once, both sides, the two agencies told (API and CLI). Agencies: 403."""
    cast = Cast()
    a, b, c = cast.agency("IQ-A", "IQ"), cast.agency("JO-B", "JO"), cast.agency("SA-C", "SA")
    doc = registry([a, b, c], [agreement(f"S-{cast.suffix}", [a.code, b.code, c.code])], operator_token=OPERATOR)
    await publish_registry(kafka, codec, doc, source="test", replication_factor=1)
    earlier, later, correlation_id = (str(uuid.uuid4()) for _ in range(3))
    now = utcnow()
    found = AlertCorrelated(
        correlation_id=correlation_id,
        kind="phone",
        value="+962790000000",
        a=CorrelatedAlert(alert_id=earlier, thread_id=earlier, origin=a.code, fields=["indicators"]),
        b=CorrelatedAlert(alert_id=later, thread_id=later, origin=b.code, fields=["summary"]),
        found_at=now,
    )
    # The router's decision: a and b are told; c, entitled to neither alert, is not (one decision per agency).
    decision = AlertRouted(
        alert_id=later,
        origin=b.code,
        msg_type="Alert",
        severity="Severe",
        urgency="Expected",
        routed_at=now + timedelta(seconds=1),
        registry_version=1,
        decisions=(
            *(
                RoutingDecision(
                    agency=x.code, delivered=True, rule="correlated", reason="both", event="alert.correlated"
                )
                for x in (a, b)
            ),
            RoutingDecision(agency=c.code, delivered=False, rule="not_entitled", reason="not entitled"),
        ),
        correlation_id=correlation_id,
    )
    async with system(kafka, codec) as sys_, aiohttp.ClientSession() as http:
        # Scenario: the correlator writes the correlation twice (at least once), the router decides it once.
        repeat = msgspec.structs.replace(found, found_at=now + timedelta(seconds=5))
        correlated = [(earlier.encode(), codec.encode(found)), (earlier.encode(), codec.encode(repeat))]
        await produce_all(kafka, "test-correlator", ALERTS_CORRELATED, correlated)
        await produce_all(kafka, "test-router", ALERTS_ROUTED, [(later.encode(), codec.encode(decision))])
        desk = {"Authorization": f"Bearer {OPERATOR}"}

        async def listed() -> list[dict[str, object]] | None:
            async with http.get(f"{sys_.url}/v1/correlations", params={"agency": a.code}, headers=desk) as r:
                assert r.status == 200, await r.text()
                page = (await r.json())["correlations"]
            return page if page and page[0]["notified"] else None

        page = await eventually(listed)
        # Once, as first found (the repeat's found_at is later); Avro keeps milliseconds.
        first = now.replace(microsecond=now.microsecond // 1000 * 1000)
        seen = [(x["correlation_id"], x["a"]["origin"], x["b"]["origin"], x["found_at"]) for x in page]
        assert [(correlation_id, a.code, b.code, first)] == [(*x[:3], datetime.fromisoformat(str(x[3]))) for x in seen]
        async with http.get(f"{sys_.url}/v1/correlations/{correlation_id}", headers=desk) as r:
            one = (r.status, await r.json())
        assert (one[0], [n["agency"] for n in one[1]["notified"]], one[1]["decided_on"]) == (
            200,
            sorted([a.code, b.code]),
            later,
        )

        # Scenario: every agency, those told and the one not, is refused the list and the correlation.
        refused = []
        for agency in (a, b, c):
            for path in ("/v1/correlations", f"/v1/correlations/{correlation_id}"):
                async with http.get(f"{sys_.url}{path}", headers=cast.bearer(agency.code)) as r:
                    refused.append((r.status, (await r.json())["error"]))
        assert refused == [(403, "forbidden")] * 6

        # Scenario: the decision is no version of `later`: the tracker knows no such alert.
        async with http.get(f"{sys_.url}/v1/alerts/{later}", headers=desk) as r:
            assert r.status == 404

        # Scenario: the same through `rctc correlations`, as an operator and as an agency.
        where = ("--gateway", sys_.url)
        code, out, _ = await rctc("correlations", "list", "--agency", a.code, *where, "--token", OPERATOR, kafka=kafka)
        told = ",".join(sorted([a.code, b.code]))
        assert (code, correlation_id in out, f"told: {told}" in out) == (0, True, True)
        code, out, _ = await rctc("correlations", "show", correlation_id, *where, "--token", OPERATOR, kafka=kafka)
        assert (code, f"-> {a.code}" in out, f"-> {c.code}" in out) == (0, True, False)
        code, _, err = await rctc("correlations", "list", *where, "--token", cast.tokens[c.code], kafka=kafka)
        assert (code, "403" in err) == (1, True)
