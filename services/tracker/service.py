"""The tracker: follows alerts.routed, deliveries.events and acks.submitted from the beginning, folds them
into a `Ledger`, and answers the gateway's status queries on an internal HTTP API.

Its state is derived from the topics alone, so a restart rebuilds it by reading them again and nothing is
committed. This replica reads every partition and answers for every alert; partition ownership with a
changelog, and deadlines, come with acknowledgement tracking (issue 5).
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from typing import Any

import msgspec
from aiohttp import web
from aiokafka import AIOKafkaConsumer

from services.common.codec import Codec
from services.common.errors import CodecError
from services.common.kafka import consumer, partitions_of
from services.common.logs import get_logger
from services.common.metrics import RECORDS
from services.common.ops import bound_port
from services.common.records import AckSubmitted, AlertRouted, DeliveryAttempted
from services.common.topics import ACKS_SUBMITTED, ALERTS_ROUTED, DELIVERIES_EVENTS
from services.tracker.settings import TrackerSettings
from services.tracker.state import Ledger, Viewer

log = get_logger("rctc.tracker")
TOPICS = (ALERTS_ROUTED, DELIVERIES_EVENTS, ACKS_SUBMITTED)


class Tracker:
    name = "tracker"

    def __init__(self, settings: TrackerSettings, codec: Codec) -> None:
        self.settings = settings
        self.codec = codec
        self.ledger = Ledger()
        self._consumer: AIOKafkaConsumer | None = None
        self._runner: web.AppRunner | None = None
        self._caught_up = False
        self.port: int | None = None

    async def start(self) -> None:
        c = consumer(self.settings.kafka, "tracker", group=None)
        self._consumer = c  # kept before start, so stop() closes it even if start fails
        await c.start()
        partitions = await partitions_of(c, TOPICS)
        c.assign(partitions)
        await c.seek_to_beginning(*partitions)
        ends = await c.end_offsets(partitions)
        for tp, end in ends.items():
            while await c.position(tp) < end:
                await self._poll(200)
        self._caught_up = True
        app = web.Application()
        app.router.add_get("/internal/alerts/{alert_id}", self._status)
        app.router.add_get("/internal/alerts/{alert_id}/routing", self._routing)
        app.router.add_get("/internal/alerts/{alert_id}/recipients/{agency}", self._recipient)
        self._runner = web.AppRunner(app, access_log=None)
        await self._runner.setup()
        await web.TCPSite(self._runner, self.settings.http.host, self.settings.http.port).start()
        self.port = bound_port(self._runner)

    async def run(self, stopping: asyncio.Event) -> None:
        while not stopping.is_set():
            await self._poll(250)

    async def stop(self) -> None:
        if self._runner is not None:
            await self._runner.cleanup()
        if self._consumer is not None:
            await self._consumer.stop()

    def readiness(self) -> dict[str, bool]:
        return {"caught_up": self._caught_up, "http": self.port is not None}

    async def _poll(self, timeout_ms: int) -> None:
        assert self._consumer is not None
        batches = await self._consumer.getmany(timeout_ms=timeout_ms, max_records=1000)
        for tp, records in batches.items():
            for record in records:
                try:
                    self._apply(tp.topic, record.value)
                    RECORDS.labels(self.name, tp.topic, "applied").inc()
                except CodecError as exc:
                    RECORDS.labels(self.name, tp.topic, "unreadable").inc()
                    log.error(
                        "record.unreadable",
                        topic=tp.topic,
                        partition=tp.partition,
                        offset=record.offset,
                        error=str(exc),
                    )

    def _apply(self, topic: str, value: bytes) -> None:
        if topic == ALERTS_ROUTED:
            routed = self.codec.decode(value, AlertRouted)
            self.ledger.apply_routed(routed)
            if self._caught_up:
                log.info(
                    "alert.tracked",
                    alert_id=routed.alert_id,
                    agency=routed.origin,
                    recipients=sum(1 for d in routed.decisions if d.delivered),
                )
        elif topic == DELIVERIES_EVENTS:
            self.ledger.apply_attempt(self.codec.decode(value, DeliveryAttempted))
        else:
            ack = self.codec.decode(value, AckSubmitted)
            changed = self.ledger.apply_ack(ack)
            if self._caught_up:
                log.info(
                    "ack.received",
                    alert_id=ack.alert_id,
                    agency=ack.agency,
                    response=ack.response,
                    channel=ack.channel,
                    outcome="applied" if changed else "ignored",
                )

    async def _status(self, request: web.Request) -> web.Response:
        return self._as_viewer(request, self.ledger.status)

    async def _routing(self, request: web.Request) -> web.Response:
        return self._as_viewer(request, self.ledger.routing_of)

    @staticmethod
    def _as_viewer(request: web.Request, query: Callable[[str, Viewer], tuple[int, dict[str, Any]]]) -> web.Response:
        """Answer `query` for the viewer the gateway authenticated (it passes kind and name)."""
        kind = request.query.get("viewer_kind")
        name = request.query.get("viewer")
        if kind not in ("agency", "operator") or not name:
            return web.json_response({"error": "bad_request", "message": "viewer_kind and viewer"}, status=400)
        status, body = query(request.match_info["alert_id"], Viewer(kind, name))  # type: ignore[arg-type]
        return web.json_response(body, status=status, dumps=_dumps)

    async def _recipient(self, request: web.Request) -> web.Response:
        status, body = self.ledger.recipient(request.match_info["alert_id"], request.match_info["agency"])
        return web.json_response(body, status=status)


def _dumps(value: object) -> str:
    return msgspec.json.encode(value).decode()


def build(settings: TrackerSettings, codec: Codec | None = None) -> Tracker:
    return Tracker(settings, codec or Codec.from_directory())
