"""The real entry points as processes: ready when they say so, and on SIGTERM they finish, commit and exit 0."""

from __future__ import annotations

import asyncio
import os
import signal
import sys
import uuid
from pathlib import Path

import aiohttp
from aiokafka import AIOKafkaConsumer

from services.common.codec import Codec
from services.common.kafka import Outbox, connection, partitions_of, producer
from services.common.ops import free_port
from services.common.records import AlertEnriched, AlertSubmitted, utcnow
from services.common.settings import KafkaSettings
from services.common.topics import ALERTS_ENRICHED, ALERTS_SUBMITTED
from tests.support.world import eventually, read_topic, serves_ready
from tests.unit.samples import sample_alert

ROOT = Path(__file__).resolve().parents[2]


async def test_enricher_process_drains_commits_and_exits_zero_on_sigterm(kafka: KafkaSettings, codec: Codec) -> None:
    """Records submitted while it runs are enriched, their offsets committed, and SIGTERM exits 0 promptly."""
    ops_port = free_port()
    env = {
        **os.environ,
        **kafka.as_env(),
        "RCTC_OPS__PORT": str(ops_port),
        "RCTC_LOG__FORMAT": "json",
    }
    process = await asyncio.create_subprocess_exec(
        sys.executable,
        "-m",
        "services.enricher",
        cwd=ROOT,
        env=env,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.STDOUT,
    )
    # Its log is read as it comes: on the suite's shared broker the enricher first works through what earlier
    # tests left on alerts.submitted, a line each, and a pipe nobody reads fills (64 KiB) and blocks the
    # process's next write, so that it could not even log its way out on SIGTERM.
    assert process.stdout is not None
    drained = asyncio.create_task(process.stdout.read())
    try:
        await eventually(lambda: serves_ready(ops_port), within_s=60)
        ids = [f"life-{uuid.uuid4()}" for _ in range(20)]
        p = producer(kafka, "test")
        await p.start()
        try:
            outbox = Outbox(p, codec)
            for alert_id in ids:
                record = AlertSubmitted(alert_id=alert_id, origin="IQ-A", submitted_at=utcnow(), alert=sample_alert())
                await outbox.send(
                    ALERTS_SUBMITTED, alert_id.encode(), record, "00-" + "1" * 32 + "-" + "2" * 16 + "-01"
                )
            await outbox.flush()
        finally:
            await p.stop()

        async def all_enriched() -> bool:
            done = {r.alert_id for _, r in await read_topic(kafka, codec, ALERTS_ENRICHED, AlertEnriched)}
            return set(ids) <= done

        await eventually(all_enriched, within_s=30)
        async with aiohttp.ClientSession() as http:
            async with http.get(f"http://127.0.0.1:{ops_port}/healthz") as r:
                assert (r.status, await r.json()) == (200, {"status": "ok"})
            async with http.get(f"http://127.0.0.1:{ops_port}/metrics") as r:
                metrics = await r.text()
            assert 'rctc_records_total{outcome="enriched",service="enricher",topic="alerts.submitted"}' in metrics
        process.send_signal(signal.SIGTERM)
        async with asyncio.timeout(20):
            code = await process.wait()
        output = (await drained).decode()
        assert code == 0, output
        assert '"service.stopped"' in output

        # Everything it handled is committed: its group's offsets equal the ends of alerts.submitted.
        checker = AIOKafkaConsumer(
            **connection(kafka),
            group_id=f"{kafka.client_id_prefix}-enricher",
            enable_auto_commit=False,
        )
        await checker.start()
        try:
            partitions = await partitions_of(checker, [ALERTS_SUBMITTED])
            ends = await checker.end_offsets(partitions)
            committed = {tp: await checker.committed(tp) for tp in partitions}
            assert committed == {tp: (end if end else None) for tp, end in ends.items()}
        finally:
            await checker.stop()
    finally:
        if process.returncode is None:
            process.kill()
            await process.wait()
        await drained
