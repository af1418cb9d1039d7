"""Issuing originators' scheduled releases (an embargo's end, a downgrade), exactly once across restarts.

The router writes a version's releases (ReleaseScheduled, router/schedule.py) to alerts.scheduled, on the
partition with the number of the version's alerts.routed partition, in the transaction that routes it. The
tracker issues them the way it raises escalations:

- replicas share the consumer group `tracker-releases` on alerts.scheduled, so each partition has one owner;
- a new owner first creates the partition's producer, whose transactional id is fixed by the partition
  (`tracker-releases-<n>`): that fences the previous owner and settles its open transaction; then it reads
  the partition from its beginning to its end, and only then issues anything from it. What is pending is
  what was scheduled and not issued (`Pending`);
- a release that falls due is issued in one transaction that writes its Update to alerts.submitted (key: the
  thread, so it reaches the router partition that knows the thread) and ReleaseIssued to alerts.scheduled.

So a restart or a rebalance neither issues a release twice nor drops one, and one that fell due while no
tracker ran is issued at once. Should a release ever reach the router twice, its alert id (the release id)
makes it a duplicate the router skips. The Update is marked `scheduled_by` the version that scheduled it;
only this module writes that field, and the router refuses it if the originator has sent a later version.
"""

from __future__ import annotations

import asyncio
from datetime import datetime

from aiokafka import AIOKafkaConsumer, AIOKafkaProducer, ConsumerRecord, TopicPartition
from aiokafka.abc import ConsumerRebalanceListener
from aiokafka.errors import KafkaError

from services.common.codec import Codec
from services.common.errors import CodecError
from services.common.kafka import consumer, producer
from services.common.logs import get_logger
from services.common.quarantine import noted
from services.common.records import AlertSubmitted, ReleaseIssued, ReleaseScheduled, utcnow
from services.common.settings import KafkaSettings
from services.common.topics import ALERTS_SCHEDULED, ALERTS_SUBMITTED

log = get_logger("rctc.tracker.releases")


class Pending:
    """What one partition of alerts.scheduled has scheduled and not issued, from its records in order. Pure."""

    def __init__(self) -> None:
        self.releases: dict[str, ReleaseScheduled] = {}
        self._issued: set[str] = set()

    def scheduled(self, release: ReleaseScheduled) -> None:
        if release.release_id not in self._issued:
            self.releases[release.release_id] = release

    def issued(self, release_id: str) -> None:
        self._issued.add(release_id)
        self.releases.pop(release_id, None)

    def due(self, now: datetime) -> list[ReleaseScheduled]:
        return sorted((r for r in self.releases.values() if r.due_at <= now), key=lambda r: (r.due_at, r.release_id))


def submission_of(release: ReleaseScheduled, now: datetime) -> AlertSubmitted:
    """The Update a release issues: from the originator, under the release's id, marked as the system's."""
    return AlertSubmitted(
        alert_id=release.release_id,
        origin=release.origin,
        submitted_at=now,
        scheduled_by=release.scheduled_by,
        alert=release.alert,
    )


class _Ownership(ConsumerRebalanceListener):  # type: ignore[misc]
    def __init__(self, releaser: Releaser) -> None:
        self._releaser = releaser

    async def on_partitions_revoked(self, revoked: list[TopicPartition]) -> None:
        await self._releaser.disown(revoked)

    async def on_partitions_assigned(self, assigned: list[TopicPartition]) -> None:
        await self._releaser.own(assigned)


class Releaser:
    """Owns partitions of alerts.scheduled and issues their releases when due (the module docstring)."""

    def __init__(self, kafka: KafkaSettings, codec: Codec, check_s: float) -> None:
        self._kafka = kafka
        self._codec = codec
        self._check_s = check_s
        self._consumer: AIOKafkaConsumer | None = None
        self._producers: dict[int, AIOKafkaProducer] = {}
        self._pending: dict[int, Pending] = {}
        # Where each owned partition ended when it was claimed: nothing is issued from it before it is read so far.
        self._read_to: dict[int, int] = {}
        # Held while a transaction is open, so a rebalance never takes a partition from under one.
        self._lock = asyncio.Lock()

    async def start(self) -> None:
        c = consumer(
            self._kafka,
            "tracker-releases",
            ALERTS_SCHEDULED,
            group="tracker-releases",
            listener=_Ownership(self),
            follower=True,
        )
        self._consumer = c  # kept before start, so stop() closes it even if start fails
        await c.start()

    async def stop(self) -> None:
        if self._consumer is not None:
            await self._consumer.stop()  # revokes every partition: disown() closes their producers
        for p in list(self._producers.values()):
            await p.stop()
        self._producers.clear()

    async def run(self, stopping: asyncio.Event) -> None:
        assert self._consumer is not None
        loop = asyncio.get_running_loop()
        checked = 0.0
        while not stopping.is_set():
            batches = await self._consumer.getmany(timeout_ms=250)
            for tp, records in batches.items():
                for record in records:
                    self._apply(tp.partition, record)
            if loop.time() - checked >= self._check_s:
                checked = loop.time()
                await self._issue_due(utcnow())

    async def settled(self) -> bool:
        """Whether it owns partitions and has read each to where it stood when claimed (tests wait on it)."""
        if self._consumer is None or not self._read_to:
            return False
        for partition, end in list(self._read_to.items()):
            if await self._consumer.position(TopicPartition(ALERTS_SCHEDULED, partition)) < end:
                return False
        return True

    async def own(self, assigned: list[TopicPartition]) -> None:
        async with self._lock:
            for tp in assigned:
                await self._reclaim(tp)  # a claim the broker refuses now is tried again at the next check

    async def disown(self, revoked: list[TopicPartition]) -> None:
        async with self._lock:
            for tp in revoked:
                self._pending.pop(tp.partition, None)
                self._read_to.pop(tp.partition, None)
                p = self._producers.pop(tp.partition, None)
                if p is not None:
                    await p.stop()

    async def _claim(self, tp: TopicPartition) -> None:
        """Fence the previous owner (a fresh producer with the partition's id), then read the partition again
        from its beginning: its end is read only after the fence, so it holds everything that owner issued."""
        assert self._consumer is not None
        old = self._producers.pop(tp.partition, None)
        if old is not None:
            await old.stop()
        name = f"tracker-releases-{tp.partition}"
        p = producer(self._kafka, name, transactional_id=name)
        try:
            await p.start()
        except BaseException:
            await p.stop()
            raise
        self._producers[tp.partition] = p
        self._pending[tp.partition] = Pending()
        await self._consumer.seek_to_beginning(tp)
        self._read_to[tp.partition] = (await self._consumer.end_offsets([tp]))[tp]

    async def _reclaim(self, tp: TopicPartition) -> None:
        """Claim `tp`; if the broker is away, leave it owned without a producer, which the next check retries."""
        try:
            await self._claim(tp)
        except (KafkaError, TimeoutError, OSError) as exc:
            # The broker is away: no producer, so the next check tries again and nothing is issued meanwhile.
            log.warning("release.recover_failed", partition=tp.partition, error=repr(exc))
            self._producers.pop(tp.partition, None)
            self._pending[tp.partition] = Pending()

    def _apply(self, partition: int, record: ConsumerRecord) -> None:
        pending = self._pending.get(partition)
        if pending is None:
            return  # revoked meanwhile
        try:
            if self._codec.record_name(record.value) == "ReleaseIssued":
                pending.issued(self._codec.decode(record.value, ReleaseIssued).release_id)
            else:
                pending.scheduled(self._codec.decode(record.value, ReleaseScheduled))
        except CodecError as exc:
            # Written by the router and this module alone; logged, and left where it is for an operator.
            noted(record, str(exc), "tracker", written=False)

    async def _issue_due(self, now: datetime) -> None:
        assert self._consumer is not None
        async with self._lock:
            for partition, pending in list(self._pending.items()):
                tp = TopicPartition(ALERTS_SCHEDULED, partition)
                if partition not in self._producers:
                    await self._reclaim(tp)  # an earlier recovery failed: try again
                    continue
                if await self._consumer.position(tp) < self._read_to.get(partition, 0):
                    continue  # not read up to where it stood when claimed: what it issued is not known yet
                due = pending.due(now)
                if due:
                    await self._issue(tp, pending, due, now)

    async def _issue(self, tp: TopicPartition, pending: Pending, due: list[ReleaseScheduled], now: datetime) -> None:
        p = self._producers[tp.partition]
        try:
            async with p.transaction():
                for release in due:
                    submitted = self._codec.encode(submission_of(release, now))
                    await p.send(ALERTS_SUBMITTED, submitted, key=release.thread_id.encode())
                    marker = ReleaseIssued(release_id=release.release_id, thread_id=release.thread_id, issued_at=now)
                    await p.send(
                        ALERTS_SCHEDULED,
                        self._codec.encode(marker),
                        key=release.release_id.encode(),
                        partition=tp.partition,
                    )
        except (KafkaError, TimeoutError) as exc:
            # The commit may have happened anyway: claim the partition again (fence, which settles it, then
            # read it to its end) before deciding anything more about it.
            log.warning("release.failed", partition=tp.partition, error=repr(exc))
            await self._reclaim(tp)
            return
        for release in due:
            pending.issued(release.release_id)
            log.info(
                "release.issued",
                alert_id=release.release_id,
                thread_id=release.thread_id,
                scheduled_by=release.scheduled_by,
                agency=release.origin,
                kind=release.kind,
                tlp=release.alert.tlp,
                due_at=release.due_at.isoformat(),
                late_s=round((now - release.due_at).total_seconds(), 3),
            )
