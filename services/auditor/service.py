"""The auditor's loop: alerts.routed in, hash-chained AuditRecorded entries out, exactly once.

A hash chain has one writer, so the auditor runs as a single active replica with the fixed transactional
id `auditor`: a second replica's producer fences the first. Each batch of decisions becomes entries sealed
onto the chain's head and is committed with its input offsets in one transaction. On start, and after any
producer error, the producer is recreated first (which completes or aborts a predecessor's transaction)
and only then is the head read back from audit.events, so the chain continues from what was committed.
A decision that cannot be decoded goes to records.quarantine in the same transaction and the batch goes
on. A head that cannot be read stops the start: extending the chain from an older entry would fork it.
The router stays scaled by partitions; it never waits for the chain.

Every transaction that moves the head also writes the head signed with the auditor's Ed25519 key to
audit.checkpoints (checkpoints.py), so no committed entry is ever unsigned, and before building on a head the
auditor checks it is the one it last signed: an entry somebody else appended stops it (`audit.unsigned_head`)
instead of being signed over.
"""

from __future__ import annotations

import asyncio
import time
from datetime import datetime
from typing import TypeVar

import msgspec
from aiokafka import AIOKafkaConsumer, AIOKafkaProducer, ConsumerRecord, TopicPartition
from aiokafka.errors import KafkaError

from services.auditor.chain import seal
from services.auditor.checkpoints import UnsignedHead, key_id, public_bytes, sign, start_check
from services.auditor.settings import AuditorSettings
from services.common.codec import Codec
from services.common.errors import CodecError
from services.common.kafka import consumer, group_id, producer
from services.common.logs import get_logger
from services.common.metrics import BATCH_FAILURES, RECORDS
from services.common.outputs import Outputs
from services.common.quarantine import Quarantine, noted
from services.common.records import AlertRouted, AuditCheckpointed, AuditRecorded, utcnow
from services.common.registry.model import Registry
from services.common.registry.publish import latest_published
from services.common.topics import ALERTS_ROUTED, AUDIT_CHECKPOINTS, AUDIT_EVENTS

log = get_logger("rctc.auditor")
AUDIT_TP = TopicPartition(AUDIT_EVENTS, 0)
CHECKPOINTS_TP = TopicPartition(AUDIT_CHECKPOINTS, 0)
CHECKPOINT_KEY = b"head"
T = TypeVar("T", bound=msgspec.Struct)


# The kinds of the entries of a decision about a correlation (an AlertRouted with correlation_id: who was sent
# alert.correlated). Not a copy of its alert_id (the later thread's latest version): kinds of their own, so that
# nothing reading the trail for copies (export.py) takes them for copies of that alert.
CORRELATION_KINDS = {True: "correlation_notified", False: "correlation_withheld"}


def entries_for(decision: AlertRouted, recorded_at: datetime) -> list[AuditRecorded]:
    """One unsealed entry per agency the decision covers."""
    kinds = CORRELATION_KINDS if decision.correlation_id is not None else {True: "delivered", False: "withheld"}
    return [
        AuditRecorded(
            recorded_at=recorded_at,
            kind=kinds[d.delivered],
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


async def read_last(reader: AIOKafkaConsumer, tp: TopicPartition, codec: Codec, kind: type[T]) -> tuple[int, T] | None:
    """The last committed record of a one-partition topic and its offset (None when it has none). A last
    record that is not a `kind` stops the start (UnsignedHead): only the auditor writes these topics."""
    reader.assign([tp])
    end = (await reader.end_offsets([tp]))[tp]
    if end == 0:
        return None
    # Transaction markers take offsets too: step back until a data record is found.
    last: ConsumerRecord | None = None
    back = 1
    while last is None and back <= 4 * end:
        reader.seek(tp, max(end - back, 0))
        async with asyncio.timeout(30):
            while await reader.position(tp) < end:
                for records in (await reader.getmany(tp, timeout_ms=1000)).values():
                    if records:
                        last = records[-1]
        back *= 4
    if last is None:
        return None
    try:
        return last.offset, codec.decode(last.value, kind)
    except CodecError as exc:
        raise UnsignedHead(
            f"the record at {tp.topic} offset {last.offset} is not an entry the auditor wrote: {exc}"
        ) from None


class Auditor:
    name = "auditor"

    def __init__(self, settings: AuditorSettings, codec: Codec) -> None:
        self.settings = settings
        self.codec = codec
        self._consumer: AIOKafkaConsumer | None = None
        self._reader: AIOKafkaConsumer | None = None
        self._producer: AIOKafkaProducer | None = None
        self._head: AuditRecorded | None = None
        self._key = settings.signing_key
        # The keys a last checkpoint may be signed with: this auditor's and the registry's (a rotation).
        self._trusted: dict[str, bytes] = {key_id(public_bytes(self._key)): public_bytes(self._key)}
        self._group = group_id(settings.kafka, "auditor")
        self.quarantine = Quarantine.standalone(settings.kafka, codec, "auditor")  # entry() only: no producer opened

    async def start(self) -> None:
        self._reader = consumer(self.settings.kafka, "auditor-head", group=None)
        await self._reader.start()
        await self._trust_registry_keys()
        await self._take_over(accept=self.settings.accept_unsigned_head)
        # Nobody waits on the trail by the millisecond: fetches of 64 KB or half a second make a transaction
        # of dozens of decisions rather than one or two (about fifty a second at 80 alerts/s, each with its
        # markers and offset commit for the broker to write).
        self._consumer = consumer(
            self.settings.kafka, "auditor", ALERTS_ROUTED, group="auditor", follower=True, batch_bytes=64 * 1024
        )
        await self._consumer.start()

    async def _trust_registry_keys(self) -> None:
        published = await latest_published(self.settings.kafka, self.codec)
        registered = Registry(published).audit_keys if published is not None else {}
        own = key_id(public_bytes(self._key))
        if registered.get(own) != public_bytes(self._key):
            # Checkpoints are still written, but `rctc audit verify` will name each one until the key is listed.
            log.warning("audit.key_unregistered", key_id=own, hint="add it to the registry's audit.public_keys")
        self._trusted.update({k: v for k, v in registered.items() if k != own})

    async def _take_over(self, accept: str | None = None) -> None:
        if self._producer is not None:
            await self._producer.stop()
        self._producer = producer(self.settings.kafka, "auditor", transactional_id="auditor")
        await self._producer.start()  # fences a predecessor and settles its open transaction
        assert self._reader is not None
        head = await read_last(self._reader, AUDIT_TP, self.codec, AuditRecorded)
        last = await read_last(self._reader, CHECKPOINTS_TP, self.codec, AuditCheckpointed)
        try:
            accepted_from = start_check(head, last, self._trusted, accept)
        except UnsignedHead as exc:
            log.error("audit.unsigned_head", error=str(exc))
            raise
        self._head = head[1] if head else None
        log.info("audit.head", seq=self._head.seq if self._head else 0, hash=self._head.hash if self._head else None)
        if accepted_from is not None and self._head is not None:
            # The operator's decision is itself signed and kept: verify reports these entries as accepted.
            checkpoint = sign(self._key, self._head, signed_at=utcnow(), accepted_from_seq=accepted_from)
            async with self._producer.transaction():
                await self._producer.send(
                    CHECKPOINTS_TP.topic, self.codec.encode(checkpoint), key=CHECKPOINT_KEY, partition=0
                )
            log.warning(
                "audit.unsigned_head_accepted", from_seq=accepted_from, seq=self._head.seq, hash=self._head.hash
            )

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
                # One ready batch per partition (services/common/outputs.py), not a send() per entry: ten
                # entries an alert, each a future and an append, were the auditor's largest cost (issue 19).
                outputs = Outputs()
                for records in batches.values():
                    for r in records:
                        try:
                            decision = self.codec.decode(r.value, AlertRouted)
                        except CodecError as exc:
                            # Set aside in this transaction: written exactly once, and the chain goes on.
                            topic, key, value = self.quarantine.entry(r, str(exc), self.name)
                            outputs.add(topic, value, key=key, headers=[])
                            refused.append((r, str(exc)))
                            continue
                        for entry in entries_for(decision, now):
                            head = seal(entry, head)
                            outputs.add(
                                AUDIT_EVENTS,
                                self.codec.encode(head),
                                key=entry.alert_id.encode(),
                                headers=[],
                                partition=0,
                            )
                            count += 1
                if count and head is not None:
                    # In the transaction that moves the head: it becomes visible signed, or not at all.
                    checkpoint = sign(self._key, head, signed_at=now)
                    outputs.add(
                        CHECKPOINTS_TP.topic, self.codec.encode(checkpoint), key=CHECKPOINT_KEY, headers=[], partition=0
                    )
                await outputs.write(self._producer)
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
