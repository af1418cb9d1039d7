"""The correlator: alerts.enriched in, alerts.correlated out, beside the alert path, at least once.

Two handlers, one per faust agent (app.py draws the flow): `index_alert` turns an enriched alert into one
IndicatorSighted per value it carries (sightings.py), keyed by the value so that every sighting of a value
reaches the worker holding its index entry; `record_sighting` applies the correlation rule (index.py) to
that entry and writes each correlation found (correlation.py). Both only move data; the decisions are the
pure modules'. A record that cannot be decoded goes to records.quarantine and its neighbours go on; an
unexpected exception or a failed write stops the service before anything after it is acknowledged.

The correlator tells no agency anything: the router reads alerts.correlated and decides who may learn of
each correlation. It does not read alerts.routed: what each agency received is the router's to know.
"""

from __future__ import annotations

import asyncio
import logging
import shutil
import tempfile
import time
from collections.abc import Awaitable, Callable, Iterator, Mapping
from contextlib import contextmanager, suppress
from datetime import datetime
from pathlib import Path
from typing import Any

import faust
import structlog
from faust.types import EventT
from prometheus_client import Counter, Gauge

from services.common import tracing
from services.common.codec import Codec
from services.common.errors import CodecError, ConfigurationError
from services.common.logs import get_logger
from services.common.metrics import RECORD_SECONDS, RECORDS
from services.common.partitioner import partition_for
from services.common.quarantine import noted, quarantined, source_key
from services.common.records import AlertEnriched, IndicatorIndexed, IndicatorSighted, Sighting, utcnow
from services.common.sightings import index_key, sightings_of, thread_of
from services.common.topics import ALERTS_CORRELATED, ALERTS_ENRICHED, CORRELATOR_SIGHTINGS, RECORDS_QUARANTINE
from services.correlator.app import (
    Deliveries,
    Index,
    add_agent,
    count_handled_only,
    new_app,
    partition_counts,
    partition_problems,
    topics,
)
from services.correlator.correlation import correlated
from services.correlator.index import expired, record
from services.correlator.settings import CorrelatorSettings

log = get_logger("rctc.correlator")

CORRELATIONS = Counter(
    "rctc_correlations_total",
    "Correlations written to alerts.correlated, by kind; `replayed` ones were written before (same id).",
    ["kind", "outcome"],
)
SIGHTINGS = Counter(
    "rctc_correlator_sightings_total",
    "Sightings the index handled, by outcome (new, repeat, replay, over_cap: services/correlator/index.py).",
    ["outcome"],
)
EXPIRED = Counter("rctc_correlator_sightings_expired_total", "Sightings swept from the index by the window.")
INDEX_VALUES = Gauge("rctc_correlator_index_values", "Values in this worker's index (its table's keys).")
INDEX_SIGHTINGS = Gauge(
    "rctc_correlator_index_sightings", "Sightings in this worker's index, as of its last sweep or change."
)
LAG = Gauge(
    "rctc_correlator_lag",
    "Records of an assigned partition not yet fully handled (end offset minus the next to acknowledge).",
    ["topic", "partition"],
)
LAG_INTERVAL_S = 5.0


class Correlator:
    name = "correlator"

    def __init__(self, settings: CorrelatorSettings, codec: Codec, *, now: Callable[[], datetime] = utcnow) -> None:
        self.settings = settings
        self.codec = codec
        self._now = now
        self._app: faust.App | None = None
        self._index: Index | None = None
        self._topics: dict[str, Any] = {}
        self._datadir: Path | None = None
        self._own_datadir = False
        self._failure: asyncio.Future[BaseException] | None = None
        self._recovered = False
        # (topic, partition) -> the offset after the last event acknowledged (app.Acker), for the lag gauge.
        self._done: dict[tuple[str, int], int] = {}
        # Index partition -> when it was last swept (monotonic), and the sightings each entry holds.
        self._swept: dict[int, float] = {}
        self._sizes: dict[bytes, int] = {}

    async def start(self) -> None:
        # faust and mode narrate every start, rebalance and late timer at INFO: keep their warnings only, as
        # common/logs.py does for aiokafka. The correlator's own lines say what it did.
        for name in ("faust", "mode"):
            logging.getLogger(name).setLevel(max(logging.getLogger().getEffectiveLevel(), logging.WARNING))
        self._failure = asyncio.get_running_loop().create_future()
        # Refused before anything is read: with partition counts apart, entries would be rebuilt on workers
        # that do not own their sightings, and correlations would not sit beside their threads.
        problems = partition_problems(await partition_counts(self.settings.kafka))
        if problems:
            raise ConfigurationError("; ".join(problems))
        if self.settings.data_dir is None:
            self._datadir, self._own_datadir = Path(tempfile.mkdtemp(prefix="rctc-correlator-")), True
        else:
            self._datadir = self.settings.data_dir
        app = new_app(self.settings, self._datadir)
        self._topics = topics(app)
        self._index = Index(app)
        handled = count_handled_only(app)
        add_agent(
            app,
            self._topics[ALERTS_ENRICHED],
            "correlator.index_alerts",
            self.index_alert,
            self._fail,
            self._done,
            handled,
        )
        add_agent(
            app,
            self._topics[CORRELATOR_SIGHTINGS],
            "correlator.record_sightings",
            self.record_sighting,
            self._fail,
            self._done,
            handled,
        )
        self._app = app
        INDEX_VALUES.set_function(lambda: len(self._index) if self._index is not None else 0)

    async def run(self, stopping: asyncio.Event) -> None:
        """Start the app (which first rebuilds the index from its changelog), then work until told to stop or
        until a handler or a delivery failed (raised here: the process exits non-zero)."""
        assert self._app is not None and self._failure is not None
        app, failure = self._app, self._failure
        stop_wanted = asyncio.create_task(stopping.wait())
        starting = asyncio.create_task(app.start(), name="correlator.app.start")
        lag = asyncio.create_task(self._watch_lag(), name="correlator.lag")
        try:
            first: set[asyncio.Future[Any]] = {stop_wanted, starting, failure}
            await asyncio.wait(first, return_when=asyncio.FIRST_COMPLETED)
            if starting.done() and starting.exception() is None and not failure.done():
                self._recovered = True
                log.info("correlator.ready", index_values=len(self._index or ()), app_id=app.conf.id)
                stopped = asyncio.create_task(app.wait_until_stopped())
                then: set[asyncio.Future[Any]] = {stop_wanted, failure, stopped}
                await asyncio.wait(then, return_when=asyncio.FIRST_COMPLETED)
                stopped.cancel()
            if failure.done():
                raise failure.result()
            if starting.done() and starting.exception() is not None:
                raise starting.exception()  # type: ignore[misc]
            if app.crashed and app.crash_reason is not None:
                raise app.crash_reason
        finally:
            for task in (stop_wanted, starting, lag):
                task.cancel()
                with suppress(asyncio.CancelledError, Exception):
                    await task

    async def stop(self) -> None:
        if self._app is not None:
            # Faust stops its agents (each acknowledges what it finished), commits what was acknowledged, and
            # closes its consumer and producer. After a failure an event stays unacknowledged for good, and
            # faust would wait for it forever: commit what was acknowledged and go.
            if self._failure is not None and self._failure.done():
                self._app.conf.stream_wait_empty = False
            try:
                await asyncio.wait_for(self._app.stop(), self.settings.shutdown_timeout_s)
            except TimeoutError:
                log.warning("correlator.stop_timeout", timeout_s=self.settings.shutdown_timeout_s)
            except Exception as exc:
                log.warning("correlator.stop_failed", error=repr(exc))
            self._app = None
        if self._own_datadir and self._datadir is not None:
            shutil.rmtree(self._datadir, ignore_errors=True)
            self._datadir = None

    def readiness(self) -> dict[str, bool]:
        assigned = False
        if self._app is not None and self._recovered:
            with suppress(Exception):
                assigned = bool(self._app.consumer.assignment())
        return {"index_rebuilt": self._recovered, "consumer": assigned}

    def _fail(self, exc: BaseException) -> None:
        """A handler raised or a delivery failed: nothing after it is acknowledged, and the service stops."""
        log.error("loop.crashed", service=self.name, exc_info=exc)
        if self._failure is not None and not self._failure.done():
            self._failure.set_result(exc)

    # The handlers (app.add_agent calls them one event at a time, in the event's context).

    async def index_alert(self, event: EventT[Any]) -> Deliveries:
        """An enriched alert: one IndicatorSighted per value it carries, keyed by the value."""
        started = time.perf_counter()
        message = event.message
        with _bound(message, alert_id=(message.key or b"").decode(errors="replace")) as traceparent:
            try:
                enriched = self.codec.decode(message.value, AlertEnriched)
            except CodecError as exc:
                return [await self._quarantine(message, str(exc))]
            thread = thread_of(enriched)
            deliveries: list[Awaitable[Any]] = []
            mentions = sightings_of(enriched.alert)
            for mention in mentions:
                sighted = IndicatorSighted(
                    kind=mention.kind,
                    value=mention.value,
                    alert_id=enriched.alert_id,
                    thread_id=thread,
                    origin=enriched.origin,
                    submitted_at=enriched.submitted_at,
                    fields=list(mention.fields),
                )
                deliveries.append(await self._send(CORRELATOR_SIGHTINGS, mention.key, sighted, traceparent))
            log.info(
                "alert.indexed",
                agency=enriched.origin,
                thread_id=thread,
                msg_type=enriched.alert.msg_type,
                outcome="indexed" if mentions else "nothing_to_index",
                values=len(mentions),
                duration_ms=round((time.perf_counter() - started) * 1000, 2),
            )
            RECORDS.labels(self.name, message.topic, "indexed" if mentions else "nothing_to_index").inc()
            RECORD_SECONDS.labels(self.name, message.topic).observe(time.perf_counter() - started)
            return deliveries

    async def record_sighting(self, event: EventT[Any]) -> Deliveries:
        """A sighting: the correlation rule applied to its value's index entry, and the correlations found."""
        assert self._index is not None
        started = time.perf_counter()
        message = event.message
        with _bound(message) as traceparent:
            try:
                seen = self.codec.decode(message.value, IndicatorSighted)
            except CodecError as exc:
                return [await self._quarantine(message, str(exc))]
            key = index_key(seen.kind, seen.value).encode()
            if message.key != key:
                # Only the correlator writes this topic; a record whose key is not its value would sit on the
                # partition of another entry.
                return [await self._quarantine(message, "the key is not the sighting's kind:value")]
            structlog.contextvars.bind_contextvars(alert_id=seen.alert_id, agency=seen.origin)
            entries = self._entry(key)
            sighting = Sighting(
                alert_id=seen.alert_id,
                thread_id=seen.thread_id,
                origin=seen.origin,
                submitted_at=seen.submitted_at,
                fields=tuple(seen.fields),
            )
            step = record(
                entries,
                sighting,
                window=self.settings.window,
                cap=self.settings.max_originators_per_value,
                per_origin=self.settings.max_threads_per_originator,
            )
            deliveries: list[Awaitable[Any]] = []
            if step.changed:
                deliveries.append(self._put(key, seen.kind, seen.value, step.entries, message.partition))
            found = "replayed" if step.outcome == "replay" else "found"
            for pair in step.pairs:
                correlation = correlated(seen.kind, seen.value, pair, found_at=self._now())
                deliveries.append(
                    await self._send(ALERTS_CORRELATED, correlation.a.thread_id, correlation, traceparent)
                )
                CORRELATIONS.labels(seen.kind, found).inc()
                log.info(
                    "alert.correlated",
                    correlation_id=correlation.correlation_id,
                    kind=seen.kind,
                    alert_a=correlation.a.alert_id,
                    alert_b=correlation.b.alert_id,
                    agencies=[correlation.a.origin, correlation.b.origin],
                    outcome=found,
                )
            deliveries.extend(self._sweep(message.partition))
            SIGHTINGS.labels(step.outcome).inc()
            log.info(
                "sighting.recorded",
                kind=seen.kind,
                thread_id=seen.thread_id,
                outcome=step.outcome,
                correlations=len(step.pairs),
                duration_ms=round((time.perf_counter() - started) * 1000, 2),
            )
            RECORDS.labels(self.name, message.topic, step.outcome).inc()
            RECORD_SECONDS.labels(self.name, message.topic).observe(time.perf_counter() - started)
            return deliveries

    # Adapters.

    def _entry(self, key: bytes) -> list[Sighting]:
        assert self._index is not None
        stored = self._index.get(key)
        # A value this service wrote: failing to decode it is a bug, not bad input, and stops the service.
        return [] if stored is None else list(self.codec.decode(stored, IndicatorIndexed).sightings)

    def _put(self, key: bytes, kind: str, value: str, entries: list[Sighting], partition: int) -> Awaitable[Any]:
        assert self._index is not None
        if not entries:
            self._sizes.pop(key, None)
            written = self._index.put(key, None, partition)
        else:
            self._sizes[key] = len(entries)
            written = self._index.put(
                key, self.codec.encode(IndicatorIndexed(kind=kind, value=value, sightings=entries)), partition
            )
        INDEX_SIGHTINGS.set(sum(self._sizes.values()))
        return written

    def _sweep(self, partition: int) -> list[Awaitable[Any]]:
        """Every `sweep_interval_s`, the index partition this event is on, without the sightings the window
        has passed by the clock (index.expired): entries no new sighting touches would stay forever."""
        assert self._app is not None and self._index is not None
        now = time.monotonic()
        if now - self._swept.get(partition, -float("inf")) < self.settings.sweep_interval_s:
            return []
        self._swept[partition] = now
        count = self._app.consumer.topic_partitions(CORRELATOR_SIGHTINGS)
        if not count:
            return []
        partitions = range(count)
        deliveries: list[Awaitable[Any]] = []
        removed = 0
        cutoff = self._now()
        for key in self._index.snapshot():
            if partition_for(key, partitions) != partition:
                continue
            entry = self.codec.decode(self._index.get(key), IndicatorIndexed)
            kept = expired(entry.sightings, cutoff, self.settings.window)
            self._sizes[key] = len(kept)
            if len(kept) != len(entry.sightings):
                removed += len(entry.sightings) - len(kept)
                deliveries.append(self._put(key, entry.kind, entry.value, kept, partition))
        EXPIRED.inc(removed)
        INDEX_SIGHTINGS.set(sum(self._sizes.values()))
        log.info("index.swept", index_partition=partition, expired=removed, values=len(self._index))
        return deliveries

    async def _send(self, topic: str, key: str, record: Any, traceparent: str) -> Awaitable[Any]:
        # force: sent now. Faust would otherwise hold it until the commit of the event's offset, which here
        # waits for this very delivery (app.Acker).
        sent: Awaitable[Any] = await self._topics[topic].send(
            key=key.encode(), value=self.codec.encode(record), headers=tracing.headers_for(traceparent), force=True
        )
        return sent

    async def _quarantine(self, message: Any, reason: str) -> Awaitable[Any]:
        entry = self.codec.encode(quarantined(message, reason, self.name))
        sent: Awaitable[Any] = await self._topics[RECORDS_QUARANTINE].send(
            key=source_key(message), value=entry, force=True
        )
        noted(message, reason, self.name)
        RECORDS.labels(self.name, message.topic, "quarantined").inc()
        return sent

    async def _watch_lag(self) -> None:
        while True:
            await asyncio.sleep(LAG_INTERVAL_S)
            app = self._app
            if app is None or not self._recovered:
                continue
            try:
                assigned = [
                    tp for tp in app.consumer.assignment() if tp.topic in (ALERTS_ENRICHED, CORRELATOR_SIGHTINGS)
                ]
            except Exception:  # the consumer is between generations or stopping: next time
                continue
            LAG.clear()
            for tp in assigned:
                with suppress(Exception):
                    end = app.consumer.highwater(tp)
                    if end is None:  # nothing fetched from it yet
                        continue
                    done = self._done.get((tp.topic, tp.partition))
                    if done is None:  # nothing handled since this worker got it: where it reads from
                        done = await app.consumer.position(tp)
                    if done is not None:
                        LAG.labels(tp.topic, str(tp.partition)).set(max(0, end - done))


@contextmanager
def _bound(message: Any, **more: str) -> Iterator[str]:
    """The record's place and trace bound to every line logged while handling it; yields the traceparent of
    what it produces (a child of the record's)."""
    headers = message.headers  # a list of pairs from Kafka, or a mapping
    parent = tracing.from_headers(list(headers.items()) if isinstance(headers, Mapping) else headers)
    traceparent = tracing.child_of(parent)
    with structlog.contextvars.bound_contextvars(
        topic=message.topic,
        partition=message.partition,
        offset=message.offset,
        trace_id=tracing.trace_id(traceparent),
        **more,
    ):
        yield traceparent


def build(settings: CorrelatorSettings, codec: Codec | None = None) -> Correlator:
    return Correlator(settings, codec or Codec.from_directory())
