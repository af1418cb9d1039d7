"""`rctc simulate FILE`: the routing a draft registry would give the most recent alerts, against today's."""

from __future__ import annotations

from pathlib import Path

from services.cli import render
from services.common.codec import Codec
from services.common.kafka import read_decoded
from services.common.records import AlertEnriched, utcnow
from services.common.registry import Registry, load_registry, split
from services.common.registry.publish import latest_published
from services.common.settings import KafkaSettings
from services.common.topics import ALERTS_ENRICHED
from services.router.simulate import compare


async def simulate(kafka: KafkaSettings, file: Path, last: int) -> int:
    codec = Codec.from_directory()
    draft_doc = load_registry(file)
    current = await latest_published(kafka, codec)
    if current is None:
        print("no registry is in force yet: every alert would be new")
        return 1
    published, _, _ = split(
        draft_doc, version=current.version + 1, published_at=utcnow(), published_by="simulation", source=file.name
    )
    draft = Registry(published)
    with render.progress(f"reading {ALERTS_ENRICHED}") as step:
        enriched = read_decoded(kafka, codec, ALERTS_ENRICHED, AlertEnriched, name="simulate", progress=step)
        alerts = [a async for _, a in enriched]
    recent = sorted({a.alert_id: a for a in alerts}.values(), key=lambda a: a.submitted_at)[-last:]
    changes = compare(recent, Registry(current), draft)
    for change in changes:
        print(change.describe())
    affected = len({c.alert_id for c in changes})
    print(
        f"{len(recent)} alerts replayed against {file.name} (registry v{current.version} in force): "
        f"{affected} would be routed differently, {len(changes)} agency outcomes change"
    )
    return 0
