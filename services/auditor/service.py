"""The auditor's loop: alerts.routed in, hash-chained AuditRecorded entries out, exactly once.

A hash chain has one writer, so the auditor runs as a single active replica with the fixed transactional
id `auditor`: a second replica's producer fences the first. Each batch of decisions becomes entries sealed
onto the chain's head and is committed with its input offsets in one transaction. On start, and after any
producer error, the producer is recreated first (which completes or aborts a predecessor's transaction)
and only then is the head read back from audit.events, so the chain continues from what was committed.
A decision that cannot be decoded goes to records.quarantine in the same transaction and the batch goes
on. A head that cannot be read stops the start: extending the chain from an older entry would fork it.
The router stays scaled by partitions; it never waits for the chain.
"""

from __future__ import annotations

import asyncio
import time
from datetime import datetime

from aiokafka import AIOKafkaConsumer, AIOKafkaProducer, ConsumerRecord, TopicPartition
from aiokafka.errors import KafkaError

from services.auditor.chain import seal
from services.auditor.settings import AuditorSettings
from services.common.codec import Codec
from services.common.errors import CodecError
from services.common.kafka import consumer, group_id, producer
from services.common.logs import get_logger
from services.common.metrics import BATCH_FAILURES, RECORDS
from services.common.quarantine import Quarantine, noted
from services.common.records import AlertRouted, AuditRecorded, utcnow
from services.common.topics import ALERTS_ROUTED, AUDIT_EVENTS

log = get_logger("rctc.auditor")
AUDIT_TP = TopicPartition(AUDIT_EVENTS, 0)


def entries_for(decision: AlertRouted, recorded_at: datetime) -> list[AuditRecorded]:
    """One unsealed entry per agency the decision covers."""
    return [
        AuditRecorded(
            recorded_at=recorded_at,
            kind="delivered" if d.delivered else "withheld",
            alert_id=decision.alert_id,
            msg_type=decision.msg_type,
            origin=decision.origin,
            agency=d.agency,
            rule=d.rule,
            reason=d.reason,
            agreement_id=d.agreement_id,
            redacted_fields=list(d.redacted_fields),
            copy_sha256=d.copy_sha256,
            registry_version=decision.registry_version,
            routed_at=decision.routed_at,
        )
        for d in decision.decisions
    ]


async def read_head(reader: AIOKafkaConsumer, codec: Codec) -> AuditRecorded | None:
    """The last committed entry of audit.events (None for an empty trail)."""
    reader.assign([AUDIT_TP])
    end = (await reader.end_offsets([AUDIT_TP]))[AUDIT_TP]
    if end == 0:
        return None
    # Transaction markers take offsets too: step back until a data record is found.
    head: AuditRecorded | None = None
    back = 1
    while head is None and back <= end:
        reader.seek(AUDIT_TP, end - back)
        async with asyncio.timeout(30):
            while await reader.position(AUDIT_TP) < end:
                for records in (await reader.getmany(AUDIT_TP, timeout_ms=1000)).values():
                    for r in records:
                        head = codec.decode(r.value, AuditRecorded)
        back *= 4
    return head


class Auditor:
    name = "auditor"

    def __init__(self, settings: AuditorSettings, codec: Codec) -> None:
        self.settings = settings
        self.codec = codec
        self._consumer: AIOKafkaConsumer | None = None
        self._reader: AIOKafkaConsumer | None = None
        self._producer: AIOKafkaProducer | None = None
        self._head: AuditRecorded | None = None
        self._group = group_id(settings.kafka, "auditor")
        self.quarantine = Quarantine.standalone(settings.kafka, codec, "auditor")  # entry() only: no producer opened

    async def start(self) -> None:
        self._reader = consumer(self.settings.kafka, "auditor-head", group=None)
        await self._reader.start()
        await self._take_over()
        # Nobody waits on the trail by the millisecond: fetches of 64 KB or half a second make a transaction
        # of dozens of decisions rather than one or two (about fifty a second at 80 alerts/s, each with its
        # markers and offset commit for the broker to write).
        self._consumer = consumer(
            self.settings.kafka, "auditor", ALERTS_ROUTED, group="auditor", follower=True, batch_bytes=64 * 1024
        )
        await self._consumer.start()

    async def _take_over(self) -> None:
        if self._producer is not None:
            await self._producer.stop()
        self._producer = producer(self.settings.kafka, "auditor", transactional_id="auditor")
        await self._producer.start()  # fences a predecessor and settles its open transaction
        assert self._reader is not None
        self._head = await read_head(self._reader, self.codec)
        log.info("audit.head", seq=self._head.seq if self._head else 0, hash=self._head.hash if self._head else None)

    async def run(self, stopping: asyncio.Event) -> None:
        assert self._consumer is not None
        backoff = 0.1
        while not stopping.is_set():
            batches = await self._consumer.getmany(timeout_ms=250, max_records=self.settings.max_batch)
            if not batches:
                continue
            if await self._record(batches):
                backoff = 0.1
            else:
                await asyncio.sleep(backoff)
                backoff = min(backoff * 2, 10.0)

    async def _record(self, batches: dict[TopicPartition, list[ConsumerRecord]]) -> bool:
        assert self._consumer is not None and self._producer is not None
        started = time.perf_counter()
        head = self._head
        count = 0
        refused: list[tuple[ConsumerRecord, str]] = []
        try:
            async with self._producer.transaction():
                now = utcnow()
                for records in batches.values():
                    for r in records:
                        try:
                            decision = self.codec.decode(r.value, AlertRouted)
                        except CodecError as exc:
                            # Set aside in this transaction: written exactly once, and the chain goes on.
                            topic, key, value = self.quarantine.entry(r, str(exc), self.name)
                            await self._producer.send(topic, value, key=key)
                            refused.append((r, str(exc)))
                            continue
                        for entry in entries_for(decision, now):
                            head = seal(entry, head)
                            await self._producer.send(
                                AUDIT_EVENTS, self.codec.encode(head), key=entry.alert_id.encode(), partition=0
                            )
                            count += 1
                offsets = {tp: records[-1].offset + 1 for tp, records in batches.items()}
                await self._producer.send_offsets_to_transaction(offsets, self._group)
        except (KafkaError, TimeoutError, OSError) as exc:
            BATCH_FAILURES.labels(self.name, ALERTS_ROUTED).inc()
            log.warning("audit.transaction_failed", error=repr(exc))
            try:
                await self._take_over()
                for tp in batches:
                    committed = await self._consumer.committed(tp)
                    if committed is None:
                        await self._consumer.seek_to_beginning(tp)
                    else:
                        self._consumer.seek(tp, committed)
            except (KafkaError, TimeoutError, OSError) as again:
                log.warning("audit.recover_failed", error=repr(again))
            return False
        self._head = head
        for r, reason in refused:
            noted(r, reason, self.name)
        RECORDS.labels(self.name, ALERTS_ROUTED, "recorded").inc(sum(len(r) for r in batches.values()) - len(refused))
        RECORDS.labels(self.name, ALERTS_ROUTED, "quarantined").inc(len(refused))
        log.info(
            "audit.recorded",
            entries=count,
            head_seq=head.seq if head else 0,
            duration_ms=round((time.perf_counter() - started) * 1000, 2),
        )
        return True

    async def stop(self) -> None:
        if self._consumer is not None:
            await self._consumer.stop()
        if self._producer is not None:
            await self._producer.stop()
        if self._reader is not None:
            await self._reader.stop()

    def readiness(self) -> dict[str, bool]:
        return {"consumer": self._consumer is not None and bool(self._consumer.assignment())}


def build(settings: AuditorSettings, codec: Codec | None = None) -> Auditor:
    return Auditor(settings, codec or Codec.from_directory())
