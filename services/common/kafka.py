"""Kafka clients set up the same way in every service.

- Producers are idempotent with acks=all: a retried send never duplicates and an acknowledged one survives
  a broker failure (with min.insync.replicas=2 in production).
- Consumers never auto-commit: a service commits only what it has fully handled (docs/architecture.md, Guarantees),
  and reads committed records only, so it never sees a router transaction that was aborted.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator, Awaitable, Callable, Iterable
from typing import Any, TypeAlias, TypeVar

import msgspec
from aiokafka import AIOKafkaConsumer, AIOKafkaProducer, ConsumerRecord, TopicPartition
from aiokafka.abc import ConsumerRebalanceListener
from aiokafka.admin import AIOKafkaAdminClient
from aiokafka.errors import KafkaError
from aiokafka.helpers import create_ssl_context
from aiokafka.producer import sender as aiokafka_sender

from services.common import librdkafka, tracing
from services.common.codec import Codec
from services.common.errors import CodecError, ConfigurationError, NotReadyError
from services.common.logs import get_logger
from services.common.outputs import GroupWriter
from services.common.partitioner import KeyPartitioner
from services.common.settings import KafkaSettings

log = get_logger(__name__)
T = TypeVar("T", bound=msgspec.Struct)


def connection(settings: KafkaSettings) -> dict[str, Any]:
    """How every client (producer, consumer, admin) reaches and authenticates to the brokers.

    Raises ConfigurationError, naming the settings to give, when SASL_SSL lacks a principal: a client must never
    try its luck without one (the broker would refuse it, after a timeout that says nothing).
    """
    options: dict[str, Any] = {
        "bootstrap_servers": settings.bootstrap_servers,
        "security_protocol": settings.security_protocol,
    }
    if settings.security_protocol == "PLAINTEXT":
        return options
    options["ssl_context"] = create_ssl_context(
        cafile=str(settings.ca_file) if settings.ca_file else None,
        certfile=str(settings.cert_file) if settings.cert_file else None,
        keyfile=str(settings.key_file) if settings.key_file else None,
    )
    if settings.security_protocol == "SASL_SSL":
        if not settings.username or settings.password is None:
            raise ConfigurationError(
                "a SASL_SSL Kafka connection needs a principal: set RCTC_KAFKA__USERNAME and "
                "RCTC_KAFKA__PASSWORD_FILE (or RCTC_KAFKA__PASSWORD)"
            )
        options.update(
            sasl_mechanism=settings.sasl_mechanism,
            sasl_plain_username=settings.username,
            sasl_plain_password=settings.password.get_secret_value(),
        )
    return options


def producer(settings: KafkaSettings, name: str, *, transactional_id: str | None = None) -> AIOKafkaProducer:
    """An idempotent producer (transactional when given an id, which implies idempotence)."""
    if transactional_id is not None:
        # aiokafka reads this module constant for each retry and offers no option for it (settings.py says
        # why 20 ms is too long); one value per process, as every producer of a service shares the settings.
        aiokafka_sender.BACKOFF_OVERRIDE = settings.concurrent_transactions_backoff_ms / 1000
    options: dict[str, Any] = {
        **connection(settings),
        "client_id": f"{settings.client_id_prefix}-{name}",
        "acks": "all",
        "enable_idempotence": True,
        "linger_ms": settings.linger_ms,
        "max_batch_size": settings.max_batch_bytes,
        "compression_type": settings.compression_type,
        "request_timeout_ms": settings.request_timeout_ms,
        "retry_backoff_ms": settings.retry_backoff_ms,
        "partitioner": KeyPartitioner(),
    }
    if transactional_id is not None:
        options["transactional_id"] = f"{settings.client_id_prefix}-{transactional_id}"
    return AIOKafkaProducer(**options)


# A plain producer or a group consumer on either client (hot_producer, hot_consumer): what Outbox, Quarantine,
# learn_topics and consume_batches take.
AnyProducer: TypeAlias = AIOKafkaProducer | librdkafka.Producer
AnyGroupConsumer: TypeAlias = AIOKafkaConsumer | librdkafka.GroupConsumer


def hot_producer(settings: KafkaSettings, name: str) -> AnyProducer:
    """A plain idempotent producer on the hot path's client (`KafkaSettings.hot_path_client`)."""
    if settings.hot_path_client == "librdkafka":
        return librdkafka.Producer(settings, name)
    return producer(settings, name)


def hot_consumer(settings: KafkaSettings, name: str, *topics: str, group: str) -> AnyGroupConsumer:
    """A group consumer of `topics` on the hot path's client, for `consume_batches` (no rebalance listener)."""
    if settings.hot_path_client == "librdkafka":
        return librdkafka.GroupConsumer(settings, name, *topics, group=group)
    return consumer(settings, name, *topics, group=group)


def consumer(
    settings: KafkaSettings,
    name: str,
    *topics: str,
    group: str | None,
    from_beginning: bool = True,
    listener: ConsumerRebalanceListener | None = None,
    pattern: str | None = None,
    follower: bool = False,
    batch_bytes: int = 1,
) -> AIOKafkaConsumer:
    """A consumer in `group` (None: no group, for readers that assign partitions themselves).

    A `follower` (configuration, retry tiers, bookkeeping off the alert's path) lets the broker hold its
    empty fetches for 500 ms: a short wait on every consumer cost the idle broker a third of a core.
    `batch_bytes` (fetch.min.bytes) lets the broker hold a fetch until that much has arrived (or the wait is
    over), for a reader that gains from large batches and loses nothing by waiting for them.
    """
    c = AIOKafkaConsumer(
        **connection(settings),
        client_id=f"{settings.client_id_prefix}-{name}",
        group_id=f"{settings.client_id_prefix}-{group}" if group else None,
        enable_auto_commit=False,
        isolation_level="read_committed",
        auto_offset_reset="earliest" if from_beginning else "latest",
        session_timeout_ms=settings.session_timeout_ms,
        max_poll_records=settings.max_poll_records,
        fetch_max_wait_ms=500 if follower else settings.fetch_max_wait_ms,
        fetch_min_bytes=batch_bytes,
        # Pattern subscribers find newly created topics (a new agency's) within this time.
        metadata_max_age_ms=30_000,
    )
    if pattern is not None:
        c.subscribe(pattern=pattern, listener=listener)
    elif topics:
        c.subscribe(list(topics), listener=listener)
    return c


async def learn_topics(p: AnyProducer, topics: Iterable[str], within_s: float = 5.0) -> None:
    """Fetch the partitions of the topics a producer is about to write to, before a record waits for them.

    aiokafka asks for a topic's metadata at the first send to it, one round trip after another, so the
    first alert after a start or a partition claim paid a dozen of them (the router's first copies took
    300 ms; bench/). Only an optimisation: a topic that does not answer is asked again at its first send.
    """
    with contextlib.suppress(KafkaError, TimeoutError):
        async with asyncio.timeout(within_s):
            # Side by side: aiokafka folds the waits into as few metadata requests as it can. A topic that
            # fails does not stop the others; the timeout cancels whatever is still waiting.
            await asyncio.gather(*(p.partitions_for(topic) for topic in topics), return_exceptions=True)


async def partitions_of(c: AIOKafkaConsumer, topics: Iterable[str]) -> list[TopicPartition]:
    """Every partition of `topics`, for readers that assign themselves instead of joining a group.

    aiokafka's `partitions_for_topic` answers only for topics already in the client's metadata, so ask the
    cluster (the same call `AIOKafkaConsumer.topics()` makes). A missing topic is an error: nothing here
    may depend on auto-creation.
    """
    cluster = await c._client.fetch_all_metadata()
    names = list(topics)
    missing = [t for t in names if cluster.partitions_for_topic(t) is None]
    if missing:
        raise NotReadyError(f"topics {', '.join(missing)} do not exist: run `rctc topics apply`")
    return [TopicPartition(t, p) for t in names for p in sorted(cluster.partitions_for_topic(t))]


def admin(settings: KafkaSettings, name: str) -> AIOKafkaAdminClient:
    """An admin client (topics; ACLs and SCRAM users need confluent-kafka's, which aiokafka lacks)."""
    return AIOKafkaAdminClient(**connection(settings), client_id=f"{settings.client_id_prefix}-{name}")


def group_id(settings: KafkaSettings, group: str) -> str:
    """The group id `consumer(group=...)` uses, for send_offsets_to_transaction."""
    return f"{settings.client_id_prefix}-{group}"


class Outbox:
    """Encodes records and hands them to a producer, keeping the delivery futures to await before a commit.

    Sending is split from awaiting so a batch of records is produced in one pipelined burst instead of one
    round trip per record.
    """

    def __init__(self, producer: AnyProducer, codec: Codec, writer: GroupWriter | None = None) -> None:
        self._producer = producer
        self._codec = codec
        # With a writer, records go out with other tasks' in ready batches (services/common/outputs.py).
        self._writer = writer
        self._pending: list[Any] = []

    async def send(self, topic: str, key: bytes, record: msgspec.Struct, traceparent: str) -> None:
        value, headers = self._codec.encode(record), tracing.headers_for(traceparent)
        if self._writer is not None:
            self._pending.append(self._writer.submit(topic, key, value, headers))
            return
        future = await self._producer.send(topic, value, key=key, headers=headers)
        self._pending.append(future)

    async def flush(self) -> None:
        """Wait until every record sent so far is acknowledged; raises the first delivery error."""
        pending, self._pending = self._pending, []
        # Every outcome retrieved, not only the first failure: the rest would be logged as never retrieved.
        for outcome in await asyncio.gather(*pending, return_exceptions=True):
            if isinstance(outcome, BaseException):
                raise outcome


def offsets_after(records: Iterable[ConsumerRecord]) -> dict[TopicPartition, int]:
    """The offsets to commit once `records` are handled: one past the last of each partition."""
    result: dict[TopicPartition, int] = {}
    for r in records:
        tp = TopicPartition(r.topic, r.partition)
        result[tp] = max(result.get(tp, 0), r.offset + 1)
    return result


async def produce_all(kafka: KafkaSettings, name: str, topic: str, items: Iterable[tuple[bytes, bytes | None]]) -> int:
    """Produce (key, value) pairs with a short-lived producer and wait for all of them; returns how many. A
    None value is a tombstone (on a compacted topic: the key's record is gone).

    For tools and one-off loads (replays, resends, the benchmark), not for services' hot paths.
    """
    p = producer(kafka, name)
    await p.start()
    count = 0
    try:
        for key, value in items:
            await p.send(topic, value, key=key)
            count += 1
        await p.flush()
    finally:
        await p.stop()
    return count


async def replay_from_beginning(
    c: AIOKafkaConsumer,
    partitions: list[TopicPartition],
    poll: Callable[[int], Awaitable[None]],
    *,
    first: Iterable[str] = (),
    since_ms: int | None = None,
) -> None:
    """Assign `partitions`, seek to their beginning and call `poll` until each is read to its current end.

    With `since_ms` (a time in ms since the epoch), from the first record at or after it instead: a follower
    that needs only recent history (the console's alert contents) need not read a month of the topic at start.

    How a follower (the registry view, endpoint states, the tracker) rebuilds its state before serving. The
    partitions of the `first` topics are read to their end before any other is fetched: the tracker reads
    every decision before the acks and deliveries that refer to them, which would otherwise arrive ahead of
    their alert by the thousand and overflow the bounded buffer that holds such early records. Several `first`
    topics are read one after another, in the order given: the tracker reads the summaries of the alerts it
    retired before their decisions, which it then skips instead of rebuilding.
    """
    c.assign(partitions)
    ends = await c.end_offsets(partitions)
    if since_ms is None:
        await c.seek_to_beginning(*partitions)
    else:
        found = await c.offsets_for_times({tp: since_ms for tp in partitions})
        for tp in partitions:
            # None: nothing that recent on the partition, so nothing of it to read before the end.
            c.seek(tp, found[tp].offset if found.get(tp) is not None else ends[tp])
    for topic in dict.fromkeys(first):
        leading = [tp for tp in partitions if tp.topic == topic]
        rest = [tp for tp in partitions if tp.topic != topic]
        if not leading or not rest:
            continue
        c.pause(*rest)
        for tp in leading:
            while await c.position(tp) < ends[tp]:
                await poll(500)
        c.resume(*rest)
    for tp, end in ends.items():
        while await c.position(tp) < end:
            await poll(500)


async def read_to_end(
    kafka: KafkaSettings, topic: str, *, name: str, progress: Callable[[int, int], None] | None = None
) -> AsyncIterator[ConsumerRecord]:
    """Every committed record of `topic` from its beginning up to its end when called, partition by partition.

    For tools and checks that read a whole topic once (audit verification, simulations, tests). `progress` is
    told (offsets read, offsets to read) after each batch: offsets, not records, as a transaction's markers and
    aborted records take offsets too.
    """
    c = consumer(kafka, name, group=None)
    await c.start()
    try:
        partitions = await partitions_of(c, [topic])
        c.assign(partitions)
        await c.seek_to_beginning(*partitions)
        starts = await c.beginning_offsets(partitions)
        ends = await c.end_offsets(partitions)
        total = sum(ends[tp] - starts[tp] for tp in partitions)
        done = 0
        if progress is not None:
            progress(0, total)
        for tp in partitions:
            async with asyncio.timeout(60):
                while await c.position(tp) < ends[tp]:
                    for records in (await c.getmany(tp, timeout_ms=500)).values():
                        for record in records:
                            yield record
                    if progress is not None:
                        progress(done + min(await c.position(tp), ends[tp]) - starts[tp], total)
            done += ends[tp] - starts[tp]
        if progress is not None:
            progress(total, total)
    finally:
        await c.stop()


async def read_decoded(
    kafka: KafkaSettings,
    codec: Codec,
    topic: str,
    into: type[T],
    *,
    name: str,
    progress: Callable[[int, int], None] | None = None,
) -> AsyncIterator[tuple[ConsumerRecord, T]]:
    """`read_to_end`'s records that decode as `into`, with their record. One that does not is logged
    (`record.unreadable`) and skipped: a tool reading a whole topic must not stop at a record the services
    have already set aside in records.quarantine."""
    async for record in read_to_end(kafka, topic, name=name, progress=progress):
        try:
            value = codec.decode(record.value, into)
        except CodecError as exc:
            log.warning(
                "record.unreadable", topic=topic, partition=record.partition, offset=record.offset, error=str(exc)
            )
            continue
        yield record, value


async def commit_at_end(kafka: KafkaSettings, group: str, topics: Iterable[str]) -> dict[TopicPartition, int]:
    """Commit `group`'s offsets at the current end of `topics` (`kafka-consumer-groups --reset-offsets
    --to-latest`): a service that then starts in that group reads only what arrives after. Returns them.

    For a group with no active member (the broker refuses a commit from outside a live generation), by a
    principal allowed the group; `group` is the full id (`group_id`, or a faust app's id). Tests and the
    benchmark start services on a broker that earlier steps left records on, which a group starting from
    the earliest offset would first work through.
    """
    c = AIOKafkaConsumer(
        **connection(kafka),
        client_id=f"{kafka.client_id_prefix}-commit-at-end",
        group_id=group,
        enable_auto_commit=False,
    )
    await c.start()
    try:
        partitions = await partitions_of(c, topics)
        c.assign(partitions)
        ends: dict[TopicPartition, int] = await c.end_offsets(partitions)
        await c.commit(ends)
        return ends
    finally:
        await c.stop()
