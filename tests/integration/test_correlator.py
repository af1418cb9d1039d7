"""The correlator on the real broker: alerts of different agencies that share a value are found, once each,
and a correlator killed with SIGKILL mid-stream misses none after its restart (repeats keep their ids).

Every integration test shares the broker and its topics. A correlator's group (one per test: its client-id
prefix) would read alerts.enriched and correlator.sightings from their beginning, every earlier test's alerts
first (they share the sample's values, and that took minutes in CI): each test commits its group's offsets
at their end before its correlator starts (`starts_after_the_backlog`). The index is still rebuilt from the
whole changelog, other tests' entries too: these tests give their values fresh digits and read back only
the correlations between their own alerts.
"""

from __future__ import annotations

import asyncio
import re
import signal
import time
import uuid
from collections import defaultdict
from datetime import timedelta
from itertools import combinations
from pathlib import Path
from typing import Any

import aiohttp
import msgspec
import pytest

from services.common.codec import Codec
from services.common.kafka import commit_at_end, group_id, produce_all
from services.common.ops import free_port
from services.common.records import AlertCorrelated, AlertEnriched, Indicator, utcnow
from services.common.registry.publish import publish_registry
from services.common.runner import running
from services.common.settings import KafkaSettings
from services.common.topics import ALERTS_CORRELATED, ALERTS_ENRICHED, ALERTS_SUBMITTED, CORRELATOR_SIGHTINGS
from services.correlator.app import app_id
from services.correlator.correlation import correlation_id
from services.correlator.service import Correlator, build
from services.correlator.settings import CorrelatorSettings
from tests.support.system import service_principals, system
from tests.support.world import (
    Cast,
    agreement,
    alert_json,
    eventually,
    read_topic,
    registry,
    serves_ready,
    start_service,
)
from tests.unit.samples import sample_alert


def fresh_phone() -> tuple[str, str]:
    """A phone number no other test uses, as `+964 770 123 4567` and as the correlator's value."""
    digits = f"{uuid.uuid4().int % 10**7:07d}"
    return f"+964 770 {digits[:3]} {digits[3:]}", f"+964770{digits}"


def fresh_wallet() -> str:
    """An Ethereum address no other test uses, in mixed case (as EIP-55 writes it)."""
    hexdigits = uuid.uuid4().hex + uuid.uuid4().hex[:8]
    return "0x" + "".join(c.upper() if i % 3 == 0 else c for i, c in enumerate(hexdigits))


async def starts_after_the_backlog(kafka: KafkaSettings) -> None:
    """This test's correlator group reads what arrives from now on (module docstring). Its principal has the
    test's client-id prefix, so its group is `app_id(kafka)`; the admin commits for it before it starts."""
    await commit_at_end(kafka, app_id(kafka), [ALERTS_ENRICHED, CORRELATOR_SIGHTINGS])


async def correlations_between(kafka: KafkaSettings, codec: Codec, ids: set[str]) -> list[AlertCorrelated]:
    """Every AlertCorrelated on the topic whose two alerts are both among `ids`, in topic order."""
    found = await read_topic(kafka, codec, ALERTS_CORRELATED, AlertCorrelated)
    return [c for key, c in found if {c.a.alert_id, c.b.alert_id} <= ids and key == c.a.thread_id.encode()]


async def submission_times(kafka: KafkaSettings, codec: Codec, ids: set[str]) -> dict[str, Any]:
    enriched = await read_topic(kafka, codec, ALERTS_ENRICHED, AlertEnriched)
    return {e.alert_id: (e.submitted_at, e.alert_id) for _, e in enriched if e.alert_id in ids}


async def test_three_agencies_sharing_a_phone_a_wallet_and_a_name_are_correlated_once_each(
    kafka: KafkaSettings, codec: Codec
) -> None:
    """Through the gateway and the enricher: every pair of alerts from different agencies sharing the phone,
    the wallet or the name (however each wrote it) is one AlertCorrelated; same-agency pairs and an Update
    repeating its thread's values add none."""
    cast = Cast()
    iq, jo, kw = cast.agency("IQ-A", "IQ"), cast.agency("JO-B", "JO"), cast.agency("KW-C", "KW")
    await publish_registry(
        kafka,
        codec,
        registry([iq, jo, kw], [agreement(f"M-{cast.suffix}", [iq.code, jo.code, kw.code])]),
        source="test",
        replication_factor=1,
    )
    phone_written, phone = fresh_phone()
    wallet = fresh_wallet()
    arabic_digits = phone.translate(str.maketrans("0123456789", "٠١٢٣٤٥٦٧٨٩"))
    # Scenario: IQ reports a phone, a wallet (mixed case) and a person, the name with harakat and hamza;
    # JO quotes the phone in its summary with dashes and names the person plainly; KW quotes the wallet in
    # lower case in its text and gives the phone in Arabic-Indic digits. IQ then updates its alert, repeating
    # the phone and the wallet; JO reports the phone again in a new alert.
    bodies: dict[str, tuple[str, dict[str, Any]]] = {
        "iq": (
            iq.code,
            alert_json(
                summary="Cell financing network.",
                indicators=[
                    {"type": "phone", "value": phone_written},
                    {"type": "crypto_wallet", "value": wallet},
                ],
                subjects=[{"kind": "person", "name": "أَحْمَد مُحَمَّد الرَّاشِدِي"}],
            ),
        ),
        "jo": (
            jo.code,
            alert_json(
                summary=f"The courier answers on {phone_written.replace(' ', '-')} at night.",
                subjects=[{"kind": "person", "name": "احمد محمد الراشدى"}],
            ),
        ),
        "kw": (
            kw.code,
            alert_json(
                summary=f"Transfers went to {wallet.lower()} last week.",
                indicators=[{"type": "phone", "value": arabic_digits}],
                subjects=[{"kind": "organisation", "name": "Relay Exchange LLC"}],
            ),
        ),
    }
    ids: dict[str, str] = {}
    await starts_after_the_backlog(kafka)
    # The enricher's group too: it would enrich every earlier test's submission again, onto alerts.enriched.
    await commit_at_end(kafka, group_id(kafka, "enricher"), [ALERTS_SUBMITTED])
    async with system(kafka, codec, correlator={}) as sys_, aiohttp.ClientSession() as http:

        async def submit(code: str, body: dict[str, Any]) -> str:
            async with http.post(f"{sys_.url}/v1/alerts", json=body, headers=cast.bearer(code)) as response:
                assert response.status == 202, await response.text()
                alert_id: str = (await response.json())["alert_id"]
                return alert_id

        for name, (code, body) in bodies.items():
            ids[name] = await submit(code, body)
        ids["iq-update"] = await submit(
            iq.code, {**bodies["iq"][1], "msg_type": "Update", "references": [ids["iq"]], "severity": "Extreme"}
        )
        ids["jo-2"] = await submit(jo.code, alert_json(summary=f"Again: {phone_written}.", subjects=[]))

        name = "احمد محمد الراشدي"  # the folded name both spellings give
        expected_pairs = {
            ("phone", phone): [("iq", "jo"), ("iq", "kw"), ("jo", "kw"), ("iq", "jo-2"), ("kw", "jo-2")],
            ("crypto_wallet", wallet.lower()): [("iq", "kw")],
            ("subject_name", name): [("iq", "jo")],
        }
        expected = {
            correlation_id(ids[x], ids[y], kind, value): (kind, value, {ids[x], ids[y]})
            for (kind, value), pairs in expected_pairs.items()
            for x, y in pairs
        }
        mine = set(ids.values())

        async def all_found() -> list[AlertCorrelated] | None:
            found = await correlations_between(kafka, codec, mine)
            return found if {c.correlation_id for c in found} >= set(expected) else None

        await eventually(all_found, within_s=90)
        # Anything late would show up in this time.
        await asyncio.sleep(3)
        found = await correlations_between(kafka, codec, mine)

    assert sorted(expected) == sorted(c.correlation_id for c in found), "each correlation exactly once"
    times = await submission_times(kafka, codec, mine)
    for c in found:
        kind, value, pair = expected[c.correlation_id]
        assert (kind, value, pair) == (c.kind, c.value, {c.a.alert_id, c.b.alert_id})
        assert times[c.a.alert_id] < times[c.b.alert_id], "a is the earlier alert"
        assert c.candidates is None
        assert ids["iq-update"] not in {c.a.alert_id, c.b.alert_id}
    # Where each alert carries the value, as the router will check it against each copy's redactions.
    by_pair = {(c.kind, frozenset((c.a.alert_id, c.b.alert_id))): c for c in found}
    phone_iq_jo = by_pair[("phone", frozenset((ids["iq"], ids["jo"])))]
    assert (phone_iq_jo.a.fields, phone_iq_jo.b.fields) == (["indicators"], ["summary", "indicators"])
    name_iq_jo = by_pair[("subject_name", frozenset((ids["iq"], ids["jo"])))]
    assert (name_iq_jo.a.fields, name_iq_jo.b.fields) == (["subjects"], ["subjects"])


def enriched_alert(origin: str, values: list[Indicator], n: int) -> AlertEnriched:
    now = utcnow() + timedelta(milliseconds=n)  # distinct times, in the order written
    alert = sample_alert(summary="", indicators=values, subjects=[])
    return AlertEnriched(
        alert_id=str(uuid.uuid4()), origin=origin, submitted_at=now, enriched_at=now, priority=2, alert=alert
    )


def small_world() -> tuple[list[AlertEnriched], set[str]]:
    """90 alerts of three agencies, alert n from its originator in turn with two of six fresh phone values (a
    small world: many pairs share one), and the ids of the correlations they make."""
    agencies = [f"IQ-{uuid.uuid4().hex[:4].upper()}", f"JO-{uuid.uuid4().hex[:4].upper()}", "KW-X"]
    values = [Indicator(type="phone", value=fresh_phone()[1]) for _ in range(6)]
    alerts = [enriched_alert(agencies[n % 3], [values[n % 6], values[(n * 5 + 1) % 6]], n) for n in range(90)]
    expected = {
        correlation_id(x.alert_id, y.alert_id, "phone", v.value)
        for x, y in combinations(alerts, 2)
        if x.origin != y.origin
        for v in set(x.alert.indicators) & set(y.alert.indicators)
    }
    return alerts, expected


@pytest.mark.timeout(300)
async def test_a_correlator_killed_mid_stream_misses_nothing_after_its_restart(
    kafka: KafkaSettings, codec: Codec, tmp_path: Path
) -> None:
    """The correlator as its own process, killed with SIGKILL while alerts arrive and started again: every
    expected correlation is on the topic, a repeat carries the same id and content, and alerts after the
    restart correlate with those before it (the index was rebuilt from its changelog)."""
    principal = (await service_principals(kafka))["correlator"]
    alerts, expected = small_world()
    mine = {a.alert_id for a in alerts}
    ops = free_port()
    log = tmp_path / "correlator.log"

    async def start() -> asyncio.subprocess.Process:
        process = await start_service("correlator", principal, log_to=log, RCTC_OPS__PORT=str(ops))
        await eventually(lambda: serves_ready(ops), within_s=60)
        return process

    async def feed(batch: list[AlertEnriched]) -> None:
        for a in batch:
            await produce_all(kafka, "test-feed", ALERTS_ENRICHED, [(a.alert_id.encode(), codec.encode(a))])
            await asyncio.sleep(0.02)

    await starts_after_the_backlog(kafka)
    first = await start()
    try:
        # Scenario: a third of the alerts, then more while the correlator works; it is killed once some of
        # their correlations are out, and the rest of the alerts arrive while it is down.
        await feed(alerts[:30])
        await eventually(lambda: correlations_between(kafka, codec, mine), within_s=60)
        feeding = asyncio.create_task(feed(alerts[30:60]))
        await asyncio.sleep(1.5)  # past a commit of what came first (commit_interval_s is 1), amid the rest
        first.send_signal(signal.SIGKILL)
        assert await first.wait() == -signal.SIGKILL
        await feeding
        before = {c.correlation_id for c in await correlations_between(kafka, codec, mine)}
        assert before < expected, "killed mid-stream: some correlations were still to come"
        await feed(alerts[60:])
        second = await start()
    finally:
        if first.returncode is None:
            first.kill()
            await first.wait()
    try:

        async def all_found() -> list[AlertCorrelated] | None:
            found = await correlations_between(kafka, codec, mine)
            return found if {c.correlation_id for c in found} >= expected else None

        found = await eventually(all_found, within_s=120)
        # What a scrape shows once it has caught up: correlations counted, the index's size, no lag.
        lag = re.compile(r'^rctc_correlator_lag\{[^}]*topic="alerts.enriched"[^}]*\} (\S+)$', re.MULTILINE)

        scraped = [""]

        async def caught_up() -> str | None:
            async with aiohttp.ClientSession() as http, http.get(f"http://127.0.0.1:{ops}/metrics") as r:
                scraped[0] = await r.text()
            lags = lag.findall(scraped[0])
            return scraped[0] if lags and all(float(v) == 0 for v in lags) else None

        try:
            metrics = await eventually(caught_up, within_s=30)
        except TimeoutError:
            raise AssertionError(f"lag of alerts.enriched: {lag.findall(scraped[0])}") from None
        second.send_signal(signal.SIGTERM)
        assert await asyncio.wait_for(second.wait(), 30) == 0, "a graceful stop exits 0"
    finally:
        if second.returncode is None:
            second.kill()
            await second.wait()

    assert expected == {c.correlation_id for c in found}, "no correlation missed, none invented"
    versions: dict[str, set[bytes]] = defaultdict(set)
    for c in found:
        versions[c.correlation_id].add(msgspec.json.encode(msgspec.structs.replace(c, found_at=utcnow().min)))
    assert all(len(v) == 1 for v in versions.values()), "a repeat is the same correlation under the same id"
    after_restart = [c for c in found if c.correlation_id not in before]
    crossing = {a.alert_id for a in alerts[:60]}
    assert any(c.a.alert_id in crossing and c.b.alert_id not in crossing for c in after_restart)
    assert re.search(r'^rctc_correlations_total\{kind="phone",outcome="found"\} [1-9]', metrics, re.MULTILINE)
    assert re.search(r"^rctc_correlator_index_values [1-9]", metrics, re.MULTILINE)


@pytest.mark.timeout(300)
async def test_partitions_moving_between_two_correlators_lose_no_correlation(
    kafka: KafkaSettings, codec: Codec, tmp_path: Path
) -> None:
    """Two correlators in one group, alerts arriving throughout: a second worker joins (the partitions are
    split), then the first is killed with SIGKILL (its partitions stay with the dead member until its session
    times out, then move to the survivor, which already holds the others). Every expected correlation is on
    the topic: no rebalance passes an alert or a sighting that was not handled."""
    principal = (await service_principals(kafka))["correlator"]
    alerts, expected = small_world()
    mine = {a.alert_id for a in alerts}
    log = tmp_path / "correlators.log"

    async def start() -> tuple[asyncio.subprocess.Process, int]:
        ops = free_port()
        process = await start_service("correlator", principal, log_to=log, RCTC_OPS__PORT=str(ops))
        await eventually(lambda: serves_ready(ops), within_s=60)
        return process, ops

    async def feed(batch: list[AlertEnriched]) -> None:
        for a in batch:
            await produce_all(kafka, "test-feed", ALERTS_ENRICHED, [(a.alert_id.encode(), codec.encode(a))])
            await asyncio.sleep(0.05)

    await starts_after_the_backlog(kafka)
    processes: list[asyncio.subprocess.Process] = []
    try:
        first, _ = await start()
        processes.append(first)
        # Scenario: alerts arrive all along; a second worker joins (a rebalance splits the partitions), then the
        # first dies without leaving (a second rebalance, once its session is over, gives the survivor all).
        feeding = asyncio.create_task(feed(alerts[:45]))
        second, _ = await start()
        processes.append(second)
        await feeding
        feeding = asyncio.create_task(feed(alerts[45:]))
        await asyncio.sleep(1.0)
        first.send_signal(signal.SIGKILL)
        assert await first.wait() == -signal.SIGKILL
        await feeding

        async def all_found() -> set[str] | None:
            found = {c.correlation_id for c in await correlations_between(kafka, codec, mine)}
            return found if found >= expected else None

        try:
            found = await eventually(all_found, within_s=90)
        except TimeoutError:
            found = {c.correlation_id for c in await correlations_between(kafka, codec, mine)}
        assert second.returncode is None, "the survivor still runs"
    finally:
        for process in processes:
            if process.returncode is None:
                process.kill()
                await process.wait()
    assert expected == found, f"{len(expected - found)} of {len(expected)} correlations missed"


class Failing(Correlator):
    """A correlator with a bug that the sightings of one value trigger."""

    def __init__(self, settings: CorrelatorSettings, codec: Codec, poison: str) -> None:
        super().__init__(settings, codec)
        self.poison = poison.encode()

    async def record_sighting(self, event: Any) -> Any:
        if self.poison in (event.message.key or b""):
            raise RuntimeError("a bug meets a record")
        return await super().record_sighting(event)


async def test_an_unexpected_exception_stops_the_correlator_before_its_record_is_passed(
    kafka: KafkaSettings, codec: Codec
) -> None:
    """A handler that raises stops the service (its run fails), the stop is bounded although an event will
    never be acknowledged, and the next correlator handles that record: nothing was committed past it."""
    principal = (await service_principals(kafka))["correlator"]
    settings = CorrelatorSettings(kafka=principal, shutdown_timeout_s=15)
    _, phone = fresh_phone()
    x, y = (enriched_alert(o, [Indicator(type="phone", value=phone)], n) for n, o in enumerate(["IQ-P", "JO-Q"]))
    await starts_after_the_backlog(kafka)
    await produce_all(kafka, "test-feed", ALERTS_ENRICHED, [(a.alert_id.encode(), codec.encode(a)) for a in (x, y)])
    started = time.monotonic()
    with pytest.raises(RuntimeError, match="a bug meets a record"):
        async with running(Failing(settings, codec, poison=phone)) as task:
            await asyncio.wait_for(asyncio.shield(task), 45)
    assert time.monotonic() - started < 45 + settings.shutdown_timeout_s
    assert await correlations_between(kafka, codec, {x.alert_id, y.alert_id}) == []

    async with running(build(settings, codec)):
        found = await eventually(lambda: correlations_between(kafka, codec, {x.alert_id, y.alert_id}), within_s=45)
    assert {correlation_id(x.alert_id, y.alert_id, "phone", phone)} == {c.correlation_id for c in found}
