"""The hot path's Kafka client: librdkafka (confluent-kafka) behind the part of aiokafka's interface we use.

Why. At an alert's pace records travel one at a time, so what a service pays is per request, not per byte.
aiokafka does Kafka's protocol in Python: on these machines an acknowledged produce cost 370-400 us of CPU and
a record read at 40/s, one a fetch, 1.2 ms; librdkafka, which does protocol, TLS and retries in C on threads
of its own, behind this module: 210-240 us and 0.7-0.8 ms (`python -m bench.client_cost`). The enricher, one
fetch and one produce per alert, spent 23% less CPU on it, the gateway 20% (docs/performance.md).

What stays the same. `Producer` and `GroupConsumer` take the same settings as `services.common.kafka`'s
factories and speak to the services in aiokafka's terms (`ConsumerRecord`, `TopicPartition`, futures, and
errors that are `aiokafka.errors.KafkaError`), so `consume_batches`, `Outbox` and `Quarantine` work on
either client and the retry policy (`consume.RETRYABLE`) is unchanged:
- keyed records go where Kafka's rule puts them (`murmur2_random` is the Java client's murmur2, as
  `services/common/partitioner.py`; tests/integration/test_librdkafka.py holds the two equal on a broker);
- the producer is idempotent with acks=all and no linger, and a record's future resolves only once the
  broker has acknowledged it;
- the consumer reads committed records only, commits only what it is given, and joins the group with the
  same id and the same assignor (roundrobin) as an aiokafka member, so replicas on either client share it.

Pacing. A consumer given `pace` hands over of each partition only as many records as it allows, and holds the
partition back (paused, then read again from the first record not handed over) for the time it says: what
one writer floods a partition with makes way for the other partitions' records meanwhile. The gateway paces
each agency's topics at its rate limit (services/gateway/ratelimit.py).

Threads. A consumer's handle is not ours to call from two threads at once (confluent-kafka serialises its
calls), and librdkafka's blocking calls must not hold the event loop. Each consumer makes every call from
one worker thread of its own (a fetch waits there, not in the loop); a seek asked for meanwhile is applied
before the next fetch. A producer's `produce` is made from the loop (it only queues, and librdkafka takes it
from any thread); a thread of its own serves the delivery reports and hands every report of one poll to
the loop in one wake-up. Should that thread stop on an exception, every send waiting and every later one
fails with PollerFailed, which stops the service rather than leave it waiting for answers that cannot come.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import contextlib
import logging
import threading
import time
from collections.abc import Callable, Iterable, Sequence
from typing import Any

import confluent_kafka
from aiokafka import ConsumerRecord, TopicPartition
from aiokafka.errors import CommitFailedError, KafkaError
from prometheus_client import Counter

from services.common.errors import ConfigurationError
from services.common.logs import get_logger
from services.common.settings import KafkaSettings

log = get_logger(__name__)

CONSUME_ERRORS = Counter(
    "rctc_kafka_consume_errors_total",
    "Errors librdkafka handed over in place of a record, by consumer and error.",
    ["consumer", "error"],
)

# librdkafka's own lines (connection trouble, retries) go through `logging`, and so out in our JSON format.
_LIBRDKAFKA_LOG = logging.getLogger("librdkafka")

# Errors of a commit that mean "this member's generation is over" (a rebalance took the partitions): what
# aiokafka raises as CommitFailedError, which the loops log and drop (the new owner reads those records again).
_GENERATION_OVER = {
    confluent_kafka.KafkaError.ILLEGAL_GENERATION,
    confluent_kafka.KafkaError.UNKNOWN_MEMBER_ID,
    confluent_kafka.KafkaError.REBALANCE_IN_PROGRESS,
    confluent_kafka.KafkaError._ASSIGNMENT_LOST,
}


class PollerFailed(RuntimeError):
    """A producer's poller thread stopped on an exception: no delivery report reaches a future any more. Not a
    KafkaError on purpose: a loop would retry that for ever on a producer that can never answer; this stops the
    service (a bug, consume.py), and a restart makes a new producer."""


class LibrdkafkaError(KafkaError):  # type: ignore[misc]
    """An error librdkafka reported, as an aiokafka KafkaError so the services' retry policy applies to it."""

    def __init__(self, error: confluent_kafka.KafkaError) -> None:
        super().__init__(f"{error.name()}: {error.str()}")
        self.code = error.code()
        self.fatal = error.fatal()
        self.retriable = error.retriable() or not error.fatal()


def confluent_config(settings: KafkaSettings, name: str) -> dict[str, Any]:
    """librdkafka's configuration for the same connection `services.common.kafka.connection` makes."""
    config: dict[str, Any] = {
        "bootstrap.servers": settings.bootstrap_servers,
        "client.id": f"{settings.client_id_prefix}-{name}",
        "security.protocol": settings.security_protocol,
    }
    if settings.security_protocol == "PLAINTEXT":
        return config
    # The broker's certificate and its name are checked (librdkafka's defaults today, stated so that a change of
    # default cannot quietly weaken them), as aiokafka's create_ssl_context does.
    config["enable.ssl.certificate.verification"] = True
    config["ssl.endpoint.identification.algorithm"] = "https"
    if settings.ca_file is not None:
        config["ssl.ca.location"] = str(settings.ca_file)
    if settings.cert_file is not None and settings.key_file is not None:
        config["ssl.certificate.location"] = str(settings.cert_file)
        config["ssl.key.location"] = str(settings.key_file)
    if settings.security_protocol == "SASL_SSL":
        if not settings.username or settings.password is None:
            raise ConfigurationError("a SASL_SSL Kafka connection needs a principal (RCTC_KAFKA__USERNAME, ...)")
        config.update(
            {
                "sasl.mechanisms": settings.sasl_mechanism,
                "sasl.username": settings.username,
                "sasl.password": settings.password.get_secret_value(),
            }
        )
    return config


def _error(error: confluent_kafka.KafkaError) -> KafkaError:
    if error.code() in _GENERATION_OVER:
        return CommitFailedError(f"{error.name()}: {error.str()}")
    return LibrdkafkaError(error)


def _common(settings: KafkaSettings, name: str) -> dict[str, Any]:
    config = confluent_config(settings, name)
    config.update(
        {
            # Latency: librdkafka leaves Nagle's algorithm on by default, which holds small requests back.
            "socket.nagle.disable": True,
            "logger": _LIBRDKAFKA_LOG,
            "error_cb": _log_error,
        }
    )
    return config


def _log_error(error: confluent_kafka.KafkaError) -> None:
    # Transport errors are retried by librdkafka itself; a fatal one (a fenced idempotent producer) is not, and
    # every later send fails with it, which is where the services see it.
    log.warning("kafka.client_error", client="librdkafka", error=error.name(), detail=error.str(), fatal=error.fatal())


class Producer:
    """An idempotent producer (acks=all) with aiokafka's `send` / `send_and_wait` / `flush` / `partitions_for`."""

    def __init__(self, settings: KafkaSettings, name: str) -> None:
        self._config = _common(settings, name)
        self._config.update(
            {
                "enable.idempotence": True,
                "acks": "all",
                "linger.ms": settings.linger_ms,
                "batch.size": settings.max_batch_bytes,
                "compression.type": settings.compression_type or "none",
                "request.timeout.ms": settings.request_timeout_ms,
                # A record not acknowledged within this fails its future, as aiokafka's request timeout does.
                "message.timeout.ms": settings.request_timeout_ms,
                "retry.backoff.ms": settings.retry_backoff_ms,
                "partitioner": "murmur2_random",
            }
        )
        self._producer: confluent_kafka.Producer | None = None
        self._loop: asyncio.AbstractEventLoop | None = None
        # Appended to by the delivery callbacks, which run in the poller thread only (flush() does not poll).
        self._reports: list[tuple[asyncio.Future[None], confluent_kafka.KafkaError | None]] = []
        self._unanswered: set[asyncio.Future[None]] = set()
        self._stopping = threading.Event()
        self._poller: threading.Thread | None = None
        self._failed: PollerFailed | None = None

    async def start(self) -> None:
        self._loop = asyncio.get_running_loop()
        self._producer = confluent_kafka.Producer(self._config)
        self._poller = threading.Thread(target=self._poll, name="librdkafka-producer", daemon=True)
        self._poller.start()

    async def stop(self) -> None:
        if self._producer is None:
            return
        await self.flush()
        self._stopping.set()
        if self._poller is not None:
            await asyncio.to_thread(self._poller.join)
        self._producer = None

    async def send(
        self,
        topic: str,
        value: bytes | None = None,
        key: bytes | None = None,
        headers: Sequence[tuple[str, bytes]] | None = None,
    ) -> asyncio.Future[None]:
        """Queue a record; the future resolves once the broker acknowledged it (or fails with a KafkaError)."""
        assert self._producer is not None and self._loop is not None, "start() first"
        if self._failed is not None:
            raise self._failed
        future: asyncio.Future[None] = self._loop.create_future()
        self._unanswered.add(future)
        future.add_done_callback(self._unanswered.discard)
        options: dict[str, Any] = {"on_delivery": lambda err, _msg: self._reports.append((future, err))}
        if headers:
            options["headers"] = list(headers)
        while True:
            try:
                self._producer.produce(topic, value, key, **options)
                return future
            except BufferError:
                # librdkafka's queue is full (the broker is slow or away): wait for room, as aiokafka's send does.
                await asyncio.sleep(0.01)
            except confluent_kafka.KafkaException as exc:
                raise _error(exc.args[0]) from None

    async def send_and_wait(self, topic: str, value: bytes | None = None, key: bytes | None = None, **kw: Any) -> None:
        await (await self.send(topic, value, key, **kw))

    async def flush(self) -> None:
        """Wait until every record queued so far has its answer from the broker (each answer is its future's:
        this raises none of them)."""
        if self._unanswered:
            await asyncio.wait(list(self._unanswered))

    async def partitions_for(self, topic: str) -> set[int]:
        """The topic's partitions, from the cluster's metadata (learn_topics warms the client with it)."""
        assert self._producer is not None
        producer = self._producer
        metadata = await asyncio.to_thread(producer.list_topics, topic, 5.0)
        found = metadata.topics.get(topic)
        if found is None or found.error is not None:
            raise LibrdkafkaError(found.error) if found is not None else KafkaError(f"no metadata for {topic}")
        return set(found.partitions)

    def _poll(self) -> None:
        assert self._producer is not None and self._loop is not None
        try:
            while not self._stopping.is_set():
                self._producer.poll(0.1)  # delivery reports are appended to _reports by the callbacks meanwhile
                if self._reports:
                    reports, self._reports = self._reports, []
                    self._loop.call_soon_threadsafe(_settle, reports)
        except Exception as exc:  # a callback raised (poll() re-raises it): without this thread nothing is answered
            log.error("kafka.poller_failed", client="librdkafka", error=repr(exc))
            self._failed = PollerFailed(f"the producer's poller stopped: {exc!r}")
            with contextlib.suppress(RuntimeError):  # the loop is closed: nothing waits any more
                self._loop.call_soon_threadsafe(self._fail_unanswered)

    def _fail_unanswered(self) -> None:
        assert self._failed is not None
        for future in list(self._unanswered):
            if not future.done():
                future.set_exception(self._failed)


def _settle(reports: Iterable[tuple[asyncio.Future[None], confluent_kafka.KafkaError | None]]) -> None:
    for future, error in reports:
        if future.done():
            continue
        if error is None:
            future.set_result(None)
        else:
            future.set_exception(_error(error))


# How many of the records a fetch brought of a partition may be handed over now, and if fewer, the seconds to
# hold the rest back (GroupConsumer's `pace`: an agency's records at its rate limit, services/gateway).
Pace = Callable[[TopicPartition, int], tuple[int, float]]


class GroupConsumer:
    """A consumer in a group, reading committed records, with aiokafka's `getmany` / `commit` / `seek` /
    `assignment`. Commits are explicit; nothing is committed automatically."""

    def __init__(
        self,
        settings: KafkaSettings,
        name: str,
        *topics: str,
        group: str,
        pattern: str | None = None,
        follower: bool = False,
        read_headers: bool = True,
        max_record_bytes: int | None = None,
        pace: Pace | None = None,
    ) -> None:
        # librdkafka takes a subscription that starts with "^" as a regular expression.
        assert pattern is None or pattern.startswith("^"), "a pattern must be anchored"
        self._topics = [pattern] if pattern is not None else list(topics)
        # Off for topics that others than our services write (an agency's submissions and acks): a header name
        # can be any bytes there, and on one that is not UTF-8 aiokafka raises at every fetch (the partition
        # never moves again) and confluent-kafka's headers() leaves the error pending, to be raised later at an
        # unrelated line (tests/integration/test_librdkafka.py). Their records are read without headers.
        self._read_headers = read_headers
        self._max_record_bytes = max_record_bytes
        # Held partitions (`pace`): the loop's, from the offset the hold starts at (a record of it at or past that
        # offset is not handed over until the worker has resumed it), and the worker's, paused until a time.
        self._pace = pace
        self._held: dict[TopicPartition, int] = {}
        self._holds: dict[TopicPartition, tuple[int, float]] = {}  # asked for by the loop, under the lock
        self._paused: dict[TopicPartition, tuple[int, float]] = {}  # worker only: (resume from, at monotonic time)
        self._released: set[TopicPartition] = set()  # worker only: resumed or revoked since the last fetch
        self._config = _common(settings, name)
        self._config.update(
            {
                "group.id": f"{settings.client_id_prefix}-{group}",
                "enable.auto.commit": False,
                "enable.auto.offset.store": False,
                "isolation.level": "read_committed",
                "auto.offset.reset": "earliest",
                "session.timeout.ms": settings.session_timeout_ms,
                # As services.common.kafka.consumer's: off the alert's path, an empty fetch may wait 500 ms.
                "fetch.wait.max.ms": 500 if follower else settings.fetch_max_wait_ms,
                # aiokafka's default assignor: replicas on either client can share the group.
                "partition.assignment.strategy": "roundrobin",
                # What librdkafka prefetches per partition, bounded: the records wait in memory until handled.
                "queued.max.messages.kbytes": 16 * 1024,
                # Pattern subscribers find newly created topics (a new agency's) within this time, as aiokafka's.
                "topic.metadata.refresh.interval.ms": 30_000,
            }
        )
        if max_record_bytes is not None:
            self._config.update(bounded_fetch(max_record_bytes))
        self._consumer: confluent_kafka.Consumer | None = None
        # Every call to the handle is made from this one thread.
        self._worker = concurrent.futures.ThreadPoolExecutor(max_workers=1, thread_name_prefix="librdkafka-consumer")
        self._assigned: frozenset[TopicPartition] = frozenset()
        # Seeks asked for from the loop, made by the worker before its next fetch.
        self._seeks: dict[TopicPartition, int] = {}
        self._lock = threading.Lock()
        self._errors = _ErrorLog(name)

    async def start(self) -> None:
        await self._call(self._open)

    def _open(self) -> None:
        self._consumer = confluent_kafka.Consumer(self._config)
        self._consumer.subscribe(self._topics, on_assign=self._on_assign, on_revoke=self._on_revoke)

    async def stop(self) -> None:
        if self._consumer is not None:
            consumer, self._consumer = self._consumer, None
            await self._call(consumer.close)  # leaves the group, so its partitions move at once
        self._worker.shutdown(wait=False)

    def assignment(self) -> frozenset[TopicPartition]:
        return self._assigned

    def seek(self, tp: TopicPartition, offset: int) -> None:
        """Fetch `tp` from `offset` next; applied before the next fetch (as aiokafka's seek is). Records of `tp`
        librdkafka fetched ahead are dropped by the seek, so none from before it is returned after it."""
        with self._lock:
            self._seeks[tp] = offset
        if tp in self._held:  # a rewind of a held partition: it resumes from the earlier offset
            self._held[tp] = min(self._held[tp], offset)

    async def getmany(self, timeout_ms: int = 0, max_records: int | None = None) -> dict[TopicPartition, list[Any]]:
        messages, released = await self._call(self._consume, max_records or 500, timeout_ms / 1000)
        for tp in released:
            self._held.pop(tp, None)
        batches: dict[TopicPartition, list[Any]] = {}
        for m in messages:
            error = m.error()
            if error is not None:
                if error.fatal():
                    raise _error(error)
                self._errors.seen(error, m.topic(), m.partition())
                continue
            tp = TopicPartition(m.topic(), m.partition())
            held_from = self._held.get(tp)
            if held_from is not None and m.offset() >= held_from:
                continue  # fetched before its pause took effect: read again from held_from when resumed
            batches.setdefault(tp, []).append(_record(m, self._read_headers, self._max_record_bytes))
        if self._pace is not None:
            for tp, records in batches.items():
                taken, wait_s = self._pace(tp, len(records))
                if taken < len(records):
                    self._hold(tp, records[taken].offset, wait_s)
                    del records[taken:]
        return {tp: records for tp, records in batches.items() if records}

    def _hold(self, tp: TopicPartition, offset: int, wait_s: float) -> None:
        """Hand over nothing of `tp` from `offset` on for `wait_s`: its partition is paused, so that what was
        fetched of it makes way for the other partitions' records, and then read again from `offset`."""
        self._held[tp] = offset
        with self._lock:
            self._holds[tp] = (offset, wait_s)

    async def commit(self, offsets: dict[TopicPartition, int]) -> None:
        listed = [confluent_kafka.TopicPartition(tp.topic, tp.partition, offset) for tp, offset in offsets.items()]
        await self._call(self._commit, listed)

    def _commit(self, listed: list[confluent_kafka.TopicPartition]) -> None:
        assert self._consumer is not None
        try:
            answered = self._consumer.commit(offsets=listed, asynchronous=False)
        except confluent_kafka.KafkaException as exc:
            raise _error(exc.args[0]) from None
        for tp in answered or []:
            if tp.error is not None:
                raise _error(tp.error)

    def _consume(self, count: int, timeout_s: float) -> tuple[list[confluent_kafka.Message], set[TopicPartition]]:
        """The messages ready (waiting up to `timeout_s` for one), and the held partitions released since the
        last call (resumed, or revoked: the new owner reads from the commit)."""
        assert self._consumer is not None
        now = time.monotonic()
        with self._lock:
            seeks, self._seeks = self._seeks, {}
            holds, self._holds = self._holds, {}
        for tp, (offset, wait_s) in holds.items():
            if tp in self._assigned:
                self._consumer.pause([_ctp(tp)])
                self._paused[tp] = (offset, now + wait_s)
            else:
                self._released.add(tp)
        for tp, offset in seeks.items():
            if tp in self._paused:  # applied when it resumes
                self._paused[tp] = (offset, self._paused[tp][1])
            elif tp in self._assigned:  # a rebalance in between took it: the new owner reads from the commit
                self._consumer.seek(_ctp(tp, offset))
        for tp, (offset, at) in list(self._paused.items()):
            if at <= now:
                # Resumed, then sought: librdkafka would go on after the last message it handed over, which
                # getmany dropped while the pause was taking effect.
                self._consumer.resume([_ctp(tp)])
                self._consumer.seek(_ctp(tp, offset))
                del self._paused[tp]
                self._released.add(tp)
        if self._paused:
            timeout_s = min(timeout_s, max(0.0, min(at for _, at in self._paused.values()) - now))
        # What is already here, without waiting; else wait for one record and take what came with it. (consume(n,
        # timeout) itself waits until it has n records or the time is up: 170 ms more per hop at 20 alerts/s.)
        ready: list[confluent_kafka.Message] = self._consumer.consume(count, 0)
        if not ready:
            first = self._consumer.poll(timeout_s)
            if first is not None:
                ready = [first, *self._consumer.consume(count - 1, 0)] if count > 1 else [first]
        released, self._released = self._released, set()
        return ready, released

    async def _call(self, fn: Any, *args: Any) -> Any:
        return await asyncio.get_running_loop().run_in_executor(self._worker, fn, *args)

    def _on_assign(self, consumer: Any, partitions: list[confluent_kafka.TopicPartition]) -> None:
        self._assigned = self._assigned | {TopicPartition(p.topic, p.partition) for p in partitions}
        consumer.assign(partitions)
        # librdkafka keeps a partition's pause across a rebalance: one held (`pace`) when its group rebalanced
        # would come back paused, with nothing here to resume it, and never be read again (red team).
        consumer.resume(partitions)

    def _on_revoke(self, consumer: Any, partitions: list[confluent_kafka.TopicPartition]) -> None:
        gone = {TopicPartition(p.topic, p.partition) for p in partitions}
        self._assigned = self._assigned - gone
        with self._lock:
            for tp in gone:
                self._seeks.pop(tp, None)
        held = gone & self._paused.keys()
        for tp in held:
            del self._paused[tp]
            self._released.add(tp)
        if held:
            consumer.resume([_ctp(tp) for tp in held])


def _ctp(tp: TopicPartition, offset: int | None = None) -> confluent_kafka.TopicPartition:
    if offset is None:
        return confluent_kafka.TopicPartition(tp.topic, tp.partition)
    return confluent_kafka.TopicPartition(tp.topic, tp.partition, offset)


class _ErrorLog:
    """The log line `kafka.consume_error` for an error librdkafka hands over in place of a record (a batch it
    cannot decompress, which it then fetches again and again; a topic the principal may not read): one line the
    first time an error comes from a partition, then at most one a minute with how many came meanwhile. A
    writer that can make the error at will (an agency, on its own topic) must not be able to flood the log."""

    EVERY_S = 60.0

    def __init__(self, consumer: str) -> None:
        self._consumer = consumer
        self._last: dict[tuple[str, str | None, int | None], tuple[float, int]] = {}

    def seen(self, error: confluent_kafka.KafkaError, topic: str | None, partition: int | None) -> None:
        CONSUME_ERRORS.labels(self._consumer, error.name()).inc()
        where = (error.name(), topic, partition)
        now = time.monotonic()
        logged_at, since = self._last.get(where, (-self.EVERY_S, 0))
        if now - logged_at < self.EVERY_S:
            self._last[where] = (logged_at, since + 1)
            return
        self._last[where] = (now, 0)
        log.warning(
            "kafka.consume_error",
            client="librdkafka",
            consumer=self._consumer,
            error=error.name(),
            detail=error.str(),
            topic=topic,
            partition=partition,
            repeated=since,
        )


def bounded_fetch(max_record_bytes: int) -> dict[str, Any]:
    """What a reader of topics others write (an agency's) asks of librdkafka, so that what it holds decompressed
    stays bounded whatever the writer did. The topic's max.message.bytes bounds a batch as written, compressed:
    a gzip batch of zeros within it inflates about a thousand times (260 KB to 270 MB), and neither client caps
    gzip (librdkafka refuses zstd and lz4 past receive.message.max.bytes, and fetches such a batch again and
    again: that partition stops there). So: a fetch brings at most one such batch (max_record_bytes, or the
    first batch whole if larger: KIP-74), and no partition is fetched again while more than 1 MiB of what it
    brought waits to be handed over. librdkafka rounds fetch.max.bytes up to its
    message.max.bytes, hence that one too."""
    limit = max(max_record_bytes, 1000)  # librdkafka's least message.max.bytes
    return {
        "fetch.max.bytes": limit,
        "max.partition.fetch.bytes": limit,
        "message.max.bytes": limit,
        "queued.max.messages.kbytes": 1024,
    }


def oversized(record: ConsumerRecord[bytes, bytes]) -> str | None:
    """The part ("key" or "value") of `record` that was larger than its reader's max_record_bytes, if one was:
    the reader hands it over empty, with its true size in serialized_key_size / serialized_value_size."""
    if record.serialized_key_size > len(record.key or b""):
        return "key"
    if record.serialized_value_size > len(record.value or b""):
        return "value"
    return None


def _record(m: confluent_kafka.Message, read_headers: bool, max_bytes: int | None) -> ConsumerRecord[bytes, bytes]:
    key, value = m.key(), m.value()
    key_size = len(key) if key is not None else -1
    value_size = len(value) if value is not None else -1
    # confluent-kafka has already copied both into Python; what is over max_bytes goes no further than here.
    if max_bytes is not None and key_size > max_bytes:
        key = b""
    if max_bytes is not None and value_size > max_bytes:
        value = b""
    timestamp_type, timestamp = m.timestamp()
    return ConsumerRecord(
        topic=m.topic(),
        partition=m.partition(),
        offset=m.offset(),
        timestamp=timestamp,
        timestamp_type=max(timestamp_type - 1, 0),  # librdkafka counts "not available" as 0, Kafka from 0
        key=key,
        value=value,
        checksum=None,
        serialized_key_size=key_size,
        serialized_value_size=value_size,
        headers=tuple(m.headers() or ()) if read_headers else (),
    )
