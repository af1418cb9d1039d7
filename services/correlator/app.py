"""The correlator's faust-streaming app: two agents and a table, wired to the handlers in service.py.

    alerts.enriched ──index_alerts──▶ correlator.sightings ──record_sightings──▶ alerts.correlated
     (key thread)      (one record       (key kind:value)      (the index: a table      (key a's thread)
                        per value)                              backed by correlator.index.changelog)

Faust as docs/architecture.md (Services) allows it beside the alert path: at least once, one event at a time per agent
(concurrency 1), never its exactly-once mode. What faust does not give, and this module adds:

- **An event is acknowledged only once every record its handling produced is on the broker** (the sightings,
  the index's changelog entry, the correlations, a quarantine entry). Faust acknowledges an event when the
  loop moves past it, even when its handler raised, and its commit flushes the producer without checking
  what failed; here the streams are `noack()` and an `Acker` acknowledges each event, in order, after its
  records' delivery. A failed delivery or an unexpected exception acknowledges nothing more, and the
  service stops (`failed`): faust's commit can never pass an event whose work is not done.
- **Faust counts only what an Acker acknowledged, never takes a record for read, and never empties an
  agent's queue** (`count_handled_only`). After every assignment faust's recovery resumes the stream
  partitions, seeks them to their committed offsets, then resumes flow control, which empties the agents'
  queues. Records fetched in between reached a queue and were emptied from it unhandled, while the
  consumer's read offset moved past them: fetched again after the seek they were dropped as already read;
  when the fetch in hand went on past the seek, the jump was taken for a gap in the log, counted as
  acknowledged and committed; and a record fetched after a seek that was a no-op (the position there
  already) was never fetched again, and faust, which commits past one missing offset, committed past it
  once the next was handled. A restarted correlator missed records that way: alerts never indexed,
  sightings never recorded. So the queues are never emptied (an event fetched before a rebalance is
  skipped by its stream, which compares generations), the read offset is never read back (a record read
  twice is handled twice, as a replay: same sightings, same correlation ids), and a stream's own
  acknowledgements of the events it skips are refused: they are fetched again after the seek and handled
  then. Our input topics have no transactional writer, so no gaps of control records for faust to count.
- **The index is written with its changelog entry's future in hand**: the table's store is set and its
  changelog sent by this module (`Index.put`), not by `table[key] = value`, which sends without returning
  what was sent. An entry's changelog partition is the partition its key has on correlator.sightings (the
  event's, or for the sweep the one Kafka's murmur2 rule gives the key): topics.yaml gives both topics the
  same number of partitions, and faust assigns partition n of both to the same worker.
- **Nothing is created**: `topic_allow_declare` is off (topics.yaml declares every topic, internal ones too),
  and so is faust's leader topic.
"""

from __future__ import annotations

import asyncio
import contextlib
import weakref
from collections.abc import Awaitable, Callable, Iterator, Sequence
from pathlib import Path
from typing import Any

import faust
from faust.types import EventT, StreamT

from services.common.kafka import admin as kafka_admin
from services.common.kafka import connection
from services.common.partitioner import KeyPartitioner
from services.common.settings import KafkaSettings
from services.common.topics import (
    ALERTS_CORRELATED,
    ALERTS_ENRICHED,
    CORRELATOR_INDEX_CHANGELOG,
    CORRELATOR_SIGHTINGS,
    RECORDS_QUARANTINE,
)
from services.correlator.settings import CorrelatorSettings

_ALL = (ALERTS_ENRICHED, CORRELATOR_SIGHTINGS, CORRELATOR_INDEX_CHANGELOG, ALERTS_CORRELATED)
# What a handler gives back for one event: the deliveries to wait for before the event is acknowledged.
Deliveries = Sequence[Awaitable[Any]]
Handler = Callable[[EventT[Any]], Awaitable[Deliveries]]
# Events handled and not yet acknowledged, per agent, before the handler waits (backpressure).
MAX_UNACKED = 1000


def app_id(kafka: KafkaSettings) -> str:
    """The faust app's id, which is also its consumer group (acls.py gives the principal that group)."""
    return f"{kafka.client_id_prefix}-correlator"


def new_app(settings: CorrelatorSettings, datadir: Path) -> faust.App:
    kafka = settings.kafka
    credentials: Any = None
    if kafka.security_protocol == "SASL_SSL":
        options = connection(kafka)  # raises ConfigurationError without a principal, as every client does
        credentials = faust.SASLCredentials(
            username=options["sasl_plain_username"],
            password=options["sasl_plain_password"],
            ssl_context=options["ssl_context"],
            mechanism=kafka.sasl_mechanism,  # faust's default is PLAIN
        )
    elif kafka.security_protocol == "SSL":
        credentials = faust.SSLCredentials(connection(kafka)["ssl_context"])
    return faust.App(
        app_id(kafka),
        datadir=str(datadir),
        broker=[f"kafka://{server.strip()}" for server in kafka.bootstrap_servers.split(",")],
        broker_credentials=credentials,
        broker_client_id=f"{kafka.client_id_prefix}-correlator",
        broker_commit_interval=settings.commit_interval_s,
        broker_session_timeout=kafka.session_timeout_ms / 1000,
        processing_guarantee="at_least_once",
        consumer_auto_offset_reset="earliest",
        producer_acks=-1,
        producer_linger=kafka.linger_ms / 1000,
        producer_max_batch_size=kafka.max_batch_bytes,
        producer_request_timeout=kafka.request_timeout_ms / 1000,
        # The services' rule (murmur2 of the key, as Java's): alerts.correlated is co-partitioned with
        # alerts.enriched, and an index entry's changelog partition is its key's sightings partition.
        producer_partitioner=KeyPartitioner(),
        topic_allow_declare=False,
        topic_disable_leader=True,
        table_standby_replicas=0,
        store="memory://",
        web_enabled=False,
        key_serializer="raw",
        value_serializer="raw",
    )


# Topics that must have the same number of partitions, and why.
CO_PARTITIONED = (
    (CORRELATOR_SIGHTINGS, CORRELATOR_INDEX_CHANGELOG, "an index entry lives in its key's sightings partition"),
    (ALERTS_ENRICHED, ALERTS_CORRELATED, "the router reads a correlation beside its alert's thread"),
)


def partition_problems(counts: dict[str, int]) -> list[str]:
    """What is wrong with the topics' partition counts for this app (empty: nothing). Pure."""
    problems = [f"{name} does not exist: run `rctc topics apply`" for name in _ALL if name not in counts]
    for one, other, why in CO_PARTITIONED:
        if one in counts and other in counts and counts[one] != counts[other]:
            problems.append(f"{one} has {counts[one]} partitions and {other} {counts[other]}: {why}")
    return problems


async def partition_counts(kafka: KafkaSettings) -> dict[str, int]:
    """How many partitions each of the app's topics has on the brokers (those that exist)."""
    client = kafka_admin(kafka, "correlator-check")
    await client.start()
    try:
        described = await client.describe_topics(list(_ALL))
    finally:
        await client.close()
    return {t["topic"]: len(t["partitions"]) for t in described if not t["error_code"] and t["partitions"]}


def raw_topic(app: faust.App, name: str) -> Any:
    return app.topic(name, key_serializer="raw", value_serializer="raw")


class Index:
    """The table of index entries (`kind:value` -> an encoded IndicatorIndexed), written with its changelog's
    futures returned (module docstring)."""

    def __init__(self, app: faust.App) -> None:
        changelog = app.topic(
            CORRELATOR_INDEX_CHANGELOG, key_serializer="raw", value_serializer="raw", compacting=True, internal=True
        )
        # Keys and values are bytes (the app's serializers are raw): this module encodes them itself.
        self.table = app.Table(
            "index",
            changelog_topic=changelog,
        )

    def get(self, key: bytes) -> bytes | None:
        value = self.table.data.get(key)
        return None if value is None else bytes(value)

    def put(self, key: bytes, value: bytes | None, partition: int) -> Awaitable[Any]:
        """Set (or with None, delete) an entry; the delivery of its changelog entry to `partition`, which is
        the key's partition on correlator.sightings (service.py computes it, as the producer did)."""
        if value is None:
            self.table.data.pop(key, None)
        else:
            self.table.data[key] = value
        return self.table.send_changelog(partition, key, value, key_serializer="raw", value_serializer="raw")

    def snapshot(self) -> Iterator[bytes]:
        """The keys as they are now (the sweep changes entries while it goes through them)."""
        return iter(list(self.table.data.keys()))

    def __len__(self) -> int:
        return len(self.table.data)


class _NeverRead(dict[Any, Any]):
    """The consumer's read offsets, which faust still writes but which answer None: nothing counts as read."""

    def __getitem__(self, key: Any) -> None:
        return None

    def get(self, key: Any, default: Any = None) -> None:
        return None


def count_handled_only(app: faust.App) -> weakref.WeakSet[Any]:
    """Make the app's consumer count an acknowledgement only for a message in the returned set, which the
    Ackers fill once a message's handling is done, never drop a record as read before or count a jump in
    offsets as acknowledged, and never empty an agent's queue of what it fetched (module docstring). Call
    before the app starts: its fetcher binds the read offsets, and its agents make their queues, at start."""
    consumer = app.consumer
    handled: weakref.WeakSet[Any] = weakref.WeakSet()
    faust_ack = consumer.ack

    def ack(message: Any) -> bool:
        if message not in handled:
            return False
        handled.discard(message)
        return bool(faust_ack(message))

    # The instance's attributes: faust reaches them as `consumer.ack` (from the stream and the message),
    # `consumer._read_offset` (the fetcher, the seeks) and `flow_control.manage_queue` (each agent's queue,
    # made when the agent starts: registered, it would be emptied whenever flow control resumes).
    consumer.ack = ack  # type: ignore[method-assign]
    consumer._read_offset = _NeverRead()  # type: ignore[attr-defined]
    app.flow_control.manage_queue = lambda queue: None  # type: ignore[method-assign]
    return handled


class Acker:
    """Acknowledges an agent's events in order, each once its deliveries succeeded (module docstring).

    `done[(topic, partition)]` is the offset after the last event acknowledged, for the lag metric; `handled`
    is `count_handled_only`'s set, where an event's message goes just before it is acknowledged.
    """

    def __init__(
        self,
        stream: StreamT[Any],
        failed: Callable[[BaseException], None],
        done: dict[tuple[str, int], int],
        handled: weakref.WeakSet[Any],
    ) -> None:
        self._stream = stream
        self._failed = failed
        self._done = done
        self._handled = handled
        self._queue: asyncio.Queue[tuple[EventT[Any], Deliveries]] = asyncio.Queue(MAX_UNACKED)

    async def put(self, event: EventT[Any], deliveries: Deliveries) -> None:
        await self._queue.put((event, deliveries))

    async def run(self) -> None:
        while True:
            event, deliveries = await self._queue.get()
            try:
                for delivery in deliveries:
                    await delivery
            except asyncio.CancelledError:
                raise
            except Exception as exc:
                self._failed(exc)
                return
            self._handled.add(event.message)
            await self._stream.ack(event)
            message = event.message
            self._done[(message.topic, message.partition)] = message.offset + 1
            self._queue.task_done()

    async def drain(self, within_s: float) -> None:
        """Wait (boundedly) for what is queued to be acknowledged: a graceful stop then commits it."""
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(self._queue.join(), within_s)


def add_agent(
    app: faust.App,
    topic: Any,
    name: str,
    handler: Handler,
    failed: Callable[[BaseException], None],
    done: dict[tuple[str, int], int],
    handled: weakref.WeakSet[Any],
) -> None:
    """An agent over `topic` that hands each event to `handler` and acknowledges it through an Acker (whose
    acknowledgements are the only ones faust counts: `count_handled_only`'s `handled`). An exception from the
    handler acknowledges nothing more: it is reported to `failed`, and the agent stops."""

    async def agent(stream: Any) -> None:
        manual = stream.noack()  # acknowledged by the Acker only
        acker = Acker(manual, failed, done, handled)
        acking = asyncio.create_task(acker.run(), name=f"{name}.acker")
        try:
            async for event in manual.events():
                try:
                    deliveries = await handler(event)
                except asyncio.CancelledError:
                    raise
                except Exception as exc:
                    failed(exc)
                    return
                await acker.put(event, deliveries)
        finally:
            if not acking.done():
                await acker.drain(within_s=5.0)
            acking.cancel()

    agent.__name__ = agent.__qualname__ = name
    app.agent(topic, name=name, concurrency=1)(agent)


def topics(app: faust.App) -> dict[str, Any]:
    """The app's topics by name: what it reads and what it writes."""
    return {
        name: raw_topic(app, name)
        for name in (ALERTS_ENRICHED, CORRELATOR_SIGHTINGS, ALERTS_CORRELATED, RECORDS_QUARANTINE)
    }
