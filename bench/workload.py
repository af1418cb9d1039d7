"""What the benchmark sends: ten recipient agencies under one agreement, alerts, and readers of the results."""

from __future__ import annotations

import asyncio
import base64
import hashlib
import json
import secrets as secrets_module
import time
import uuid
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import aiohttp

from bench.harness import Broker, Service, TimedReceivers, service_env
from services.common.codec import Codec
from services.common.kafka import consumer, partitions_of
from services.common.records import AlertEnriched, utcnow
from services.common.registry import Agency, Agreement, RegistryDocument, Subscription, Webhook
from services.common.registry.model import Operator, RateLimit
from services.common.registry.publish import publish_registry
from services.common.settings import KafkaSettings
from services.common.topics import apply_topics, load_declarations
from services.demo.samples import alert_submission

RECIPIENTS = 10
ORIGIN = "IQ-BENCH"
ORIGIN_TOKEN = "bench-origin"
OPERATOR = "bench-operator"
# What the router writes per alert: a copy and a webhook request per recipient, and the decision.
OUTPUTS_PER_ALERT = 2 * RECIPIENTS + 1


@dataclass
class Bench:
    """What every step of one run shares: the broker, the codec, the receivers, the agencies, the output."""

    kafka: KafkaSettings
    codec: Codec
    receivers: TimedReceivers
    codes: list[str]
    out: Path
    broker_pid: int = 0  # the broker's process, for its CPU time (0: not known)

    def service(self, step: str, name: str, prefix: str, **env: str) -> Service:
        """A service process whose log (warnings and up) goes to <out>/logs/<step>/<name>.log."""
        return Service(name, service_env(self.kafka, prefix, **env), log_dir=self.out / "logs" / step)


def new_secret() -> str:
    return "whsec_" + base64.b64encode(secrets_module.token_bytes(32)).decode()


def bench_registry(receiver_port: int) -> tuple[RegistryDocument, list[str], dict[str, list[str]]]:
    countries = ["JO", "SA", "AE", "EG", "KW", "LB", "OM", "QA", "BH", "TR"]
    codes = [f"{c}-BENCH{i}" for i, c in enumerate(countries[:RECIPIENTS])]
    secrets = {code: [new_secret()] for code in codes}
    agencies = [
        Agency(
            code=ORIGIN,
            name="origin",
            country="IQ",
            token_sha256=[hashlib.sha256(ORIGIN_TOKEN.encode()).hexdigest()],
            # The bench measures the pipeline's saturation through the gateway: no per-agency limit in the way.
            rate_limit=RateLimit(per_second=1_000_000.0, burst=1_000_000),
        )
    ]
    agencies += [
        Agency(
            code=code,
            name=code,
            country=code[:2],
            subscriptions=[Subscription(categories=["*"])],
            webhook=Webhook(
                url=f"http://127.0.0.1:{receiver_port}/hooks/{code}", secrets=secrets[code], allow_private=True
            ),
        )
        for code in codes
    ]
    agreement = Agreement(
        id="BENCH",
        kind="multilateral",
        parties=[ORIGIN, *codes],
        categories=["*"],
        max_tlp="AMBER",
        redact=["subjects"],
    )
    operators = [Operator(name="bench", token_sha256=[hashlib.sha256(OPERATOR.encode()).hexdigest()])]
    return RegistryDocument(agencies=agencies, agreements=[agreement], operators=operators), codes, secrets


def enriched_record(alert_id: str) -> AlertEnriched:
    from services.gateway.submission import parse_submission

    now = utcnow()
    alert = parse_submission(json.dumps(alert_submission(affected_countries=["IQ"])).encode(), now=now)
    return AlertEnriched(alert_id=alert_id, origin=ORIGIN, submitted_at=now, enriched_at=now, priority=2, alert=alert)


async def wait_ready(port: int, within_s: float = 60) -> None:
    async with asyncio.timeout(within_s), aiohttp.ClientSession() as http:
        while True:
            try:
                async with http.get(f"http://127.0.0.1:{port}/readyz") as r:
                    if r.status == 200:
                        return
            except aiohttp.ClientError:
                pass
            await asyncio.sleep(0.1)


class Arrivals:
    """A read_committed reader noting when each record's id first appears on some topics.

    `ident` gets the decoded record, or with `kind` None the raw ConsumerRecord: at saturation, decoding
    every decision cost the harness a tenth of a core, taken from the router it measures."""

    def __init__(self, kafka: KafkaSettings, codec: Codec, topics: list[str], kind: type | None, ident: Any) -> None:
        self.kafka, self.codec, self.topics, self.kind, self.ident = kafka, codec, topics, kind, ident
        self.seen: dict[Any, float] = {}
        self._task: asyncio.Task[None] | None = None
        self._stop = asyncio.Event()

    async def __aenter__(self) -> Arrivals:
        c = consumer(self.kafka, f"bench-reader-{uuid.uuid4().hex[:6]}", group=None, from_beginning=False)
        await c.start()
        partitions = await partitions_of(c, self.topics)
        c.assign(partitions)
        await c.seek_to_end(*partitions)
        for tp in partitions:
            await c.position(tp)

        async def read() -> None:
            try:
                while not self._stop.is_set():
                    for records in (await c.getmany(timeout_ms=100)).values():
                        now = time.time()
                        for r in records:
                            record = r if self.kind is None else self.codec.decode(r.value, self.kind)
                            self.seen.setdefault(self.ident(record), now)
            finally:
                await c.stop()

        self._task = asyncio.create_task(read())
        return self

    async def __aexit__(self, *_: object) -> None:
        self._stop.set()
        if self._task is not None:
            await self._task

    async def until(self, count: int, within_s: float) -> float:
        async with asyncio.timeout(within_s):
            while len(self.seen) < count:
                await asyncio.sleep(0.02)
        return max(self.seen.values())


async def prepared(broker: Broker, codec: Codec, receivers: TimedReceivers, out: Path) -> Bench:
    """Topics and the benchmark's registry on a fresh broker."""
    kafka = broker.settings(client_id_prefix="bench")
    await apply_topics(kafka, list(load_declarations().topics), replication_factor=1)
    doc, codes, secrets = bench_registry(receivers.port)
    for code, keys in secrets.items():
        receivers.receivers.register(code, keys)
    await publish_registry(kafka, codec, doc, source="bench", replication_factor=1)
    return Bench(kafka, codec, receivers, codes, out, broker.pid())
