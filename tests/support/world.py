"""Building registries and alerts for tests, and reading what the system produced.

Agency codes get a per-test suffix (`IQ-A` + suffix) so tests sharing one broker never see each other's
agency topics.
"""

from __future__ import annotations

import asyncio
import base64
import hashlib
import inspect
import os
import secrets
import signal
import sys
import tempfile
import uuid
from collections import Counter
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, TypeVar

import aiohttp
import msgspec
from aiokafka import AIOKafkaProducer, TopicPartition
from aiokafka.admin import NewTopic
from aiokafka.record import default_records

from services.common.codec import Codec
from services.common.errors import CodecError
from services.common.kafka import admin as kafka_admin
from services.common.kafka import connection, consumer, partitions_of, read_to_end
from services.common.partitioner import partition_for
from services.common.records import AlertRouted
from services.common.registry import Agency, Agreement, RegistryDocument, Subscription, Webhook
from services.common.settings import KafkaSettings
from services.common.topics import ALERTS_ROUTED
from services.demo.samples import alert_submission
from tests.support.audit_key import audit_keys

T = TypeVar("T", bound=msgspec.Struct)
ROOT = Path(__file__).resolve().parents[2]


def new_secret() -> str:
    return "whsec_" + base64.b64encode(secrets.token_bytes(32)).decode()


@dataclass
class Cast:
    """Agencies of one test: code by role, their tokens and webhook secrets."""

    suffix: str = field(default_factory=lambda: uuid.uuid4().hex[:6].upper())
    tokens: dict[str, str] = field(default_factory=dict)
    secrets: dict[str, list[str]] = field(default_factory=dict)

    def code(self, role: str) -> str:
        return f"{role}{self.suffix}"

    def agency(
        self,
        role: str,
        country: str,
        *,
        subscriptions: list[Subscription] | None = None,
        webhook_url: str | None = None,
        active: bool = True,
    ) -> Agency:
        code = self.code(role)
        token = f"token-{code}-{uuid.uuid4().hex}"
        self.tokens[code] = token
        webhook = None
        if webhook_url is not None:
            self.secrets[code] = [new_secret()]
            webhook = Webhook(url=f"{webhook_url}/hooks/{code}", secrets=self.secrets[code], allow_private=True)
        return Agency(
            code=code,
            name=f"Test agency {code}",
            country=country,
            active=active,
            token_sha256=[hashlib.sha256(token.encode()).hexdigest()],
            subscriptions=subscriptions if subscriptions is not None else [Subscription(categories=["*"])],
            webhook=webhook,
        )

    def bearer(self, code: str) -> dict[str, str]:
        return {"Authorization": f"Bearer {self.tokens[code]}"}


def agreement(
    id: str,
    parties: list[str] | None = None,
    *,
    from_: list[str] | None = None,
    to: list[str] | None = None,
    categories: list[str] | None = None,
    max_tlp: str = "AMBER",
    redact: list[str] | None = None,
) -> Agreement:
    return Agreement(
        id=id,
        kind="directed" if from_ else "multilateral",
        parties=parties or [],
        from_=from_ or [],
        to=to or [],
        categories=categories or ["*"],
        max_tlp=max_tlp,
        redact=redact or [],
        valid_from=datetime(2020, 1, 1, tzinfo=UTC),
    )


def registry(
    agencies: list[Agency],
    agreements: list[Agreement],
    operator_token: str | None = None,
    regions: dict[str, list[str]] | None = None,
) -> RegistryDocument:
    from services.common.registry.model import Operator

    operators = []
    if operator_token:
        operators.append(Operator(name="duty-desk", token_sha256=[hashlib.sha256(operator_token.encode()).hexdigest()]))
    return RegistryDocument(
        regions=regions or {}, agencies=agencies, operators=operators, agreements=agreements, audit=audit_keys()
    )


def alert_json(**overrides: Any) -> dict[str, Any]:
    """A valid submission body; override any field."""
    return alert_submission(**overrides)


async def eventually(check: Any, within_s: float = 20.0) -> Any:
    """Poll `check()` until it returns a truthy value: the pipeline is asynchronous by design."""
    async with asyncio.timeout(within_s):
        while True:
            result = check()
            if inspect.isawaitable(result):
                result = await result
            if result:
                return result
            await asyncio.sleep(0.1)


async def settled(check: Any, quiet_s: float = 5.0, within_s: float = 90.0) -> Any:
    """Poll `check()` until it returns a truthy value that then stays the same for `quiet_s`: for outcomes that
    arrive one by one (notices), where a fixed sleep reads a partial count on a loaded machine."""
    loop = asyncio.get_running_loop()
    async with asyncio.timeout(within_s):
        last, since = None, loop.time()
        while True:
            result = check()
            if inspect.isawaitable(result):
                result = await result
            if result != last:
                last, since = result, loop.time()
            elif result and loop.time() - since >= quiet_s:
                return result
            await asyncio.sleep(0.2)


async def create_topic(kafka: KafkaSettings, name: str, partitions: int = 1, **configs: str) -> None:
    """A topic outside services/common/topics.yaml, for a test's own use (configs such as `retention.ms`)."""
    admin = kafka_admin(kafka, "test-admin")
    await admin.start()
    try:
        await admin.create_topics([NewTopic(name, partitions, 1, topic_configs=configs or None)])
    finally:
        await admin.close()


async def read_topic(kafka: KafkaSettings, codec: Codec, topic: str, into: type[T]) -> list[tuple[bytes, T]]:
    """Every committed record of a topic (read_committed) that decodes, with its key (poison records that
    tests/integration/test_record_fuzz.py wrote to the shared topics are left out)."""
    found = []
    async for r in read_to_end(kafka, topic, name="test-reader"):
        try:
            found.append((r.key, codec.decode(r.value, into)))
        except CodecError:
            continue
    return found


async def decisions(kafka: KafkaSettings, codec: Codec, ids: set[str]) -> Counter[str]:
    """How many routing decisions `alerts.routed` holds for each of `ids` (exactly once: 1 each)."""
    routed = await read_topic(kafka, codec, ALERTS_ROUTED, AlertRouted)
    return Counter(r.alert_id for _, r in routed if r.alert_id in ids)


async def end_offsets(kafka: KafkaSettings, topic: str) -> dict[TopicPartition, int]:
    c = consumer(kafka, f"offsets-{uuid.uuid4().hex[:6]}", group=None)
    await c.start()
    try:
        partitions = await partitions_of(c, [topic])
        result: dict[TopicPartition, int] = await c.end_offsets(partitions)
        return result
    finally:
        await c.stop()


class _RawName(str):
    """A header name that aiokafka's pure-Python batch builder writes as the given bytes, whatever they are."""

    raw: bytes

    def __new__(cls, raw: bytes) -> _RawName:
        name = super().__new__(cls, "raw")
        name.raw = raw
        return name

    def encode(self, encoding: str = "utf-8", errors: str = "strict") -> bytes:
        return self.raw


async def write_with_raw_header_name(kafka: KafkaSettings, topic: str, key: bytes, value: bytes, name: bytes) -> None:
    """Write one record whose header name is `name`, any bytes, as a hostile writer's own client could: Kafka's
    clients (aiokafka's too) write names only as UTF-8 text, so this builds the record batch with aiokafka's
    pure-Python builder, handed a name that encodes to those bytes (this batch only: services running in the
    test's process keep their own)."""
    p = AIOKafkaProducer(**connection(kafka), client_id=f"{kafka.client_id_prefix}-test-raw-header", acks="all")
    await p.start()
    try:
        batch = p.create_batch()
        batch._builder = default_records._DefaultRecordBatchBuilderPy(
            2, 0, is_transactional=0, producer_id=-1, producer_epoch=-1, base_sequence=-1, batch_size=1 << 20
        )
        batch.append(timestamp=None, key=key, value=value, headers=[(_RawName(name), b"\xff")])
        partition = partition_for(key, sorted(await p.partitions_for(topic)))
        await (await p.send_batch(batch, topic, partition=partition))
    finally:
        await p.stop()


async def rctc(*argv: str, kafka: KafkaSettings) -> tuple[int, str, str]:
    """Run the real `rctc` command line in a process, connecting as `kafka` says: (exit code, stdout, stderr)."""
    env = {**os.environ, **kafka.as_env()}
    with tempfile.TemporaryDirectory(prefix="rctc-cli-") as folder:
        if kafka.password_file is None and kafka.password is not None:
            # rctc also reads .run/rctc.env in the repository's root, where `make run` leaves one naming the local
            # admin's password file, and a password file wins over a password (KafkaSettings). Given as a file
            # of its own, this principal's password wins over that one (the environment beats the env file).
            (Path(folder) / "password").write_text(kafka.password.get_secret_value())
            env.pop("RCTC_KAFKA__PASSWORD", None)
            env["RCTC_KAFKA__PASSWORD_FILE"] = str(Path(folder) / "password")
        process = await asyncio.create_subprocess_exec(
            sys.executable,
            "-m",
            "services.cli.main",
            *argv,
            cwd=ROOT,
            env=env,
            stdout=asyncio.subprocess.PIPE,
            stderr=asyncio.subprocess.PIPE,
        )
        out, err = await process.communicate()
    return process.returncode or 0, out.decode(), err.decode()


async def serves_ready(ops_port: int) -> bool:
    """Whether the service whose ops server is on `ops_port` answers /readyz with 200 (False while it starts)."""
    try:
        async with aiohttp.ClientSession() as http, http.get(f"http://127.0.0.1:{ops_port}/readyz") as r:
            return r.status == 200
    except aiohttp.ClientError:
        return False


async def start_service(
    name: str, kafka: KafkaSettings, log_to: Path | None = None, **env: str
) -> asyncio.subprocess.Process:
    """A service as the real process (`python -m services.<name>`), in this test's groups and ids; its JSON
    log lines go to `log_to` if given."""
    full = {
        **os.environ,
        **kafka.as_env(),
        "RCTC_LOG__FORMAT": "json",
        **env,
    }
    out = os.open(log_to, os.O_WRONLY | os.O_CREAT | os.O_APPEND) if log_to else asyncio.subprocess.DEVNULL
    try:
        return await asyncio.create_subprocess_exec(
            sys.executable, "-m", f"services.{name}", cwd=ROOT, env=full, stdout=out, stderr=asyncio.subprocess.STDOUT
        )
    finally:
        if log_to:
            os.close(out)  # the child has its own copy


async def ready_then_stopped(process: asyncio.subprocess.Process, ops_port: int, log: Path) -> None:
    """A started service becomes ready (/readyz answers 200 before the process ends), then stops on SIGTERM
    with exit 0; killed if it has not ended, so no test leaves it behind. `log`, its output, says why on
    failure."""

    def output() -> str:  # read only when an assertion fails, its message
        return log.read_text()

    try:

        async def ready() -> bool:
            assert process.returncode is None, output()
            return await serves_ready(ops_port)

        await eventually(ready, within_s=60)
        process.send_signal(signal.SIGTERM)
        async with asyncio.timeout(30):
            assert await process.wait() == 0, output()
    finally:
        if process.returncode is None:
            process.kill()
            await process.wait()
