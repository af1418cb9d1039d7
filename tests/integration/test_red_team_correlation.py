"""The red team's attacks on alert.correlated notices (session 10), on the real broker, each asserting the secure
outcome: a hostile agency counting its own notices against the over-correlation cap to learn of an alert it was
never sent; flooding a value to silence other agencies' correlations; an Update sent "into" another's thread to
hide that thread's correlation; a pair told twice after the window pruned a thread; the duty desk and the
later alert's originator's views probed for a trace of a correlation. The first four got through on 8392c35
(the comment at each assertion says what was seen then)."""

from __future__ import annotations

import asyncio
from collections import Counter
from typing import Any

import aiohttp

from services.common.codec import Codec
from services.common.kafka import commit_at_end, group_id
from services.common.records import AlertCorrelated, AlertShared, IndicatorSighted
from services.common.registry.publish import publish_registry
from services.common.settings import KafkaSettings
from services.common.topics import (
    ALERTS_CORRELATED,
    ALERTS_ENRICHED,
    ALERTS_SUBMITTED,
    CORRELATOR_SIGHTINGS,
    agency_topic,
)
from services.router import correlation
from tests.integration.test_correlator import fresh_phone, starts_after_the_backlog
from tests.support.system import system
from tests.support.world import Cast, agreement, alert_json, eventually, read_topic, registry, settled


def body(phone_written: str, **more: Any) -> dict[str, Any]:
    return alert_json(
        summary="Routine report.", subjects=[], indicators=[{"type": "phone", "value": phone_written}], **more
    )


async def submit(http: aiohttp.ClientSession, url: str, cast: Cast, code: str, payload: dict[str, Any]) -> str:
    for _ in range(30):
        async with http.post(f"{url}/v1/alerts", json=payload, headers=cast.bearer(code)) as response:
            if response.status == 429:
                await asyncio.sleep(float(response.headers.get("Retry-After", "1")))
                continue
            assert response.status == 202, await response.text()
            return str((await response.json())["alert_id"])
    raise AssertionError("rate limited")


async def sighted(kafka: KafkaSettings, codec: Codec, ids: set[str]) -> bool:
    got = {s.alert_id for _, s in await read_topic(kafka, codec, CORRELATOR_SIGHTINGS, IndicatorSighted)}
    return ids <= got


async def notices_of(kafka: KafkaSettings, codec: Codec, code: str, value: str) -> Counter[str]:
    return Counter(
        s.correlation.correlation_id
        for _, s in await read_topic(kafka, codec, agency_topic(code), AlertShared)
        if s.event_type == "alert.correlated" and s.correlation is not None and s.correlation.value == value
    )


async def setup(kafka: KafkaSettings, codec: Codec) -> tuple[Cast, str, str, str]:
    cast = Cast()
    a, b, c = cast.agency("ATK", "IQ"), cast.agency("VIC", "JO"), cast.agency("PAR", "KW")
    # C shares with A (A's partner); B and C share with each other; B shares NOTHING with A.
    doc = registry(
        [a, b, c],
        [
            agreement(f"CA-{cast.suffix}", from_=[c.code], to=[a.code]),
            agreement(f"BC-{cast.suffix}", [b.code, c.code]),
        ],
    )
    await publish_registry(kafka, codec, doc, source="redteam", replication_factor=1)
    await starts_after_the_backlog(kafka)
    await commit_at_end(kafka, group_id(kafka, "enricher"), [ALERTS_SUBMITTED])
    return cast, a.code, b.code, c.code


CAP = 4


async def test_cap_count_oracle_reveals_an_alert_the_attacker_was_not_sent(kafka: KafkaSettings, codec: Codec) -> None:
    """A (attacker) holds C's alert carrying a phone; B's alert carries it too but reaches C only. A submits
    alerts carrying the phone until notices stop: how many it gets tells whether (and how many) other threads
    carry the phone, B's included."""
    cast, atk, vic, par = await setup(kafka, codec)
    results: dict[str, int] = {}
    async with (
        system(kafka, codec, correlator={"max_originators_per_value": CAP, "max_threads_per_originator": CAP}) as sys_,
        aiohttp.ClientSession() as http,
    ):
        for case, victim_has_it in (("with_victim", True), ("control", False)):
            written, value = fresh_phone()
            first = set()
            if victim_has_it:
                first.add(await submit(http, sys_.url, cast, vic, body(written)))
            first.add(await submit(http, sys_.url, cast, par, body(written)))
            await eventually(lambda f=first: sighted(kafka, codec, f), within_s=60)
            mine = {await submit(http, sys_.url, cast, atk, body(written)) for _ in range(CAP)}
            await eventually(lambda m=mine: sighted(kafka, codec, m), within_s=60)
            # The router's notices, counted once they stop arriving (A is told of its own and C's alert in both).
            results[case] = len(await settled(lambda v=value: notices_of(kafka, codec, atk, v)))
    # Found on 8392c35: with_victim CAP-2, control CAP-1 (A learns of an alert it was never sent). Secure: equal.
    assert results["with_victim"] == results["control"], results


async def test_flooding_a_value_hides_correlations_between_other_agencies(kafka: KafkaSettings, codec: Codec) -> None:
    """A submits CAP alerts with a victim's phone first; B and C, who share with each other, then report it and
    are never told (no correlation is even found)."""
    cast, atk, vic, par = await setup(kafka, codec)
    async with (
        system(kafka, codec, correlator={"max_originators_per_value": CAP, "max_threads_per_originator": CAP}) as sys_,
        aiohttp.ClientSession() as http,
    ):
        written, value = fresh_phone()
        mine = {await submit(http, sys_.url, cast, atk, body(written)) for _ in range(CAP)}
        await eventually(lambda: sighted(kafka, codec, mine), within_s=60)
        b_id = await submit(http, sys_.url, cast, vic, body(written))
        c_id = await submit(http, sys_.url, cast, par, body(written))
        await eventually(lambda: sighted(kafka, codec, {b_id, c_id}), within_s=60)

        async def pair_and_told() -> tuple[list[AlertCorrelated], tuple[Counter[str], Counter[str]]] | None:
            pair = [
                r
                for _, r in await read_topic(kafka, codec, ALERTS_CORRELATED, AlertCorrelated)
                if {r.a.alert_id, r.b.alert_id} == {b_id, c_id}
            ]
            told = await notices_of(kafka, codec, vic, value), await notices_of(kafka, codec, par, value)
            return (pair, told) if pair and all(told) else None

        try:
            found = await eventually(pair_and_told, within_s=90)
        except TimeoutError:
            found = None
        # Found on 8392c35: no correlation and no notice (the flood hid B and C's correlation).
        assert found, "one agency's flood must not hide other agencies' correlation"


async def test_update_into_a_held_thread_suppresses_its_owner_correlation(kafka: KafkaSettings, codec: Codec) -> None:
    """A holds C's thread T (without the phone). A sends an Update "into" T carrying the phone (refused by the
    router, but the correlator files it under T). When C later updates T with the phone, which B also reported,
    the correlator takes it for a repeat: B and C are never told. Control: the same without A's Update."""
    cast, atk, vic, par = await setup(kafka, codec)
    results: dict[str, int] = {}
    async with system(kafka, codec, correlator={}) as sys_, aiohttp.ClientSession() as http:
        for case, attack in (("attacked", True), ("control", False)):
            written, value = fresh_phone()
            plain = alert_json(summary="Routine report.", subjects=[], indicators=[])
            thread = await submit(http, sys_.url, cast, par, plain)
            await eventually(lambda t=thread: sighted_or_enriched(kafka, codec, t), within_s=60)
            if attack:
                await submit(http, sys_.url, cast, atk, body(written, msg_type="Update", references=[thread]))
            b_id = await submit(http, sys_.url, cast, vic, body(written))
            await eventually(lambda i=b_id: sighted(kafka, codec, {i}), within_s=60)
            await asyncio.sleep(3)
            upd = await submit(http, sys_.url, cast, par, body(written, msg_type="Update", references=[thread]))
            await eventually(lambda i=upd: sighted(kafka, codec, {i}), within_s=60)

            async def told(v: str = value) -> int:
                return len(await notices_of(kafka, codec, par, v)) + len(await notices_of(kafka, codec, vic, v))

            try:
                results[case] = await settled(told)
            except TimeoutError:
                results[case] = 0
    # Found on 8392c35: attacked 0, control 2 (the injected Update made C's real one a repeat).
    assert results["attacked"] == results["control"] == 2, results


async def sighted_or_enriched(kafka: KafkaSettings, codec: Codec, alert_id: str) -> bool:
    from services.common.records import AlertEnriched

    return any(e.alert_id == alert_id for _, e in await read_topic(kafka, codec, ALERTS_ENRICHED, AlertEnriched))


async def test_an_update_after_the_window_pruned_its_thread_tells_the_same_pair_again(
    kafka: KafkaSettings, codec: Codec
) -> None:
    """A's thread T and C's alert W (shared to A) carry a phone: A is told once about (T, W). A later alert with
    the phone prunes T's sighting from the entry (more than the window after it) but keeps W's; an Update of T
    still carrying the phone is then a new sighting of T, and the pair (T, W) is correlated again under a new
    id: A is told twice about the same two threads and value. The window is shrunk to 30 s to run it."""
    cast, atk, _vic, par = await setup(kafka, codec)
    window_s = 30.0
    loop = asyncio.get_running_loop()
    async with (
        system(kafka, codec, correlator={"window_days": window_s / 86400}) as sys_,
        aiohttp.ClientSession() as http,
    ):
        written, value = fresh_phone()
        start = loop.time()
        t = await submit(http, sys_.url, cast, atk, body(written))
        await asyncio.sleep(12 - (loop.time() - start))
        w = await submit(http, sys_.url, cast, par, body(written))
        await asyncio.sleep(33 - (loop.time() - start))
        z = await submit(http, sys_.url, cast, atk, body(written))  # prunes T (> window after it), keeps W
        await eventually(lambda: sighted(kafka, codec, {t, w, z}), within_s=30)
        await asyncio.sleep(max(0.0, 36 - (loop.time() - start)))
        u = await submit(http, sys_.url, cast, atk, body(written, msg_type="Update", references=[t]))
        await eventually(lambda: sighted(kafka, codec, {u}), within_s=30)

        async def about() -> Counter[str]:
            return Counter(
                s.correlation.correlation_id
                for _, s in await read_topic(kafka, codec, agency_topic(atk), AlertShared)
                if s.event_type == "alert.correlated"
                and s.correlation is not None
                and s.correlation.value == value
                and set(s.correlation.thread_ids) == {t, w}
            )

        # Counted once the notices stop arriving, and no sooner than the second one took on 8392c35.
        about_t_w = await settled(about, quiet_s=8)
        # Found on 8392c35: two ids, one notice each (told twice about the same threads and value).
        assert len(about_t_w) == 1, about_t_w


async def test_originator_views_and_desk_probes_show_no_correlation(kafka: KafkaSettings, codec: Codec) -> None:
    """A's and B's alerts carry one phone and reach X only (A and B share nothing): X is told, nobody else.
    B then reads its own alert's status and routing, and probes the duty desk with its token: nothing there may
    tell B that the correlation (A's alert) exists."""
    cast = Cast()
    a, b, x = cast.agency("ATK", "IQ"), cast.agency("VIC", "JO"), cast.agency("PAR", "KW")
    doc = registry(
        [a, b, x],
        [
            agreement(f"AX-{cast.suffix}", from_=[a.code], to=[x.code]),
            agreement(f"BX-{cast.suffix}", from_=[b.code], to=[x.code]),
        ],
    )
    await publish_registry(kafka, codec, doc, source="redteam", replication_factor=1)
    await starts_after_the_backlog(kafka)
    await commit_at_end(kafka, group_id(kafka, "enricher"), [ALERTS_SUBMITTED])
    async with system(kafka, codec, correlator={}) as sys_, aiohttp.ClientSession() as http:
        written, value = fresh_phone()
        a_id = await submit(http, sys_.url, cast, a.code, body(written))
        await eventually(lambda: sighted(kafka, codec, {a_id}), within_s=60)
        b_id = await submit(http, sys_.url, cast, b.code, body(written))
        await eventually(lambda: sighted(kafka, codec, {b_id}), within_s=60)
        await asyncio.sleep(3)
        views: dict[str, str] = {}
        for path in (f"/v1/alerts/{b_id}", f"/v1/alerts/{b_id}/routing"):
            async with http.get(f"{sys_.url}{path}", headers=cast.bearer(b.code)) as r:
                views[path] = f"{r.status} {await r.text()}"
        before = dict(views)
        await eventually(lambda: notices_of(kafka, codec, x.code, value), within_s=60)
        await asyncio.sleep(3)
        for path in (f"/v1/alerts/{b_id}", f"/v1/alerts/{b_id}/routing"):
            async with http.get(f"{sys_.url}{path}", headers=cast.bearer(b.code)) as r:
                views[path] = f"{r.status} {await r.text()}"
        cid = next(iter(await notices_of(kafka, codec, x.code, value)))
        probes = [
            "/v1/correlations",
            "/v1/correlations?viewer_kind=operator",
            "/v1/correlations?viewer_kind=operator&viewer=duty-desk",
            f"/v1/correlations?agency={b.code}",
            f"/v1/correlations/{cid}",
            f"/v1/correlations/{cid}?viewer_kind=operator",
            f"/v1/correlations/{cid}/",
            f"/v1/correlations/%2e%2e/correlations/{cid}",
            f"/v1//correlations/{cid}",
            f"/V1/correlations/{cid}",
            f"/v1/correlations/{cid.upper()}",
            f"/v1/alerts/{a_id}",
            f"/v1/alerts/{a_id}/routing",
        ]
        for path in probes:
            async with http.get(f"{sys_.url}{path}", headers=cast.bearer(b.code)) as r:
                views[path] = f"{r.status} {await r.text()}"
        assert all(before[p] == views[p] for p in before), "B's own views do not change with the correlation"
        own = " ".join(views[p] for p in before).replace('"correlation_id": null', "")
        assert "correlat" not in own and "not_entitled" not in own, "no trace of the correlation decision"
        assert all(views[p].startswith(("403 ", "404 ")) for p in probes), "every probe refused"


async def test_copying_many_values_of_one_alert_makes_a_few_notices_not_one_per_value(
    kafka: KafkaSettings, codec: Codec
) -> None:
    """A copies a dozen phones of C's alert (shared to it) into its own: a dozen correlations of one pair of
    threads, all on alerts.correlated for the duty desk, and A is told of PAIR_NOTICES of them. Found in session
    10: a notice per value (300 phones in three alerts made 900 notices and about 36 s of the router's work)."""
    cast, atk, _vic, par = await setup(kafka, codec)
    phones = [fresh_phone() for _ in range(12)]
    many = alert_json(
        summary="Routine report.", subjects=[], indicators=[{"type": "phone", "value": w} for w, _ in phones]
    )
    values = {v for _, v in phones}
    async with system(kafka, codec, correlator={}) as sys_, aiohttp.ClientSession() as http:
        c_id = await submit(http, sys_.url, cast, par, many)
        await eventually(lambda: sighted(kafka, codec, {c_id}), within_s=60)
        a_id = await submit(http, sys_.url, cast, atk, many)

        async def correlations() -> int:
            found = await read_topic(kafka, codec, ALERTS_CORRELATED, AlertCorrelated)
            return len({r.value for _, r in found if {r.a.alert_id, r.b.alert_id} == {c_id, a_id}} & values)

        assert await eventually(lambda: _all(correlations, len(values)), within_s=90)

        async def told() -> int:
            return sum(
                1
                for _, s in await read_topic(kafka, codec, agency_topic(atk), AlertShared)
                if s.event_type == "alert.correlated"
                and s.correlation is not None
                and s.correlation.value in values
                and set(s.correlation.thread_ids) == {c_id, a_id}
            )

        notices = await settled(told, quiet_s=8)
    # Found before: 12, one per value.
    assert notices == correlation.PAIR_NOTICES, notices


async def _all(count: Any, expected: int) -> bool:
    return bool(await count() == expected)


async def test_an_update_sent_into_a_held_thread_cannot_silence_its_later_correlation(
    kafka: KafkaSettings, codec: Codec
) -> None:
    """A holds C's thread T (no phone yet); B reports a phone, not shared with A. A sends an Update "into" T
    carrying the phone: the router refuses it, the correlator pairs it with B's alert under the id of (B, T,
    phone). When C really updates T with the phone, B and C are each told once. Found in round 5 (session 16):
    the refused side's correlation was recorded as decided, telling nobody, so the genuine one was a duplicate."""
    cast, atk, vic, par = await setup(kafka, codec)
    async with system(kafka, codec, correlator={}) as sys_, aiohttp.ClientSession() as http:
        written, value = fresh_phone()
        plain = alert_json(summary="Routine report.", subjects=[], indicators=[])
        thread = await submit(http, sys_.url, cast, par, plain)  # T, shared to A (the CA agreement)
        await eventually(lambda: sighted_or_enriched(kafka, codec, thread), within_s=60)
        b_id = await submit(http, sys_.url, cast, vic, body(written))  # shared with C, not with A
        await eventually(lambda: sighted(kafka, codec, {b_id}), within_s=60)
        fake = await submit(http, sys_.url, cast, atk, body(written, msg_type="Update", references=[thread]))
        await eventually(lambda: sighted(kafka, codec, {fake}), within_s=60)
        await asyncio.sleep(6)  # the fake's two phases decided
        update = await submit(http, sys_.url, cast, par, body(written, msg_type="Update", references=[thread]))
        await eventually(lambda: sighted(kafka, codec, {update}), within_s=60)

        async def told() -> tuple[int, int]:
            return len(await notices_of(kafka, codec, par, value)), len(await notices_of(kafka, codec, vic, value))

        both = await eventually(lambda: _each_told(told), within_s=90)
        assert not await notices_of(kafka, codec, atk, value)
    assert both == (1, 1)


async def _each_told(told: Any) -> tuple[int, int] | None:
    counts: tuple[int, int] = await told()
    return counts if all(counts) else None
