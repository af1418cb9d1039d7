"""Wiring of the gateway: one function that builds it from settings, with its collaborators swappable."""

from __future__ import annotations

import asyncio

import aiohttp
from aiohttp import web

from services.common.codec import Codec
from services.common.internal import bearer
from services.common.kafka import AnyProducer, Outbox, hot_producer, learn_topics
from services.common.ops import bound_port
from services.common.registry import CredentialsView, RegistryView
from services.common.topics import ACKS_SUBMITTED, ALERTS_SUBMITTED
from services.gateway.api import GatewayApi
from services.gateway.idempotency import KeyReuseGuard
from services.gateway.kafka_acks import KafkaAcks
from services.gateway.kafka_submissions import KafkaSubmissions
from services.gateway.settings import GatewaySettings


class Gateway:
    name = "gateway"

    def __init__(self, settings: GatewaySettings, codec: Codec) -> None:
        self.settings = settings
        self.codec = codec
        self.registry = RegistryView(settings.kafka, codec, name="gateway")
        self.credentials = CredentialsView(settings.kafka, codec, name="gateway")
        self._producer: AnyProducer | None = None
        self._session: aiohttp.ClientSession | None = None
        self._runner: web.AppRunner | None = None
        self._acks: KafkaAcks | None = None
        self._submissions: KafkaSubmissions | None = None
        self.port: int | None = None

    async def start(self) -> None:
        await self.registry.start()
        await self.credentials.start()
        self._producer = hot_producer(self.settings.kafka, "gateway")
        await self._producer.start()
        await learn_topics(self._producer, [ALERTS_SUBMITTED, ACKS_SUBMITTED])
        self._acks = KafkaAcks(self.settings.kafka, self.codec, self._producer, self.registry)
        await self._acks.start()
        # One guard for both channels: a key means one alert id whichever way the alert came.
        keys = KeyReuseGuard(self.settings.idempotency_keys_per_agency)
        max_body = self.settings.http.max_body_bytes
        self._submissions = KafkaSubmissions(
            self.settings.kafka, self.codec, self._producer, self.registry, keys, max_body_bytes=max_body
        )
        await self._submissions.start()
        # The session talks to the tracker only, so it carries the internal credential on every request.
        self._session = aiohttp.ClientSession(
            timeout=aiohttp.ClientTimeout(total=5), headers=bearer(self.settings.internal_token)
        )
        prod = self._producer
        api = GatewayApi(
            self.registry,
            self.credentials,
            lambda: Outbox(prod, self.codec),
            self._session,
            self.settings.tracker_url,
            keys,
            max_body_bytes=max_body,
        )
        app = web.Application(middlewares=[api.middleware], client_max_size=self.settings.http.max_body_bytes)
        app.add_routes(api.routes())
        self._runner = web.AppRunner(app, access_log=None, shutdown_timeout=self.settings.shutdown_timeout_s)
        await self._runner.setup()
        await web.TCPSite(self._runner, self.settings.http.host, self.settings.http.port).start()
        self.port = bound_port(self._runner)

    async def run(self, stopping: asyncio.Event) -> None:
        assert self._acks is not None and self._submissions is not None
        async with asyncio.TaskGroup() as tasks:
            tasks.create_task(self.registry.run(stopping))
            tasks.create_task(self.credentials.run(stopping))
            tasks.create_task(self._acks.run(stopping))
            tasks.create_task(self._submissions.run(stopping))

    async def stop(self) -> None:
        # Stop taking requests first (in-flight ones finish), then flush and close the producer.
        if self._runner is not None:
            await self._runner.cleanup()
        if self._submissions is not None:
            await self._submissions.stop()
        if self._acks is not None:
            await self._acks.stop()
        if self._session is not None:
            await self._session.close()
        if self._producer is not None:
            await self._producer.stop()
        await self.credentials.stop()
        await self.registry.stop()

    def readiness(self) -> dict[str, bool]:
        return {"registry": self.registry.loaded, "credentials": self.credentials.loaded, "http": self.port is not None}


def build(settings: GatewaySettings, codec: Codec | None = None) -> Gateway:
    return Gateway(settings, codec or Codec.from_directory())
