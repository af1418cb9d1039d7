"""The router's consume-transform-produce loop, exactly once into agency topics.

For each input partition the router keeps one transactional producer whose id is fixed by the partition
(`router-alerts.enriched-<n>`). A batch from that partition is routed inside one Kafka transaction that
holds every output record (agency copies, webhook requests, the decision) and the progress, so the outputs
and the progress commit together or not at all; agency consumers read committed records only.

The progress is the decision itself: each carries the offset of the input record it decided (routed_log.py),
and a new owner resumes after the last one. The consumed offsets go into the transaction as well only when
its last record decided nothing (rejected, or a repeat). Otherwise they are committed on their own every few
seconds, for lag monitoring: sending them in every transaction cost two more round trips to the group
coordinator before each commit, about a third of a transaction's time (docs/performance.md).

Kafka fences zombies by transactional id alone (aiokafka does not send the group generation), so when a
partition is assigned, its producer is created first (which aborts whatever a previous owner left open)
and only then is the consumer moved to the committed offset. On a fenced producer, a timeout or any other
producer error, the producer is recreated with the same id and the partition rewound to its committed
offset. A rebalance waits for the transaction in progress to finish before giving a partition up.

Anything else a partition's routing raises is a bug, not an outage: it stops the router (common/consume.py
`fail_fast`) with the batch it held neither routed nor counted as progress, so the next start routes it.
"""

from __future__ import annotations

import asyncio
import hashlib
import time
from collections import Counter, OrderedDict
from collections.abc import Awaitable, Callable
from datetime import datetime, timedelta
from typing import Any

import msgspec
from aiokafka import AIOKafkaConsumer, AIOKafkaProducer, ConsumerRecord, TopicPartition
from aiokafka.abc import ConsumerRebalanceListener
from aiokafka.errors import KafkaError

from services.common import tracing
from services.common.codec import Codec
from services.common.consume import fail_fast
from services.common.errors import CodecError, NotReadyError
from services.common.events import CONTENT_EVENTS, CORRELATED, ONWARD_EVENTS
from services.common.kafka import consumer, group_id, learn_topics, partitions_of, producer
from services.common.logs import get_logger
from services.common.metrics import BATCH_FAILURES, RECORD_SECONDS, RECORDS
from services.common.outputs import Outputs
from services.common.quarantine import Quarantine, noted
from services.common.records import (
    MAX_SCHEDULE_AHEAD,
    AlertCorrelated,
    AlertEnriched,
    AlertRejected,
    AlertRouted,
    AlertShared,
    OnwardAction,
    OnwardNotice,
    ResendRequested,
    RoutingDecision,
    SubmissionRejected,
    Urgency,
    recipient_key,
    utcnow,
)
from services.common.registry import RegistryView
from services.common.topics import (
    ALERTS_CORRELATED,
    ALERTS_ENRICHED,
    ALERTS_REJECTED,
    ALERTS_ROUTED,
    ALERTS_SCHEDULED,
    DELIVERIES_WEBHOOK,
    REQUESTS_ONWARD,
    REQUESTS_RESEND,
    agency_rejection_topic,
    agency_topic,
)
from services.router import correlation
from services.router.backlog import Backlog
from services.router.deadlines import ack_due
from services.router.onward import NOT_HOLDER, decide_step
from services.router.payload import RecipientCopies, notice, webhook_id, webhook_request
from services.router.policy import Refusal, Verdict, embargoed, fan_out
from services.router.refusals import told_agency
from services.router.resend import latest_versions, resend_plan, thread_of
from services.router.routed_log import ONWARD_OFFSET_HEADER, SOURCE_OFFSET_HEADER, RoutedLog
from services.router.schedule import releases_of, under_embargo
from services.router.settings import RouterSettings
from services.router.threads import Thread, advanced

log = get_logger("rctc.router")


class _Rebalance(ConsumerRebalanceListener):  # type: ignore[misc]
    def __init__(self, router: Router) -> None:
        self._router = router

    async def on_partitions_revoked(self, revoked: list[TopicPartition]) -> None:
        await self._router.release(revoked)

    async def on_partitions_assigned(self, assigned: list[TopicPartition]) -> None:
        await self._router.claim(assigned)


class _Follower:
    """A topic co-partitioned with alerts.enriched whose partition n the owner of alerts.enriched partition n
    reads and decides in n's transactions, committing its offsets there (requests.onward, alerts.correlated).

    The group is used only for those offsets: partitions are assigned here, never by the coordinator. `claims`:
    the input partition's claim number when each partition's position was last set, so a batch read before a
    later claim is dropped and read again. `logged`: where the routed log says reading resumes (None: not known).
    """

    def __init__(self, topic: str, reader: AIOKafkaConsumer, group: str, logged: Callable[[int], int | None]) -> None:
        self.topic = topic
        self.reader = reader
        self.group = group
        self.logged = logged
        self.claims: dict[int, int] = {}


class Router:
    name = "router"
    # A partition's backlog holds at most this many transactions' worth of records before it is paused.
    BACKLOG_TRANSACTIONS = 4
    # Versions kept read back (_latest_version): at most this many alerts of at most the record limit each.
    READ_BACK = 64
    # How long a correlation waits for its partition's routing to pass its horizon (_correlated_partition).
    CORRELATION_WAIT_S = 30.0

    def __init__(self, settings: RouterSettings, codec: Codec) -> None:
        self.settings = settings
        self.codec = codec
        self.registry = RegistryView(settings.kafka, codec, name="router")
        self.quarantine = Quarantine.standalone(settings.kafka, codec, "router")  # entry() only: no producer opened
        self._consumer: AIOKafkaConsumer | None = None
        self._log_reader: AIOKafkaConsumer | None = None
        self._routed: RoutedLog | None = None
        self._producers: dict[TopicPartition, AIOKafkaProducer] = {}
        self._group = group_id(settings.kafka, "router")
        # Held while a transaction is open, so a rebalance never revokes a partition mid-transaction.
        self._locks: dict[TopicPartition, asyncio.Lock] = {}
        # Bumped at every claim and every rewind of a partition: records fetched under an earlier number are
        # stale (the partition's position moved, so they are fetched again) and are dropped unrouted.
        self._claims: dict[TopicPartition, int] = {}
        # Partitions whose claim is in progress: paused until it ends.
        self._claiming: set[TopicPartition] = set()
        self._backlogs: dict[TopicPartition, Backlog[ConsumerRecord]] = {}
        # Routed positions (in the routed log) not yet committed as the group's offsets, and when each
        # partition's offset was last committed (see _commit_progress).
        self._uncommitted: dict[TopicPartition, int] = {}
        self._committed_at: dict[TopicPartition, float] = {}
        # Resend requests (router/resend.py): every one read, by id, and those each owned partition decided
        # since it was claimed (a claim decides them all again: the routed log tells which threads are done).
        self._requests_reader: AIOKafkaConsumer | None = None
        self._enriched_reader: AIOKafkaConsumer | None = None
        self._requests: dict[str, ResendRequested] = {}
        self._resent_here: dict[TopicPartition, set[str]] = {}
        # Onward sharing (router/onward.py) and correlations (router/correlation.py): requests.onward and
        # alerts.correlated partition n are read by the owner of alerts.enriched partition n (_Follower).
        self._onward: _Follower | None = None
        self._correlated: _Follower | None = None
        # Reads a thread's latest version back from alerts.enriched, for both; one partition at a time.
        self._onward_versions: AIOKafkaConsumer | None = None
        self._versions_lock = asyncio.Lock()
        # The versions read back lately, by (partition, offset): a record never changes, and correlations come in
        # runs about one pair of threads (one per value they share), each of which read the same two versions
        # back from the broker, batch after batch (red team: 900 correlations, 36 s of the router's work).
        self._read_back: OrderedDict[tuple[int, int], AlertEnriched] = OrderedDict()
        # Input offset after the last record of each partition whose routing committed (claims set it to where
        # they resume): a correlation is decided once its partition is routed past what alerts.enriched held
        # when it was read (`_correlated_partition`), by correlated partition: offset -> (horizon, first seen).
        self._through: dict[TopicPartition, int] = {}
        self._horizons: dict[int, dict[int, tuple[int, float]]] = {}

    async def start(self) -> None:
        horizon_h = MAX_SCHEDULE_AHEAD.total_seconds() / 3600
        if self.settings.dedup_window_hours <= horizon_h:
            # A router restarted later than the window after a thread's original would not know the thread and
            # would refuse its scheduled releases (router/schedule.py): allowed (tests shrink the window), said.
            log.warning(
                "router.window_shorter_than_schedules",
                dedup_window_hours=self.settings.dedup_window_hours,
                longest_schedule_hours=horizon_h,
            )
        await self.registry.start()
        reader = consumer(self.settings.kafka, "router-log", group=None)
        self._log_reader = reader  # kept before start, so stop() closes it even if start fails
        await reader.start()
        topics = (ALERTS_ENRICHED, ALERTS_ROUTED, ALERTS_SCHEDULED, REQUESTS_ONWARD, ALERTS_CORRELATED)
        counts = {t: len(await partitions_of(reader, [t])) for t in topics}
        if min(counts[ALERTS_ROUTED], counts[ALERTS_SCHEDULED]) < counts[ALERTS_ENRICHED]:
            raise NotReadyError(
                f"{ALERTS_ROUTED} and {ALERTS_SCHEDULED} need at least as many partitions as {ALERTS_ENRICHED} "
                f"({counts}): each input partition's decisions and releases go to the output partition of the "
                "same number"
            )
        for follower in (REQUESTS_ONWARD, ALERTS_CORRELATED):
            if counts[follower] != counts[ALERTS_ENRICHED]:
                raise NotReadyError(
                    f"{follower} needs as many partitions as {ALERTS_ENRICHED} ({counts}): its records are keyed "
                    "by a thread, so that partition n holds what is about partition n's threads"
                )
        self._routed = RoutedLog(reader, self.codec, self.settings.dedup_window_hours * 3600)
        requests = consumer(self.settings.kafka, "router-requests", group=None, follower=True)
        self._requests_reader = requests
        await requests.start()
        requests.assign(await partitions_of(requests, [REQUESTS_RESEND]))
        enriched = consumer(self.settings.kafka, "router-resend", group=None)
        self._enriched_reader = enriched
        await enriched.start()
        # Kept before each starts, so stop() closes it even if its start fails.
        self._onward = self._follower("router-onward", REQUESTS_ONWARD, self._routed.onward_offset)
        await self._onward.reader.start()
        # Phase 1 leaves nothing in the routed log: where alerts.correlated resumes is the group's offset only,
        # and phase 2 tells nobody twice however often a record is read again.
        self._correlated = self._follower("router-correlated", ALERTS_CORRELATED, lambda _: None)
        await self._correlated.reader.start()
        self._onward_versions = consumer(self.settings.kafka, "router-onward-versions", group=None)
        await self._onward_versions.start()
        self._consumer = consumer(
            self.settings.kafka, "router", ALERTS_ENRICHED, group="router", listener=_Rebalance(self)
        )
        await self._consumer.start()

    def _follower(self, name: str, topic: str, logged: Callable[[int], int | None]) -> _Follower:
        reader = consumer(self.settings.kafka, name, group=name, follower=True)
        return _Follower(topic, reader, group_id(self.settings.kafka, name), logged)

    async def run(self, stopping: asyncio.Event) -> None:
        async with asyncio.TaskGroup() as tasks:
            tasks.create_task(self.registry.run(stopping))
            tasks.create_task(self._route_loop(stopping))
            tasks.create_task(self._resend_loop(stopping))
            tasks.create_task(self._onward_loop(stopping))
            tasks.create_task(self._correlated_loop(stopping))

    async def stop(self) -> None:
        if self._consumer is not None:
            await self._consumer.stop()  # revokes every partition: release() closes their producers
        for p in list(self._producers.values()):
            await p.stop()
        self._producers.clear()
        followers = [f.reader for f in (self._onward, self._correlated) if f is not None]
        for reader in (self._onward_versions, *followers, self._enriched_reader, self._requests_reader):
            if reader is not None:
                await reader.stop()
        if self._log_reader is not None:
            await self._log_reader.stop()
        await self.registry.stop()

    def readiness(self) -> dict[str, bool]:
        return {
            "registry": self.registry.current.version > 0,
            "consumer": self._consumer is not None and bool(self._consumer.assignment()),
        }

    def _lock(self, tp: TopicPartition) -> asyncio.Lock:
        """Held while tp's transaction is open, so a rebalance never revokes a partition mid-transaction."""
        return self._locks.setdefault(tp, asyncio.Lock())

    async def claim(self, assigned: list[TopicPartition]) -> None:
        """Take over each assigned partition; none of its records is routed before its take-over is done.

        aiokafka hands out records of a new assignment while this listener still runs (fetched from its
        own idea of the position), so every assigned partition is paused at once, before the first await,
        and resumed only after its take-over has fenced the previous owner and moved to the routed position.
        A batch taken before the claim began carries the previous claim number and is dropped unrouted.
        """
        assert self._consumer is not None
        for tp in assigned:
            self._claims[tp] = self._claims.get(tp, 0) + 1
            self._backlog(tp).clear()
            self._resent_here.pop(tp, None)
        self._claiming.update(assigned)
        self._consumer.pause(*assigned)
        for tp in assigned:
            try:
                async with self._lock(tp):
                    await self._take_over(tp)
            finally:
                # Resumed even if the take-over failed: the first batch then retries it (_route_partition).
                self._claiming.discard(tp)
                self._pace(tp)

    async def release(self, revoked: list[TopicPartition]) -> None:
        for tp in revoked:
            async with self._lock(tp):
                await self._commit_progress(tp, due_only=False)
                self._uncommitted.pop(tp, None)
                self._committed_at.pop(tp, None)
                p = self._producers.pop(tp, None)
                if p is not None:
                    await p.stop()
                if self._routed is not None:
                    self._routed.forget(tp.partition)
                self._backlog(tp).clear()
                self._resent_here.pop(tp, None)
                self._through.pop(tp, None)
                self._horizons.pop(tp.partition, None)  # what waited is read again by the next owner

    async def _fresh_producer(self, tp: TopicPartition) -> AIOKafkaProducer:
        old = self._producers.pop(tp, None)
        if old is not None:
            await old.stop()
        p = producer(
            self.settings.kafka, f"router-{tp.partition}", transactional_id=f"router-{tp.topic}-{tp.partition}"
        )
        # Registered before it starts, so a shutdown that interrupts the start still closes it.
        self._producers[tp] = p
        try:
            await p.start()  # init_transactions: fences and aborts a predecessor's open transaction
        except BaseException:
            self._producers.pop(tp, None)
            await p.stop()
            raise
        return p

    async def _take_over(self, tp: TopicPartition) -> None:
        """Fence any predecessor, learn what the partition already routed, and resume after its last commit.

        The order matters: the fresh producer's init_transactions completes or aborts the predecessor's open
        transaction, so the routed log and the committed offset read afterwards are final.
        """
        assert self._routed is not None
        p = await self._fresh_producer(tp)
        agencies = [agency_topic(code) for code in self.registry.current.agencies]
        await learn_topics(
            p, [ALERTS_ROUTED, ALERTS_SCHEDULED, DELIVERIES_WEBHOOK, ALERTS_REJECTED, ALERTS_CORRELATED, *agencies]
        )
        known = await self._routed.load(tp.partition)
        committed, resume = await self._rewind(tp)
        self._through[tp] = resume or 0
        self._committed_at[tp] = time.monotonic()  # where the group's offset stands is the next commit's worry
        log.info(
            "router.partition_claimed",
            topic=tp.topic,
            partition=tp.partition,
            committed=committed,
            routed_in_window=known,
            resume_from=resume,
        )

    async def _rewind(self, tp: TopicPartition) -> tuple[int | None, int | None]:
        """Resume `tp` after the last routed record: the routed log's position, or the committed offset if it is
        ahead (a transaction whose last records decided nothing commits the offsets instead). Returns the
        committed offset and where it resumes (None: from the beginning).

        The committed offset alone would not do: it is written every few seconds (_commit_progress), and a
        committed-offset fetch right after a transaction commits can still answer the offset before it (seen
        with aiokafka against Kafka 4.1); the routed log, written in the same transactions, cannot lag.
        """
        assert self._consumer is not None and self._routed is not None
        committed = await self._consumer.committed(tp)
        candidates = [o for o in (committed, self._routed.next_offset(tp.partition)) if o]
        # From here on, records fetched before are stale (their backlog is dropped, see backlog.py).
        self._claims[tp] = self._claims.get(tp, 0) + 1
        if candidates:
            self._consumer.seek(tp, max(candidates))
            return committed, max(candidates)
        await self._consumer.seek_to_beginning(tp)
        return committed, None

    async def _route_loop(self, stopping: asyncio.Event) -> None:
        assert self._consumer is not None
        if not await self.registry.wait_until_published(stopping):
            return
        # Partitions have producers of their own, so each is routed on its own: while one partition's
        # transaction commits, the next batch of another is routed (bench/). Fetching goes on meanwhile:
        # what a partition receives while its transaction is open waits in its backlog, in order, and goes
        # into its next transaction.
        busy: dict[TopicPartition, asyncio.Task[None]] = {}
        # Each partition's drain is a task of this group. One that raises something unexpected (fail_fast
        # logs it) cancels the others (an open transaction aborts; its records are routed again later) and
        # this loop, and the group's error fails the router. The batch it held never reached the routed log
        # nor the group's offsets. Nothing routes on that partition after it: the group cancels this loop
        # and every task it holds from the failed task's done-callback, which runs before the first step of
        # any task created after the failure, and creates none once it is aborting.
        async with asyncio.TaskGroup() as drains:
            while not stopping.is_set():
                batches = await self._consumer.getmany(timeout_ms=250)
                for tp in list(self._uncommitted):
                    # An idle partition's last position. A busy one commits after its transactions
                    # (_route_partition), and one being claimed after the claim.
                    if tp not in busy and not self._lock(tp).locked() and self._commit_due(tp):
                        async with self._lock(tp):
                            await self._commit_progress(tp, due_only=True)
                for tp, records in batches.items():
                    self._backlog(tp).add(self._claims.get(tp, 0), records)
                    self._pace(tp)
                    if tp not in busy:
                        name = f"router.drain.{tp.partition}"
                        busy[tp] = drains.create_task(self._drain(tp, stopping, busy), name=name)
                        fail_fast(busy[tp], service=self.name)
            # Stopping: the group lets the transactions in progress end (the runner bounds how long).

    def _backlog(self, tp: TopicPartition) -> Backlog[ConsumerRecord]:
        return self._backlogs.setdefault(tp, Backlog())

    def _pace(self, tp: TopicPartition) -> None:
        """Pause `tp` while it is being claimed or its backlog is full (bounded memory), resume it otherwise."""
        assert self._consumer is not None
        if tp not in self._consumer.assignment():
            return
        full = len(self._backlog(tp)) >= self.BACKLOG_TRANSACTIONS * self.settings.max_batch
        if tp in self._claiming or full:
            self._consumer.pause(tp)
        elif tp in self._consumer.paused():
            self._consumer.resume(tp)

    async def _drain(
        self, tp: TopicPartition, stopping: asyncio.Event, busy: dict[TopicPartition, asyncio.Task[None]]
    ) -> None:
        """Route `tp`'s backlog, a transaction of up to max_batch records at a time, until it is empty."""
        delay = 0.05
        try:
            while (backlog := self._backlog(tp)) and not stopping.is_set():
                claim, records = backlog.take(self.settings.max_batch)
                if await self._route_partition(tp, records, claim):
                    delay = 0.05
                else:
                    # Failed and rewound: what waited was fetched under the previous claim number and is
                    # dropped as it comes. This partition waits (longer each time); the others go on.
                    await asyncio.sleep(delay)
                    delay = min(delay * 2, 10.0)
                self._pace(tp)
        finally:
            if busy.get(tp) is asyncio.current_task():
                del busy[tp]

    async def _route_partition(self, tp: TopicPartition, records: list[ConsumerRecord], claim: int) -> bool:
        started = time.perf_counter()
        lines: list[dict[str, Any]] = []
        async with self._lock(tp):
            assert self._consumer is not None
            if tp not in self._consumer.assignment() or self._claims.get(tp, 0) != claim:
                return True  # revoked (or re-claimed) while this batch was in hand: fetched again, routed then
            p = self._producers.get(tp)
            try:
                if p is None:  # an earlier recovery failed: try again, from the committed offset
                    await self._take_over(tp)
                    return False
                decided: dict[str, AlertRouted] = {}
                threads: dict[str, Thread] = {}
                outputs = Outputs()
                sources: dict[str, int] = {}  # the input offset of each version decided, by alert id
                for record in records:
                    lines.append(self._route_record(record, outputs, decided, threads, sources))
                next_offset = records[-1].offset + 1
                # The last record's decision carries its offset: the routed log then holds the progress.
                in_log = lines[-1]["outcome"] == "routed"
                async with p.transaction():
                    await outputs.write(p)
                    if not in_log:
                        await p.send_offsets_to_transaction({tp: next_offset}, self._group)
                assert self._routed is not None
                self._routed.add(tp.partition, list(decided.values()), next_offset, sources)
                self._through[tp] = next_offset
                if in_log:
                    self._uncommitted[tp] = next_offset
                else:
                    self._uncommitted.pop(tp, None)
                    self._committed_at[tp] = time.monotonic()
                # Here too, not only when idle: a partition that never empties its backlog would never be.
                await self._commit_progress(tp, due_only=True)
            except (KafkaError, TimeoutError, OSError) as exc:
                BATCH_FAILURES.labels(self.name, tp.topic).inc()
                log.warning(
                    "router.transaction_failed",
                    topic=tp.topic,
                    partition=tp.partition,
                    records=len(records),
                    error=repr(exc),
                    hint="is every agency topic created? run `rctc registry apply`",
                )
                await self._recover(tp)
                return False
        elapsed = time.perf_counter() - started
        for line in lines:
            event = line.pop("event")
            if (source := line.pop("quarantined", None)) is not None:
                noted(source, line["reason"], self.name)
            (log.warning if event == "alert.rejected" else log.info)(event, **line)
            RECORDS.labels(self.name, tp.topic, line["outcome"]).inc()
            RECORD_SECONDS.labels(self.name, tp.topic).observe(elapsed)
        return True

    async def _resend_loop(self, stopping: asyncio.Event) -> None:
        """Read resend requests as they come, and decide each for every partition this router owns."""
        assert self._requests_reader is not None
        if not await self.registry.wait_until_published(stopping):
            return
        while not stopping.is_set():
            for records in (await self._requests_reader.getmany(timeout_ms=500)).values():
                for record in records:
                    try:
                        request = self.codec.decode(record.value, ResendRequested)
                    except CodecError as exc:
                        noted(record, str(exc), self.name, written=False)  # only operators write the topic
                        continue
                    self._requests.setdefault(request.request_id, request)
            await self._resend_owned()

    async def _resend_owned(self) -> None:
        """Decide, on each owned partition, every request of the window it has not decided since its claim."""
        assert self._consumer is not None
        oldest = utcnow() - timedelta(hours=self.settings.dedup_window_hours)
        for tp in list(self._consumer.assignment()):
            done = self._resent_here.setdefault(tp, set())
            for request in list(self._requests.values()):
                if request.request_id in done or request.requested_at < oldest:
                    continue  # older than the routed log's window: which threads it decided is not known
                async with self._lock(tp):
                    if tp not in self._consumer.assignment() or tp in self._claiming or tp not in self._producers:
                        break  # revoked or being claimed: the claim decides it again
                    if not await self._resend_partition(tp, request):
                        break
                self._resent_here.setdefault(tp, set()).add(request.request_id)

    async def _resend_partition(self, tp: TopicPartition, request: ResendRequested) -> bool:
        """Decide `request` for the threads of `tp`'s partition, in one transaction (the caller holds its lock)."""
        assert self._routed is not None
        started = time.perf_counter()
        partition = tp.partition
        if self._routed.resent(partition, request.request_id):
            return True  # its decisions on this partition committed together, in one transaction: all are done
        context = {"request_id": request.request_id, "agency": request.agency, "partition": partition}
        try:
            versions = await self._versions(partition, request.since)
        except (KafkaError, TimeoutError, OSError) as exc:
            log.warning("resend.read_failed", error=repr(exc), **context)
            return False  # decided again at the next pass
        routed = self._routed
        latest = latest_versions(
            versions, lambda alert: routed.routed(partition, alert), since=request.since, until=request.requested_at
        )
        registry = self.registry.current
        done = routed.resent(partition, request.request_id)
        plan = resend_plan(request, latest, routed.threads(partition), registry, done)
        if isinstance(plan, str):
            log.warning("resend.refused", reason=plan, **context)
            return True
        outputs = Outputs()
        decisions = []
        for version, verdict in plan:
            root = thread_of(version)
            decision = self._copies(outputs, version, [verdict], thread=root, headers=[], request_id=request.request_id)
            outputs.add(ALERTS_ROUTED, self.codec.encode(decision), key=root.encode(), headers=[], partition=partition)
            decisions.append(decision)
        if decisions:
            p = self._producers[tp]
            try:
                async with p.transaction():
                    await outputs.write(p)
            except (KafkaError, TimeoutError, OSError) as exc:
                log.warning("resend.transaction_failed", error=repr(exc), **context)
                await self._recover(tp)
                return False
            routed.add_resent(partition, decisions)
        sent = [d.alert_id for d in decisions if d.decisions[0].event in CONTENT_EVENTS]
        withdrawn = [d.alert_id for d in decisions if d.decisions[0].delivered and d.alert_id not in sent]
        log.info(
            "resend.decided",
            outcome="decided",
            sent=sent,
            withdrawn=withdrawn,
            withheld=sum(1 for d in decisions if not d.decisions[0].delivered),
            registry_version=registry.version,
            duration_ms=round((time.perf_counter() - started) * 1000, 1),
            **context,
        )
        return True

    async def _onward_loop(self, stopping: asyncio.Event) -> None:
        """Decide the steps of onward sharing on requests.onward, each partition by the owner of the alerts.enriched
        partition of the same number, in that partition's transactions (router/onward.py)."""
        assert self._onward is not None
        await self._follow_loop(self._onward, self._onward_partition, stopping)

    async def _follow_loop(
        self,
        follower: _Follower,
        decide: Callable[[TopicPartition, TopicPartition, list[ConsumerRecord]], Awaitable[int | None]],
        stopping: asyncio.Event,
    ) -> None:
        """Read `follower`'s partitions of the alerts.enriched partitions this router owns, and hand each batch to
        `decide` under the partition's lock: it returns how many records it decided, in order (the rest are read
        again), or None when its transaction failed (the partition is read again from the committed offset)."""
        reader = follower.reader
        assert self._consumer is not None
        if not await self.registry.wait_until_published(stopping):
            return
        while not stopping.is_set():
            await self._follow_owned(follower)
            if not reader.assignment():
                await asyncio.sleep(0.5)
                continue
            waiting = False
            for ftp, records in (await reader.getmany(timeout_ms=500)).items():
                tp = TopicPartition(ALERTS_ENRICHED, ftp.partition)
                if ftp.partition not in follower.claims:
                    continue  # its position is not known yet (or is stale): read again once it is set
                async with self._lock(tp):
                    if follower.claims.get(ftp.partition) != self._claims.get(tp) or tp not in self._producers:
                        follower.claims.pop(ftp.partition, None)  # read before a claim: seek again
                        continue
                    done = await decide(tp, ftp, records)
                    if done is None:
                        follower.claims.pop(ftp.partition, None)
                    elif done < len(records):
                        reader.seek(ftp, records[done].offset)
                        waiting = True
            if waiting:
                await asyncio.sleep(0.2)  # records that wait for their partition's routing to catch up

    async def _follow_owned(self, follower: _Follower) -> None:
        """Read the follower's partitions whose alerts.enriched partition this router owns and has claimed, each
        from the offset the transactions that decided its records committed."""
        assert self._consumer is not None
        reader = follower.reader
        owned = {
            tp.partition
            for tp in self._consumer.assignment()
            if tp.topic == ALERTS_ENRICHED and tp in self._producers and tp not in self._claiming
        }
        wanted = {TopicPartition(follower.topic, n) for n in owned}
        if wanted != set(reader.assignment()):
            reader.assign(list(wanted))
            follower.claims.clear()  # a new assignment: every position is set again
        for otp in wanted:
            tp = TopicPartition(ALERTS_ENRICHED, otp.partition)
            if follower.claims.get(otp.partition) == self._claims.get(tp):
                continue
            async with self._lock(tp):
                try:
                    committed = await reader.committed(otp)
                except (KafkaError, TimeoutError, OSError) as exc:
                    # Not read from this partition until its position is known: tried again at the next pass.
                    log.warning(
                        "router.follower_position_unknown", topic=otp.topic, partition=otp.partition, error=repr(exc)
                    )
                    continue
                # The later of the group's offset and the routed log's (the group's expires after a quiet week).
                logged = follower.logged(otp.partition)
                resume = max((o for o in (committed, logged) if o is not None), default=None)
                if resume is None:
                    # Neither knows (a new deployment, or a partition quiet for longer than both keep): from
                    # the window's start, which is as far back as a thread is known, not the topic's (red team:
                    # a month of asks re-answered not_holder).
                    try:
                        resume = await self._window_start(reader, otp)
                    except (KafkaError, TimeoutError, OSError) as exc:
                        log.warning(
                            "router.follower_position_unknown",
                            topic=otp.topic,
                            partition=otp.partition,
                            error=repr(exc),
                        )
                        continue
                reader.seek(otp, resume)
                follower.claims[otp.partition] = self._claims.get(tp, 0)
                log.info(
                    "router.follower_positioned",
                    topic=otp.topic,
                    partition=otp.partition,
                    committed=committed,
                    logged=logged,
                    resume_from=resume,
                )

    async def _window_start(self, reader: AIOKafkaConsumer, otp: TopicPartition) -> int:
        """The first offset of `otp` within the de-duplication window (its end if none is)."""
        since = int((utcnow() - timedelta(hours=self.settings.dedup_window_hours)).timestamp() * 1000)
        # The end first: asked after a search that found nothing, it would pass a record written in between.
        end: int = (await reader.end_offsets([otp]))[otp]
        found = (await reader.offsets_for_times({otp: since})).get(otp)
        return found.offset if found is not None else end

    async def _onward_partition(
        self, tp: TopicPartition, otp: TopicPartition, records: list[ConsumerRecord]
    ) -> int | None:
        """Decide a batch of steps of one partition in its transaction, with their offsets (the caller holds the
        partition's lock). None when the transaction failed: the batch is read again from the committed offset."""
        assert self._routed is not None
        partition = tp.partition
        outputs = Outputs()
        decisions: list[AlertRouted] = []
        threads: dict[str, Thread] = {}  # as this batch's earlier steps left them
        lines: list[dict[str, Any]] = []
        try:
            for record in records:
                line = await self._onward_step(record, partition, outputs, decisions, threads)
                lines.append(line)
            p = self._producers[tp]
            async with p.transaction():
                await outputs.write(p)
                assert self._onward is not None
                await p.send_offsets_to_transaction({otp: records[-1].offset + 1}, self._onward.group)
        except (KafkaError, TimeoutError, OSError) as exc:
            log.warning("onward.transaction_failed", partition=partition, records=len(records), error=repr(exc))
            await self._recover(tp)
            return None
        self._routed.add_onward(partition, decisions, records[-1].offset + 1)
        for line in lines:
            (log.warning if line["outcome"] == "ignored" else log.info)(line.pop("event"), **line)
        return len(records)

    async def _onward_step(
        self,
        record: ConsumerRecord,
        partition: int,
        outputs: Outputs,
        decisions: list[AlertRouted],
        threads: dict[str, Thread],
    ) -> dict[str, Any]:
        """Add one step's outputs (router/onward.py) to the transaction; its log line."""
        assert self._routed is not None
        try:
            action = self.codec.decode(record.value, OnwardAction)
        except CodecError as exc:
            noted(record, str(exc), self.name, written=False)  # only the gateway writes the topic
            return {"event": "onward.unreadable", "outcome": "ignored", "reason": str(exc), "offset": record.offset}
        root = action.thread_id
        if self._routed.decided_action(partition, action.action_id):
            return {"event": "onward.duplicate", "outcome": "duplicate", "action_id": action.action_id}
        thread = threads.get(root) or self._routed.threads(partition).get(root)
        version = await self._latest_version(partition, root) if thread is not None else None
        registry = self.registry.current
        outcome = decide_step(action, thread, version, registry)
        context = {
            "request_id": action.request_id,
            "action": action.action,
            "agency": action.agency,
            "thread_id": root,
            "partition": partition,
        }
        if outcome.ignored is not None:
            return {"event": "onward.ignored", "outcome": "ignored", "reason": outcome.ignored, **context}
        headers: list[tuple[str, bytes]] = []
        if outcome.step is None or version is None:
            # An ask refused before the originator sees it: the asker is told by the thread id it named and a
            # code, nothing else (not the thread's latest version nor its originator: a stranger to the thread
            # gets what it would for one that does not exist), and nothing is recorded about the thread.
            for verdict in outcome.verdicts:
                shared = AlertShared(
                    alert_id=root,
                    recipient=verdict.agency,
                    origin="",
                    event_type=verdict.event,
                    agreement_id="",
                    thread_id=root,
                    shared_at=utcnow(),
                    priority=3,
                    reason=verdict.notice,
                    onward=outcome.notices.get(verdict.agency),
                )
                webhook = webhook_id(f"{root}:{action.action_id}", verdict.agency)
                self._deliver(outputs, shared, self.codec.encode(shared), root, "Expected", headers, webhook)
            code = outcome.verdicts[0].notice if outcome.verdicts else NOT_HOLDER
            return {"event": "onward.refused", "outcome": "refused", "code": code, **context}
        decision = self._copies(
            outputs,
            version,
            outcome.verdicts,
            thread=root,
            headers=headers,
            request_id=action.request_id,
            scope=action.action_id,
            onward=outcome.notices,
        )
        decision = msgspec.structs.replace(decision, onward=outcome.step)
        offset = [(ONWARD_OFFSET_HEADER, str(record.offset).encode())]
        outputs.add(
            ALERTS_ROUTED,
            self.codec.encode(decision),
            key=root.encode(),
            headers=[*headers, *offset],
            partition=partition,
        )
        decisions.append(decision)
        if (after := advanced(thread, decision)) is not None:
            threads[root] = after
        sent = [d.agency for d in decision.decisions if d.delivered]
        return {"event": "onward.decided", "outcome": outcome.step.state, "notified": sent, **context}

    async def _latest_version(self, partition: int, root: str) -> AlertEnriched | None:
        """The thread's latest routed version, read back from alerts.enriched (None if it is no longer there)."""
        assert self._routed is not None
        where = self._routed.latest_version(partition, root)
        if where is None:
            return None
        alert_id, offset = where
        cached = self._read_back.get((partition, offset))
        if cached is not None and cached.alert_id == alert_id:
            self._read_back.move_to_end((partition, offset))
            return cached
        async with self._versions_lock:  # one reader, for the onward and the correlation loops
            version = await self._read_version(partition, alert_id, offset)
        if version is not None:
            self._read_back[(partition, offset)] = version
            if len(self._read_back) > self.READ_BACK:
                self._read_back.popitem(last=False)
        return version

    async def _read_version(self, partition: int, alert_id: str, offset: int) -> AlertEnriched | None:
        assert self._onward_versions is not None
        reader = self._onward_versions
        tp = TopicPartition(ALERTS_ENRICHED, partition)
        reader.assign([tp])
        reader.seek(tp, offset)
        async with asyncio.timeout(RoutedLog.LOAD_TIMEOUT_S):
            while True:
                batch = (await reader.getmany(tp, timeout_ms=1000, max_records=1)).get(tp, [])
                if batch:
                    break
                if await reader.position(tp) >= (await reader.end_offsets([tp]))[tp]:
                    return None
        try:
            version = self.codec.decode(batch[0].value, AlertEnriched)
        except CodecError:
            return None
        return version if batch[0].offset == offset and version.alert_id == alert_id else None

    async def _correlated_loop(self, stopping: asyncio.Event) -> None:
        """Decide correlations on alerts.correlated (router/correlation.py), each phase by the owner of the
        partition of the thread it reads, in that partition's transactions."""
        assert self._correlated is not None
        await self._follow_loop(self._correlated, self._correlated_partition, stopping)

    async def _correlated_partition(
        self, tp: TopicPartition, ctp: TopicPartition, records: list[ConsumerRecord]
    ) -> int | None:
        """Decide, in `tp`'s transaction with their offsets, the records of the batch whose thread is routed far
        enough (the caller holds the partition's lock); how many that was, or None if the transaction failed.

        A correlation is found once its alerts are on alerts.enriched, and can reach here before the router has
        routed them: each record waits until routing has passed what alerts.enriched held when the record was
        first read (its horizon), so its thread is read as routed. A record whose horizon routing cannot reach
        while the partition is quiet (a transaction's marker ends it) is decided anyway after CORRELATION_WAIT_S.
        """
        assert self._routed is not None and self._correlated is not None
        partition = tp.partition
        horizons = self._horizons.setdefault(partition, {})
        now = time.monotonic()
        ready: list[ConsumerRecord] = []
        end: int | None = None
        for record in records:
            if record.offset not in horizons:
                if end is None:
                    end = (await self._correlated.reader.end_offsets([tp]))[tp]
                horizons[record.offset] = (end, now)
            horizon, seen = horizons[record.offset]
            if self._through.get(tp, 0) < horizon and now - seen < self.CORRELATION_WAIT_S:
                break
            ready.append(record)
        if not ready:
            return 0
        outputs = Outputs()
        decisions: list[AlertRouted] = []
        decided: set[str] = set()
        # Whom this batch told of a value of which pair of threads (correlation.py, PAIR_NOTICES).
        told: dict[tuple[str, str], Counter[str]] = {}
        # A thread's latest version, read once per batch: one alert correlates with many (a value shared by several
        # agencies, several values shared by one pair), and each correlation would read it back again. Beside
        # _read_back (across batches, by offset): this also remembers a version no longer there (None), and
        # holds every thread the batch touches however many that is.
        versions: dict[str, AlertEnriched | None] = {}
        lines = [
            await self._correlation(record, partition, outputs, decisions, (decided, told), versions)
            for record in ready
        ]
        next_offset = ready[-1].offset + 1
        try:
            p = self._producers[tp]
            async with p.transaction():
                await outputs.write(p)
                await p.send_offsets_to_transaction({ctp: next_offset}, self._correlated.group)
        except (KafkaError, TimeoutError, OSError) as exc:
            log.warning("correlation.transaction_failed", partition=partition, records=len(ready), error=repr(exc))
            await self._recover(tp)
            return None
        self._routed.add_correlations(partition, decisions, told)
        for record in ready:
            horizons.pop(record.offset, None)
        for line in lines:
            (log.warning if line["outcome"] == "ignored" else log.info)(line.pop("event"), **line)
            RECORDS.labels(self.name, ALERTS_CORRELATED, line["outcome"]).inc()
        return len(ready)

    async def _thread_version(
        self, partition: int, root: str, versions: dict[str, AlertEnriched | None]
    ) -> tuple[Thread | None, AlertEnriched | None]:
        """The thread as the routed log knows it and its latest routed version (None if either is unknown)."""
        assert self._routed is not None
        thread = self._routed.threads(partition).get(root)
        if thread is None:
            return None, None
        if root not in versions:
            versions[root] = await self._latest_version(partition, root)
        return thread, versions[root]

    async def _correlation(
        self,
        record: ConsumerRecord,
        partition: int,
        outputs: Outputs,
        decisions: list[AlertRouted],
        batch: tuple[set[str], dict[tuple[str, str], Counter[str]]],
        versions: dict[str, AlertEnriched | None],
    ) -> dict[str, Any]:
        """One phase of one correlation (router/correlation.py) added to the transaction; its log line. `batch`:
        the correlations this transaction decided already, and whom it told of a value of which pair."""
        assert self._routed is not None
        decided, told = batch
        try:
            found = self.codec.decode(record.value, AlertCorrelated)
        except CodecError as exc:
            noted(record, str(exc), self.name, written=False)  # only the correlator and the router write it
            return {
                "event": "correlation.unreadable",
                "outcome": "ignored",
                "reason": str(exc),
                "offset": record.offset,
            }
        context = {"correlation_id": found.correlation_id, "kind": found.kind, "partition": partition}
        registry = self.registry.current
        if found.candidates is None:
            thread, version = await self._thread_version(partition, found.a.thread_id, versions)
            second = correlation.first_phase(found, thread, version, registry)
            if second.candidates:  # nobody may be told of a: nothing for b's owner to decide
                outputs.add(ALERTS_CORRELATED, self.codec.encode(second), key=found.b.thread_id.encode(), headers=[])
            return {
                "event": "correlation.first_phase",
                "outcome": "candidates",
                "candidates": len(second.candidates or ()),
                **context,
            }
        if self._routed.decided_correlation(partition, found.correlation_id) or found.correlation_id in decided:
            return {"event": "correlation.duplicate", "outcome": "duplicate", **context}
        pair = correlation.pair_of(found)
        told_before = self._routed.pair_notices(partition, pair) + told.get(pair, Counter())
        if correlation.spent(found.candidates, told_before):
            # Every candidate was told of enough values of this pair: not read, not decided, nobody told (a
            # decision would tell nothing, and the budget is the router's memory, not the log's; correlation.py).
            decided.add(found.correlation_id)
            return {"event": "correlation.decided", "outcome": "pair_spent", "told": [], **context}
        side = found.b
        thread, version = await self._thread_version(partition, side.thread_id, versions)
        if version is None:
            return {"event": "correlation.decided", "outcome": "thread_unknown", "told": [], **context}
        if thread is None or not correlation.believed(side, thread, version):
            return {"event": "correlation.decided", "outcome": "not_the_threads", "told": [], **context}
        recipients = correlation.within_budget(correlation.told(found, thread, version, registry), told_before)
        if recipients:  # a pair nobody was told of takes no room
            told.setdefault(pair, Counter()).update(recipients)
        decision = self._copies(
            outputs,
            version,
            correlation.verdicts(registry, recipients),
            thread=side.thread_id,
            headers=[],
            scope=found.correlation_id,
            correlated=found,
        )
        decision = msgspec.structs.replace(decision, correlation_id=found.correlation_id)
        outputs.add(
            ALERTS_ROUTED, self.codec.encode(decision), key=side.thread_id.encode(), headers=[], partition=partition
        )
        decisions.append(decision)
        decided.add(found.correlation_id)
        return {"event": "correlation.decided", "outcome": "decided", "told": recipients, **context}

    async def _versions(self, partition: int, since: datetime) -> list[AlertEnriched]:
        """Every alert of an alerts.enriched partition from about `since` (the broker's record times), in order."""
        reader = self._enriched_reader
        assert reader is not None
        tp = TopicPartition(ALERTS_ENRICHED, partition)
        reader.assign([tp])
        found = await reader.offsets_for_times({tp: int(since.timestamp() * 1000)})
        end = (await reader.end_offsets([tp]))[tp]
        reader.seek(tp, found[tp].offset if found.get(tp) is not None else end)
        versions = []
        async with asyncio.timeout(RoutedLog.LOAD_TIMEOUT_S):
            while await reader.position(tp) < end:
                for records in (await reader.getmany(tp, timeout_ms=1000)).values():
                    for r in records:
                        try:
                            versions.append(self.codec.decode(r.value, AlertEnriched))
                        except CodecError:
                            continue  # its routing quarantined it: no version of any thread
        return versions

    def _commit_due(self, tp: TopicPartition) -> bool:
        return time.monotonic() - self._committed_at.get(tp, 0.0) >= self.settings.offset_commit_interval_s

    async def _commit_progress(self, tp: TopicPartition, *, due_only: bool) -> None:
        """Commit `tp`'s routed position as the group's offset (the caller holds its lock).

        Only for lag monitoring and as a fallback: routing resumes after the routed log's last decision, so a
        commit that fails (a rebalance, a broker away) is logged and left for the next one.
        """
        offset = self._uncommitted.get(tp)
        if offset is None or (due_only and not self._commit_due(tp)):
            return
        assert self._consumer is not None
        try:
            await self._consumer.commit({tp: offset})
        except (KafkaError, OSError, TimeoutError) as exc:
            log.warning("router.offset_commit_failed", topic=tp.topic, partition=tp.partition, error=repr(exc))
            return
        self._committed_at[tp] = time.monotonic()
        if self._uncommitted.get(tp) == offset:
            del self._uncommitted[tp]

    async def _recover(self, tp: TopicPartition) -> None:
        """Recreate the partition's producer with the same id and rewind to the committed offset."""
        try:
            # A commit that failed may still have happened: _take_over re-reads the log to know.
            await self._take_over(tp)
        except (KafkaError, TimeoutError, OSError) as exc:
            # The broker is still unreachable: forget the producer; the next batch for tp retries this.
            log.warning("router.recover_failed", partition=tp.partition, error=repr(exc))
            self._producers.pop(tp, None)

    def _route_record(
        self,
        record: ConsumerRecord,
        outputs: Outputs,
        decided: dict[str, AlertRouted],
        threads: dict[str, Thread],
        sources: dict[str, int],
    ) -> dict[str, Any]:
        """Add every output of one record to the transaction's outputs; return its log line.

        `decided` collects this transaction's decisions by alert id, so a repeat within the same batch is
        skipped; `threads` the threads they changed, so an Update later in the batch is decided against them.
        """
        traceparent = tracing.child_of(tracing.from_headers(record.headers))
        headers = tracing.headers_for(traceparent)
        key = record.key or b""
        context = {
            "alert_id": key.decode(errors="replace"),
            "partition": record.partition,
            "offset": record.offset,
            "trace_id": tracing.trace_id(traceparent),
        }
        try:
            enriched = self.codec.decode(record.value, AlertEnriched)
        except CodecError as exc:
            # Its raw bytes to records.quarantine and a rejection under its key, in this transaction, so
            # both are written exactly once and the offset moves past it with its neighbours' decisions.
            topic, entry_key, entry = self.quarantine.entry(record, str(exc), self.name)
            outputs.add(topic, entry, key=entry_key, headers=headers)
            refusal = Refusal("unreadable", f"unreadable record: {exc}")
            line = self._reject(outputs, key, headers, context, "unknown", refusal)
            return {**line, "quarantined": record}
        if enriched.alert.msg_type != "Alert" and not enriched.alert.references:
            # Decodable but not valid: a follow-up names its thread first in `references`.
            context["alert_id"] = enriched.alert_id
            refusal = Refusal("no_references", "follow-up without references")
            return self._reject(outputs, key, headers, context, enriched.origin, refusal, enriched)
        context["alert_id"] = enriched.alert_id
        assert self._routed is not None
        if self._routed.routed(record.partition, enriched.alert_id) or enriched.alert_id in decided:
            return {"event": "alert.duplicate", "outcome": "duplicate", "agency": enriched.origin, **context}

        registry = self.registry.current
        alert = enriched.alert
        root = alert.references[0] if alert.msg_type != "Alert" else enriched.alert_id
        thread = threads[root] if root in threads else self._routed.threads(record.partition).get(root)
        verdicts = fan_out(enriched, thread, registry)
        if isinstance(verdicts, str):
            return self._reject(outputs, key, headers, context, enriched.origin, verdicts, enriched)
        if (until := under_embargo(enriched)) is not None:
            verdicts = embargoed(verdicts, until)
        decision = self._copies(outputs, enriched, verdicts, thread=key.decode(), headers=headers)
        if enriched.scheduled_by is not None:
            decision = msgspec.structs.replace(decision, scheduled_by=enriched.scheduled_by)
        # The schedule beside the decision, on the partition of the same number: the tracker that owns this
        # alerts.routed partition issues its releases (tracker/releases.py).
        releases = releases_of(enriched, root, decision.routed_at)
        for release in releases:
            value, release_key = self.codec.encode(release), release.release_id.encode()
            outputs.add(ALERTS_SCHEDULED, value, key=release_key, headers=headers, partition=record.partition)
        if (after := advanced(thread, decision)) is not None:
            threads[root] = after
        # Same partition number as the input: the routed log of this partition is read back from it.
        source = [(SOURCE_OFFSET_HEADER, str(record.offset).encode())]
        outputs.add(
            ALERTS_ROUTED, self.codec.encode(decision), key=key, headers=[*headers, *source], partition=record.partition
        )
        decided[decision.alert_id] = decision
        sources[decision.alert_id] = record.offset
        recipients = [d.agency for d in decision.decisions if d.event in CONTENT_EVENTS]
        notified = [d.agency for d in decision.decisions if d.delivered and d.event not in CONTENT_EVENTS]
        return {
            "event": "alert.routed",
            "outcome": "routed",
            "agency": enriched.origin,
            "msg_type": alert.msg_type,
            "recipients": recipients,
            "notified": notified,
            "withheld": sum(1 for d in decision.decisions if not d.delivered and d.rule != "originator"),
            "embargoed_until": until.isoformat() if until is not None else None,
            "releases_scheduled": len(releases),
            "scheduled_by": enriched.scheduled_by,
            "registry_version": registry.version,
            **context,
        }

    def _copies(
        self,
        outputs: Outputs,
        enriched: AlertEnriched,
        verdicts: list[Verdict] | tuple[Verdict, ...],
        *,
        thread: str,
        headers: list[tuple[str, bytes]],
        request_id: str | None = None,
        scope: str | None = None,
        onward: dict[str, OnwardNotice] | None = None,
        correlated: AlertCorrelated | None = None,
    ) -> AlertRouted:
        """Each recipient's copy for its topic (and webhook), added to `outputs`; the decision that records it all.

        Per-recipient records are keyed by the thread (`<first alert id>:<agency>`), so an agency reads an
        alert and its updates in order. A resend's copies (`request_id`) get webhook ids of their own: the same
        version may have gone to the agency before as another event (content, then a withdrawal to resend, or
        the reverse), which a receiver de-duplicating on the id would drop. So do a step of onward sharing's
        (`scope`: the step's own id, as one request leads to several steps), whose onward.* notices carry
        `onward`'s body for their agency.
        """
        now = utcnow()
        alert = enriched.alert
        copies = RecipientCopies(enriched, now, self.codec)
        due: dict[str | None, datetime | None] = {}  # by agreement: recipients under one share a deadline
        decisions: list[RoutingDecision] = []
        for verdict in verdicts:
            channels: tuple[str, ...] = ()
            removed: list[str] = []
            digest = None
            if verdict.delivered:
                if verdict.event in CONTENT_EVENTS:
                    shared, encoded = copies.copy_for(verdict)
                else:
                    shared = notice(enriched, verdict, now)
                    if correlated is not None and verdict.event == CORRELATED:
                        shared = correlation.notice(correlated, enriched, verdict.agency, now)
                    if onward is not None and verdict.event in ONWARD_EVENTS:
                        # Named by the thread, not this version: the requester may not hold (or know of) the
                        # latest version, which may be under embargo or a narrowing it was never sent.
                        shared = msgspec.structs.replace(shared, alert_id=thread, onward=onward[verdict.agency])
                    encoded = self.codec.encode(shared)
                removed = shared.redacted_fields
                if verdict.awaits_ack and verdict.agreement_id not in due:
                    due[verdict.agreement_id] = self._ack_due(enriched, verdict, now)
                digest = hashlib.sha256(encoded).hexdigest()
                scoped = scope or request_id
                webhook = webhook_id(f"{enriched.alert_id}:{scoped}", verdict.agency) if scoped else None
                channels = self._deliver(outputs, shared, encoded, thread, alert.urgency, headers, webhook)
            decisions.append(
                RoutingDecision(
                    agency=verdict.agency,
                    delivered=verdict.delivered,
                    rule=verdict.rule,
                    reason=verdict.reason,
                    agreement_id=verdict.agreement_id,
                    redacted_fields=tuple(removed),
                    channels=channels,
                    copy_sha256=digest,
                    ack_due=due[verdict.agreement_id] if verdict.awaits_ack else None,
                    event=verdict.event or None,
                )
            )
        return AlertRouted(
            alert_id=enriched.alert_id,
            origin=enriched.origin,
            msg_type=alert.msg_type,
            references=tuple(alert.references),
            severity=alert.severity,
            urgency=alert.urgency,
            routed_at=now,
            registry_version=self.registry.current.version,
            decisions=tuple(decisions),
            request_id=request_id,
        )

    def _deliver(
        self,
        outputs: Outputs,
        shared: AlertShared,
        encoded: bytes,
        thread: str,
        urgency: Urgency,
        headers: list[tuple[str, bytes]],
        webhook: str | None,
    ) -> tuple[str, ...]:
        """`shared` to its agency's topic, and to its webhook if it has one (`webhook`: the id, if not the
        copy's own); the channels it went by."""
        rkey = recipient_key(thread, shared.recipient)
        outputs.add(agency_topic(shared.recipient), encoded, key=rkey, headers=headers)
        agency = self.registry.current.agencies.get(shared.recipient)
        if agency is None or agency.webhook is None:
            return ("kafka",)
        request = webhook_request(shared, urgency, shared.shared_at)
        if webhook is not None:
            request = msgspec.structs.replace(request, webhook_id=webhook)
        # Every webhook of a thread in one partition of deliveries.webhook, not one per recipient: a
        # transaction then touches (and marks at its commit) five partitions fewer (bench/).
        outputs.add(
            DELIVERIES_WEBHOOK, self.codec.encode(request), key=rkey, headers=headers, partition_by=thread.encode()
        )
        return ("kafka", "webhook")

    def _ack_due(self, enriched: AlertEnriched, verdict: Verdict, now: datetime) -> datetime | None:
        agreement = next((a for a in self.registry.current.agreements if a.id == verdict.agreement_id), None)
        alert = enriched.alert
        return ack_due(
            alert.msg_type,
            alert.severity,
            alert.urgency,
            agreement.ack_deadlines if agreement else {},
            now,
            self.settings.ack_deadline_scale,
        )

    def _reject(
        self,
        outputs: Outputs,
        key: bytes,
        headers: list[tuple[str, bytes]],
        context: dict[str, Any],
        origin: str,
        refusal: Refusal,
        enriched: AlertEnriched | None = None,
    ) -> dict[str, Any]:
        """The refusal for operators (the full reason) and, in the same transaction, for the agency that sent the
        version: only what router/refusals.py lets it be told, which reveals nothing of another's thread."""
        now = utcnow()
        told = told_agency(refusal.rule, scheduled=enriched is not None and enriched.scheduled_by is not None)
        rejected = AlertRejected(
            alert_id=context["alert_id"],
            origin=origin,
            stage="router",
            reason=str(refusal),
            rejected_at=now,
            error=told.error if told else None,
            message=told.message if told else None,
        )
        outputs.add(ALERTS_REJECTED, self.codec.encode(rejected), key=key, headers=headers)
        # Only to an agency the registry lists: another's rejections topic may not exist, and no one reads it.
        if told is not None and enriched is not None and origin in self.registry.current.agencies:
            rejection = SubmissionRejected(
                agency=origin,
                idempotency_key=enriched.idempotency_key,
                status=told.status,
                error=told.error,
                message=told.message,
                rejected_at=now,
                stage="router",
                alert_id=enriched.alert_id,
            )
            # Keyed like the gateway's refusals, by the submission's key; an HTTP one without a key by its id.
            rkey = (enriched.idempotency_key or enriched.alert_id).encode()
            outputs.add(agency_rejection_topic(origin), self.codec.encode(rejection), key=rkey, headers=headers)
        return {
            "event": "alert.rejected",
            "outcome": "rejected",
            "agency": origin,
            "reason": str(refusal),
            "rule": refusal.rule,
            "told": told.error if told else None,
            **context,
        }


def build(settings: RouterSettings, codec: Codec | None = None) -> Router:
    return Router(settings, codec or Codec.from_directory())
