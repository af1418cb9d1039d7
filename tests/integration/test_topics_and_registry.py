"""Topics come from their declaration, idempotently; the registry is published and followed live."""

from __future__ import annotations

import asyncio
import hashlib

from services.common.codec import Codec
from services.common.kafka import read_to_end
from services.common.registry import (
    CredentialsView,
    RegistryDocument,
    RegistryPublished,
    RegistryView,
    WebhookSecretsView,
)
from services.common.registry.publish import latest_published, publish_registry
from services.common.settings import KafkaSettings
from services.common.topics import (
    REGISTRY,
    TopicSpec,
    agency_ack_topic,
    agency_rejection_topic,
    agency_submission_topic,
    agency_topic,
    apply_topics,
    load_declarations,
)
from tests.support.world import Cast, agreement, create_topic, new_secret, registry


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


async def test_registry_config_carries_no_secret_and_each_secret_topic_follows_the_version(
    kafka: KafkaSettings, codec: Codec
) -> None:
    """The raw registry.config record holds no whsec_ secret and no token hash; the gateway's credentials and
    the dispatcher's secrets arrive on their own topics with the registry's version, and a rotation (two
    secrets, a replaced token) and a removed agency take effect live, without a restart."""
    cast = Cast()
    a = cast.agency("IQ-S", "IQ", webhook_url="http://127.0.0.1:9")
    b = cast.agency("JO-S", "JO", webhook_url="http://127.0.0.1:9")
    doc = registry([a, b], [agreement(f"S-{cast.suffix}", [a.code, b.code])], operator_token=f"op-{cast.suffix}")
    first = await publish_registry(kafka, codec, doc, source="secrets.yaml", replication_factor=1)

    async def raw_registry() -> bytes:
        records = [r async for r in read_to_end(kafka, REGISTRY, name="test-raw")]
        latest = records[-1].value
        assert latest is not None and codec.decode(latest, RegistryPublished).version >= first.version
        return bytes(latest)

    def hashes(d: RegistryDocument) -> list[str]:
        return [h for owner in (*d.agencies, *d.operators) for h in owner.token_sha256]

    raw = await raw_registry()
    assert (b"whsec_" in raw, [h for h in hashes(doc) if h.encode() in raw]) == (False, [])
    assert [s for s in cast.secrets[a.code] if s.removeprefix("whsec_").encode() in raw] == []

    views = (
        RegistryView(kafka, codec, name="test"),
        CredentialsView(kafka, codec, name="test"),
        WebhookSecretsView(kafka, codec, name="test"),
    )
    reg, credentials, secrets = views
    stopping = asyncio.Event()
    for view in views:
        await view.start()
    followers = [asyncio.create_task(view.run(stopping)) for view in views]
    try:
        now = reg.current
        assert now.version == first.version
        assert credentials.authenticate(cast.tokens[a.code], now) == ("agency", a.code)
        assert credentials.authenticate(f"op-{cast.suffix}", now) == ("operator", "duty-desk")
        assert secrets.of(a.code, now) == cast.secrets[a.code]

        # Rotation: a second secret for A (both sign), a new token for B (the old one stops), C added;
        # then C removed again: its secrets and token go with it.
        rotating = [new_secret(), *cast.secrets[a.code]]
        assert a.webhook is not None
        a.webhook.secrets = rotating
        old_b = cast.tokens[b.code]
        new_b = f"rotated-{cast.suffix}"
        b.token_sha256 = [hashlib.sha256(new_b.encode()).hexdigest()]
        c = cast.agency("SA-S", "SA", webhook_url="http://127.0.0.1:9")
        second = await publish_registry(
            kafka, codec, registry([a, b, c], doc.agreements), source="rotated.yaml", replication_factor=1
        )
        async with asyncio.timeout(10):
            now = await reg.wait_for_version(second.version)
            await secrets.wait_for_version(now.version)
            await credentials.wait_for_version(now.version)
        assert secrets.of(a.code, now) == rotating
        assert (credentials.authenticate(old_b, now), credentials.authenticate(new_b, now)) == (
            None,
            ("agency", b.code),
        )
        assert credentials.authenticate(cast.tokens[c.code], now) == ("agency", c.code)

        third = await publish_registry(
            kafka, codec, registry([a, b], doc.agreements), source="removed.yaml", replication_factor=1
        )
        async with asyncio.timeout(10):
            now = await reg.wait_for_version(third.version)
            await secrets.wait_for_version(now.version)
            await credentials.wait_for_version(now.version)
        assert (secrets.of(c.code, now), credentials.authenticate(cast.tokens[c.code], now)) == (None, None)
        raw = await raw_registry()
        assert (b"whsec_" in raw, [h for h in hashes(registry([a, b, c], [])) if h.encode() in raw]) == (False, [])
    finally:
        stopping.set()
        for follower in followers:
            await follower
        for view in views:
            await view.stop()
