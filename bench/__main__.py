"""`make bench`: the pipeline's speed and cost against raw Kafka and raw HTTP, measured in the same run.

On a shared two-core machine an absolute number means little; a ratio to a baseline measured minutes
apart on the same broker does. Steps, each on a fresh consumer group and a quiet machine:

1. baseline: raw aiokafka consume-then-produce of the same records; raw aiohttp POSTs to the same receivers
2. router saturation: a backlog of enriched alerts, fanned out to 10 agencies, routed as fast as it can
3. dispatcher saturation: a backlog of webhook deliveries, signed and POSTed as fast as it can
4. pipeline: alerts submitted to the gateway at a constant rate (half of saturation), latency from submit
   to each agency's topic and to each webhook receiver; CPU seconds and peak memory per 1,000 alerts
5. burst: ten times that rate for ten seconds; nothing lost, and latency back under target afterwards

Results go to bench/results/<time>/: report.json, report.md and latency.png.
"""

from __future__ import annotations

import argparse
import asyncio
import base64
import json
import os
import secrets as secrets_module
import time
import uuid
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import aiohttp
from aiokafka.admin import AIOKafkaAdminClient, NewTopic

from bench.harness import ROOT, Broker, Service, TimedReceivers, cpu_seconds, percentiles, service_env
from services.common.codec import Codec
from services.common.kafka import consumer, partitions_of, produce_all, producer
from services.common.logs import configure_logging
from services.common.records import AlertEnriched, AlertRouted, AlertShared, utcnow
from services.common.registry import Agency, Agreement, RegistryDocument, Subscription, Webhook
from services.common.registry.model import Operator
from services.common.registry.publish import publish_registry
from services.common.settings import KafkaSettings, LogSettings
from services.common.topics import (
    ALERTS_ENRICHED,
    ALERTS_ROUTED,
    DELIVERIES_WEBHOOK,
    agency_topic,
    apply_topics,
    load_declarations,
)
from services.demo.samples import alert_submission
from services.router.payload import recipient_copy, webhook_request
from services.router.policy import Verdict


def new_secret() -> str:
    return "whsec_" + base64.b64encode(secrets_module.token_bytes(32)).decode()


alert_json = alert_submission


RECIPIENTS = 10
ORIGIN = "IQ-BENCH"
OPERATOR = "bench-operator"


def bench_registry(receiver_port: int) -> tuple[RegistryDocument, list[str], dict[str, list[str]]]:
    import hashlib

    countries = ["JO", "SA", "AE", "EG", "KW", "LB", "OM", "QA", "BH", "TR"]
    codes = [f"{c}-BENCH{i}" for i, c in enumerate(countries[:RECIPIENTS])]
    secrets = {code: [new_secret()] for code in codes}
    agencies = [
        Agency(code=ORIGIN, name="origin", country="IQ", token_sha256=[hashlib.sha256(b"bench-origin").hexdigest()])
    ]
    agencies += [
        Agency(
            code=code,
            name=code,
            country=code[:2],
            subscriptions=[Subscription(categories=["*"])],
            webhook=Webhook(
                url=f"http://127.0.0.1:{receiver_port}/hooks/{code}", secrets=secrets[code], allow_private=True
            ),
        )
        for code in codes
    ]
    agreement = Agreement(
        id="BENCH",
        kind="multilateral",
        parties=[ORIGIN, *codes],
        categories=["*"],
        max_tlp="AMBER",
        redact=["subjects"],
    )
    operators = [Operator(name="bench", token_sha256=[hashlib.sha256(OPERATOR.encode()).hexdigest()])]
    return RegistryDocument(agencies=agencies, agreements=[agreement], operators=operators), codes, secrets


def enriched_record(alert_id: str) -> AlertEnriched:
    from services.gateway.submission import parse_submission

    now = utcnow()
    alert = parse_submission(json.dumps(alert_json(affected_countries=["IQ"])).encode(), now=now)
    return AlertEnriched(alert_id=alert_id, origin=ORIGIN, submitted_at=now, enriched_at=now, priority=2, alert=alert)


async def wait_ready(port: int, within_s: float = 60) -> None:
    async with asyncio.timeout(within_s), aiohttp.ClientSession() as http:
        while True:
            try:
                async with http.get(f"http://127.0.0.1:{port}/readyz") as r:
                    if r.status == 200:
                        return
            except aiohttp.ClientError:
                pass
            await asyncio.sleep(0.1)


class Arrivals:
    """A read_committed reader noting when each record's id first appears on some topics."""

    def __init__(self, kafka: KafkaSettings, codec: Codec, topics: list[str], kind: type, ident: Any) -> None:
        self.kafka, self.codec, self.topics, self.kind, self.ident = kafka, codec, topics, kind, ident
        self.seen: dict[Any, float] = {}
        self._task: asyncio.Task[None] | None = None
        self._stop = asyncio.Event()

    async def __aenter__(self) -> Arrivals:
        c = consumer(self.kafka, f"bench-reader-{uuid.uuid4().hex[:6]}", group=None, from_beginning=False)
        await c.start()
        partitions = await partitions_of(c, self.topics)
        c.assign(partitions)
        await c.seek_to_end(*partitions)
        for tp in partitions:
            await c.position(tp)

        async def read() -> None:
            try:
                while not self._stop.is_set():
                    for records in (await c.getmany(timeout_ms=100)).values():
                        now = time.time()
                        for r in records:
                            self.seen.setdefault(self.ident(self.codec.decode(r.value, self.kind)), now)
            finally:
                await c.stop()

        self._task = asyncio.create_task(read())
        return self

    async def __aexit__(self, *_: object) -> None:
        self._stop.set()
        if self._task is not None:
            await self._task

    async def until(self, count: int, within_s: float) -> float:
        async with asyncio.timeout(within_s):
            while len(self.seen) < count:
                await asyncio.sleep(0.02)
        return max(self.seen.values())


# What the router writes per alert: a copy and a webhook request per recipient, and the decision.
OUTPUTS_PER_ALERT = 2 * RECIPIENTS + 1


async def baseline_kafka(kafka: KafkaSettings, codec: Codec, n: int) -> dict[str, Any]:
    """Raw aiokafka: consume each record and produce as many records as the router does for it (no routing
    logic, no transaction, no encoding), committing per batch. The router's ratio to this is its overhead."""
    admin = AIOKafkaAdminClient(bootstrap_servers=kafka.bootstrap_servers)
    await admin.start()
    try:
        await admin.create_topics([NewTopic("bench.in", 6, 1), NewTopic("bench.out", 6, 1)])
    finally:
        await admin.close()
    value = codec.encode(enriched_record("x"))
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


async def router_saturation(kafka: KafkaSettings, codec: Codec, n: int, baseline: float) -> dict[str, Any]:
    ids = [f"sat-{uuid.uuid4()}" for _ in range(n)]
    await produce_all(
        kafka, "bench-load", ALERTS_ENRICHED, [(i.encode(), codec.encode(enriched_record(i))) for i in ids]
    )
    prefix = f"r{uuid.uuid4().hex[:6]}"
    router = Service("router", service_env(kafka.bootstrap_servers, prefix, RCTC_OPS__PORT="19303"))
    async with Arrivals(kafka, codec, [ALERTS_ROUTED], AlertRouted, lambda r: r.alert_id) as routed:
        await router.start()
        await wait_ready(19303)
        router.mark()
        last = await routed.until(n, within_s=600)
        started = min(routed.seen.values())  # from the first decision: start-up and partition claims excluded
        cpu, rss = router.usage()
        await router.stop()
    elapsed = last - started
    rate = (n - 1) / elapsed
    return {
        "alerts": n,
        "fan_out": RECIPIENTS,
        "seconds": round(elapsed, 2),
        "alerts_per_second": round(rate, 1),
        "ratio_to_raw_passthrough": round(rate / baseline, 3),
        "cpu_s_per_1000_alerts": round(cpu / n * 1000, 2),
        "peak_rss_mb": round(rss, 1),
    }


async def dispatcher_saturation(
    kafka: KafkaSettings, codec: Codec, receivers: TimedReceivers, codes: list[str], n: int, baseline: float
) -> dict[str, Any]:
    now = utcnow()
    items = []
    for i in range(n):
        alert = enriched_record(f"disp-{uuid.uuid4()}")
        code = codes[i % len(codes)]
        request = webhook_request(
            recipient_copy(alert, Verdict(code, True, "shared", "b", "BENCH"), now), "Immediate", now
        )
        items.append((f"{alert.alert_id}:{code}".encode(), codec.encode(request)))
    await produce_all(kafka, "bench-load", DELIVERIES_WEBHOOK, items)
    before = len(receivers.arrived)
    prefix = f"d{uuid.uuid4().hex[:6]}"
    dispatcher = Service("dispatcher", service_env(kafka.bootstrap_servers, prefix, RCTC_OPS__PORT="19304"))
    await dispatcher.start()
    await wait_ready(19304)
    dispatcher.mark()
    async with asyncio.timeout(600):
        while len(receivers.arrived) - before < n:
            await asyncio.sleep(0.02)
    times = sorted(receivers.arrived.values())[before:]
    elapsed = times[-1] - times[0]  # from the first delivery: start-up excluded
    cpu, rss = dispatcher.usage()
    await dispatcher.stop()
    rate = (n - 1) / elapsed
    return {
        "deliveries": n,
        "seconds": round(elapsed, 2),
        "per_second": round(rate, 1),
        "ratio_to_raw_aiohttp": round(rate / baseline, 3),
        "cpu_s_per_1000_deliveries": round(cpu / n * 1000, 2),
        "peak_rss_mb": round(rss, 1),
    }


async def pipeline(
    kafka: KafkaSettings,
    codec: Codec,
    receivers: TimedReceivers,
    codes: list[str],
    rate: float,
    seconds: float,
    burst: bool,
) -> dict[str, Any]:
    """All services as processes; alerts submitted at `rate` per second; latency to topics and webhooks."""
    prefix = f"p{uuid.uuid4().hex[:6]}"
    env = service_env(kafka.bootstrap_servers, prefix)
    services = [
        Service("tracker", {**env, "RCTC_OPS__PORT": "19405", "RCTC_HTTP__PORT": "19485"}),
        Service("enricher", {**env, "RCTC_OPS__PORT": "19402"}),
        Service("router", {**env, "RCTC_OPS__PORT": "19403"}),
        Service("auditor", {**env, "RCTC_OPS__PORT": "19406"}),
        Service("dispatcher", {**env, "RCTC_OPS__PORT": "19404"}),
        Service(
            "gateway",
            {
                **env,
                "RCTC_OPS__PORT": "19401",
                "RCTC_HTTP__PORT": "19480",
                "RCTC_TRACKER_URL": "http://127.0.0.1:19485",
            },
        ),
    ]
    for s in services:
        await s.start()
    for port in (19405, 19402, 19403, 19406, 19404, 19401):
        await wait_ready(port)
    for s in services:
        s.mark()
    own_cpu = cpu_seconds(os.getpid())
    submitted: dict[str, float] = {}
    hooks_before = len(receivers.arrived)
    topics = [agency_topic(c) for c in codes]
    result: dict[str, Any] = {}
    try:
        async with (
            Arrivals(kafka, codec, topics, AlertShared, lambda s: (s.alert_id, s.recipient)) as copies,
            aiohttp.ClientSession() as http,
        ):

            async def submit(i: int) -> None:
                body = alert_json(title=f"bench {i}", affected_countries=["IQ"])
                t = time.time()
                async with http.post(
                    "http://127.0.0.1:19480/v1/alerts", json=body, headers={"Authorization": "Bearer bench-origin"}
                ) as r:
                    submitted[(await r.json())["alert_id"]] = t

            async def load(per_second: float, duration: float, offset: int) -> int:
                count = int(per_second * duration)
                start = time.perf_counter()
                tasks = []
                for i in range(count):
                    delay = start + i / per_second - time.perf_counter()
                    if delay > 0:
                        await asyncio.sleep(delay)
                    tasks.append(asyncio.create_task(submit(offset + i)))
                await asyncio.gather(*tasks)
                return count

            sent = await load(rate, seconds, 0)
            await copies.until(sent * len(codes), within_s=120)
            async with asyncio.timeout(120):
                while len(receivers.arrived) < hooks_before + sent * len(codes):
                    await asyncio.sleep(0.05)
            steady_ids = set(submitted)
            result["steady"] = _latencies(submitted, copies.seen, receivers, steady_ids, len(codes))
            result["steady"].update(rate_per_second=rate, seconds=seconds, alerts=sent)
            usage = {s.name: s.usage() for s in services}
            result["cpu_s_per_1000_alerts"] = {n: round(cpu / sent * 1000, 2) for n, (cpu, _) in usage.items()}
            result["cpu_s_per_1000_alerts"]["total"] = round(sum(c for c, _ in usage.values()) / sent * 1000, 2)
            result["peak_rss_mb"] = {n: round(rss, 1) for n, (_, rss) in usage.items()}
            # The harness (load, receivers, readers) shares the cores: if it is busy, latencies are its own.
            result["harness_cpu_s"] = round(cpu_seconds(os.getpid()) - own_cpu, 2)
            if burst:
                before = set(submitted)
                burst_sent = await load(rate * 10, 10, 100_000)
                after_start = time.time()
                tail_sent = await load(rate, 30, 200_000)
                await copies.until((sent + burst_sent + tail_sent) * len(codes), within_s=300)
                burst_ids = set(submitted) - before
                lost = [a for a in burst_ids if sum(1 for c in codes if (a, c) in copies.seen) < len(codes)]
                recovered = {a: t for a, t in submitted.items() if a in burst_ids and t >= after_start + 30 - 30}
                result["burst"] = {"alerts": burst_sent, "rate_per_second": rate * 10, "lost": len(lost)}
                result["after_burst"] = _latencies(
                    submitted,
                    copies.seen,
                    receivers,
                    {a for a, t in recovered.items() if t >= after_start + 20},
                    len(codes),
                )
    finally:
        for s in reversed(services):
            await s.stop()
    return result


def _latencies(
    submitted: dict[str, float], seen: dict[Any, float], receivers: TimedReceivers, ids: set[str], fan_out: int
) -> dict[str, Any]:
    topic = [seen[(a, c)] - submitted[a] for (a, c) in seen if a in ids]
    hooks = []
    for webhook_id, payload in _payloads(receivers).items():
        alert_id = payload["data"]["alert_id"]
        if alert_id in ids and webhook_id in receivers.arrived:
            hooks.append(receivers.arrived[webhook_id] - submitted[alert_id])
    return {
        "submit_to_agency_topic": percentiles(topic),
        "submit_to_webhook": percentiles(hooks),
        "expected_copies": len(ids) * fan_out,
        "_topic": topic,
        "_hooks": hooks,
    }


def _payloads(receivers: TimedReceivers) -> dict[str, Any]:
    return {wid: p for agency in receivers.receivers.received.values() for wid, p in agency.items()}


def write_report(report: dict[str, Any], out: Path) -> None:
    out.mkdir(parents=True, exist_ok=True)
    raw = report["pipeline"].get("steady", {})
    topic, hooks = raw.pop("_topic", []), raw.pop("_hooks", [])
    for key in ("after_burst",):
        if key in report["pipeline"]:
            report["pipeline"][key].pop("_topic", None)
            report["pipeline"][key].pop("_hooks", None)
    (out / "report.json").write_text(json.dumps(report, indent=2))
    lines = ["| measure | value | target |", "|---|---|---|"]
    r, d, s = report["router"], report["dispatcher"], report["pipeline"]["steady"]
    lines += [
        f"| raw aiokafka pass-through | {report['baseline']['kafka']['per_second']} records/s | |",
        f"| router saturation ({RECIPIENTS} recipients) | {r['alerts_per_second']} alerts/s, ratio "
        f"{r['ratio_to_raw_passthrough']} | >= 0.5 (stretch 0.7) |",
        f"| raw aiohttp POST | {report['baseline']['http']['per_second']} requests/s | |",
        f"| dispatcher saturation | {d['per_second']} deliveries/s, ratio {d['ratio_to_raw_aiohttp']} "
        "| >= 0.7 (stretch 0.85) |",
        f"| submit -> agency topic at {s['rate_per_second']}/s | p50 {s['submit_to_agency_topic']['p50_ms']} ms, "
        f"p99 {s['submit_to_agency_topic']['p99_ms']} ms, p99.9 {s['submit_to_agency_topic']['p99_9_ms']} ms, "
        f"max {s['submit_to_agency_topic']['max_ms']} ms | p99 < 25 ms |",
        f"| submit -> webhook at {s['rate_per_second']}/s | p50 {s['submit_to_webhook']['p50_ms']} ms, "
        f"p99 {s['submit_to_webhook']['p99_ms']} ms, p99.9 {s['submit_to_webhook']['p99_9_ms']} ms, "
        f"max {s['submit_to_webhook']['max_ms']} ms | p99 < 50 ms |",
        f"| CPU per 1,000 alerts fanned out | {report['pipeline']['cpu_s_per_1000_alerts']['total']} s "
        "(all services) | |",
        f"| peak memory | {', '.join(f'{k} {v} MB' for k, v in report['pipeline']['peak_rss_mb'].items())} | |",
    ]
    if "burst" in report["pipeline"]:
        b = report["pipeline"]["burst"]
        lines.append(f"| burst {b['rate_per_second']}/s for 10 s | {b['lost']} alerts lost | 0 |")
    (out / "report.md").write_text("\n".join(lines) + "\n")
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt

        fig, ax = plt.subplots(figsize=(8, 4.5))
        for values, label in ((topic, "submit -> agency topic"), (hooks, "submit -> webhook")):
            if values:
                ordered = sorted(v * 1000 for v in values)
                ax.plot(ordered, [i / len(ordered) for i in range(len(ordered))], label=label)
        ax.set_xscale("log")
        ax.set_xlabel("latency (ms, log scale)")
        ax.set_ylabel("fraction of copies")
        ax.set_title(f"RCTC pipeline latency at {s['rate_per_second']} alerts/s, {RECIPIENTS} recipients each")
        ax.grid(True, which="both", alpha=0.3)
        ax.legend()
        fig.tight_layout()
        fig.savefig(out / "latency.png", dpi=110)
    except ImportError:
        (out / "latency.png.missing").write_text("matplotlib is not installed: pip install '.[bench]'\n")
    print("\n".join(lines))
    print(f"\nreport: {out}")


async def main(args: argparse.Namespace) -> None:
    # The receivers log each webhook at info; at hundreds a second that would load the measuring process.
    configure_logging(LogSettings(level="warning"), "bench")
    codec = Codec.from_directory()
    receivers = TimedReceivers()
    await receivers.start()
    report: dict[str, Any] = {"started": datetime.now(UTC).isoformat(), "recipients": RECIPIENTS}
    with Broker() as broker:
        kafka = KafkaSettings(bootstrap_servers=broker.bootstrap, client_id_prefix="bench")
        await apply_topics(kafka, list(load_declarations().topics), replication_factor=1)
        doc, codes, secrets = bench_registry(receivers.port)
        for code, keys in secrets.items():
            receivers.receivers.register(code, keys)
        await publish_registry(kafka, codec, doc, source="bench", replication_factor=1)
        kafka_base = await baseline_kafka(kafka, codec, args.records)
        sample = webhook_request(
            recipient_copy(enriched_record("x"), Verdict(codes[0], True, "shared", "b", "B"), utcnow()),
            "Immediate",
            utcnow(),
        ).payload
        http_base = await baseline_http(receivers, args.deliveries, sample)
        report["baseline"] = {"kafka": kafka_base, "http": http_base}
        report["router"] = await router_saturation(kafka, codec, args.alerts, kafka_base["per_second"])
        report["dispatcher"] = await dispatcher_saturation(
            kafka, codec, receivers, codes, args.deliveries, http_base["per_second"]
        )
        # The stages share two cores with the broker, so the pipeline saturates well below its slowest stage
        # alone: the constant rate is half the slowest stage's, capped by --rate.
        saturation = min(report["router"]["alerts_per_second"], report["dispatcher"]["per_second"] / RECIPIENTS)
        rate = max(1.0, min(args.rate, round(saturation / 2, 1)))
        report["pipeline"] = await pipeline(kafka, codec, receivers, codes, rate, args.seconds, args.burst)
    await receivers.stop()
    stamp = datetime.now(UTC).strftime("%Y%m%dT%H%M%SZ")
    write_report(report, ROOT / "bench" / "results" / stamp)


if __name__ == "__main__":
    parser = argparse.ArgumentParser(prog="python -m bench", description=__doc__.split("\n")[0])
    parser.add_argument("--records", type=int, default=20_000, help="records for the raw Kafka baseline")
    parser.add_argument("--alerts", type=int, default=1_000, help="backlog for router saturation")
    parser.add_argument("--deliveries", type=int, default=3_000, help="backlog for dispatcher saturation")
    parser.add_argument("--seconds", type=float, default=20, help="constant-rate phase of the pipeline run")
    parser.add_argument("--rate", type=float, default=20, help="cap on the constant rate, alerts per second")
    parser.add_argument("--burst", action="store_true", help="add the 10x burst for 10 s")
    asyncio.run(main(parser.parse_args()))
