"""The baselines every figure is a ratio to: raw aiokafka and raw aiohttp, on the same broker and receivers."""

from __future__ import annotations

import asyncio
import time
from typing import Any

import aiohttp
from aiokafka.admin import AIOKafkaAdminClient, NewTopic

from bench.harness import TimedReceivers
from bench.workload import OUTPUTS_PER_ALERT, Bench, enriched_record
from services.common.kafka import consumer, produce_all, producer


async def baseline_kafka(bench: Bench, n: int) -> dict[str, Any]:
    """Raw aiokafka: consume each record and produce as many records as the router does for it (no routing
    logic, no transaction, no encoding), committing per batch. The router's ratio to this is its overhead."""
    kafka = bench.kafka
    admin = AIOKafkaAdminClient(bootstrap_servers=kafka.bootstrap_servers)
    await admin.start()
    try:
        await admin.create_topics([NewTopic("bench.in", 6, 1), NewTopic("bench.out", 6, 1)])
    finally:
        await admin.close()
    value = bench.codec.encode(enriched_record("x"))
    await produce_all(kafka, "bench-load", "bench.in", [(f"k{i}".encode(), value) for i in range(n)])
    c = consumer(kafka, "bench-pass", "bench.in", group="bench-pass")
    p = producer(kafka, "bench-pass")
    await c.start()
    await p.start()
    done = 0
    started: float | None = None
    try:
        while done < n:
            batches = await c.getmany(timeout_ms=500, max_records=200)
            if started is None and batches:
                started = time.perf_counter()
            futures = [
                await p.send("bench.out", r.value, key=r.key)
                for rs in batches.values()
                for r in rs
                for _ in range(OUTPUTS_PER_ALERT)
            ]
            for f in futures:
                await f
            done += sum(len(rs) for rs in batches.values())
            await c.commit()
        elapsed = time.perf_counter() - (started or time.perf_counter())
    finally:
        await c.stop()
        await p.stop()
    return {
        "records": n,
        "outputs_per_record": OUTPUTS_PER_ALERT,
        "seconds": round(elapsed, 2),
        "per_second": round(n / elapsed, 1),
    }


async def baseline_http(receivers: TimedReceivers, n: int, payload: bytes) -> dict[str, Any]:
    """Raw aiohttp: POST the same body to the same receivers, 64 at a time, unsigned."""
    sem = asyncio.Semaphore(64)
    url = f"http://127.0.0.1:{receivers.port}/raw"

    async def one(session: aiohttp.ClientSession) -> None:
        async with sem, session.post(url, data=payload) as r:
            await r.read()

    async with aiohttp.ClientSession() as session:
        started = time.perf_counter()
        await asyncio.gather(*(one(session) for _ in range(n)))
        elapsed = time.perf_counter() - started
    return {"requests": n, "seconds": round(elapsed, 2), "per_second": round(n / elapsed, 1)}
