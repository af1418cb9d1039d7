"""The console's alert contents at start: the alerts of the last `history_s` of alerts.enriched, not the month
the topic keeps; then what arrives next. On the real broker (record timestamps are the broker's to seek by;
on the suite's shared topic an older record can sit after newer ones, so the test checks what is held, not
how far the seek went)."""

from __future__ import annotations

import asyncio
import time
import uuid
from datetime import UTC, datetime, timedelta

import msgspec

from services.common.codec import Codec
from services.common.kafka import producer
from services.common.settings import KafkaSettings
from services.common.topics import ALERTS_ENRICHED
from services.console.contents import Contents
from tests.support.world import eventually
from tests.unit.samples import enriched, sample_alert


async def test_contents_start_from_their_history_window_and_follow(kafka: KafkaSettings, codec: Codec) -> None:
    old, recent, later = (str(uuid.uuid4()) for _ in range(3))

    def record(alert_id: str, age_s: float = 0) -> bytes:
        at = datetime.now(UTC) - timedelta(seconds=age_s)
        value = msgspec.structs.replace(enriched(sample_alert(), alert_id=alert_id), submitted_at=at, enriched_at=at)
        return codec.encode(value)

    p = producer(kafka, "test-contents")
    await p.start()
    try:
        two_days_ago = int((time.time() - 2 * 24 * 3600) * 1000)
        await p.send_and_wait(
            ALERTS_ENRICHED,
            record(old, 2 * 24 * 3600),
            key=old.encode(),
            timestamp_ms=two_days_ago,
        )
        await p.send_and_wait(ALERTS_ENRICHED, record(recent), key=recent.encode())
        contents = Contents(kafka, codec, limit=1000, history_s=24 * 3600)
        await contents.start()
        try:
            assert recent in contents.by_id
            assert old not in contents.by_id  # two days old, a day of history
            assert contents.by_id[recent].title == sample_alert().title
            await p.send_and_wait(ALERTS_ENRICHED, record(later), key=later.encode())
            stopping = asyncio.Event()
            follow = asyncio.create_task(contents.run(stopping))
            await eventually(lambda: later in contents.by_id)
            stopping.set()
            await follow
        finally:
            await contents.stop()
    finally:
        await p.stop()
