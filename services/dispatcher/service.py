"""The dispatcher's loop: deliveries.webhook in, signed POSTs out, every attempt on deliveries.events.

At least once: a batch's offsets are committed only when each of its deliveries ended in a 2xx or in
deliveries.dead, so a crash re-sends (with the same webhook-id, which receivers de-duplicate on) rather
than loses. Deliveries of a batch run concurrently, bounded by `concurrency`.
"""

from __future__ import annotations

import asyncio
import time

import aiohttp
import structlog
from aiokafka import AIOKafkaConsumer, AIOKafkaProducer, ConsumerRecord
from prometheus_client import Counter, Histogram

from services.common import tracing
from services.common.codec import Codec
from services.common.consume import consume_batches
from services.common.errors import CodecError
from services.common.kafka import Outbox, consumer, producer
from services.common.logs import get_logger
from services.common.records import DeliverWebhook, DeliveryAttempted, DeliveryOutcome, recipient_key, utcnow
from services.common.registry import RegistryView
from services.common.topics import DELIVERIES_DEAD, DELIVERIES_EVENTS, DELIVERIES_WEBHOOK
from services.dispatcher.settings import DispatcherSettings
from services.dispatcher.signing import signed_headers

log = get_logger("rctc.dispatcher")

ATTEMPTS = Counter("rctc_webhook_attempts_total", "Webhook attempts by agency and outcome.", ["agency", "outcome"])
LATENCY = Histogram(
    "rctc_webhook_seconds",
    "Webhook request latency.",
    ["agency"],
    buckets=(0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10),
)

USER_AGENT = "RCTC-Alert-Exchange/0.1 (+standard-webhooks)"


class Dispatcher:
    name = "dispatcher"

    def __init__(self, settings: DispatcherSettings, codec: Codec) -> None:
        self.settings = settings
        self.codec = codec
        self.registry = RegistryView(settings.kafka, codec, name="dispatcher")
        self._consumer: AIOKafkaConsumer | None = None
        self._producer: AIOKafkaProducer | None = None
        self._session: aiohttp.ClientSession | None = None
        self._slots = asyncio.Semaphore(settings.concurrency)

    async def start(self) -> None:
        await self.registry.start()
        self._producer = producer(self.settings.kafka, "dispatcher")
        await self._producer.start()
        timeout = aiohttp.ClientTimeout(
            total=self.settings.response_timeout_s, sock_connect=self.settings.connect_timeout_s
        )
        self._session = aiohttp.ClientSession(
            timeout=timeout,
            headers={"User-Agent": USER_AGENT},
            connector=aiohttp.TCPConnector(limit=self.settings.concurrency),
        )
        self._consumer = consumer(self.settings.kafka, "dispatcher", DELIVERIES_WEBHOOK, group="dispatcher")
        await self._consumer.start()

    async def run(self, stopping: asyncio.Event) -> None:
        assert self._consumer is not None
        async with asyncio.TaskGroup() as tasks:
            tasks.create_task(self.registry.run(stopping))
            tasks.create_task(self._deliver_loop(stopping))

    async def _deliver_loop(self, stopping: asyncio.Event) -> None:
        assert self._consumer is not None
        if await self.registry.wait_until_published(stopping):
            await consume_batches(
                self._consumer, self.handle_batch, stopping, service=self.name, max_records=self.settings.concurrency
            )

    async def stop(self) -> None:
        if self._consumer is not None:
            await self._consumer.stop()
        if self._session is not None:
            await self._session.close()
        if self._producer is not None:
            await self._producer.stop()
        await self.registry.stop()

    def readiness(self) -> dict[str, bool]:
        return {
            "registry": self.registry.current.version > 0,
            "consumer": self._consumer is not None and bool(self._consumer.assignment()),
        }

    async def handle_batch(self, records: list[ConsumerRecord]) -> None:
        assert self._producer is not None
        outbox = Outbox(self._producer, self.codec)
        async with asyncio.TaskGroup() as tasks:
            for record in records:
                tasks.create_task(self._deliver(record, outbox))
        await outbox.flush()

    async def _deliver(self, record: ConsumerRecord, outbox: Outbox) -> None:
        traceparent = tracing.child_of(tracing.from_headers(record.headers))
        try:
            request = self.codec.decode(record.value, DeliverWebhook)
        except CodecError as exc:
            log.error("delivery.unreadable", partition=record.partition, offset=record.offset, error=str(exc))
            return
        structlog.contextvars.bind_contextvars(
            alert_id=request.alert_id,
            agency=request.agency,
            webhook_id=request.webhook_id,
            trace_id=tracing.trace_id(traceparent),
        )
        delays = self.settings.retry_delays_s
        attempt = request.attempt
        while True:
            attempt += 1
            outcome, status, error, latency = await self._attempt(request)
            if outcome == "retrying" and attempt > len(delays):
                outcome = "dead"
            event = DeliveryAttempted(
                webhook_id=request.webhook_id,
                alert_id=request.alert_id,
                agency=request.agency,
                attempt=attempt,
                outcome=outcome,
                status_code=status,
                latency_ms=round(latency * 1000, 2),
                error=error,
                attempted_at=utcnow(),
            )
            key = recipient_key(request.alert_id, request.agency)
            await outbox.send(DELIVERIES_EVENTS, key, event, traceparent)
            ATTEMPTS.labels(request.agency, outcome).inc()
            fields = {"attempt": attempt, "status_code": status, "latency_ms": event.latency_ms, "outcome": outcome}
            if outcome == "delivered":
                log.info("delivery.succeeded", **fields)
                return
            if outcome == "dead":
                dead = DeliverWebhook(
                    webhook_id=request.webhook_id,
                    alert_id=request.alert_id,
                    agency=request.agency,
                    event_type=request.event_type,
                    urgency=request.urgency,
                    payload=request.payload,
                    attempt=attempt,
                    requested_at=request.requested_at,
                    last_error=error,
                )
                await outbox.send(DELIVERIES_DEAD, key, dead, traceparent)
                log.error("delivery.dead", error=error, **fields)
                return
            log.warning("delivery.failed", error=error, **fields)
            await asyncio.sleep(delays[attempt - 1])

    async def _attempt(self, request: DeliverWebhook) -> tuple[DeliveryOutcome, int | None, str | None, float]:
        """One POST: (outcome, status code, error, seconds)."""
        assert self._session is not None
        agency = self.registry.current.agencies.get(request.agency)
        webhook = agency.webhook if agency is not None else None
        if webhook is None:
            return "dead", None, f"{request.agency} has no webhook endpoint in the registry", 0.0
        headers = signed_headers(request.webhook_id, utcnow(), request.payload, webhook.secrets)
        headers["Content-Type"] = "application/json"
        started = time.perf_counter()
        async with self._slots:
            try:
                async with self._session.post(
                    webhook.url, data=request.payload, headers=headers, allow_redirects=False
                ) as response:
                    # Read a bounded amount: a receiver's body is not ours to buffer without limit.
                    await response.content.read(self.settings.max_response_bytes)
                    status = response.status
            except (aiohttp.ClientError, TimeoutError, OSError) as exc:
                latency = time.perf_counter() - started
                LATENCY.labels(request.agency).observe(latency)
                return "retrying", None, f"{type(exc).__name__}: {exc}"[:500], latency
        latency = time.perf_counter() - started
        LATENCY.labels(request.agency).observe(latency)
        if 200 <= status < 300:
            return "delivered", status, None, latency
        if status == 410:
            return "dead", status, "the endpoint answered 410 Gone", latency
        return "retrying", status, f"HTTP {status}", latency


def build(settings: DispatcherSettings, codec: Codec | None = None) -> Dispatcher:
    return Dispatcher(settings, codec or Codec.from_directory())
