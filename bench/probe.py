"""A raw transaction beside the pipeline: what committing one alert's outputs costs on this machine, then.

The router's send-to-readable hop (its transaction's records, commit and markers) is the tail of the
pipeline's latency at half of saturation. Whether that tail is the router's or the machine's is answered by
timing, at the same moments, a transaction that does none of the router's work: raw aiokafka writing one
alert's worth of the router's layout (a copy and a webhook request per agency, a decision) and committing,
read back by a read_committed reader as the harness reads the pipeline's copies.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
import uuid
from typing import Any

from aiokafka.errors import TopicAlreadyExistsError

from bench.baselines import AGENCY_TOPICS, LAYOUT, layout_records
from bench.harness import percentiles
from bench.workload import Arrivals, Bench, enriched_record
from services.common.kafka import admin as kafka_admin
from services.common.kafka import producer

LEAD_IN_S = 1.0


class TransactionProbe:
    """Every 1/rate s while a step is labelled, one transaction on the benchmark's own topics (so it shares no
    partition with the router's transactions), timed from before its first send to its last copy readable."""

    def __init__(self, bench: Bench, rate: float = 10.0) -> None:
        self.bench, self.rate = bench, rate
        self.label: str | None = None
        self.sent: dict[str, list[tuple[bytes, float]]] = {}
        self._value = bench.codec.encode(enriched_record("probe"))
        self._stack = contextlib.AsyncExitStack()
        self._task: asyncio.Task[None] | None = None
        self._arrivals: Arrivals | None = None

    async def __aenter__(self) -> TransactionProbe:
        admin = kafka_admin(self.bench.kafka, "bench-probe")
        await admin.start()
        try:
            await admin.create_topics(LAYOUT)
        except TopicAlreadyExistsError:
            pass
        finally:
            await admin.close()
        name = f"bench-probe-{uuid.uuid4().hex[:6]}"
        p = producer(self.bench.kafka, name, transactional_id=name)
        await p.start()
        self._stack.push_async_callback(p.stop)
        self._arrivals = await self._stack.enter_async_context(
            Arrivals(self.bench.kafka, self.bench.codec, AGENCY_TOPICS, None, lambda r: r.key)
        )

        async def run() -> None:
            n = 0
            while True:
                await asyncio.sleep(1 / self.rate)
                label = self.label
                if label is None:
                    continue
                key = f"probe-{n}".encode()
                n += 1
                began = time.time()
                async with p.transaction():
                    for topic, k, v in layout_records(key, self._value):
                        await p.send(topic, v, key=k)
                self.sent.setdefault(label, []).append((key, began))

        self._task = asyncio.create_task(run())
        return self

    async def __aexit__(self, *_: object) -> None:
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
        await self._stack.aclose()

    async def resume(self, label: str) -> None:
        """Transact for LEAD_IN_S unrecorded, then record under `label`: the probe's first transactions after
        a pause (idle through the minute of the ramp) are its own start, not the machine at that step."""
        self.label = "lead-in"
        await asyncio.sleep(LEAD_IN_S)
        self.label = label

    async def summary(self, label: str) -> dict[str, Any]:
        """Send-to-readable percentiles of the transactions made under `label` (waiting briefly for the last)."""
        assert self._arrivals is not None
        seen, sent = self._arrivals.seen, self.sent.get(label, [])
        with contextlib.suppress(TimeoutError):
            async with asyncio.timeout(5):
                while len(send_to_readable(sent, seen)) < len(sent):
                    await asyncio.sleep(0.05)
        timed = send_to_readable(sent, seen)
        start = sent[0][1] if sent else 0.0
        return {
            "rate_per_second": self.rate,
            "transactions": len(sent),
            "send_to_readable": percentiles([delay for _, delay in timed]),
            # When the slowest began (seconds into the step): a stall shared with the pipeline shows there.
            "slowest": [
                {"began_s_after": round(began - start, 2), "ms": round(delay * 1000, 1)}
                for began, delay in sorted(timed, key=lambda t: t[1])[-3:][::-1]
            ],
        }


def send_to_readable(sent: list[tuple[bytes, float]], seen: dict[bytes, float]) -> list[tuple[float, float]]:
    """Per transaction sent (its key, when its first send began), when it began and the delay until its last
    copy was readable; a transaction with a copy not seen yet is left out."""
    timed = []
    for key, began in sent:
        copies = [seen.get(key + b":" + t.encode()) for t in AGENCY_TOPICS]
        if all(c is not None for c in copies):
            timed.append((began, max(c for c in copies if c is not None) - began))
    return timed
