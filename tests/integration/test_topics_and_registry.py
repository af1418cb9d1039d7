"""Topics come from their declaration, idempotently; the registry is published and followed live."""

from __future__ import annotations

import asyncio

from services.common.codec import Codec
from services.common.registry import RegistryView
from services.common.registry.publish import latest_published, publish_registry
from services.common.settings import KafkaSettings
from services.common.topics import (
    TopicSpec,
    agency_ack_topic,
    agency_rejection_topic,
    agency_submission_topic,
    agency_topic,
    apply_topics,
    load_declarations,
)
from tests.support.world import Cast, agreement, create_topic, registry


async def test_apply_topics_is_idempotent(kafka: KafkaSettings) -> None:
    """A second apply creates nothing and reports every declared topic unchanged."""
    specs = list(load_declarations().topics)
    report = await apply_topics(kafka, specs, replication_factor=1)
    assert report.created == []
    assert report.drift == []
    assert sorted(report.unchanged) == sorted(s.name for s in specs)


async def test_apply_topics_reports_drift(kafka: KafkaSettings) -> None:
    """A topic with fewer partitions or another config than declared is reported, and grown on request."""
    name = f"drift-{Cast().suffix.lower()}"
    await create_topic(kafka, name, **{"retention.ms": "1000"})
    spec = TopicSpec(name, 3, 1, {"retention.ms": "60000"})
    report = await apply_topics(kafka, [spec], replication_factor=1)
    assert sorted(report.drift) == [f"{name}: 1 partitions, declared 3", f"{name}: retention.ms=1000, declared 60000"]
    grown = await apply_topics(kafka, [spec], replication_factor=1, grow_partitions=True)
    assert grown.grown == [f"{name}: partitions 1 -> 3"]


async def test_registry_apply_publishes_and_views_follow_live(kafka: KafkaSettings, codec: Codec) -> None:
    """Apply creates every agency's four topics and a new version; a running view picks up the next apply."""
    cast = Cast()
    a, b = cast.agency("IQ-A", "IQ"), cast.agency("JO-B", "JO")
    first = registry([a, b], [agreement(f"X-{cast.suffix}", [a.code, b.code])])
    result = await publish_registry(kafka, codec, first, source="first.yaml", replication_factor=1)
    assert result.changed
    assert set(result.topics.created) == {
        make(code)
        for code in (a.code, b.code)
        for make in (agency_topic, agency_ack_topic, agency_submission_topic, agency_rejection_topic)
    }

    view = RegistryView(kafka, codec, name="test")
    await view.start()
    stopping = asyncio.Event()
    follower = asyncio.create_task(view.run(stopping))
    try:
        assert view.current.version == result.version
        assert set(view.current.agencies) == {a.code, b.code}

        again = await publish_registry(kafka, codec, first, source="first.yaml", replication_factor=1)
        assert (again.changed, again.version) == (False, result.version)

        c = cast.agency("SA-C", "SA")
        second = registry([a, b, c], first.agreements)
        published = await publish_registry(kafka, codec, second, source="second.yaml", replication_factor=1)
        assert published.version == result.version + 1
        async with asyncio.timeout(10):
            current = await view.wait_for_version(published.version)
        assert set(current.agencies) == {a.code, b.code, c.code}
        latest = await latest_published(kafka, codec)
        assert latest is not None and latest.source == "second.yaml"
    finally:
        stopping.set()
        await follower
        await view.stop()
