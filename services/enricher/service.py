"""The enricher's consume loop: alerts.submitted in, alerts.enriched or alerts.rejected out, at least once.
A record that is not an AlertSubmitted goes to records.quarantine (services/common/quarantine.py). The
watchlist is followed from watchlist.entries beside the loop (watchlist.py), read whole before the first alert.

Re-delivery after a crash produces the same alert id again; the router's transactional output and the
receivers' de-duplication (by alert id and webhook-id) make that harmless.
"""

from __future__ import annotations

import asyncio
import time

import structlog
from aiokafka import ConsumerRecord

from services.common import tracing
from services.common.codec import Codec
from services.common.consume import consume_batches
from services.common.errors import CodecError
from services.common.kafka import AnyGroupConsumer, AnyProducer, Outbox, hot_consumer, hot_producer, learn_topics
from services.common.logs import get_logger
from services.common.metrics import RECORD_SECONDS, RECORDS
from services.common.quarantine import Quarantine
from services.common.records import AlertEnriched, AlertSubmitted, utcnow
from services.common.topics import ALERTS_ENRICHED, ALERTS_REJECTED, ALERTS_SUBMITTED
from services.enricher.enrich import enrich
from services.enricher.settings import EnricherSettings
from services.enricher.watchlist import WatchlistView

log = get_logger("rctc.enricher")


class Enricher:
    name = "enricher"

    def __init__(self, settings: EnricherSettings, codec: Codec) -> None:
        self.settings = settings
        self.codec = codec
        self.watchlist = WatchlistView(settings.kafka, codec, name="enricher")
        # librdkafka's by default: at one alert a fetch, aiokafka's protocol work was half of this service's CPU.
        self._consumer: AnyGroupConsumer | None = None
        self._producer: AnyProducer | None = None
        self.quarantine: Quarantine | None = None

    async def start(self) -> None:
        await self.watchlist.start()
        self._producer = hot_producer(self.settings.kafka, "enricher")
        await self._producer.start()
        self.quarantine = Quarantine(self._producer, self.codec)
        await learn_topics(self._producer, [ALERTS_ENRICHED, ALERTS_REJECTED])
        self._consumer = hot_consumer(self.settings.kafka, "enricher", ALERTS_SUBMITTED, group="enricher")
        await self._consumer.start()

    async def run(self, stopping: asyncio.Event) -> None:
        assert self._consumer is not None
        async with asyncio.TaskGroup() as tasks:
            tasks.create_task(self.watchlist.run(stopping))
            tasks.create_task(
                consume_batches(
                    self._consumer,
                    self.handle_batch,
                    stopping,
                    service=self.name,
                    commit_interval_s=self.settings.commit_interval_s,
                )
            )

    async def stop(self) -> None:
        if self._consumer is not None:
            await self._consumer.stop()
        if self._producer is not None:
            await self._producer.stop()
        await self.watchlist.stop()

    def readiness(self) -> dict[str, bool]:
        return {
            "watchlist": self.watchlist.loaded,
            "consumer": self._consumer is not None and bool(self._consumer.assignment()),
        }

    async def handle_batch(self, records: list[ConsumerRecord]) -> None:
        assert self._producer is not None
        outbox = Outbox(self._producer, self.codec)
        for record in records:
            await self._handle(record, outbox)
        await outbox.flush()

    async def _handle(self, record: ConsumerRecord, outbox: Outbox) -> None:
        started = time.perf_counter()
        traceparent = tracing.child_of(tracing.from_headers(record.headers))
        key = record.key or b""
        with structlog.contextvars.bound_contextvars(
            alert_id=key.decode(errors="replace"),
            topic=record.topic,
            partition=record.partition,
            offset=record.offset,
            trace_id=tracing.trace_id(traceparent),
        ):
            try:
                submitted = self.codec.decode(record.value, AlertSubmitted)
            except CodecError as exc:
                # Not an alert at all: nobody to tell on alerts.rejected. Set it aside, go on with the rest.
                assert self.quarantine is not None
                await self.quarantine.put(record, str(exc), self.name)
                RECORDS.labels(self.name, record.topic, "quarantined").inc()
                return
            result = enrich(submitted, now=utcnow(), watchlist=self.watchlist.current)
            if isinstance(result, AlertEnriched):
                await outbox.send(ALERTS_ENRICHED, key, result, traceparent)
                log.info(
                    "alert.enriched",
                    agency=result.origin,
                    outcome="enriched",
                    priority=result.priority,
                    indicators=len(result.alert.indicators),
                    extracted=result.extracted_indicators,
                    watchlist_hits=len(result.watchlist_hits),
                    duration_ms=round((time.perf_counter() - started) * 1000, 2),
                )
            else:
                await outbox.send(ALERTS_REJECTED, key, result, traceparent)
                log.warning(
                    "alert.rejected",
                    agency=result.origin,
                    outcome="rejected",
                    reason=result.reason,
                    duration_ms=round((time.perf_counter() - started) * 1000, 2),
                )
            RECORDS.labels(
                self.name, record.topic, "enriched" if isinstance(result, AlertEnriched) else "rejected"
            ).inc()
            RECORD_SECONDS.labels(self.name, record.topic).observe(time.perf_counter() - started)


def build(settings: EnricherSettings, codec: Codec | None = None) -> Enricher:
    return Enricher(settings, codec or Codec.from_directory())
