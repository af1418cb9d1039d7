"""The tracker: follows alerts.routed, deliveries.events, acks.submitted, alerts.escalations, alerts.rejected and
alerts.correlated (for the duty desk's view of correlations) from the beginning, folds them into a `Ledger`,
raises escalations for missed deadlines and reminds the recipients (escalation.py), and answers the gateway's
status queries on an internal HTTP API. It follows the registry only to know which agencies can still be
reminded.

Its state is derived from the topics alone, so a restart rebuilds it by reading them again and nothing is
committed. Every replica reads every partition and so answers any query itself. Raising escalations is
owned: replicas share the consumer group `tracker` on alerts.routed only to split its partitions, and a
replica raises escalations for the alerts whose decision is on a partition it owns, through a producer
whose transactional id is fixed by that partition (`tracker-escalations-<n>`). A new owner fences the old
one, then reads alerts.escalations to its end before it raises anything, so a rebalance neither doubles
nor drops an escalation. Scheduled releases (an embargo's end, a downgrade) are issued the same way, by
partitions of alerts.scheduled (releases.py).

What it holds does not grow for ever: every `retire_check_s` the ledger retires the alerts settled for longer
than `retention_s` (retention.py) and the tracker writes their summaries to the compacted alerts.retired. Each
replica retires from its own memory and writes what it retired (a summary is the same whoever writes it, and
the topic keeps one per alert); a replica reading one another wrote drops that alert too. At start the
summaries are read first, then the decisions: those of retired alerts, and the records about them, are skipped,
so a restart holds no more than the tracker held before it. A summary that failed to be written is written
again after a restart: the alert is rebuilt from its records and retired again.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Callable
from datetime import datetime, timedelta

from aiohttp import web
from aiokafka import AIOKafkaConsumer, AIOKafkaProducer, TopicPartition
from aiokafka.abc import ConsumerRebalanceListener
from aiokafka.errors import KafkaError
from prometheus_client import Counter, Gauge, Histogram

from services.common.codec import Codec
from services.common.errors import CodecError
from services.common.kafka import consumer, partitions_of, producer, replay_from_beginning
from services.common.logs import get_logger
from services.common.metrics import RECORDS
from services.common.ops import bound_port
from services.common.quarantine import Quarantine, noted
from services.common.records import (
    AckSubmitted,
    AlertCorrelated,
    AlertRejected,
    AlertRetired,
    AlertRouted,
    DeliveryAttempted,
    EscalationRaised,
    utcnow,
)
from services.common.registry import RegistryView
from services.common.topics import (
    ACKS_SUBMITTED,
    ALERTS_CORRELATED,
    ALERTS_ESCALATIONS,
    ALERTS_REJECTED,
    ALERTS_RETIRED,
    ALERTS_ROUTED,
    DELIVERIES_EVENTS,
)
from services.tracker.api import Answer, InternalApi
from services.tracker.escalation import escalation_for, writes_for
from services.tracker.releases import Releaser
from services.tracker.settings import TrackerSettings
from services.tracker.state import Ledger

log = get_logger("rctc.tracker")
# alerts.rejected: the versions refused before routing, whose originator asks about them (state.py);
# alerts.correlated: what the correlator found, for the duty desk (correlations.py); alerts.retired: what is
# kept of the alerts retired (retention.py).
TOPICS = (
    ALERTS_RETIRED,
    ALERTS_ROUTED,
    DELIVERIES_EVENTS,
    ACKS_SUBMITTED,
    ALERTS_ESCALATIONS,
    ALERTS_REJECTED,
    ALERTS_CORRELATED,
)

TIME_TO_ACK = Histogram(
    "rctc_time_to_ack_seconds",
    "From routing to acknowledgement.",
    ["severity", "agency"],
    buckets=(30, 60, 300, 900, 1800, 3600, 4 * 3600, 12 * 3600, 24 * 3600, 72 * 3600),
)
OUTSTANDING = Gauge("rctc_outstanding_acks", "Acknowledgements expected and not yet given.", ["agency"])
# A gauge of the ledger's own counts (it is pure, so it keeps them; this publishes them with the outstanding
# acks): a rising not_a_recipient is an agency acking what it never received, early_evicted a flood of acks for
# alerts that were never routed.
DROPPED = Gauge("rctc_tracker_records_dropped", "Ack and delivery records the tracker gave up, by reason.", ["reason"])
HELD = Gauge("rctc_tracker_held", "Entries the tracker's ledger holds, by structure (retention bounds them).", ["kind"])
RETIRED = Counter("rctc_tracker_retired_total", "Alerts the tracker retired to alerts.retired.")
ESCALATIONS = Counter("rctc_escalations_total", "Escalations raised, by kind and level.", ["kind", "level"])


class _Ownership(ConsumerRebalanceListener):  # type: ignore[misc]
    def __init__(self, tracker: Tracker) -> None:
        self._tracker = tracker

    async def on_partitions_revoked(self, revoked: list[TopicPartition]) -> None:
        await self._tracker.disown(revoked)

    async def on_partitions_assigned(self, assigned: list[TopicPartition]) -> None:
        await self._tracker.own(assigned)


class Tracker:
    name = "tracker"

    # How long a query about an unknown alert waits for the tracker to read what was routed until it was asked.
    READ_UP_TO_S = 2.0

    def __init__(self, settings: TrackerSettings, codec: Codec) -> None:
        self.settings = settings
        self.codec = codec
        self.ledger = Ledger(retention=timedelta(seconds=settings.retention_s))
        self._retirer: AIOKafkaProducer | None = None
        self._consumer: AIOKafkaConsumer | None = None
        self._runner: web.AppRunner | None = None
        self._caught_up = False
        self._owner: AIOKafkaConsumer | None = None
        self._escalators: dict[int, AIOKafkaProducer] = {}
        self._outstanding_agencies: set[str] = set()
        self._quarantine = Quarantine.standalone(settings.kafka, codec, "tracker")
        self.registry = RegistryView(settings.kafka, codec, name="tracker")
        self.port: int | None = None
        self.releases = Releaser(settings.kafka, codec, settings.escalation_check_s)

    async def start(self) -> None:
        # Read before anything is owned: reminders go only to agencies the registry lists (escalation.py).
        await self.registry.start()
        # Fetches of 64 KB or half a second: the tracker is bookkeeping, and waking for every delivery event
        # of every copy was most of its CPU (aiokafka decoding fetch responses for 24 partitions). A query that
        # finds nothing reads up to the end first (_answer), so no caller is told an alert was never routed.
        c = consumer(self.settings.kafka, "tracker", group=None, follower=True, batch_bytes=64 * 1024)
        self._consumer = c  # kept before start, so stop() closes it even if start fails
        await c.start()
        # The summaries first, then the decisions: an alert already retired is not rebuilt (retention.py).
        await replay_from_beginning(
            c, await partitions_of(c, TOPICS), self._poll, first=[ALERTS_RETIRED, ALERTS_ROUTED]
        )
        self._caught_up = True
        # Joins the ownership group only once caught up: it never owns a deadline whose escalation it has
        # not read yet.
        self._owner = consumer(
            self.settings.kafka,
            "tracker-owner",
            ALERTS_ROUTED,
            group="tracker",
            listener=_Ownership(self),
            follower=True,
        )
        await self._owner.start()
        self._retirer = producer(self.settings.kafka, "tracker-retired")
        await self._retirer.start()
        app = InternalApi(self.ledger, self._answer, self.settings.internal_token).app()
        self._runner = web.AppRunner(app, access_log=None)
        await self._runner.setup()
        await web.TCPSite(self._runner, self.settings.http.host, self.settings.http.port).start()
        self.port = bound_port(self._runner)
        await self.releases.start()

    async def run(self, stopping: asyncio.Event) -> None:
        async with asyncio.TaskGroup() as tasks:
            tasks.create_task(self._follow(stopping))
            tasks.create_task(self._keep_membership(stopping))
            tasks.create_task(self._escalate_loop(stopping))
            tasks.create_task(self._retire_loop(stopping))
            tasks.create_task(self.registry.run(stopping))
            tasks.create_task(self.releases.run(stopping))

    async def _keep_membership(self, stopping: asyncio.Event) -> None:
        """Poll the ownership consumer (its partitions are paused: it only holds them) to stay in the group."""
        assert self._owner is not None
        while not stopping.is_set():
            await self._owner.getmany(timeout_ms=500)

    async def own(self, assigned: list[TopicPartition]) -> None:
        assert self._owner is not None
        self._owner.pause(*assigned)
        for tp in assigned:
            await self._fresh_escalator(tp.partition)
        # The previous owner's last escalations are committed now (the fresh producers fenced it): read them.
        await self._caught_up_with(ALERTS_ESCALATIONS)

    async def disown(self, revoked: list[TopicPartition]) -> None:
        for tp in revoked:
            p = self._escalators.pop(tp.partition, None)
            if p is not None:
                await p.stop()

    async def _fresh_escalator(self, partition: int) -> None:
        old = self._escalators.pop(partition, None)
        if old is not None:
            await old.stop()
        p = producer(self.settings.kafka, f"tracker-{partition}", transactional_id=f"tracker-escalations-{partition}")
        try:
            await p.start()
        except BaseException:
            await p.stop()
            raise
        self._escalators[partition] = p

    async def _follow(self, stopping: asyncio.Event) -> None:
        while not stopping.is_set():
            await self._poll(250)

    async def _escalate_loop(self, stopping: asyncio.Event) -> None:
        while not stopping.is_set():
            try:
                await self._escalate(utcnow())
            except (KafkaError, TimeoutError) as exc:
                log.warning("escalation.failed", error=repr(exc))
                # The commit may have happened anyway: fence (which settles it), then read alerts.escalations
                # up to its end before deciding again, so an escalation is never raised twice.
                try:
                    for partition in list(self._escalators):
                        await self._fresh_escalator(partition)
                    await self._caught_up_with(ALERTS_ESCALATIONS)
                except (KafkaError, TimeoutError, OSError) as again:
                    log.warning("escalation.recover_failed", error=repr(again))
            self._count_outstanding()
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(stopping.wait(), self.settings.escalation_check_s)

    async def _escalate(self, now: datetime) -> None:
        owed = self.ledger.due(now, owned=set(self._escalators))
        if not owed:
            return
        listed = self.registry.current.agencies
        writes = {due: writes_for(due, now, listed) for due in owed}
        for partition in sorted({d.partition for d in owed}):
            escalator = self._escalators.get(partition)
            if escalator is None:
                continue  # revoked meanwhile: its new owner raises these
            async with escalator.transaction():
                for due in (d for d in owed if d.partition == partition):
                    for write in writes[due]:
                        await escalator.send(write.topic, self.codec.encode(write.record), key=write.key)
        for due in owed:
            self.ledger.apply_escalation(escalation_for(due, now))
            ESCALATIONS.labels("ack_deadline", str(due.level)).inc()
            event = "escalation.reminded" if due.level == 1 else "escalation.duty_desk"
            (log.warning if due.level == 1 else log.error)(
                event,
                alert_id=due.alert_id,
                agency=due.agency,
                origin=due.origin,
                level=due.level,
                deadline=due.deadline.isoformat(),
                reminded=[w.topic for w in writes[due][1:]],
            )

    async def _retire_loop(self, stopping: asyncio.Event) -> None:
        while not stopping.is_set():
            await self._retire(utcnow())
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(stopping.wait(), self.settings.retire_check_s)

    async def _retire(self, now: datetime) -> None:
        """Retire what is settled and old, and write the summaries (a failed write: the docstring)."""
        assert self._retirer is not None
        summaries = self.ledger.retire(now)
        if summaries:
            try:
                sent = [
                    await self._retirer.send(ALERTS_RETIRED, self.codec.encode(s), key=s.alert_id.encode())
                    for s in summaries
                ]
                await asyncio.gather(*sent)
            except (KafkaError, TimeoutError) as exc:
                log.warning("retire.unwritten", alerts=len(summaries), error=repr(exc))
            else:
                RETIRED.inc(len(summaries))
                log.info("alerts.retired", alerts=len(summaries), held=len(self.ledger.alerts))
        for kind, count in self.ledger.sizes().items():
            HELD.labels(kind).set(count)

    async def _caught_up_with(self, *topics: str) -> None:
        assert self._consumer is not None
        partitions = [tp for tp in self._consumer.assignment() if tp.topic in topics]
        ends = await self._consumer.end_offsets(partitions)
        async with asyncio.timeout(60):
            # Positions move as _follow reads; aiokafka offers nothing to wait on, so poll them.
            while any([await self._consumer.position(tp) < end for tp, end in ends.items()]):  # noqa: ASYNC110
                await asyncio.sleep(0.05)

    def _count_outstanding(self) -> None:
        counts = self.ledger.outstanding_counts()
        for agency in set(counts) | set(self._outstanding_agencies):
            OUTSTANDING.labels(agency).set(counts.get(agency, 0))
        self._outstanding_agencies = set(counts)
        for reason, count in self.ledger.dropped.items():
            DROPPED.labels(reason).set(count)

    async def stop(self) -> None:
        await self.releases.stop()
        if self._runner is not None:
            await self._runner.cleanup()
        if self._owner is not None:
            await self._owner.stop()  # leaves the group: another replica takes the partitions over
        for p in list(self._escalators.values()):
            await p.stop()
        self._escalators.clear()
        if self._retirer is not None:
            await self._retirer.stop()
        if self._consumer is not None:
            await self._consumer.stop()
        await self.registry.stop()
        await self._quarantine.close()

    def readiness(self) -> dict[str, bool]:
        return {"caught_up": self._caught_up, "http": self.port is not None}

    async def _poll(self, timeout_ms: int) -> None:
        assert self._consumer is not None
        batches = await self._consumer.getmany(timeout_ms=timeout_ms, max_records=1000)
        for tp, records in batches.items():
            for record in records:
                try:
                    self._apply(tp.topic, tp.partition, record.value)
                    RECORDS.labels(self.name, tp.topic, "applied").inc()
                except CodecError as exc:
                    RECORDS.labels(self.name, tp.topic, "quarantined").inc()
                    # Written only once caught up: the replay at every start would write it again
                    # (services/common/quarantine.py).
                    if self._caught_up:
                        await self._quarantine.put(record, str(exc), self.name, best_effort=True)
                    else:
                        noted(record, str(exc), self.name, written=False)

    def _apply(self, topic: str, partition: int, value: bytes) -> None:
        live = self._caught_up  # log and measure only what happens now, not the replay at start
        if topic == ALERTS_ROUTED:
            routed = self.codec.decode(value, AlertRouted)
            self.ledger.apply_routed(routed, partition)
            if live and routed.correlation_id is not None:
                log.info(
                    "correlation.notified",
                    correlation_id=routed.correlation_id,
                    alert_id=routed.alert_id,
                    notified=sorted(d.agency for d in routed.decisions if d.delivered),
                )
            elif live:
                log.info(
                    "alert.tracked",
                    alert_id=routed.alert_id,
                    agency=routed.origin,
                    recipients=sum(1 for d in routed.decisions if d.delivered),
                )
        elif topic == DELIVERIES_EVENTS:
            self.ledger.apply_attempt(self.codec.decode(value, DeliveryAttempted))
        elif topic == ALERTS_ESCALATIONS:
            self.ledger.apply_escalation(self.codec.decode(value, EscalationRaised))
        elif topic == ALERTS_REJECTED:
            self.ledger.apply_rejected(self.codec.decode(value, AlertRejected))
        elif topic == ALERTS_RETIRED:
            self.ledger.apply_retired(self.codec.decode(value, AlertRetired))
        elif topic == ALERTS_CORRELATED:
            self.ledger.apply_correlated(self.codec.decode(value, AlertCorrelated))
        else:
            ack = self.codec.decode(value, AckSubmitted)
            changed = self.ledger.apply_ack(ack)
            if live:
                alert = self.ledger.alerts.get(ack.alert_id)
                if changed and alert is not None:
                    TIME_TO_ACK.labels(alert.severity, ack.agency).observe(
                        (ack.submitted_at - alert.routed_at).total_seconds()
                    )
                log.info(
                    "ack.received",
                    alert_id=ack.alert_id,
                    agency=ack.agency,
                    response=ack.response,
                    channel=ack.channel,
                    outcome="applied" if changed else "ignored",
                )

    async def _answer(self, query: Callable[[], Answer]) -> Answer:
        """`query`'s answer; if it knows no such alert, its answer again once alerts.routed and alerts.rejected are
        read up to where they ended when asked (bounded by READ_UP_TO_S).

        The tracker reads in batches, up to half a second behind the router: an agency acknowledging the moment
        its webhook arrives must not be told that the alert was never routed.
        """
        status, body = query()
        if status != 404:
            return status, body
        with contextlib.suppress(TimeoutError):
            async with asyncio.timeout(self.READ_UP_TO_S):
                await self._caught_up_with(ALERTS_ROUTED, ALERTS_REJECTED)
        return query()


def build(settings: TrackerSettings, codec: Codec | None = None) -> Tracker:
    return Tracker(settings, codec or Codec.from_directory())
