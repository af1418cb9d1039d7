"""Embargoes and scheduled downgrades on the real broker (issue 15).

An embargoed alert is decided and recorded at once and reaches nobody before its time, then every permitted
agency; a scheduled downgrade (RED to JO only, AMBER later) re-disseminates to the agencies newly permitted,
exactly once across restarts of the tracker (which issues it) and the router (which decides it); a later
version from the originator replaces the schedule, so what is left of it is refused, never sent.
"""

from __future__ import annotations

import asyncio
from collections import Counter
from datetime import datetime, timedelta
from typing import Any

import aiohttp

from services.common.codec import Codec
from services.common.kafka import read_to_end
from services.common.records import (
    AlertRejected,
    AlertRouted,
    AlertShared,
    AlertSubmitted,
    ReleaseIssued,
    utcnow,
)
from services.common.registry.publish import publish_registry
from services.common.settings import KafkaSettings
from services.common.topics import (
    ALERTS_REJECTED,
    ALERTS_ROUTED,
    ALERTS_SCHEDULED,
    ALERTS_SUBMITTED,
    agency_topic,
)
from services.router.schedule import release_id
from tests.support.system import System, system
from tests.support.world import Cast, agreement, alert_json, eventually, read_topic, registry


def iso(moment: datetime) -> str:
    return moment.isoformat().replace("+00:00", "Z")


class Scene:
    """IQ shares with JO up to RED and with SA up to AMBER; helpers to submit as IQ and read what happened."""

    def __init__(self, kafka: KafkaSettings, codec: Codec) -> None:
        self.kafka, self.codec = kafka, codec
        self.cast = Cast()
        self.iq = self.cast.agency("IQ-A", "IQ")
        self.jo = self.cast.agency("JO-B", "JO")
        self.sa = self.cast.agency("SA-C", "SA")

    async def publish(self) -> None:
        s = self.cast.suffix
        doc = registry(
            [self.iq, self.jo, self.sa],
            [
                agreement(f"IQJO-{s}", from_=[self.iq.code], to=[self.jo.code], max_tlp="RED"),
                agreement(f"IQSA-{s}", from_=[self.iq.code], to=[self.sa.code], max_tlp="AMBER"),
            ],
        )
        await publish_registry(self.kafka, self.codec, doc, source="embargo", replication_factor=1)

    async def submit(self, sys_: System, http: aiohttp.ClientSession, **fields: Any) -> str:
        body = alert_json(affected_countries=["IQ"], **fields)
        async with http.post(f"{sys_.url}/v1/alerts", json=body, headers=self.cast.bearer(self.iq.code)) as r:
            assert r.status == 202, await r.text()
            return str((await r.json())["alert_id"])

    async def red_to_jo_then_amber(self, sys_: System, http: aiohttp.ClientSession, after_s: float) -> str:
        """An alert at TLP:RED releasable to JO only, scheduled to go AMBER (to everyone permitted) later."""
        due = iso(utcnow() + timedelta(seconds=after_s))
        return await self.submit(
            sys_, http, tlp="RED", releasable_to=[self.jo.code], release=[{"at": due, "tlp": "AMBER"}]
        )

    async def decided(self, alert_id: str, within_s: float = 40) -> AlertRouted:
        async def found() -> AlertRouted | None:
            routed = await read_topic(self.kafka, self.codec, ALERTS_ROUTED, AlertRouted)
            return next((r for _, r in routed if r.alert_id == alert_id), None)

        result: AlertRouted = await eventually(found, within_s=within_s)
        return result

    async def copies(self, code: str) -> list[AlertShared]:
        records = read_to_end(self.kafka, agency_topic(code), name="embargo")
        return [self.codec.decode(r.value, AlertShared) async for r in records]

    async def counts(self, alert_id: str) -> tuple[int, int, int]:
        """How many decisions, submissions and issue markers exist for `alert_id` (a release's id)."""
        routed = await read_topic(self.kafka, self.codec, ALERTS_ROUTED, AlertRouted)
        submitted = await read_topic(self.kafka, self.codec, ALERTS_SUBMITTED, AlertSubmitted)
        issued: Counter[str] = Counter()
        async for r in read_to_end(self.kafka, ALERTS_SCHEDULED, name="embargo"):
            if self.codec.record_name(r.value) == "ReleaseIssued":
                issued[self.codec.decode(r.value, ReleaseIssued).release_id] += 1
        return (
            sum(1 for _, d in routed if d.alert_id == alert_id),
            sum(1 for _, s in submitted if s.alert_id == alert_id),
            issued[alert_id],
        )


def events(decision: AlertRouted) -> dict[str, str | None]:
    return {d.agency: d.event for d in decision.decisions if d.delivered}


async def test_an_embargoed_alert_reaches_nobody_before_its_time_and_every_permitted_agency_after(
    kafka: KafkaSettings, codec: Codec
) -> None:
    """Decided at once (each permitted agency recorded as embargoed, naming the time), nothing sent; at the
    time, the system's release sends every permitted agency its copy, none of it earlier."""
    scene = Scene(kafka, codec)
    await scene.publish()
    jo, sa = scene.jo.code, scene.sa.code
    async with system(kafka, codec) as sys_, aiohttp.ClientSession() as http:
        until = utcnow() + timedelta(seconds=8)
        original = await scene.submit(sys_, http, tlp="AMBER", embargo_until=iso(until))
        first = await scene.decided(original)
        rules = {d.agency: (d.delivered, d.rule, d.channels) for d in first.decisions if d.agency in (jo, sa)}
        assert {jo: (False, "embargoed", ()), sa: (False, "embargoed", ())} == rules
        assert all(until.isoformat() in d.reason for d in first.decisions if d.rule == "embargoed")
        # Routed, and nobody holds anything yet.
        assert (await scene.copies(jo), await scene.copies(sa)) == ([], [])

        release = await scene.decided(release_id(original, 0))
        assert (release.scheduled_by, release.routed_at >= until) == (original, True)
        assert {jo: "alert.created", sa: "alert.created"} == events(release)
        for code in (jo, sa):
            copies = await scene.copies(code)
            assert [(release.alert_id, "alert.created", original)] == [
                (c.alert_id, c.event_type, c.thread_id) for c in copies
            ]
            assert all(c.shared_at >= until for c in copies)


async def test_a_scheduled_downgrade_re_disseminates_exactly_once_across_restarts(
    kafka: KafkaSettings, codec: Codec
) -> None:
    """RED to JO only, AMBER at a set time: JO at once, SA only from the release; the tracker and the router
    restarted before it falls due and after it was issued, it is issued, decided and sent exactly once."""
    scene = Scene(kafka, codec)
    await scene.publish()
    jo, sa = scene.jo.code, scene.sa.code
    async with system(kafka, codec) as sys_, aiohttp.ClientSession() as http:
        due = utcnow() + timedelta(seconds=20)
        original = await scene.red_to_jo_then_amber(sys_, http, after_s=20)
        first = await scene.decided(original)
        assert {jo: "alert.created"} == events(first)
        assert next(d.rule for d in first.decisions if d.agency == sa) == "not_releasable"

        # Both restarted while the release is pending: the new tracker rebuilds it from alerts.scheduled.
        await sys_.restart_tracker()
        await sys_.restart_router()
        assert utcnow() < due - timedelta(seconds=1), "the restarts outlasted the schedule: lengthen it"
        downgrade = release_id(original, 1)
        second = await scene.decided(downgrade)
        assert {jo: "alert.updated", sa: "alert.created"} == events(second)
        assert (second.scheduled_by, second.routed_at >= due) == (original, True)

        # Restarted again after it was issued: nothing is issued, decided or sent twice. The new tracker has
        # claimed its partitions and read them, and had two chances to issue what it found due.
        await sys_.restart_tracker()
        await sys_.restart_router()
        await eventually(sys_.tracker.releases.settled, within_s=30)
        await asyncio.sleep(2 * sys_.tracker_settings.escalation_check_s + 2)
        assert await scene.counts(downgrade) == (1, 1, 1)
        assert [(original, "alert.created"), (downgrade, "alert.updated")] == [
            (c.alert_id, c.event_type) for c in await scene.copies(jo)
        ]
        sa_copies = await scene.copies(sa)
        assert [(downgrade, "alert.created", "AMBER")] == [
            (c.alert_id, c.event_type, c.alert.tlp if c.alert else None) for c in sa_copies
        ]


async def test_a_later_version_replaces_the_schedule_of_the_one_before(kafka: KafkaSettings, codec: Codec) -> None:
    """RED to JO with a downgrade to AMBER scheduled, then an Update that keeps it RED: the downgrade is
    refused when it falls due (recorded with why), and SA never receives anything."""
    scene = Scene(kafka, codec)
    await scene.publish()
    jo, sa = scene.jo.code, scene.sa.code
    async with system(kafka, codec) as sys_, aiohttp.ClientSession() as http:
        original = await scene.red_to_jo_then_amber(sys_, http, after_s=6)
        update = await scene.submit(
            sys_, http, msg_type="Update", references=[original], tlp="RED", releasable_to=[jo], title="still red"
        )
        assert {jo: "alert.updated"} == events(await scene.decided(update))
        downgrade = release_id(original, 1)

        async def refused() -> AlertRejected | None:
            rejected = await read_topic(kafka, codec, ALERTS_REJECTED, AlertRejected)
            return next((r for _, r in rejected if r.alert_id == downgrade), None)

        rejection = await eventually(refused, within_s=40)
        assert (rejection.stage, "replaced" in rejection.reason) == ("router", True)
        assert await scene.copies(sa) == []
