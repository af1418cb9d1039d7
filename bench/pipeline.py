"""The whole system as processes, alerts submitted to the gateway at a constant rate, and a burst.

Latency is measured for every copy: from the moment the harness POSTed the alert to the moment the copy
appeared (committed) on the recipient's topic, and to the moment the recipient's receiver verified the
signed webhook.
"""

from __future__ import annotations

import asyncio
import atexit
import contextlib
import functools
import os
import secrets
import shutil
import tempfile
import time
import uuid
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import aiohttp

from bench.harness import Service, TimedReceivers, between_steps, cpu_seconds, machine_cpu_seconds, percentiles
from bench.probe import TransactionProbe
from bench.workload import ORIGIN_TOKEN, Arrivals, Bench, wait_ready
from services.auditor.checkpoints import new_signing_key
from services.cli.security import write_secret
from services.common.kafka import read_to_end
from services.common.ops import free_port
from services.common.records import AlertEnriched, AlertRouted, AlertShared, AlertSubmitted
from services.common.topics import ALERTS_ENRICHED, ALERTS_ROUTED, ALERTS_SUBMITTED, agency_topic
from services.demo.samples import alert_submission

# The targets, to say when latency is back under them after the burst.
TOPIC_TARGET_S = 0.025
WEBHOOK_TARGET_S = 0.050
BURST_FACTOR = 10
BURST_S = 10
RECOVERY_S = 30  # the issue: back under the targets within 30 s of the burst's end
TAIL_S = 40  # steady load after the burst: the last TAIL_S - RECOVERY_S seconds are measured
WINDOW_S = 5  # after the burst, latency is followed in windows of this many seconds of submissions
WARM_UP_S = 5  # load before measuring: first connections, metadata and transactions are not steady state
WARM_UP_RATE = 20  # alerts per second while warming up
# The pipeline's saturation is the highest constant rate it sustains (see `kept_up`), found by a ramp of
# constant loads: up by RAMP_FACTOR from RAMP_START until one is not sustained, then narrowed (`next_rate`).
RAMP_START = 40.0
RAMP_FACTOR = 1.5
RAMP_STEP_S = 8
RAMP_PROBES = 8
RAMP_PRECISION = 1.15  # stop narrowing once the rate failed is within this factor of the rate sustained
DRAIN_ALLOWANCE_S = 0.5  # a sustained load's last alert is complete this soon after the load ends
HALF_S = 20  # constant load at half the measured saturation
# The raw transaction beside the half-saturation step (bench/probe.py), per second. Not beside the 20/s step:
# at 10/s there it added half again to the transactions the broker committed, and that step's p99 went from
# 21-26 ms (every run without it) to 39-106 ms.
PROBE_RATE = 5.0


@dataclass
class Latencies:
    """Submit time per alert id, and per copy the delay to the agency's topic and to its webhook receiver."""

    submitted: dict[str, float] = field(default_factory=dict)
    topic_seen: dict[tuple[str, str], float] = field(default_factory=dict)
    topic: dict[tuple[str, str], float] = field(default_factory=dict)
    webhook: dict[tuple[str, str], float] = field(default_factory=dict)

    def collect(self, seen: dict[Any, float], receivers: TimedReceivers) -> None:
        self.topic_seen = dict(seen)
        self.topic = {(a, c): t - self.submitted[a] for (a, c), t in seen.items() if a in self.submitted}
        for agency, payloads in receivers.receivers.received.items():
            for webhook_id, payload in payloads.items():
                alert_id = payload["data"]["alert_id"]
                if alert_id in self.submitted and webhook_id in receivers.arrived:
                    self.webhook[(alert_id, agency)] = receivers.arrived[webhook_id] - self.submitted[alert_id]

    def of(self, ids: set[str]) -> tuple[list[float], list[float]]:
        return (
            [v for (a, _), v in self.topic.items() if a in ids],
            [v for (a, _), v in self.webhook.items() if a in ids],
        )

    def summary(self, ids: set[str], fan_out: int) -> dict[str, Any]:
        topic, hooks = self.of(ids)
        return {
            "submit_to_agency_topic": percentiles(topic),
            "submit_to_webhook": percentiles(hooks),
            "expected_copies": len(ids) * fan_out,
        }

    def windows(self, ids: set[str], since: float) -> list[dict[str, Any]]:
        """p99 latency of the alerts of `ids` by WINDOW_S of submission time after `since`."""
        slots: dict[int, set[str]] = {}
        for a in ids:
            slots.setdefault(int((self.submitted[a] - since) // WINDOW_S), set()).add(a)
        result = []
        for slot in sorted(slots):
            topic, hooks = self.of(slots[slot])
            result.append(
                {
                    "from_s": slot * WINDOW_S,
                    "topic_p99_ms": percentiles(topic).get("p99_ms"),
                    "webhook_p99_ms": percentiles(hooks).get("p99_ms"),
                }
            )
        return result


@dataclass
class Load:
    """Alerts POSTed to the gateway at a constant rate, each on time (not after the previous answer), and the
    wait for every copy and webhook of them."""

    http: aiohttp.ClientSession
    gateway: str
    measured: Latencies
    copies: Arrivals
    receivers: TimedReceivers
    fan_out: int
    hooks_before: int  # webhooks the receivers had before this load's first alert

    async def submit(self, i: int) -> None:
        body = alert_submission(title=f"bench {i}", affected_countries=["IQ"])
        t = time.time()
        async with self.http.post(self.gateway, json=body, headers={"Authorization": f"Bearer {ORIGIN_TOKEN}"}) as r:
            r.raise_for_status()
            self.measured.submitted[(await r.json())["alert_id"]] = t

    async def run(self, per_second: float, duration: float, offset: int) -> set[str]:
        """Submit at a constant rate; the ids sent."""
        before = set(self.measured.submitted)
        count = int(per_second * duration)
        start = time.perf_counter()
        tasks = []
        for i in range(count):
            delay = start + i / per_second - time.perf_counter()
            if delay > 0:
                await asyncio.sleep(delay)
            tasks.append(asyncio.create_task(self.submit(offset + i)))
        await asyncio.gather(*tasks)
        return set(self.measured.submitted) - before

    async def arrived(self, total_alerts: int) -> None:
        """Wait (bounded) for every copy and webhook; what is still missing then is counted as lost."""
        with contextlib.suppress(TimeoutError):
            await self.copies.until(total_alerts * self.fan_out, within_s=300)
            async with asyncio.timeout(120):
                while len(self.receivers.arrived) < self.hooks_before + total_alerts * self.fan_out:
                    await asyncio.sleep(0.05)


def recovery_s(windows: list[dict[str, Any]], topic_ms: float, webhook_ms: float) -> float | None:
    """When latency was back under the given p99s for good: the start of the first window from which every
    later window's p99 met them, or None if the last one still did not."""

    def met(w: dict[str, Any]) -> bool:
        topic, hook = w["topic_p99_ms"], w["webhook_p99_ms"]
        return topic is not None and hook is not None and topic < topic_ms and hook < webhook_ms

    since = None
    for w in windows:
        if not met(w):
            since = None
        elif since is None:
            since = w["from_s"]
    return since


async def hops(bench: Bench, measured: Latencies, ids: set[str]) -> dict[str, Any]:
    """Where an alert's time goes, as percentiles over `ids` of each hop (see hop_times)."""
    times = await hop_times(bench, measured, ids)
    names = ["gateway_http_to_send", "gateway_to_enricher_send", "enricher_to_router_send", "router_send_to_readable"]
    return {name: percentiles([t[name] for t in times.values() if name in t]) for name in names}


async def hop_times(bench: Bench, measured: Latencies, ids: set[str]) -> dict[str, dict[str, float]]:
    """Per alert of `ids`, seconds spent on each hop, from the producer timestamps of its records.

    Each record's timestamp is taken when its producer was handed it, so a hop is the time from one
    service's send to the next service's send (the broker, the fetch, the work); the last is from the
    router's send to its slowest copy being readable (the transaction's commit and its markers).
    """
    sent: dict[str, dict[str, float]] = {}
    path: list[tuple[str, type[AlertSubmitted | AlertEnriched | AlertRouted]]] = [
        (ALERTS_SUBMITTED, AlertSubmitted),
        (ALERTS_ENRICHED, AlertEnriched),
        (ALERTS_ROUTED, AlertRouted),
    ]
    for topic, kind in path:
        async for r in read_to_end(bench.kafka, topic, name="bench-hops"):
            alert_id = bench.codec.decode(r.value, kind).alert_id
            if alert_id in ids:
                sent.setdefault(topic, {})[alert_id] = r.timestamp / 1000
    readable: dict[str, float] = {}
    for (a, _), t in measured.topic_seen.items():
        readable[a] = max(readable.get(a, t), t)
    result = {}
    for a in ids:
        if not all(a in sent.get(t, {}) for t, _ in path):
            continue
        submitted, enriched, routed = (sent[t][a] for t, _ in path)
        result[a] = {
            "gateway_http_to_send": submitted - measured.submitted[a],
            "gateway_to_enricher_send": enriched - submitted,
            "enricher_to_router_send": routed - enriched,
        }
        if a in readable:
            result[a]["router_send_to_readable"] = readable[a] - routed
    return result


async def slowest(bench: Bench, measured: Latencies, ids: set[str], since: float, n: int = 5) -> list[dict[str, Any]]:
    """The `n` alerts of `ids` with the slowest copy to its topic, slowest first: when each was submitted
    (seconds after `since`) and its hops in ms, to tell a stall at one moment from a tail spread over the step."""
    worst: dict[str, float] = {}
    for (a, _), v in measured.topic.items():
        if a in ids:
            worst[a] = max(worst.get(a, v), v)
    chosen = sorted(worst, key=worst.__getitem__)[-n:]
    per_hop = await hop_times(bench, measured, set(chosen))
    return [
        {
            "submitted_s_after": round(measured.submitted[a] - since, 2),
            "topic_ms": round(worst[a] * 1000, 1),
            **{hop: round(t * 1000, 1) for hop, t in per_hop.get(a, {}).items()},
        }
        for a in reversed(chosen)
    ]


@functools.cache
def _signing_key() -> Path:
    """The auditor's key for this run (every step's auditor extends the one trail on the bench's broker)."""
    folder = Path(tempfile.mkdtemp(prefix="rctc-bench-audit-"))
    atexit.register(shutil.rmtree, folder, ignore_errors=True)
    path = folder / "auditor.key"
    write_secret(path, new_signing_key()[0].decode().rstrip())
    return path


def services(bench: Bench, step: str, log_level: str = "warning") -> tuple[list[Service], dict[str, int]]:
    """The six services' processes (not started) and their ports. At `log_level` "info" they log as production
    does, a line per unit of work (to logs/<step>/); the benchmark's default keeps warnings only."""
    prefix = f"p{uuid.uuid4().hex[:6]}"
    ops = {name: free_port() for name in ("tracker", "enricher", "router", "auditor", "dispatcher", "gateway")}
    tracker_http, gateway_http = free_port(), free_port()
    internal = {"RCTC_INTERNAL_TOKEN": secrets.token_urlsafe(32)}  # gateway -> tracker, as make run does
    level = {"RCTC_LOG__LEVEL": log_level}
    made = [
        bench.service(
            step,
            "tracker",
            prefix,
            RCTC_OPS__PORT=str(ops["tracker"]),
            RCTC_HTTP__PORT=str(tracker_http),
            **internal,
            **level,
        ),
        bench.service(step, "enricher", prefix, RCTC_OPS__PORT=str(ops["enricher"]), **level),
        bench.service(step, "router", prefix, RCTC_OPS__PORT=str(ops["router"]), **level),
        bench.service(
            step,
            "auditor",
            prefix,
            RCTC_OPS__PORT=str(ops["auditor"]),
            RCTC_SIGNING_KEY_FILE=str(_signing_key()),
            **level,
        ),
        bench.service(step, "dispatcher", prefix, RCTC_OPS__PORT=str(ops["dispatcher"]), **level),
        bench.service(
            step,
            "gateway",
            prefix,
            RCTC_OPS__PORT=str(ops["gateway"]),
            RCTC_HTTP__PORT=str(gateway_http),
            RCTC_TRACKER_URL=f"http://127.0.0.1:{tracker_http}",
            **internal,
            **level,
        ),
    ]
    return made, {**ops, "gateway_http": gateway_http}


def kept_up(ids: set[str], done: list[float], load_end: float) -> tuple[bool, float | None]:
    """Whether a constant load was sustained, and how late its last alert was complete (seconds after the load
    ended; None if some alert never was).

    `done` is when each alert of `ids` was complete (every copy on its topic and every webhook received). A
    load the pipeline sustains ends with at most a few transactions in flight; a load above what it sustains
    leaves a backlog that grows all along: at 1.06 times saturation the last alert of an 8 s load ends 0.5 s
    late, at twice saturation 8 s late. (A backlog submitted at once drains faster than any constant load is
    sustained, every stage's batches being full: measured that way, this pipeline's "saturation" was twice
    what it sustains.)
    """
    if len(done) < len(ids) or not done:
        return False, None
    late = max(done) - load_end
    return late <= DRAIN_ALLOWANCE_S, round(late, 2)


def next_rate(sustained: float | None, failed: float | None) -> float | None:
    """The ramp's next constant rate, from the highest sustained so far and the lowest not sustained; None: done.

    Up by RAMP_FACTOR until a rate fails, down by half until one passes, then the geometric middle of the
    two until they are within RAMP_PRECISION of each other.
    """
    if failed is None:
        return RAMP_START if sustained is None else sustained * RAMP_FACTOR
    if sustained is None:
        return failed / 2
    if failed / sustained <= RAMP_PRECISION:
        return None
    return float((sustained * failed) ** 0.5)


def finished(measured: Latencies, ids: set[str], codes: list[str]) -> list[float]:
    """When each alert of `ids` was complete: all its copies on their topics and all its webhooks received
    (alerts still missing something are left out)."""
    done = []
    for a in ids:
        delays = [measured.topic.get((a, c)) for c in codes] + [measured.webhook.get((a, c)) for c in codes]
        if all(d is not None for d in delays):
            done.append(measured.submitted[a] + max(d for d in delays if d is not None))
    return done


def cpu_of(bench: Bench, running: list[Service]) -> dict[str, float]:
    """CPU seconds so far of the services, the broker and this harness, and of the whole machine."""
    services_cpu = sum(cpu_seconds(s.process.pid) for s in running if s.process is not None)
    return {
        "services": services_cpu,
        "broker": cpu_seconds(bench.broker_pid) if bench.broker_pid else 0.0,
        "harness": cpu_seconds(os.getpid()),
        "machine": machine_cpu_seconds(),
    }


def cores_busy(before: dict[str, float], after: dict[str, float], seconds: float) -> dict[str, float]:
    """Cores each side kept busy between two `cpu_of` readings `seconds` apart (the machine has two); `total`
    is the benchmark's own, `others` what everything else on the machine took meanwhile (other people's work
    on a shared machine: a ratio between two steps is fair only if it was about the same in both)."""
    ours = [k for k in before if k != "machine"]
    busy = {k: round((after[k] - before[k]) / seconds, 2) for k in ours}
    busy["total"] = round(sum(busy[k] for k in ours), 2)
    if "machine" in before:
        busy["others"] = round(max(0.0, (after["machine"] - before["machine"]) / seconds - busy["total"]), 2)
    return busy


def per_1000_alerts(running: list[Service], bench: Bench, broker_cpu_at_mark: float, alerts: int) -> dict[str, Any]:
    """CPU seconds per 1,000 alerts of each service (since its `mark()`), of all of them (`total`) and of the
    broker (TLS, SCRAM and the authorizer are mostly its work: bench/security_cost.py); peak memory."""
    usage = {s.name: s.usage() for s in running}
    per = {n: round(cpu / alerts * 1000, 2) for n, (cpu, _) in usage.items()}
    per["total"] = round(sum(c for c, _ in usage.values()) / alerts * 1000, 2)
    result: dict[str, Any] = {
        "cpu_s_per_1000_alerts": per,
        "peak_rss_mb": {n: round(r, 1) for n, (_, r) in usage.items()},
    }
    if bench.broker_pid:
        broker_used = cpu_seconds(bench.broker_pid) - broker_cpu_at_mark
        result["broker_cpu_s_per_1000_alerts"] = round(broker_used / alerts * 1000, 2)
    return result


async def pipeline(
    bench: Bench, rate: float, seconds: float, burst: bool, *, logs: str = "pipeline", full: bool = True
) -> dict[str, Any]:
    """All services as processes; the pipeline's saturation; alerts submitted at `rate` per second, then at
    half the saturation, with latency to topics and webhooks; then the burst, ten times `rate`. Not `full`:
    only the saturation and the step at `rate` (the plaintext baseline), the rest of the harness unchanged so
    that both sides of a ratio carry the same load of it. Service logs go to logs/<logs>/."""
    running, ports = services(bench, logs)
    for s in running:
        await s.start()
    for s in running:
        await wait_ready(ports[s.name])
    measured = Latencies()
    codes, receivers = bench.codes, bench.receivers
    hooks_before = len(receivers.arrived)
    result: dict[str, Any] = {}
    gateway = f"http://127.0.0.1:{ports['gateway_http']}/v1/alerts"
    try:
        async with (
            Arrivals(
                bench.kafka,
                bench.codec,
                [agency_topic(c) for c in codes],
                AlertShared,
                lambda s: (s.alert_id, s.recipient),
            ) as copies,
            aiohttp.ClientSession() as http,
            TransactionProbe(bench, rate=PROBE_RATE) as probe,
        ):
            loader = Load(http, gateway, measured, copies, receivers, len(codes), hooks_before)
            load, arrived = loader.run, loader.arrived

            done_before = 0  # alerts submitted so far whose copies and webhooks all arrived

            async def step(per_second: float, duration: float, offset: int) -> tuple[set[str], float, dict[str, float]]:
                """A constant load after a collection, until every copy and webhook of it arrived: its ids, when it
                began, and the cores each side kept busy while it ran."""
                nonlocal done_before
                between_steps()
                before = cpu_of(bench, running)
                began = time.time()
                ids = await load(per_second, duration, offset)
                busy = cores_busy(before, cpu_of(bench, running), time.time() - began)
                done_before += len(ids)
                await arrived(done_before)
                measured.collect(copies.seen, receivers)
                return ids, began, busy

            warm_up = await load(WARM_UP_RATE, WARM_UP_S, 50_000)
            done_before += len(warm_up)
            await arrived(done_before)

            # Saturation: the highest constant rate the pipeline sustains, gateway to topics and webhooks.
            probes: list[dict[str, Any]] = []
            sustained: float | None = None
            failed: float | None = None
            while len(probes) < RAMP_PROBES and (per_second := next_rate(sustained, failed)) is not None:
                per_second = round(per_second, 1)
                ids, began, busy = await step(per_second, RAMP_STEP_S, 300_000 + 10_000 * len(probes))
                ok, late = kept_up(ids, finished(measured, ids, codes), began + RAMP_STEP_S)
                probes.append(
                    {
                        "rate_per_second": per_second,
                        "sustained": ok,
                        "last_complete_s_after_load": late,
                        "cores_busy": busy,
                        **measured.summary(ids, len(codes)),
                    }
                )
                if ok:
                    sustained = per_second
                else:
                    failed = per_second
            result["saturation"] = {
                "sustained_per_second": sustained,
                "not_sustained_per_second": failed,
                "seconds_per_probe": RAMP_STEP_S,
                "probes": probes,
            }

            between_steps()
            for s in running:
                s.mark()
            own_cpu = cpu_seconds(os.getpid())
            broker_cpu = cpu_seconds(bench.broker_pid) if bench.broker_pid else 0.0
            steady_began = time.time()
            steady = await load(rate, seconds, 0)
            done_before += len(steady)
            await arrived(done_before)
            measured.collect(copies.seen, receivers)
            result["warm_up"] = measured.summary(warm_up, len(codes))
            result["steady"] = measured.summary(steady, len(codes))
            result["steady"].update(rate_per_second=rate, seconds=seconds, alerts=len(steady))
            result.update(per_1000_alerts(running, bench, broker_cpu, len(steady)))
            # The harness (load, receivers, readers) shares the cores: if it is busy, latencies are its own.
            result["harness_cpu_s"] = round(cpu_seconds(os.getpid()) - own_cpu, 2)
            result["_raw"] = measured.of(steady)
            result["steady_hops"] = await hops(bench, measured, steady)
            result["steady_slowest"] = await slowest(bench, measured, steady, steady_began)

            # The "half of saturation": a constant load at half the highest rate sustained.
            if full and sustained is not None:
                half_rate = round(sustained / 2, 1)
                between_steps()  # before the probe records: a collection here would delay what it is timing
                await probe.resume("half")
                for s in running:
                    s.mark()
                broker_cpu = cpu_seconds(bench.broker_pid) if bench.broker_pid else 0.0
                half, _, busy = await step(half_rate, HALF_S, 400_000)
                probe.label = None
                result["half_saturation"] = measured.summary(half, len(codes))
                result["half_saturation"].update(
                    rate_per_second=half_rate, seconds=HALF_S, alerts=len(half), cores_busy=busy
                )
                # Issue 19's measure: CPU per alert at half saturation, where per-batch overhead is amortised
                # as on a busy day (the probe's transactions are the broker's too, a few percent of it).
                result["half_saturation"].update(per_1000_alerts(running, bench, broker_cpu, len(half)))
                result["half_saturation_hops"] = await hops(bench, measured, half)
                result["half_saturation_probe"] = await probe.summary("half")
            between_steps()
            if full and burst:
                burst_ids = await load(rate * BURST_FACTOR, BURST_S, 100_000)
                burst_end = time.time()
                tail_ids = await load(rate, TAIL_S, 200_000)
                await arrived(done_before + len(burst_ids) + len(tail_ids))
                measured.collect(copies.seen, receivers)
                lost = [a for a in burst_ids if any((a, c) not in copies.seen for c in codes)]
                lost_hooks = [a for a in burst_ids if any((a, c) not in measured.webhook for c in codes)]
                result["burst"] = {
                    "alerts": len(burst_ids),
                    "rate_per_second": rate * BURST_FACTOR,
                    "seconds": BURST_S,
                    "lost": len(lost),
                    "alerts_missing_a_webhook": len(lost_hooks),
                    "burst_latency": measured.summary(burst_ids, len(codes)),
                }
                result["burst"]["after"] = measured.windows(tail_ids, burst_end)
                after = result["burst"]["after"]
                result["burst"]["recovery_s"] = recovery_s(after, TOPIC_TARGET_S * 1000, WEBHOOK_TARGET_S * 1000)
                # Back to what it was before the burst (within half as much again), targets met or not.
                steady_topic = result["steady"]["submit_to_agency_topic"]["p99_ms"]
                steady_hook = result["steady"]["submit_to_webhook"]["p99_ms"]
                result["burst"]["back_to_steady_s"] = recovery_s(after, 1.5 * steady_topic, 1.5 * steady_hook)
                # The slowest alerts after the burst, hop by hop: what a spike in a window is made of.
                result["burst"]["slowest_after"] = await slowest(bench, measured, tail_ids, burst_end)
                settled = {a for a in tail_ids if measured.submitted[a] >= burst_end + RECOVERY_S}
                result["after_burst"] = measured.summary(settled, len(codes))
    finally:
        for s in reversed(running):
            await s.stop()
    return result
