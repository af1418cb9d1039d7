"""Does the single-node broker keep leadership of its own partitions while the machine is saturated?

A reproduction, not part of `make bench` (issue 14): one bench run on a saturated machine logged hundreds of
NotEnoughReplicas produce errors and a burst of NotLeaderForPartition. This starts a fresh local broker
(secured, as `make run` has it, plus any `--set`), keeps the two cores busy with `--burners` spinning
processes, runs `--producers` transactional producers (consume-transform-produce shaped: records to two
topics and offsets in each transaction, as the router and the auditor do) for `--seconds`, and reports
what the producers were refused and what the broker's log says about its own leadership and fencing:

    python -m bench.broker_under_load                                  # the broker as configured
    python -m bench.broker_under_load --set broker.session.timeout.ms=9000 --set broker.heartbeat.interval.ms=2000
                                                                       # with Kafka's defaults, as before
    python -m bench.broker_under_load --burners 0 --pause-broker 12   # the broker's JVM stopped for 12 s
                                                                       # halfway (SIGSTOP): a stall, not a slowdown
    python -m bench.broker_under_load --set transaction.partition.verification.enable=false

What it found (docs/performance.md, "The local broker under load"): a stall of the JVM past the session
fences the broker (NotLeaderForPartition) and CPU saturation alone did not; NotEnoughReplicas is the
transaction verification's answer to aiokafka, gone with the verification off.

Errors are counted from aiokafka's warnings (it retries both kinds, so nothing is lost; the question is
whether a single broker ever loses leadership, which it should not). The burners run at the same priority
as the broker; the machine is shared, so keep `--seconds` short.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import logging
import os
import re
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from collections import Counter
from collections.abc import Iterable
from pathlib import Path
from typing import Any

from aiokafka.admin import NewTopic
from aiokafka.structs import TopicPartition

from bench.harness import percentiles
from services.cli.local_broker import LocalBroker
from services.common.kafka import admin, producer
from services.common.settings import KafkaSettings

TOPICS = {"load.out-a": 6, "load.out-b": 3, "load.in": 3}
RECORDS_PER_TRANSACTION = 20

# What a producer may be refused, by the name aiokafka's warning gives it (every other warning is counted by
# the error it names: a fencing also moves the transaction coordinators, and aborts what was in flight).
PRODUCE_ERRORS = {
    "NotEnoughReplicas": "not_enough_replicas",
    "NotLeaderForPartition": "not_leader",
    "NotLeaderOrFollower": "not_leader",
}
ERROR_NAME = re.compile(r"aiokafka\.errors\.(\w+)|\b(\w+Error)\b")
# The broker's own account (INFO, deploy/kafka/log4j2.yaml): the controller fencing the broker whose session
# timed out and leaving its partitions leaderless, the broker being unfenced (once at every start, then once
# after each fencing), and the transaction coordinators moving with their partitions.
BROKER_EVENTS = {
    "fenced_by_controller": re.compile(r"Fencing broker \d+ .*session has timed out"),
    "partitions_left_leaderless": re.compile(r"handleBrokerFenced: changing \d+ partition"),
    "unfence_granted": re.compile(r"to unfence has been granted"),
    "transaction_coordinator_moved": re.compile(r"Unloaded transaction metadata"),
}


def produce_error(message: str) -> str | None:
    """What an aiokafka warning reports: a produce refusal's kind, else the error it names, else None."""
    for name, kind in PRODUCE_ERRORS.items():
        if name in message:
            return kind
    named = ERROR_NAME.search(message)
    return None if named is None else named.group(1) or named.group(2)


def broker_events(lines: Iterable[str]) -> dict[str, list[str]]:
    """The broker log's lines about fencing and leadership, by kind (a line may count under several)."""
    found: dict[str, list[str]] = {kind: [] for kind in BROKER_EVENTS}
    for line in lines:
        for kind, pattern in BROKER_EVENTS.items():
            if pattern.search(line):
                found[kind].append(line.rstrip())
    return found


class ProduceErrors(logging.Handler):
    """Counts the refusals aiokafka's producers log (and retry) while the load runs."""

    def __init__(self) -> None:
        super().__init__(logging.WARNING)
        self.counts: Counter[str] = Counter()
        self.first_at: dict[str, float] = {}

    def emit(self, record: logging.LogRecord) -> None:
        kind = produce_error(record.getMessage())
        if kind is not None:
            self.counts[kind] += 1
            self.first_at.setdefault(kind, record.created)


async def transactions(kafka: KafkaSettings, index: int, until: float, took: list[float]) -> None:
    """One transactional producer: records to both output topics and an offset per transaction."""
    p = producer(kafka, f"load-{index}", transactional_id=f"load-{index}")
    await p.start()
    source = TopicPartition("load.in", index % TOPICS["load.in"])
    offset = 0
    try:
        while time.time() < until:
            began = time.perf_counter()
            async with p.transaction():
                for i in range(RECORDS_PER_TRANSACTION):
                    topic = "load.out-a" if i % 2 else "load.out-b"
                    await p.send(topic, b"x" * 400, key=f"{index}-{offset}-{i}".encode())
                offset += 1
                await p.send_offsets_to_transaction({source: offset}, f"load-group-{index}")
            took.append(time.perf_counter() - began)
    finally:
        await p.stop()


async def stall(pid: int, after_s: float, for_s: float) -> None:
    """Stop the broker's whole JVM for `for_s` seconds (every thread, the controller's clock included)."""
    await asyncio.sleep(after_s)
    os.kill(pid, signal.SIGSTOP)
    try:
        await asyncio.sleep(for_s)
    finally:
        os.kill(pid, signal.SIGCONT)


def burn(count: int) -> list[subprocess.Popen[bytes]]:
    """`count` processes spinning on the CPU at the broker's own priority."""
    return [subprocess.Popen([sys.executable, "-c", "while True: pass"]) for _ in range(count)]


async def run(args: argparse.Namespace) -> dict[str, Any]:
    overrides = dict(item.split("=", 1) for item in args.set)
    folder = Path(tempfile.mkdtemp(prefix="rctc-broker-load-"))
    errors = ProduceErrors()
    aiokafka_log = logging.getLogger("aiokafka")
    aiokafka_log.addHandler(errors)
    aiokafka_log.setLevel(logging.WARNING)
    aiokafka_log.propagate = False  # counted, not printed
    broker = LocalBroker.start(folder, settings=overrides)
    burners: list[subprocess.Popen[bytes]] = []
    took: list[float] = []
    try:
        kafka = broker.admin_settings(client_id_prefix="load")
        a = admin(kafka, "admin")
        await a.start()
        try:
            await a.create_topics(
                [
                    NewTopic(name, partitions, 1, topic_configs={"min.insync.replicas": "1"})
                    for name, partitions in TOPICS.items()
                ]
            )
        finally:
            await a.close()
        burners = burn(args.burners)
        started = time.time()
        until = started + args.seconds
        load = [transactions(kafka, i, until, took) for i in range(args.producers)]
        if args.pause_broker:
            load.append(stall(int((folder / "broker.pid").read_text()), args.seconds / 2, args.pause_broker))
        await asyncio.gather(*load)
    finally:
        for b in burners:
            b.kill()
            b.wait()
        broker.stop()
    log = (folder / "broker.log").read_text(errors="replace").splitlines()
    if args.keep is not None:
        args.keep.mkdir(parents=True, exist_ok=True)
        for name in ("broker.log", "gc.log", "server.properties"):
            if (folder / name).exists():
                shutil.copy(folder / name, args.keep / name)
    shutil.rmtree(folder, ignore_errors=True)
    events = broker_events(log)
    return {
        "settings": overrides,
        "burners": args.burners,
        "producers": args.producers,
        "seconds": args.seconds,
        "broker_paused_s": args.pause_broker,
        "transactions": len(took),
        "transaction_ms": percentiles(took),
        "produce_errors": dict(errors.counts),
        "first_error_s_after_start": {k: round(t - started, 1) for k, t in errors.first_at.items()},
        "broker_log": {kind: len(lines) for kind, lines in events.items()},
        "broker_log_lines": {kind: lines[:5] for kind, lines in events.items() if lines},
    }


def main() -> None:
    parser = argparse.ArgumentParser(prog="python -m bench.broker_under_load", description=__doc__.split("\n")[0])
    parser.add_argument("--burners", type=int, default=6, help="processes spinning on the CPU")
    parser.add_argument("--producers", type=int, default=6, help="transactional producers")
    parser.add_argument("--seconds", type=float, default=60, help="how long the load runs")
    parser.add_argument("--pause-broker", type=float, default=0, help="stop the broker this long, halfway")
    parser.add_argument("--set", action="append", default=[], metavar="KEY=VALUE", help="a broker setting")
    parser.add_argument("--keep", type=Path, help="copy the broker's log and settings here")
    print(json.dumps(asyncio.run(run(parser.parse_args())), indent=2))


if __name__ == "__main__":
    main()
