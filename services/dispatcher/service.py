"""The dispatcher: deliveries.webhook and the retry tiers in, signed POSTs out, every attempt recorded.

Lanes. The first attempt of every delivery is read from deliveries.webhook; a failed one is written to a
delay-tier topic (`deliveries.retry.<tier>`, services/dispatcher/schedule.py) with the time it is due, and
the lane reading that tier pauses the partition until its head is due. No retry waits in memory or holds
up other deliveries, and a restart loses none.

Isolation. Deliveries run concurrently and finish in any order; offsets are committed past the longest
finished prefix (window.py), so a slow endpoint delays nobody else's commit. Each endpoint has its own
concurrency limit and circuit breaker (breaker.py): once it fails repeatedly, its deliveries are
rescheduled without a request until a probe succeeds. 410 Gone disables the endpoint for every replica
(endpoints.py); its alerts still reach the agency's Kafka topic, and its deliveries wait in
deliveries.dead for a replay.

Guarantee. At least once: a delivery's offset is committed only when it ended in a 2xx, in a retry tier,
or in deliveries.dead with an escalation, each written (and acknowledged) before. The webhook-id never
changes, so receivers de-duplicate. A delivery that raises anything unexpected (a bug, not an outage) stops
the dispatcher (common/consume.py `fail_fast`): its offset never finished, so no commit passes it, and the
next start delivers it again.

What happens is decided in outcome.py (pure); this module makes the requests and writes the records. The
records say only the class of a failure (`timeout`, `http_503`); where the receiver is stays in the log.
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import random
import time
from datetime import timedelta
from typing import Any

import aiohttp
import msgspec
import structlog
from aiohttp.abc import AbstractResolver
from aiohttp.streams import EofStream
from aiokafka import AIOKafkaConsumer, AIOKafkaProducer, ConsumerRecord, TopicPartition
from aiokafka.abc import ConsumerRebalanceListener
from aiokafka.errors import CommitFailedError, KafkaError
from prometheus_client import Counter, Gauge, Histogram

from services.common import tracing
from services.common.codec import Codec
from services.common.consume import RETRYABLE, fail_fast
from services.common.errors import CodecError
from services.common.events import CONTENT_EVENTS
from services.common.kafka import Outbox, consumer, learn_topics, producer
from services.common.logs import get_logger
from services.common.outputs import GroupWriter
from services.common.quarantine import Quarantine
from services.common.records import (
    DeliverWebhook,
    DeliveryAttempted,
    EndpointChanged,
    EndpointState,
    EscalationRaised,
    recipient_key,
    utcnow,
)
from services.common.registry import RegistryView, WebhookEntry, WebhookSecretsView
from services.common.topics import (
    ALERTS_ESCALATIONS,
    DELIVERIES_DEAD,
    DELIVERIES_EVENTS,
    DELIVERIES_WEBHOOK,
    retry_topic,
)
from services.dispatcher.breaker import CircuitBreaker
from services.dispatcher.connections import ANSWER_OVERHEAD, GuardedConnector
from services.dispatcher.endpoints import EndpointStates, endpoint_change, publish_change
from services.dispatcher.interim import BoundedInterimResponse
from services.dispatcher.outcome import DEFERRED, Decision, Observed, classify, decide, failure_of
from services.dispatcher.queueing import may_queue
from services.dispatcher.safety import SafeResolver, UnsafeDestination, check_url, guarded_socket, open_socket
from services.dispatcher.schedule import TIERS, busy_wait, circuit_wait, parse_retry_after, slowest_recent
from services.dispatcher.settings import DispatcherSettings
from services.dispatcher.signing import signed_headers
from services.dispatcher.window import CommitWindow

log = get_logger("rctc.dispatcher")

ATTEMPTS = Counter("rctc_webhook_attempts_total", "Webhook attempts by agency and outcome.", ["agency", "outcome"])
LATENCY = Histogram(
    "rctc_webhook_seconds",
    "Webhook request latency.",
    ["agency"],
    buckets=(0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10),
)
IN_FLIGHT = Gauge("rctc_webhook_in_flight", "Deliveries being attempted, by lane.", ["lane"])
CIRCUIT_OPEN = Gauge("rctc_webhook_circuit_open", "1 while an endpoint's circuit breaker is open.", ["agency"])


# A metric's child per label values, looked up once: labels() takes a lock and validates on every call,
# twice per delivery (bench/). Bounded by agencies x outcomes.
@functools.cache
def _attempts(agency: str, outcome: str) -> Any:
    return ATTEMPTS.labels(agency, outcome)


@functools.cache
def _latency(agency: str) -> Any:
    return LATENCY.labels(agency)


# check_url is pure in its arguments (addresses are checked again at connect time, by SafeResolver and
# guarded_socket), so a URL that passed is not parsed again at every delivery: 3% of this service at 80/s
# (bench/). A refused one raises, which is never cached, so it is refused again each time.
_check_url = functools.lru_cache(maxsize=4096)(check_url)

USER_AGENT = "RCTC-Alert-Exchange/0.1 (+standard-webhooks)"


class _Lane(ConsumerRebalanceListener):  # type: ignore[misc]
    """One input topic (the first attempts, or one delay tier) with its consumer and commit window."""

    def __init__(self, name: str, topic: str) -> None:
        self.name = name
        self.topic = topic
        self.consumer: AIOKafkaConsumer | None = None
        self.window = CommitWindow()
        self.in_flight: set[asyncio.Task[None]] = set()
        # The deliveries' task group while the lane runs: one that fails cancels the rest (see _lane_loop).
        self.tasks: asyncio.TaskGroup | None = None
        # Set while the lane may admit more deliveries. Waiting on it instead of on the in-flight tasks
        # themselves: asyncio.wait over thousands of tasks, after every completion, was a fifth of the
        # dispatcher's CPU at saturation (bench/).
        self.room = asyncio.Event()
        self.room.set()
        self.gauge = IN_FLIGHT.labels(name)

    async def on_partitions_revoked(self, revoked: list[TopicPartition]) -> None:
        await self.commit(only=revoked)
        self.window.drop(revoked)

    async def on_partitions_assigned(self, assigned: list[TopicPartition]) -> None:
        return None

    async def commit(self, only: list[TopicPartition] | None = None) -> None:
        if self.consumer is None:
            return
        offsets = {tp: o for tp, o in self.window.committable().items() if only is None or tp in only}
        offsets = {tp: o for tp, o in offsets.items() if tp in self.consumer.assignment()}
        if offsets:
            try:
                await self.consumer.commit(offsets)
            except CommitFailedError:
                log.warning("delivery.commit_failed", lane=self.name)


class Dispatcher:
    name = "dispatcher"

    def __init__(self, settings: DispatcherSettings, codec: Codec) -> None:
        self.settings = settings
        self.codec = codec
        self.registry = RegistryView(settings.kafka, codec, name="dispatcher")
        self.secrets = WebhookSecretsView(settings.kafka, codec, name="dispatcher")
        self.endpoints = EndpointStates(settings.kafka, codec, name="dispatcher")
        self.lanes = [_Lane("first", DELIVERIES_WEBHOOK)] + [_Lane(t, retry_topic(t)) for t in TIERS]
        self._producer: AIOKafkaProducer | None = None
        self._writer: GroupWriter | None = None
        self.quarantine: Quarantine = Quarantine.standalone(settings.kafka, codec, "dispatcher")  # until start()
        self._public: aiohttp.ClientSession | None = None
        self._private: aiohttp.ClientSession | None = None
        self._breakers: dict[tuple[str, str], CircuitBreaker] = {}
        self._slots: dict[tuple[str, str], asyncio.Semaphore] = {}
        self._waiting: dict[tuple[str, str], int] = {}  # deliveries waiting for an endpoint's slots
        self._queued = 0  # the same, for every endpoint together (queueing.py)
        self._queueing = 0  # endpoints with any delivery waiting
        self._latency: dict[tuple[str, str], tuple[float, float]] = {}  # slowest_recent's, and when
        self._rng = random.Random()

    async def start(self) -> None:
        await self.registry.start()
        await self.secrets.start()
        await self.endpoints.start()
        self._producer = producer(self.settings.kafka, "dispatcher")
        await self._producer.start()
        self.quarantine = Quarantine(self._producer, self.codec)
        # Each delivery's outcome goes out with the others' of the moment, in ready batches: a send() per
        # record (partitioner, future, accumulator) was a tenth of the dispatcher's CPU at saturation.
        self._writer = GroupWriter(self._producer)
        await learn_topics(self._producer, [DELIVERIES_EVENTS])
        self._open_sessions()
        for lane in self.lanes:
            group = "dispatcher" if lane.name == "first" else f"dispatcher-retry-{lane.name}"
            lane.consumer = consumer(
                self.settings.kafka,
                f"dispatcher-{lane.name}",
                lane.topic,
                group=group,
                listener=lane,
                follower=lane.name != "first",  # a retry waits seconds anyway
            )
            await lane.consumer.start()

    def _open_sessions(self, resolver: AbstractResolver | None = None) -> None:
        """The HTTP sessions deliveries go out on; `resolver` replaces the system's DNS (tests)."""
        timeout = aiohttp.ClientTimeout(
            total=self.settings.response_timeout_s, sock_connect=self.settings.connect_timeout_s
        )
        # Answers are not decompressed, and we ask for none: the body is read only to be bounded and dropped,
        # and inflating it was all cost. A 100 KB gzip answer, well within the byte budget, cost about 20 ms of
        # the core every agency's deliveries share (140 honest deliveries' worth; red team, round 5).
        headers = {"User-Agent": USER_AGENT, "Accept-Encoding": "identity"}
        # Every endpoint goes through the resolver and the socket factory that refuse internal addresses
        # (safety.py), unless the registry marks it private AND this deployment allows private endpoints
        # (the demo's receivers on 127.0.0.1). Without that setting the unguarded session does not exist.
        # No proxies from the environment (trust_env is off), and every POST passes allow_redirects=False.
        # No cookie jar: a session serves every agency's endpoint, so a receiver's Set-Cookie (with a Domain
        # that covers another agency's receiver, or thousands of them) would be state one agency plants in
        # what another receives, and memory it grows at will (tests/unit/test_receiver_cookies.py).
        # No connector-wide limit: the per-endpoint slots bound each endpoint's connections, and a shared limit
        # (it was 64) let 16 slow endpoints hold every connection while other agencies' requests waited (red team).
        answer_bytes = self.settings.max_response_bytes + ANSWER_OVERHEAD
        guarded = GuardedConnector(
            resolver=SafeResolver(resolver), socket_factory=guarded_socket, limit=0, answer_bytes=answer_bytes
        )
        self._public = aiohttp.ClientSession(
            timeout=timeout,
            headers=headers,
            connector=guarded,
            trust_env=False,
            cookie_jar=aiohttp.DummyCookieJar(),
            response_class=BoundedInterimResponse,
            auto_decompress=False,
        )
        if self.settings.allow_private_endpoints:
            self._private = aiohttp.ClientSession(
                timeout=timeout,
                headers=headers,
                connector=GuardedConnector(
                    resolver=resolver, socket_factory=open_socket, limit=0, answer_bytes=answer_bytes
                ),
                trust_env=False,
                cookie_jar=aiohttp.DummyCookieJar(),
                response_class=BoundedInterimResponse,
                auto_decompress=False,
            )

    def _private_allowed(self, webhook: WebhookEntry) -> bool:
        return webhook.allow_private and self.settings.allow_private_endpoints

    async def run(self, stopping: asyncio.Event) -> None:
        async with asyncio.TaskGroup() as tasks:
            tasks.create_task(self.registry.run(stopping))
            tasks.create_task(self.secrets.run(stopping))
            tasks.create_task(self.endpoints.run(stopping))
            for lane in self.lanes:
                tasks.create_task(self._lane_loop(lane, stopping))

    async def stop(self) -> None:
        for lane in self.lanes:
            if lane.consumer is not None:
                await lane.consumer.stop()
        for session in (self._public, self._private):
            if session is not None:
                await session.close()
        if self._writer is not None:
            await self._writer.close()
        if self._producer is not None:
            await self._producer.stop()
        await self.endpoints.stop()
        await self.secrets.stop()
        await self.registry.stop()

    def readiness(self) -> dict[str, bool]:
        first = self.lanes[0].consumer
        return {
            "registry": self.registry.current.version > 0,
            "secrets": self.secrets.loaded,
            "consumer": first is not None and bool(first.assignment()),
        }

    # -- lanes ---------------------------------------------------------------------------------------

    async def _lane_loop(self, lane: _Lane, stopping: asyncio.Event) -> None:
        assert lane.consumer is not None
        if not await self.registry.wait_until_published(stopping):
            return
        in_flight = lane.in_flight
        last_commit = time.monotonic()
        try:
            # Deliveries are tasks of this group. One that raises something unexpected (fail_fast logs it)
            # cancels the others and this loop, and the group's error fails the service: the offsets of the
            # failed and the cancelled deliveries never finished, so the commit below stops before them.
            async with asyncio.TaskGroup() as lane.tasks:
                while not stopping.is_set():
                    if len(in_flight) >= self.settings.max_in_flight:
                        lane.room.clear()
                        with contextlib.suppress(TimeoutError):
                            await asyncio.wait_for(lane.room.wait(), 0.2)
                    else:
                        batches = await lane.consumer.getmany(timeout_ms=200, max_records=self.settings.concurrency)
                        for tp, records in batches.items():
                            self._admit(lane, tp, records)
                    if time.monotonic() - last_commit >= 0.2:
                        await lane.commit()
                        last_commit = time.monotonic()
                # Stopping: the group waits for what is in flight (the runner bounds how long).
        finally:
            lane.tasks = None
            await lane.commit()  # what ended

    def _admit(self, lane: _Lane, tp: TopicPartition, records: list[ConsumerRecord]) -> None:
        assert lane.consumer is not None and lane.tasks is not None
        in_flight, room, gauge = lane.in_flight, lane.room, lane.gauge
        limit = self.settings.max_in_flight
        now = utcnow()
        for record in records:
            try:
                request = self.codec.decode(record.value, DeliverWebhook)
            except CodecError as exc:
                self._set_aside(lane, tp, record, str(exc))
                continue
            if request.not_before is not None and request.not_before > now:
                # Not due: hold the partition here until it is; everything behind it is due later still.
                lane.consumer.seek(tp, record.offset)
                lane.consumer.pause(tp)
                wait = (request.not_before - now).total_seconds()
                asyncio.get_running_loop().call_later(wait, self._resume, lane, tp)
                return
            lane.window.started(tp, record.offset)
            traceparent = tracing.child_of(tracing.from_headers(record.headers))
            task = lane.tasks.create_task(self._guarded(request, traceparent, lane.name), name=request.webhook_id)
            fail_fast(task, service=self.name)
            in_flight.add(task)
            gauge.inc()

            def done(t: asyncio.Task[None], offset: int = record.offset) -> None:
                in_flight.discard(t)
                gauge.dec()
                if len(in_flight) < limit:
                    room.set()
                if not t.cancelled() and t.exception() is None:
                    lane.window.finished(tp, offset)

            task.add_done_callback(done)

    def _set_aside(self, lane: _Lane, tp: TopicPartition, record: ConsumerRecord, reason: str) -> None:
        """Quarantine an unusable request; its offset is committable once the entry is written, so a
        crash before then quarantines it again rather than skip it unrecorded."""
        assert lane.tasks is not None  # _admit runs inside the lane's task group
        lane.window.started(tp, record.offset)
        # In the lane's task group like a delivery: a bug in it fails the lane (and the service) instead of
        # leaving the offset unfinished and the lane's commits stuck behind it.
        task = lane.tasks.create_task(self._quarantine(record, reason), name=f"quarantine-{record.offset}")
        lane.in_flight.add(task)  # shutdown waits for it like for a delivery

        def done(t: asyncio.Task[None], offset: int = record.offset) -> None:
            lane.in_flight.discard(t)
            if not t.cancelled() and t.exception() is None:
                lane.window.finished(tp, offset)

        task.add_done_callback(done)
        fail_fast(task, service=self.name)  # only a bug gets out of _quarantine: logged with its traceback

    async def _quarantine(self, record: ConsumerRecord, reason: str) -> None:
        backoff = 0.5
        while True:
            try:
                await self.quarantine.put(record, reason, self.name)
                return
            except RETRYABLE as exc:
                log.warning("quarantine.write_failed", error=repr(exc), retry_in_s=backoff)
                await asyncio.sleep(backoff)
                backoff = min(backoff * 2, 30.0)

    @staticmethod
    def _resume(lane: _Lane, tp: TopicPartition) -> None:
        if lane.consumer is not None and tp in lane.consumer.assignment():
            lane.consumer.resume(tp)

    # -- one delivery ---------------------------------------------------------------------------------

    async def _guarded(self, request: DeliverWebhook, traceparent: str, lane: str) -> None:
        """Deliver, and if recording the outcome fails (Kafka unreachable), try again rather than lose it."""
        structlog.contextvars.bind_contextvars(
            alert_id=request.alert_id,
            agency=request.agency,
            webhook_id=request.webhook_id,
            lane=lane,
            trace_id=tracing.trace_id(traceparent),
        )
        backoff = 0.5
        while True:
            try:
                await self._deliver(request, traceparent)
                return
            except (KafkaError, TimeoutError) as exc:
                log.warning("delivery.record_failed", error=repr(exc), retry_in_s=backoff)
                await asyncio.sleep(backoff)
                backoff = min(backoff * 2, 30.0)

    async def _deliver(self, request: DeliverWebhook, traceparent: str) -> None:
        assert self._producer is not None
        outbox = Outbox(self._producer, self.codec, self._writer)
        attempt_no = request.attempt + 1
        registry = self.registry.current
        agency = registry.agencies.get(request.agency)
        webhook = agency.webhook if agency is not None else None
        secrets = self.secrets.of(request.agency, registry) if webhook is not None else None
        if (agency is None or not agency.active) and request.event_type in CONTENT_EVENTS:
            # Routed before the agency was suspended (or removed), still in a retry tier: the content is not
            # its to receive any more. Notices (withdrawn, cancelled, reminders) reveal nothing and still go.
            observed = Observed(failure="agency_inactive", detail=f"{request.agency} is suspended or removed")
        elif webhook is None:
            observed = Observed(failure="no_endpoint", detail=f"{request.agency} has no webhook endpoint")
        elif self.endpoints.state(request.agency, webhook.url) == "disabled":
            reason = self.endpoints.current[request.agency].reason
            observed = Observed(failure="endpoint_disabled", detail=f"the endpoint is disabled ({reason})")
        elif not secrets:
            detail = f"no signing secret for registry v{registry.version} yet (have {self.secrets.versions})"
            observed = Observed(failure="secret_pending", detail=detail)
        else:
            observed = await self._attempt(request, webhook, secrets)
        decision = decide(
            observed,
            attempt=attempt_no,
            urgency=request.urgency,
            waited_s=(utcnow() - request.requested_at).total_seconds(),
            rng=self._rng,
            time_scale=self.settings.retry_time_scale,
        )
        if webhook is not None:
            await self._endpoint_learned(request.agency, webhook.url, decision)
        key = recipient_key(request.alert_id, request.agency)
        # The log line carries where the receiver is (for operators); records carry the failure's class only.
        where = {"url": webhook.url} if webhook is not None else {}
        if decision.outcome == "deferred":
            assert decision.delay_s is not None and decision.tier is not None
            again = msgspec.structs.replace(request, not_before=utcnow() + timedelta(seconds=decision.delay_s))
            await outbox.send(retry_topic(decision.tier), key, again, traceparent)
            await outbox.flush()
            log.info(
                "delivery.deferred",
                reason=decision.failure,
                retry_tier=decision.tier,
                retry_in_s=round(decision.delay_s, 2),
            )
            return
        # A deferral is not an attempt: a delivery that dies deferred has made only the attempts it had.
        attempts = request.attempt if observed.failure in DEFERRED else attempt_no
        outcome = decision.outcome
        event = DeliveryAttempted(
            webhook_id=request.webhook_id,
            alert_id=request.alert_id,
            agency=request.agency,
            attempt=attempts,
            outcome=outcome,
            status_code=observed.status,
            latency_ms=round(observed.latency_s * 1000, 2),
            error=decision.failure,
            attempted_at=utcnow(),
        )
        await outbox.send(DELIVERIES_EVENTS, key, event, traceparent)
        _attempts(request.agency, outcome).inc()
        fields = {
            "attempt": attempts,
            "status_code": observed.status,
            "latency_ms": event.latency_ms,
            "outcome": outcome,
        }
        if outcome == "delivered":
            log.info("delivery.succeeded", **fields)
        elif outcome == "retrying":
            assert decision.delay_s is not None and decision.tier is not None
            due = utcnow() + timedelta(seconds=decision.delay_s)
            again = msgspec.structs.replace(request, attempt=attempt_no, last_error=decision.failure, not_before=due)
            await outbox.send(retry_topic(decision.tier), key, again, traceparent)
            log.warning(
                "delivery.failed",
                error=decision.failure,
                detail=observed.detail,
                retry_tier=decision.tier,
                retry_in_s=round(decision.delay_s, 2),
                **where,
                **fields,
            )
        else:
            await self._give_up(outbox, request, attempts, decision.failure, key, traceparent)
            log.error("delivery.dead", error=decision.failure, detail=observed.detail, **where, **fields)
        await outbox.flush()

    async def _give_up(
        self, outbox: Outbox, request: DeliverWebhook, attempts: int, error: str | None, key: bytes, traceparent: str
    ) -> None:
        """To deliveries.dead (replayable) with an escalation, so a failed delivery never just vanishes."""
        now = utcnow()
        dead = msgspec.structs.replace(request, attempt=attempts, last_error=error, not_before=None)
        await outbox.send(DELIVERIES_DEAD, key, dead, traceparent)
        escalation = EscalationRaised(
            alert_id=request.alert_id,
            agency=request.agency,
            origin=request.origin,
            level=1,
            reason=f"webhook delivery failed after {attempts} attempt(s): {error}",
            kind="delivery_failed",
            deadline=now,
            raised_at=now,
        )
        await outbox.send(ALERTS_ESCALATIONS, key, escalation, traceparent)

    async def _attempt(self, request: DeliverWebhook, webhook: WebhookEntry, secrets: list[str]) -> Observed:
        endpoint = (request.agency, webhook.url)
        try:
            _check_url(webhook.url, self._private_allowed(webhook))
        except UnsafeDestination as exc:
            return Observed(failure="refused_destination", detail=str(exc))
        # Made once per endpoint (not as setdefault's argument, built and thrown away on every delivery).
        breaker = self._breakers.get(endpoint)
        if breaker is None:
            breaker = self._breakers[endpoint] = CircuitBreaker(
                threshold=self.settings.breaker_threshold,
                cooldown_s=self.settings.breaker_cooldown_s,
                max_cooldown_s=self.settings.breaker_max_cooldown_s,
                clock=time.monotonic,
                # A probe reports within its timeouts; one that has not by then never will.
                probe_timeout_s=2 * (self.settings.connect_timeout_s + self.settings.response_timeout_s),
                probe_wait_s=min(TIERS.values()) * self.settings.retry_time_scale,
            )
        slots = self._slots.get(endpoint)
        if slots is None:
            slots = self._slots[endpoint] = asyncio.Semaphore(self.settings.per_endpoint_concurrency)
        waiting = self._waiting.get(endpoint, 0)
        if slots.locked() and not may_queue(
            waiting=waiting,
            queued=self._queued,
            endpoints=self._queueing,
            per_endpoint_queue=self.settings.per_endpoint_queue,
            max_in_flight=self.settings.max_in_flight,
        ):
            # Put off rather than queued: a delivery waiting here holds a place in its lane's in-flight limit,
            # which every agency shares (settings.py, queueing.py). For about as long as the queue takes to
            # drain at the endpoint's pace: soon for a fast one in a burst, long for one that answers in
            # seconds, whose backlog would otherwise cycle through a retry tier every few seconds (red team).
            return Observed(
                failure="endpoint_busy",
                retry_after=self._busy_wait(endpoint, waiting),
                detail=f"{waiting} deliveries already wait for the endpoint",
            )
        self._waiting[endpoint] = waiting + 1
        self._queued += 1
        if waiting == 0:
            self._queueing += 1
        queued = True
        try:
            async with slots:
                self._dequeued(endpoint)
                queued = False
                # Asked once the slot is ours: the requests ahead of this one may just have opened the circuit,
                # or been answered 410 Gone (then the endpoint is disabled before the slot is given up, below).
                if self.endpoints.state(request.agency, webhook.url) == "disabled":
                    return Observed(failure="endpoint_disabled", detail="the endpoint was disabled meanwhile")
                if not breaker.allow():
                    return Observed(
                        failure="circuit_open",
                        retry_after=circuit_wait(breaker.remaining()),
                        detail="the endpoint failed repeatedly",
                    )
                observed = await self._post(request, webhook, secrets)
                if observed.latency_s > 0:
                    now = time.monotonic()
                    self._latency[endpoint] = (
                        slowest_recent(self._latency.get(endpoint), observed.latency_s, now),
                        now,
                    )
                opened = False
                if observed.failure == "refused_destination":
                    # Refused at connect time (its name now resolves to an internal address): no verdict on
                    # the endpoint follows from it (outcome.py), yet the breaker let this request through and,
                    # were it the probe, would wait for its answer (red team). A failure, then.
                    opened = breaker.failure()
                # A 410 disables the endpoint here before the next request waiting for this slot is let through
                # (a quiet CI run saw 7 requests reach a gone endpoint with 4 slots); _endpoint_learned then finds
                # it disabled already.
                gone: EndpointChanged | None = None
                if observed.status == 410:
                    gone = self._in_force(
                        request.agency, webhook.url, "disabled", f"the endpoint answered {failure_of(410)}"
                    )
        finally:
            if queued:  # cancelled while waiting for a slot
                self._dequeued(endpoint)
        # The other replicas are told once the slot is given up: the requests queued for it need not wait on the
        # broker to find the endpoint disabled.
        if gone is not None:
            await self._publish(gone)
        if opened:
            CIRCUIT_OPEN.labels(request.agency).set(1)
            await self._set_state(request.agency, webhook.url, "failing", "circuit opened: refused_destination")
        return observed

    def _dequeued(self, endpoint: tuple[str, str]) -> None:
        self._waiting[endpoint] -= 1
        self._queued -= 1
        if self._waiting[endpoint] == 0:
            self._queueing -= 1

    def _busy_wait(self, endpoint: tuple[str, str], waiting: int) -> float:
        """Seconds to put off a delivery to a busy endpoint (schedule.py `busy_wait`)."""
        known = self._latency.get(endpoint)
        latency = slowest_recent(known, 0.0, time.monotonic()) if known is not None else None
        return busy_wait(
            latency, waiting, self.settings.per_endpoint_concurrency, self._rng, self.settings.retry_time_scale
        )

    async def _endpoint_learned(self, agency: str, url: str, decision: Decision) -> None:
        """Tell the endpoint's circuit breaker, and every replica when its state changes, what the attempt showed."""
        breaker = self._breakers.get((agency, url))
        if decision.endpoint == "success":
            if breaker is not None and breaker.success():
                CIRCUIT_OPEN.labels(agency).set(0)
                await self._set_state(agency, url, "active", "delivered again")
        elif decision.endpoint == "disable":
            # Its breaker goes with it: an operator re-enables the endpoint to a fresh, closed one (a probe
            # answered 410 had left it half-open, waiting for that probe, red team).
            if self._breakers.pop((agency, url), None) is not None:
                CIRCUIT_OPEN.labels(agency).set(0)
            await self._set_state(agency, url, "disabled", f"the endpoint answered {decision.failure}")
        elif decision.endpoint == "failure" and breaker is not None and breaker.failure():
            CIRCUIT_OPEN.labels(agency).set(1)
            await self._set_state(agency, url, "failing", f"circuit opened: {decision.failure}")

    async def _post(self, request: DeliverWebhook, webhook: WebhookEntry, secrets: list[str]) -> Observed:
        session = self._private if self._private_allowed(webhook) else self._public
        assert session is not None
        headers = signed_headers(request.webhook_id, utcnow(), request.payload, secrets)
        headers["Content-Type"] = "application/json"
        started = time.perf_counter()
        try:
            async with session.post(
                webhook.url, data=request.payload, headers=headers, allow_redirects=False
            ) as response:
                # Read a bounded amount: a receiver's body is not ours to buffer without limit.
                await response.content.read(self.settings.max_response_bytes)
                status = response.status
                # As docs/webhooks.md says: only a 429 or a 503 asks for a later retry.
                asked = status in (429, 503)
                retry_after = parse_retry_after(response.headers.get("Retry-After")) if asked else None
        except (aiohttp.ClientError, TimeoutError, OSError, EofStream) as exc:
            # EofStream: aiohttp's end of a connection's messages, which it turns into a ClientError on every path
            # we know of; caught too because a receiver must never be able to stop the dispatcher.
            latency = time.perf_counter() - started
            _latency(request.agency).observe(latency)
            return Observed(failure=classify(exc), detail=f"{type(exc).__name__}: {exc}"[:500], latency_s=latency)
        latency = time.perf_counter() - started
        _latency(request.agency).observe(latency)
        if not 100 <= status <= 599:
            # aiohttp takes any three digits: a receiver's own classes (http_0 ... http_999) would reach records,
            # which say what the originator and others may read (outcome.py). Not HTTP: malformed.
            return Observed(failure="connection_error", detail=f"status {status} is not HTTP", latency_s=latency)
        return Observed(status=status, retry_after=retry_after, detail=f"HTTP {status}", latency_s=latency)

    async def _set_state(self, agency: str, url: str, state: EndpointState, reason: str) -> None:
        change = self._in_force(agency, url, state, reason)
        if change is not None:
            await self._publish(change)

    def _in_force(self, agency: str, url: str, state: EndpointState, reason: str) -> EndpointChanged | None:
        """Put an endpoint's new state in force on this replica, before any record of it is written (None: it
        is in force already): while that write waits on the broker, this replica's other lanes must already see
        it (a 410 must stop the next request, not the one after a slow produce)."""
        if self.endpoints.state(agency, url) == state:
            return None
        change = endpoint_change(agency, url, state, reason, by=self.name)
        self.endpoints.current[agency] = change
        return change

    async def _publish(self, change: EndpointChanged) -> None:
        """Tell every replica (deliveries.endpoints) of a change in force here."""
        assert self._producer is not None
        await publish_change(self._producer, self.codec, change)
        log.warning("endpoint.changed", state=change.state, reason=change.reason)


def build(settings: DispatcherSettings, codec: Codec | None = None) -> Dispatcher:
    return Dispatcher(settings, codec or Codec.from_directory())
