"""`rctc registry apply`: validate a registry file, publish it to `registry.config`, create agency topics.

The topic is compacted with one key, so its latest record is the registry in force and the records before
it (until compaction) are the history. Its secrets go apart (model.py `split`): the token hashes to
`registry.credentials` and the webhook secrets to `registry.webhook-secrets`, with the same version and
written BEFORE the registry, so a service that sees a new registry finds its secrets already on their topic
(its follower may still be a moment behind: it then refuses or waits, confidential.py).

An apply that changes nothing publishes no new registry version, but writes the credentials and secrets
of the version in force again: that is idempotent, and it repairs an apply that stopped between the topics
(or a registry in force from before secrets went apart) without asking anyone to read the secret topics,
which `operator-cli` may not. Agency topics are created before the registry that names them is published,
so the router never writes to a missing topic.
"""

from __future__ import annotations

import getpass
from dataclasses import dataclass

from aiokafka import TopicPartition

from services.common.codec import Codec
from services.common.errors import CodecError
from services.common.kafka import consumer, producer
from services.common.quarantine import noted
from services.common.records import utcnow
from services.common.registry.model import RegistryDocument, RegistryPublished, split
from services.common.settings import KafkaSettings
from services.common.topics import (
    REGISTRY,
    REGISTRY_CREDENTIALS,
    REGISTRY_WEBHOOK_SECRETS,
    ApplyReport,
    apply_topics,
    load_declarations,
)

REGISTRY_KEY = b"registry"
CREDENTIALS_KEY = b"credentials"
SECRETS_KEY = b"secrets"


@dataclass
class PublishResult:
    version: int
    changed: bool
    topics: ApplyReport


async def latest_published(kafka: KafkaSettings, codec: Codec) -> RegistryPublished | None:
    """The registry in force, read from the end of the compacted topic (None when nothing was applied)."""
    c = consumer(kafka, "registry-reader", group=None)
    await c.start()
    try:
        tp = TopicPartition(REGISTRY, 0)
        c.assign([tp])
        end = (await c.end_offsets([tp]))[tp]
        if end == 0:
            return None
        latest: RegistryPublished | None = None
        await c.seek_to_beginning(tp)
        while await c.position(tp) < end:
            for records in (await c.getmany(tp, timeout_ms=1000)).values():
                for record in records:
                    if record.value is not None:
                        try:
                            latest = codec.decode(record.value, RegistryPublished)
                        except CodecError as exc:
                            # The last good one stays in force, as in every service's view (view.py).
                            noted(record, str(exc), "registry-reader", written=False)
        return latest
    finally:
        await c.stop()


async def publish_registry(
    kafka: KafkaSettings,
    codec: Codec,
    doc: RegistryDocument,
    *,
    source: str,
    replication_factor: int | None = None,
    published_by: str | None = None,
) -> PublishResult:
    declarations = load_declarations()
    report = await apply_topics(
        kafka, [s for a in doc.agencies for s in declarations.for_agency(a.code)], replication_factor=replication_factor
    )
    current = await latest_published(kafka, codec)
    changed = current is None or current.sha256 != doc.content_sha256()
    version = 1 if current is None else current.version + 1 if changed else current.version
    registry, credentials, secrets = split(
        doc, version=version, published_at=utcnow(), published_by=published_by or getpass.getuser(), source=source
    )
    p = producer(kafka, "registry-apply")
    await p.start()
    try:
        await p.send_and_wait(REGISTRY_CREDENTIALS, codec.encode(credentials), key=CREDENTIALS_KEY)
        await p.send_and_wait(REGISTRY_WEBHOOK_SECRETS, codec.encode(secrets), key=SECRETS_KEY)
        if changed:
            await p.send_and_wait(REGISTRY, codec.encode(registry), key=REGISTRY_KEY)
    finally:
        await p.stop()
    return PublishResult(version, changed, report)
