"""How fast the router and the dispatcher go through a backlog, each alone, as a ratio to its baseline."""

from __future__ import annotations

import asyncio
import uuid
from typing import Any

from bench.harness import steady_rate
from bench.workload import RECIPIENTS, Arrivals, Bench, enriched_record, wait_ready
from services.common.kafka import produce_all
from services.common.ops import free_port
from services.common.records import utcnow
from services.common.topics import ALERTS_ENRICHED, ALERTS_ROUTED, DELIVERIES_WEBHOOK
from services.router.payload import recipient_copy, webhook_request
from services.router.policy import Verdict


async def router_saturation(bench: Bench, n: int, baseline: float) -> dict[str, Any]:
    """A backlog of `n` enriched alerts, each fanned out to every recipient, routed from the first decision."""
    ids = [f"sat-{uuid.uuid4()}" for _ in range(n)]
    await produce_all(
        bench.kafka,
        "bench-load",
        ALERTS_ENRICHED,
        [(i.encode(), bench.codec.encode(enriched_record(i))) for i in ids],
    )
    port = free_port()
    router = bench.service("router-saturation", "router", f"r{uuid.uuid4().hex[:6]}", RCTC_OPS__PORT=str(port))
    # Decisions are keyed by alert id (every alert here is a new one, its own thread).
    async with Arrivals(bench.kafka, bench.codec, [ALERTS_ROUTED], None, lambda r: r.key) as routed:
        await router.start()
        await wait_ready(port)
        router.mark()
        await routed.until(n, within_s=600)
        cpu, rss = router.usage()
        await router.stop()
    times = sorted(routed.seen.values())
    elapsed = times[-1] - times[0]
    rate = steady_rate(times)
    return {
        "alerts": n,
        "fan_out": RECIPIENTS,
        "seconds": round(elapsed, 2),
        "alerts_per_second": round(rate, 1),
        "ratio_to_raw_passthrough": round(rate / baseline, 3),
        "cpu_s_per_1000_alerts": round(cpu / n * 1000, 2),
        "peak_rss_mb": round(rss, 1),
    }


def delivery_backlog(bench: Bench, n: int) -> list[tuple[bytes, bytes]]:
    """`n` webhook requests spread over the recipients, keyed `<alert id>:<agency>` as the router keys them."""
    now = utcnow()
    items = []
    for i in range(n):
        alert = enriched_record(f"disp-{uuid.uuid4()}")
        code = bench.codes[i % len(bench.codes)]
        request = webhook_request(
            recipient_copy(alert, Verdict(code, True, "shared", "b", "BENCH"), now), "Immediate", now
        )
        items.append((f"{alert.alert_id}:{code}".encode(), bench.codec.encode(request)))
    return items


async def dispatcher_saturation(bench: Bench, items: list[tuple[bytes, bytes]], baseline: float) -> dict[str, Any]:
    """A backlog of webhook deliveries (`delivery_backlog`), signed and POSTed, from the first one."""
    n = len(items)
    await produce_all(bench.kafka, "bench-load", DELIVERIES_WEBHOOK, items)
    arrived = bench.receivers.arrived
    before = len(arrived)
    port = free_port()
    dispatcher = bench.service(
        "dispatcher-saturation", "dispatcher", f"d{uuid.uuid4().hex[:6]}", RCTC_OPS__PORT=str(port)
    )
    bench.receivers.verify = False
    try:
        await dispatcher.start()
        await wait_ready(port)
        dispatcher.mark()
        async with asyncio.timeout(600):
            while len(arrived) - before < n:
                await asyncio.sleep(0.02)
    finally:
        bench.receivers.verify = True
    times = sorted(arrived.values())[before:]
    elapsed = times[-1] - times[0]
    cpu, rss = dispatcher.usage()
    await dispatcher.stop()
    rate = steady_rate(times)
    return {
        "deliveries": n,
        "seconds": round(elapsed, 2),
        "per_second": round(rate, 1),
        "ratio_to_raw_aiohttp": round(rate / baseline, 3),
        "cpu_s_per_1000_deliveries": round(cpu / n * 1000, 2),
        "peak_rss_mb": round(rss, 1),
    }
