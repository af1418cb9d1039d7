"""Correlations shared under the rules of the alerts, on the real broker: through the gateway, the enricher, the
correlator and the router, each agency that reads the shared value in both alerts gets exactly one
alert.correlated per correlation (by topic and by signed webhook), one that holds only one of the two gets
none, and one whose copies had the value redacted gets none."""

from __future__ import annotations

import asyncio
import uuid
from collections import Counter
from typing import Any

import aiohttp

from services.common.codec import Codec
from services.common.kafka import commit_at_end, group_id, produce_all
from services.common.records import AlertCorrelated, AlertRouted, AlertShared
from services.common.registry.publish import publish_registry
from services.common.settings import KafkaSettings
from services.common.topics import ALERTS_CORRELATED, ALERTS_ROUTED, ALERTS_SUBMITTED, agency_topic
from services.demo.receivers import Receivers
from tests.integration.test_correlator import fresh_phone, fresh_wallet, starts_after_the_backlog
from tests.support.system import system
from tests.support.world import Cast, agreement, alert_json, eventually, read_topic, registry


async def test_each_agency_reading_the_value_in_both_alerts_is_told_once(
    kafka: KafkaSettings, codec: Codec, receivers: tuple[str, Receivers]
) -> None:
    url, rcv = receivers
    cast = Cast()
    # Scenario: IQ, JO and KW report. SA receives everything, and hears by webhook too. EG receives IQ's and KW's
    # alerts but not JO's (JO's is releasable to the others only). AE receives everything without indicators
    # (its agreement removes them), so it never reads a phone, a wallet or an e-mail, but does read names.
    iq, jo, kw = cast.agency("IQ-A", "IQ"), cast.agency("JO-B", "JO"), cast.agency("KW-C", "KW")
    sa, eg, ae = cast.agency("SA-D", "SA", webhook_url=url), cast.agency("EG-E", "EG"), cast.agency("AE-F", "AE")
    origins = [iq.code, jo.code, kw.code]
    doc = registry(
        [iq, jo, kw, sa, eg, ae],
        [
            agreement(f"M-{cast.suffix}", [*origins, sa.code, eg.code]),
            agreement(f"R-{cast.suffix}", from_=origins, to=[ae.code], redact=["indicators"]),
        ],
    )
    for code, keys in cast.secrets.items():
        rcv.register(code, keys)
    await publish_registry(kafka, codec, doc, source="correlation", replication_factor=1)
    # The correlator and the enricher start after what earlier tests left (tests/integration/test_correlator.py).
    await starts_after_the_backlog(kafka)
    await commit_at_end(kafka, group_id(kafka, "enricher"), [ALERTS_SUBMITTED])

    phone_written, phone = fresh_phone()
    wallet = fresh_wallet()
    mailbox = f"courier{uuid.uuid4().hex[:8]}"
    arabic_digits = phone.translate(str.maketrans("0123456789", "٠١٢٣٤٥٦٧٨٩"))
    name = f"أَحْمَد مُحَمَّد الرَّاشِدِي {mailbox}"  # unique to this test: the mailbox in Latin letters
    # IQ writes the phone, the wallet in mixed case, an e-mail and the person's name with harakat; JO quotes the
    # phone with dashes, the e-mail defanged, and the name plainly; KW gives the phone in Arabic-Indic digits and
    # the wallet in lower case in its text.
    bodies: dict[str, tuple[str, dict[str, Any]]] = {
        "iq": (
            iq.code,
            alert_json(
                summary="Cell financing network.",
                indicators=[
                    {"type": "phone", "value": phone_written},
                    {"type": "crypto_wallet", "value": wallet},
                    {"type": "email", "value": f"{mailbox}@relay.example"},
                ],
                subjects=[{"kind": "person", "name": name}],
            ),
        ),
        "jo": (
            jo.code,
            alert_json(
                summary=f"The courier answers on {phone_written.replace(' ', '-')} and {mailbox}[at]relay[.]example.",
                subjects=[{"kind": "person", "name": f"احمد محمد الراشدى {mailbox}"}],
                tlp="AMBER",
                releasable_to=[iq.code, kw.code, sa.code, ae.code],
            ),
        ),
        "kw": (
            kw.code,
            alert_json(
                summary=f"Transfers went to {wallet.lower()} last week.",
                indicators=[{"type": "phone", "value": arabic_digits}],
                subjects=[],
            ),
        ),
    }
    ids: dict[str, str] = {}
    async with system(kafka, codec, correlator={}) as sys_, aiohttp.ClientSession() as http:
        for key, (code, body) in bodies.items():
            async with http.post(f"{sys_.url}/v1/alerts", json=body, headers=cast.bearer(code)) as response:
                assert response.status == 202, await response.text()
                ids[key] = (await response.json())["alert_id"]
        mine = set(ids.values())
        # Which pairs share what, and who reads the value in both (IQ's and KW's alerts reach EG, JO's does not).
        everyone = [iq.code, jo.code, kw.code, sa.code]
        pairs = {
            ("phone", "iq", "jo"): everyone,
            ("phone", "iq", "kw"): [*everyone, eg.code],
            ("phone", "jo", "kw"): everyone,
            ("crypto_wallet", "iq", "kw"): [*everyone, eg.code],
            ("email", "iq", "jo"): everyone,
            ("subject_name", "iq", "jo"): [*everyone, ae.code],
        }

        async def correlations() -> dict[tuple[str, str, str], AlertCorrelated] | None:
            found = {
                c.correlation_id: c
                for _, c in await read_topic(kafka, codec, ALERTS_CORRELATED, AlertCorrelated)
                if c.candidates is None and {c.a.alert_id, c.b.alert_id} <= mine
            }
            by_key = {
                (c.kind, *sorted(k for k, v in ids.items() if v in (c.a.alert_id, c.b.alert_id))): c
                for c in found.values()
            }
            return by_key if len(by_key) >= len(pairs) else None

        found = await eventually(correlations, within_s=90)
        assert set(found) == set(pairs), "the correlator found each pair once"
        expected: dict[str, set[str]] = {code: set() for code in cast.tokens}
        for key, readers in pairs.items():
            for code in readers:
                expected[code].add(found[key].correlation_id)

        async def notices() -> dict[str, Counter[str]] | None:
            told: dict[str, Counter[str]] = {}
            for code in cast.tokens:
                told[code] = Counter(
                    s.correlation.correlation_id
                    for _, s in await read_topic(kafka, codec, agency_topic(code), AlertShared)
                    if s.event_type == "alert.correlated" and s.correlation is not None
                )
            return told if all(set(told[c]) >= ids_ for c, ids_ in expected.items()) else None

        try:
            told = await eventually(notices, within_s=60)
        except TimeoutError:
            from services.common.kafka import read_to_end

            async for r in read_to_end(kafka, ALERTS_CORRELATED, name="dbg"):
                c = codec.decode(r.value, AlertCorrelated)
                print("DBG", r.partition, r.offset, r.timestamp, c.correlation_id, c.kind, c.candidates)
            raise
        await asyncio.sleep(3)  # a second notice, or one to an agency not entitled, would show in this time
        told = await notices() or told
        assert {c: set(n) for c, n in told.items()} == expected
        assert all(n == 1 for counts in told.values() for n in counts.values()), "exactly one notice each"

        # What a notice says: the recipient's two threads and versions and the value, no content, nobody else.
        for _, shared in await read_topic(kafka, codec, agency_topic(eg.code), AlertShared):
            if shared.event_type != "alert.correlated":
                continue
            assert shared.alert is None and shared.correlation is not None
            assert set(shared.correlation.thread_ids) <= {ids["iq"], ids["kw"]}
            assert set(shared.correlation.alert_ids) <= {ids["iq"], ids["kw"]}
            assert jo.code not in str(shared) and ae.code not in str(shared)

        # SA hears the same by webhook, signed (the receiver checks the signature), once per correlation.
        def by_webhook() -> set[str] | None:
            got = {
                p["data"]["correlation"]["correlation_id"]
                for p in rcv.received[sa.code].values()
                if p["type"] == "alert.correlated"
            }
            return got if got >= expected[sa.code] else None

        assert await eventually(by_webhook, within_s=30) == expected[sa.code]
        assert rcv.rejected == 0

        # A correlator that crashed writes its correlations again (same ids), and the router restarts meanwhile:
        # what it told is read back from its log, and nobody is told twice.
        await sys_.restart_router()
        repeats = [(c.a.thread_id.encode(), codec.encode(c)) for c in found.values()]
        await produce_all(kafka, "test-replay", ALERTS_CORRELATED, repeats)
        await asyncio.sleep(5)
        again = await notices()
        assert again is not None and again == told, "a repeat tells nobody twice"

        # The router's record of each: who was told, and everyone else not_entitled, under one reason.
        decisions = [
            r
            for _, r in await read_topic(kafka, codec, ALERTS_ROUTED, AlertRouted)
            if r.correlation_id in {c.correlation_id for c in found.values()}
        ]
        assert Counter(r.correlation_id for r in decisions) == Counter({c.correlation_id: 1 for c in found.values()})
        for r in decisions:
            assert {d.agency for d in r.decisions if d.delivered} == {
                code for code, ids_ in expected.items() if r.correlation_id in ids_
            }
            assert {d.rule for d in r.decisions if not d.delivered} <= {"not_entitled"}
