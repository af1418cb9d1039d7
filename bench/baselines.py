"""The baselines every figure is a ratio to: raw aiokafka and raw aiohttp, on the same broker and receivers."""

from __future__ import annotations

import asyncio
import os
import sys
import time
import uuid
from collections.abc import Callable
from typing import Any

import aiohttp
from aiokafka import AIOKafkaProducer, ConsumerRecord, TopicPartition
from aiokafka.admin import NewTopic

from bench.faust_passthrough import DONE_TOPIC as FAUST_DONE_TOPIC
from bench.harness import ROOT, TimedReceivers, steady_rate
from bench.workload import OUTPUTS_PER_ALERT, RECIPIENTS, Arrivals, Bench, enriched_record
from services.common.kafka import admin as kafka_admin
from services.common.kafka import consumer, group_id, produce_all, producer

# The router's output layout, on topics of the benchmark's own: ten agency topics, the webhook requests and
# the decisions, with the partition counts of services/common/topics.yaml.
AGENCY_TOPICS = [f"bench.agency.{i}" for i in range(RECIPIENTS)]
LAYOUT = [NewTopic("bench.in", 6, 1), NewTopic("bench.out", 6, 1), NewTopic("bench.webhook", 6, 1)]
LAYOUT += [NewTopic("bench.routed", 6, 1)] + [NewTopic(t, 3, 1) for t in AGENCY_TOPICS]
# The dispatcher's layout: webhook requests in (as deliveries.webhook), one outcome record out per request.
LAYOUT += [NewTopic("bench.deliveries", 6, 1), NewTopic("bench.outcomes", 6, 1)]
# The Faust agent's last output per record, by which its pass-through is timed (bench/faust_passthrough.py).
LAYOUT += [NewTopic(FAUST_DONE_TOPIC, 6, 1)]


async def prepare_input(bench: Bench, n: int) -> None:
    """`n` enriched alerts on bench.in, read by every Kafka baseline (each in a group of its own)."""
    admin = kafka_admin(bench.kafka, "bench-admin")
    await admin.start()
    try:
        await admin.create_topics(LAYOUT)
    finally:
        await admin.close()
    value = bench.codec.encode(enriched_record("x"))
    await produce_all(bench.kafka, "bench-load", "bench.in", [(f"k{i}".encode(), value) for i in range(n)])


def one_topic(r: ConsumerRecord) -> list[tuple[str, bytes, bytes]]:
    """The issue's baseline: as many records as the router writes for an alert, all to one topic."""
    return [("bench.out", r.key, r.value)] * OUTPUTS_PER_ALERT


def router_layout(r: ConsumerRecord) -> list[tuple[str, bytes, bytes]]:
    """The same count spread as the router spreads it: a copy and a webhook request per agency, a decision."""
    return layout_records(r.key, r.value)


def layout_records(key: bytes, value: bytes) -> list[tuple[str, bytes, bytes]]:
    out = []
    for topic in AGENCY_TOPICS:
        copy_key = key + b":" + topic.encode()
        out += [(topic, copy_key, value), ("bench.webhook", copy_key, value)]
    return [*out, ("bench.routed", key, value)]


async def baseline_kafka(
    bench: Bench, n: int, outputs: Callable[[ConsumerRecord], list[tuple[str, bytes, bytes]]], transactional: bool
) -> dict[str, Any]:
    """Raw aiokafka: consume each record of bench.in and produce `outputs(record)` for it (no routing logic,
    no encoding), committing per batch, or in a transaction per input partition and batch as the router does.
    """
    kafka = bench.kafka
    name = f"bench-pass-{outputs.__name__}-{'txn' if transactional else 'plain'}"
    c = consumer(kafka, name, "bench.in", group=name)
    producers: dict[int, AIOKafkaProducer] = {}

    async def producer_for(partition: int) -> AIOKafkaProducer:
        if partition not in producers:
            txn = f"{name}-{partition}" if transactional else None
            producers[partition] = producer(kafka, f"{name}-{partition}", transactional_id=txn)
            await producers[partition].start()
        return producers[partition]

    async def plain(tp: TopicPartition, records: list[ConsumerRecord]) -> None:
        p = await producer_for(0)
        futures = [await p.send(t, v, key=k) for r in records for t, k, v in outputs(r)]
        for f in futures:
            await f

    async def in_transaction(tp: TopicPartition, records: list[ConsumerRecord]) -> None:
        p = await producer_for(tp.partition)
        async with p.transaction():
            for r in records:
                for t, k, v in outputs(r):
                    await p.send(t, v, key=k)
            await p.send_offsets_to_transaction({tp: records[-1].offset + 1}, group_id(kafka, name))

    await c.start()
    done_at: list[float] = []  # when each record's outputs were written (and committed)
    try:
        while len(done_at) < n:
            batches = await c.getmany(timeout_ms=500, max_records=200)
            handle = in_transaction if transactional else plain
            await asyncio.gather(*(handle(tp, rs) for tp, rs in batches.items()))
            if not transactional:
                await c.commit()
            done_at += [time.perf_counter()] * sum(len(rs) for rs in batches.values())
    finally:
        await c.stop()
        for p in producers.values():
            await p.stop()
    return {
        "records": n,
        "outputs_per_record": OUTPUTS_PER_ALERT,
        "layout": outputs.__name__,
        "transactional": transactional,
        "seconds": round(done_at[-1] - done_at[0], 2),
        "per_second": round(steady_rate(done_at), 1),
    }


async def baseline_http(receivers: TimedReceivers, n: int, payload: bytes) -> dict[str, Any]:
    """Raw aiohttp: POST the same body to the same receivers, 64 at a time, unsigned."""
    sem = asyncio.Semaphore(64)
    url = f"http://127.0.0.1:{receivers.port}/raw"

    done_at: list[float] = []

    async def one(session: aiohttp.ClientSession) -> None:
        async with sem, session.post(url, data=payload) as r:
            await r.read()
        done_at.append(time.perf_counter())

    async with aiohttp.ClientSession() as session:
        await asyncio.gather(*(one(session) for _ in range(n)))
    return {"requests": n, "seconds": round(done_at[-1] - done_at[0], 2), "per_second": round(steady_rate(done_at), 1)}


async def baseline_consume_post(bench: Bench, items: list[tuple[bytes, bytes]]) -> dict[str, Any]:
    """Not the issue's baseline: raw aiokafka and aiohttp doing what a delivery needs besides the POST
    (docs/architecture.md, Guarantees).

    Each webhook request is read from a topic, its body POSTed unsigned to its agency's receiver (the same
    path and receiving work as the dispatcher's), 64 at a time, and an outcome record written for it once
    answered; offsets are committed every 0.2 s. No decoding, signing, breaker, retry, metrics or log line:
    the report's ratio of the dispatcher to this says how much of its cost is the Kafka either side of a
    delivery, which the raw POST loop does not have, and how much is its own work.
    """
    kafka, receivers = bench.kafka, bench.receivers
    await produce_all(kafka, "bench-load", "bench.deliveries", items)
    name = "bench-consume-post"
    c = consumer(kafka, name, "bench.deliveries", group=name)
    p = producer(kafka, name)
    room = asyncio.Semaphore(64)
    done_at: list[float] = []
    receivers.verify = False
    await c.start()
    await p.start()

    async def deliver(session: aiohttp.ClientSession, r: ConsumerRecord) -> None:
        try:
            agency = r.key.rsplit(b":", 1)[1].decode()
            url = f"http://127.0.0.1:{receivers.port}/hooks/{agency}"
            async with session.post(url, data=r.value, headers={"webhook-id": f"raw-{r.partition}-{r.offset}"}) as a:
                await a.read()
            await (await p.send("bench.outcomes", r.key, key=r.key))
            done_at.append(time.perf_counter())
        finally:
            room.release()

    tasks: set[asyncio.Task[None]] = set()
    try:
        # Bounded: a delivery that failed (its task holds the error) would otherwise leave the count short forever.
        async with asyncio.timeout(600), aiohttp.ClientSession() as session:
            last_commit = time.monotonic()
            while len(done_at) < len(items):
                for records in (await c.getmany(timeout_ms=200, max_records=64)).values():
                    for r in records:
                        await room.acquire()
                        task = asyncio.create_task(deliver(session, r))
                        tasks.add(task)
                        task.add_done_callback(tasks.discard)
                if time.monotonic() - last_commit >= 0.2:
                    await c.commit()
                    last_commit = time.monotonic()
            await asyncio.gather(*tasks)
    finally:
        for task in tasks:
            task.cancel()
        receivers.verify = True
        await c.stop()
        await p.stop()
    return {
        "deliveries": len(items),
        "seconds": round(done_at[-1] - done_at[0], 2),
        "per_second": round(steady_rate(done_at), 1),
    }


async def baseline_faust(bench: Bench, n: int) -> dict[str, Any]:
    """The one-topic pass-through of bench.in's `n` records as a faust-streaming agent in its own worker
    process (bench/faust_passthrough.py), each record complete when its last output is readable."""
    app_id = f"bench-faust-{uuid.uuid4().hex[:6]}"
    log_dir = bench.out / "logs" / "baseline-faust"
    log_dir.mkdir(parents=True, exist_ok=True)
    with (log_dir / "faust.log").open("ab") as log:
        async with Arrivals(bench.kafka, bench.codec, [FAUST_DONE_TOPIC], None, lambda r: r.key) as done:
            worker = await asyncio.create_subprocess_exec(
                sys.executable,
                "-m",
                "bench.faust_passthrough",
                app_id,
                cwd=ROOT,
                env={**os.environ, **bench.kafka.as_env()},
                stdout=log,
                stderr=asyncio.subprocess.STDOUT,
            )
            try:
                # A worker that exits (a bad setting, a broker it cannot use) ends the step, not the timeout.
                finished = asyncio.create_task(done.until(n, within_s=600))
                exited = asyncio.create_task(worker.wait())
                await asyncio.wait({finished, exited}, return_when=asyncio.FIRST_COMPLETED)
                if not finished.done():
                    finished.cancel()
                    raise RuntimeError(f"the Faust worker exited ({worker.returncode}): see {log_dir / 'faust.log'}")
                finished.result()
            finally:
                worker.terminate()
                await worker.wait()
    times = sorted(done.seen.values())
    return {
        "records": n,
        "outputs_per_record": OUTPUTS_PER_ALERT,
        "processing_guarantee": "at_least_once",
        "seconds": round(times[-1] - times[0], 2),
        "per_second": round(steady_rate(times), 1),
    }
