"""What one Kafka request costs each client, in CPU per record, at an alert's pace (issue 19).

`python -m bench.client_cost [--records 400]` starts a broker of its own (secured, as the services use it) and
measures, for aiokafka and for librdkafka behind services/common/librdkafka.py, the CPU this process spends:
- per acknowledged produce, one record at a time (the gateway's and the enricher's write of an alert);
- per record consumed in a group at 40 records/s, one record a fetch (the enricher's read of an alert),
  with a third client (librdkafka, in a thread) writing them; its own CPU is measured alone and subtracted.
Each is measured twice, alternating, and reported as a ratio of the two clients, which a noisy machine
leaves about where it is. It is why the hot path's plain clients are librdkafka (`kafka.hot_path_client`).
"""

from __future__ import annotations

import argparse
import asyncio
import functools
import json
import os
import threading
import time
import uuid
from collections.abc import Awaitable, Callable
from typing import Any

import confluent_kafka
from aiokafka.admin import NewTopic

from bench.harness import Broker
from services.common import librdkafka
from services.common.kafka import admin, consumer, producer
from services.common.librdkafka import confluent_config
from services.common.settings import KafkaSettings

PAYLOAD = os.urandom(700).hex().encode()  # about an alert's size on alerts.submitted
PACE_S = 0.025  # 40 records/s: half the pipeline's saturation, where issue 19 measures


async def produce_cost(kafka: KafkaSettings, client: str, topic: str, n: int) -> float:
    """CPU seconds per acknowledged record, sent and awaited one at a time."""
    if client == "aiokafka":
        p: Any = producer(kafka, "bench-client-cost")
    else:
        p = librdkafka.Producer(kafka, "bench-client-cost")
    await p.start()
    try:
        for _ in range(50):  # connections, metadata, the producer id
            await p.send_and_wait(topic, PAYLOAD, key=b"k")
        started = time.process_time()
        for _ in range(n):
            await p.send_and_wait(topic, PAYLOAD, key=b"k")
        return (time.process_time() - started) / n
    finally:
        await p.stop()


def paced_writer(kafka: KafkaSettings, topic: str, n: int, go: threading.Event) -> None:
    p = confluent_kafka.Producer({**confluent_config(kafka, "bench-pacer"), "linger.ms": 0})
    go.wait()
    for i in range(n):
        p.produce(topic, PAYLOAD, str(i).encode())
        p.poll(0)
        time.sleep(PACE_S)
    p.flush(10)


async def writer_alone(kafka: KafkaSettings, topic: str, n: int) -> float:
    go = threading.Event()
    go.set()
    started = time.process_time()
    await asyncio.to_thread(paced_writer, kafka, topic, n, go)
    return time.process_time() - started


async def consume_cost(kafka: KafkaSettings, client: str, topic: str, n: int, writer_cpu: float) -> float:
    """CPU seconds per record read in a group, one record a fetch, less the writer's."""
    group = f"bench-client-cost-{uuid.uuid4().hex[:8]}"
    if client == "aiokafka":
        c: Any = consumer(kafka, "bench-client-cost", topic, group=group)
    else:
        c = librdkafka.GroupConsumer(kafka, "bench-client-cost", topic, group=group)
    await c.start()
    go = threading.Event()
    try:
        async with asyncio.timeout(30):
            while not c.assignment():
                await c.getmany(timeout_ms=200)
        writer = asyncio.create_task(asyncio.to_thread(paced_writer, kafka, topic, n, go))
        got = 0
        started = time.process_time()
        go.set()
        async with asyncio.timeout(n * PACE_S + 60):
            while got < n:
                batches = await c.getmany(timeout_ms=250, max_records=200)
                got += sum(len(records) for records in batches.values())
        spent = time.process_time() - started
        await writer
        return (spent - writer_cpu) / n
    finally:
        await c.stop()


async def run(records: int) -> dict[str, Any]:
    with Broker() as broker:
        kafka = broker.settings(client_id_prefix="bench")
        topics = [f"bench.client-cost.{i}" for i in range(6)]
        a = admin(kafka, "bench-admin")
        await a.start()
        try:
            await a.create_topics([NewTopic(t, 1, 1) for t in topics])
        finally:
            await a.close()
        measures: dict[str, dict[str, list[float]]] = {"produce": {}, "consume": {}}
        steps: list[tuple[str, str, Callable[[], Awaitable[float]]]] = []
        writer_cpu = await writer_alone(kafka, topics[0], records)
        for round_ in range(2):
            for client in ("aiokafka", "librdkafka"):
                topic = topics[1 + round_ * 2 + (client == "librdkafka")]
                steps.append(("produce", client, functools.partial(produce_cost, kafka, client, topics[5], records)))
                steps.append(
                    ("consume", client, functools.partial(consume_cost, kafka, client, topic, records, writer_cpu))
                )
        for what, client, measure in steps:
            measures[what].setdefault(client, []).append(await measure())
    report: dict[str, Any] = {"records": records, "writer_cpu_us_per_record": round(writer_cpu / records * 1e6)}
    for what, by_client in measures.items():
        us = {client: [round(v * 1e6) for v in values] for client, values in by_client.items()}
        best = {client: min(values) for client, values in by_client.items()}
        report[what] = {
            "cpu_us_per_record": us,
            "librdkafka_over_aiokafka": round(best["librdkafka"] / best["aiokafka"], 2),
        }
    return report


def main() -> None:
    parser = argparse.ArgumentParser(prog="python -m bench.client_cost", description=__doc__.split("\n")[0])
    parser.add_argument("--records", type=int, default=400, help="records per measure (the consume one takes 40/s)")
    args = parser.parse_args()
    try:  # the services' loop (the `fast` extra)
        import uvloop

        factory: Callable[[], asyncio.AbstractEventLoop] | None = uvloop.new_event_loop
    except ImportError:
        factory = None
    with asyncio.Runner(loop_factory=factory) as runner:
        print(json.dumps(runner.run(run(args.records)), indent=2))


if __name__ == "__main__":
    main()
