"""Attacks of a hostile or compromised agency on the secured broker that a red team found to work, each fixed.

The rest of what was tried (other agencies' topics, services' topics, groups and transactional ids outside
the prefix, admin operations, wrong mechanisms and passwords, poison submissions) is refused and is checked
by test_acl_matrix.py and test_kafka_submissions.py.
"""

from __future__ import annotations

import asyncio
import secrets
import time
from collections.abc import Iterator

import pytest
from aiokafka import AIOKafkaConsumer
from aiokafka.errors import KafkaError
from confluent_kafka import OFFSET_BEGINNING, Consumer, Producer, TopicPartition
from confluent_kafka.admin import AdminClient, NewTopic
from pydantic import SecretStr

from services.cli.local_broker import LocalBroker
from services.common.acls import Acl
from services.common.kafka import connection
from services.common.kafka_admin import SecurityAdmin
from services.common.librdkafka import confluent_config
from services.common.settings import KafkaSettings

pytestmark = pytest.mark.kafka

# Short, so that the test waits seconds; production and `make run` use the script's 10 minutes.
REAUTH_MS = 3000
TOPIC = "agency.XX-STOLEN.alerts"
USER = "agency-XX-STOLEN"


@pytest.fixture(scope="module")
def short_sessions(tmp_path_factory: pytest.TempPathFactory) -> Iterator[LocalBroker]:
    broker = LocalBroker.start(tmp_path_factory.mktemp("reauth-kafka"), reauth_ms=REAUTH_MS)
    try:
        yield broker
    finally:
        broker.stop()


def _as(admin: KafkaSettings, user: str, password: str) -> KafkaSettings:
    return admin.model_copy(update={"username": user, "password": SecretStr(password)})


async def test_a_rotated_password_ends_the_sessions_opened_with_the_old_one(short_sessions: LocalBroker) -> None:
    """A thief reading with a stolen password (librdkafka or aiokafka) gets nothing written once the
    session bound has passed after `rctc agency credentials --rotate` (the new password is test_acl_matrix's)."""
    admin = short_sessions.admin_settings(client_id_prefix="red")
    security = SecurityAdmin(admin)
    stolen = secrets.token_urlsafe(24)
    await security.set_password(USER, stolen)
    await security.create(
        [Acl(USER, "topic", TOPIC, "literal", "read"), Acl(USER, "group", f"{USER}.", "prefixed", "read")]
    )
    seed = Producer(confluent_config(admin, "seed"))
    topics = AdminClient(confluent_config(admin, "topics"))  # kept: a collected client cancels its futures
    for future in topics.create_topics([NewTopic(TOPIC, 1, 1)]).values():
        future.result()

    def write(value: bytes) -> None:
        seed.produce(TOPIC, value, key=b"k", partition=0)
        assert seed.flush(15) == 0

    write(b"before-rotation")
    thief_settings = _as(admin, USER, stolen)
    thief_rd = Consumer(
        {
            **confluent_config(thief_settings, "thief-rd"),
            "group.id": f"{USER}.thief",
            "enable.auto.commit": False,  # nothing to commit at close, which would retry a refused login
            "fetch.wait.max.ms": 100,
        }
    )
    thief_rd.assign([TopicPartition(TOPIC, 0, OFFSET_BEGINNING)])
    thief_aio = AIOKafkaConsumer(TOPIC, **connection(thief_settings), group_id=None, auto_offset_reset="earliest")
    await thief_aio.start()
    try:

        def poll_rd(seconds: float) -> list[bytes]:
            seen: list[bytes] = []
            deadline = time.monotonic() + seconds
            while time.monotonic() < deadline:
                m = thief_rd.poll(0.2)
                if m is not None and m.error() is None:
                    seen.append(m.value())
            return seen

        async def poll_aio(seconds: float) -> list[bytes]:
            seen: list[bytes] = []
            deadline = time.monotonic() + seconds
            while time.monotonic() < deadline:
                try:
                    batches = await thief_aio.getmany(timeout_ms=200)
                except KafkaError:
                    await asyncio.sleep(0.2)  # cut off: what it raises depends on where it was
                    continue
                seen += [r.value for rs in batches.values() for r in rs if r.value is not None]
            return seen

        # Both thieves read while the password is good.
        assert await asyncio.to_thread(poll_rd, 5) == [b"before-rotation"]
        assert await poll_aio(5) == [b"before-rotation"]

        await security.set_password(USER, secrets.token_urlsafe(24))  # what `--rotate` does
        # Keep both sessions busy past the bound: each must re-authenticate (and fail) or be closed.
        await asyncio.gather(asyncio.to_thread(poll_rd, REAUTH_MS / 1000 + 3), poll_aio(REAUTH_MS / 1000 + 3))
        write(b"after-rotation")
        seen_rd, seen_aio = await asyncio.gather(asyncio.to_thread(poll_rd, 8), poll_aio(8))
        assert (seen_rd, seen_aio) == ([], [])
    finally:
        thief_rd.close()
        # A client whose credential is gone reconnects and fails for ever: bounded, it has nothing to hand back.
        await asyncio.wait_for(thief_aio.stop(), 15)
