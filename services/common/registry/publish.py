"""`rctc registry apply`: validate a registry file, publish it to `registry.config`, create agency topics.

The topic is compacted with one key, so its latest record is the registry in force and the records before
it (until compaction) are the history. An apply that changes nothing publishes nothing. Agency topics are
created before the registry that names them is published, so the router never writes to a missing topic.
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
from services.common.registry.model import RegistryDocument, RegistryPublished
from services.common.settings import KafkaSettings
from services.common.topics import REGISTRY, ApplyReport, apply_topics, load_declarations

REGISTRY_KEY = b"registry"


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
    digest = doc.content_sha256()
    if current is not None and current.sha256 == digest:
        return PublishResult(current.version, False, report)
    record = RegistryPublished(
        version=(current.version if current else 0) + 1,
        sha256=digest,
        published_at=utcnow(),
        published_by=published_by or getpass.getuser(),
        source=source,
        regions=doc.regions,
        agencies=doc.agencies,
        operators=doc.operators,
        agreements=doc.agreements,
        defaults=doc.defaults,
        audit=doc.audit,
    )
    p = producer(kafka, "registry-apply")
    await p.start()
    try:
        await p.send_and_wait(REGISTRY, codec.encode(record), key=REGISTRY_KEY)
    finally:
        await p.stop()
    return PublishResult(record.version, True, report)
