"""The correlator (issue 16): its throughput, and whether its lag stays flat at half the pipeline's saturation.

Both steps run the correlator as the process production runs (`python -m services.correlator`), in a group
of its own whose offsets are first committed at the end of its input topics (`commit_at_end`: the steps
before left alerts on alerts.enriched), and read its progress from the group's committed offsets, as an
operator's lag check would (faust commits every `commit_interval_s`, 1 s: the figures are that coarse).

1. throughput: a backlog of `n` enriched alerts with the overlap real reports have (`overlapping_alerts`),
   handled from the first: alerts, sightings and correlations per second, and the ratio to the faust
   pass-through baseline of the same run, which is what faust itself costs (the correlator is a faust app).
2. lag: enriched alerts written at a constant rate (half the pipeline's saturation measured in the same
   run) for LAG_S, straight to alerts.enriched so that the cores are the correlator's; its lag (records of
   alerts.enriched and correlator.sightings not yet committed) sampled four times a second, and judged by
   `trend`.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import random
import time
import uuid
from datetime import UTC, datetime, timedelta
from typing import Any

from aiokafka import TopicPartition

from bench.workload import Bench, wait_ready
from services.common.kafka import admin, commit_at_end, consumer, partitions_of, producer
from services.common.ops import free_port
from services.common.records import AlertEnriched, utcnow
from services.common.settings import KafkaSettings
from services.common.sightings import sightings_of
from services.common.topics import ALERTS_CORRELATED, ALERTS_ENRICHED, CORRELATOR_SIGHTINGS
from services.demo.samples import alert_submission

ORIGINS = ["IQ-CORR", "JO-CORR", "SA-CORR", "AE-CORR", "EG-CORR", "KW-CORR", "LB-CORR", "TR-CORR"]
# An alert's values: VALUES_PER_ALERT indicators and a subject. Each is the alert's own with SHARED_SHARE's
# complement of chances; otherwise drawn from a pool whose popularity falls as 1/rank (a few values, a
# courier's phone or a relay's domain, in many reports; most in two or three).
VALUES_PER_ALERT = 3
SHARED_SHARE = 0.3
POOL = 500
LAG_S = 60.0
# The lag is read from committed offsets, which move once a commit interval (1 s): a sample shows the lag plus
# what arrived since the last commit, a sawtooth. Sampled every second, its phase drifted against the commits
# and drew a false slope (0 to 60 records and back over a minute, at 60 alerts/s): sampled four times a second
# and averaged over windows of several commits, the sawtooth is a constant.
SAMPLE_S = 0.25
WINDOW_S = 5.0
# Flat: over the second half, the lag grows by at most this share of what arrives, and never exceeds what
# arrives in BOUND_S (the commit interval, the sampling and a handler's pause fit in it several times over).
FLAT_SHARE = 0.05
BOUND_S = 5.0


def trend(samples: list[tuple[float, int]], arrivals_per_s: float, window_s: float = WINDOW_S) -> dict[str, Any]:
    """Whether a lag sampled over time (seconds, records) stayed flat while `arrivals_per_s` records arrived
    each second. Pure.

    The samples are averaged per `window_s` (SAMPLE_S says why); `slope_per_s` is the least-squares slope of
    those means over the second half of the run (the first half holds the start: the consumer joining, the
    first commits). `flat`: that slope is at most FLAT_SHARE of the arrivals and the largest lag sampled at
    most BOUND_S of them. A consumer that cannot keep up has a slope near the difference between the two
    rates; one that keeps up, a slope near zero.
    """
    windows: dict[int, list[int]] = {}
    for t, lag in samples:
        windows.setdefault(int(t // window_s), []).append(lag)
    means = [(index * window_s, sum(lags) / len(lags)) for index, lags in sorted(windows.items())]
    if len(means) < 4:
        raise ValueError(f"{len(means)} windows of {window_s} s: too few to tell a trend")
    half = means[len(means) // 2 :]
    mean_t = sum(t for t, _ in half) / len(half)
    mean_lag = sum(lag for _, lag in half) / len(half)
    spread = sum((t - mean_t) ** 2 for t, _ in half)
    slope = sum((t - mean_t) * (lag - mean_lag) for t, lag in half) / spread
    largest = max(lag for _, lag in samples)
    return {
        "slope_per_s": round(slope, 2),
        "slope_share_of_arrivals": round(slope / arrivals_per_s, 4),
        "max_lag": largest,
        "max_lag_s_of_arrivals": round(largest / arrivals_per_s, 2),
        "second_half_mean_lag": round(mean_lag, 1),
        "window_means": [round(lag, 1) for _, lag in means],
        "flat": slope <= FLAT_SHARE * arrivals_per_s and largest <= BOUND_S * arrivals_per_s,
    }


def overlapping_alerts(n: int, seed: int = 16) -> list[AlertEnriched]:
    """`n` enriched alerts from ORIGINS in turn, each with VALUES_PER_ALERT phones, domains or e-mails and a
    person, shared between alerts as described at VALUES_PER_ALERT. Submitted a millisecond apart, now."""
    from services.gateway.submission import parse_submission

    rng = random.Random(seed)
    weights = [1 / rank for rank in range(1, POOL + 1)]

    def value(i: int, own: str) -> tuple[str, str]:
        kind = ("phone", "domain", "email")[i % 3]
        tag = f"{rng.choices(range(POOL), weights)[0]:04d}" if rng.random() < SHARED_SHARE else own
        if kind == "phone":
            return kind, f"+96477{int(tag, 16) % 10**8:08d}"
        return kind, (f"relay-{tag}.example" if kind == "domain" else f"courier-{tag}@mailbox.example")

    now = utcnow()
    alerts = []
    for i in range(n):
        own = uuid.uuid4().hex[:12]
        indicators = [dict(zip(("type", "value"), value(k, f"{own}{k}"), strict=True)) for k in range(3)]
        name = f"Person {rng.choices(range(POOL), weights)[0]}" if rng.random() < SHARED_SHARE else f"Person {own}"
        body = alert_submission(summary="", indicators=indicators, subjects=[{"kind": "person", "name": name}])
        alert = parse_submission(json.dumps(body).encode(), now=now)
        at = now + timedelta(milliseconds=i)
        alerts.append(
            AlertEnriched(
                alert_id=str(uuid.uuid4()),
                origin=ORIGINS[i % len(ORIGINS)],
                submitted_at=at,
                enriched_at=at,
                priority=2,
                alert=alert,
            )
        )
    return alerts


class Progress:
    """The correlator group's committed offsets against the ends of its input topics."""

    def __init__(self, kafka: KafkaSettings, group: str) -> None:
        self.kafka, self.group = kafka, group
        self._admin = admin(kafka, "bench-lag")
        self._ends = consumer(kafka, f"bench-ends-{uuid.uuid4().hex[:6]}", group=None)
        self._partitions: list[TopicPartition] = []

    async def __aenter__(self) -> Progress:
        await self._admin.start()
        await self._ends.start()
        self._partitions = await partitions_of(self._ends, [ALERTS_ENRICHED, CORRELATOR_SIGHTINGS])
        return self

    async def __aexit__(self, *_: object) -> None:
        await self._ends.stop()
        await self._admin.close()

    async def lag(self) -> dict[str, int]:
        """Per topic: records up to its end not committed by the group."""
        ends = await self._ends.end_offsets(self._partitions)
        committed = await self._admin.list_consumer_group_offsets(self.group, partitions=self._partitions)
        lag = {ALERTS_ENRICHED: 0, CORRELATOR_SIGHTINGS: 0}
        for tp, end in ends.items():
            meta = committed.get(tp)
            lag[tp.topic] += end - max(0, meta.offset if meta is not None else 0)
        return lag


async def _end(kafka: KafkaSettings, topic: str) -> int:
    c = consumer(kafka, f"bench-ends-{uuid.uuid4().hex[:6]}", group=None)
    await c.start()
    try:
        return sum((await c.end_offsets(await partitions_of(c, [topic]))).values())
    finally:
        await c.stop()


async def _send(kafka: KafkaSettings, bench: Bench, alerts: list[AlertEnriched], per_second: float | None) -> None:
    """Write `alerts` to alerts.enriched, at `per_second` (None: at once)."""
    p = producer(kafka, "bench-correlator-load")
    await p.start()
    try:
        began = time.monotonic()
        for i, a in enumerate(alerts):
            if per_second is not None:
                await asyncio.sleep(max(0.0, began + i / per_second - time.monotonic()))
            await p.send(ALERTS_ENRICHED, bench.codec.encode(a), key=a.alert_id.encode())
        await p.flush()
    finally:
        await p.stop()


async def _started(bench: Bench, step: str) -> tuple[Any, str]:
    """A correlator process in a new group that starts at the end of its input topics, once it is ready."""
    prefix = f"c{uuid.uuid4().hex[:6]}"
    group = f"{prefix}-correlator"  # services.correlator.app.app_id
    await commit_at_end(bench.kafka, group, [ALERTS_ENRICHED, CORRELATOR_SIGHTINGS])
    port = free_port()
    correlator = bench.service(step, "correlator", prefix, RCTC_OPS__PORT=str(port))
    await correlator.start()
    await wait_ready(port)
    correlator.mark()
    return correlator, group


async def correlator_throughput(bench: Bench, n: int, faust_per_second: float | None) -> dict[str, Any]:
    """A backlog of `n` overlapping alerts, from the correlator's start to every sighting of them handled."""
    alerts = overlapping_alerts(n)
    correlations_before = await _end(bench.kafka, ALERTS_CORRELATED)
    correlator, group = await _started(bench, "correlator-throughput")
    try:
        async with Progress(bench.kafka, group) as progress:
            began = time.monotonic()
            await _send(bench.kafka, bench, alerts, None)
            async with asyncio.timeout(600):
                while True:
                    await asyncio.sleep(0.25)
                    lag = await progress.lag()
                    if not any(lag.values()):
                        break
            elapsed = time.monotonic() - began
        cpu, rss = correlator.usage()
    finally:
        await correlator.stop()
    sightings = sum(len(sightings_of(a.alert)) for a in alerts)
    correlations = await _end(bench.kafka, ALERTS_CORRELATED) - correlations_before
    rate = n / elapsed
    return {
        "alerts": n,
        "sightings": sightings,
        "correlations": correlations,
        "seconds": round(elapsed, 2),
        "alerts_per_second": round(rate, 1),
        "correlations_per_second": round(correlations / elapsed, 1),
        "ratio_to_faust_passthrough": round(rate / faust_per_second, 3) if faust_per_second else None,
        "cpu_s_per_1000_alerts": round(cpu / n * 1000, 2),
        "peak_rss_mb": round(rss, 1),
    }


async def correlator_lag(bench: Bench, per_second: float, seconds: float = LAG_S) -> dict[str, Any]:
    """The correlator following alerts written at `per_second` for `seconds`: its lag every SAMPLE_S."""
    alerts = overlapping_alerts(int(per_second * seconds), seed=17)
    correlator, group = await _started(bench, "correlator-lag")
    samples: list[tuple[float, dict[str, int]]] = []
    try:
        async with Progress(bench.kafka, group) as progress:
            began = time.monotonic()
            feeding = asyncio.create_task(_send(bench.kafka, bench, alerts, per_second))
            while not feeding.done():
                await asyncio.sleep(max(0.0, began + (len(samples) + 1) * SAMPLE_S - time.monotonic()))
                samples.append((time.monotonic() - began, await progress.lag()))
            await feeding
        cpu, _ = correlator.usage()
    finally:
        await correlator.stop()
    values = sum(len(sightings_of(a.alert)) for a in alerts) / len(alerts)
    totals = [(t, sum(lag.values())) for t, lag in samples]
    result = trend(totals, per_second * (1 + values))
    result.update(
        rate_per_second=per_second,
        seconds=seconds,
        alerts=len(alerts),
        arrivals_per_second=per_second * (1 + values),
        cpu_cores=round(cpu / seconds, 2),
        samples=[[round(t, 2), lag[ALERTS_ENRICHED], lag[CORRELATOR_SIGHTINGS]] for t, lag in samples],
    )
    return result


# Half the pipeline's saturation when the run measured none: the low end of the range README's runs gave.
DOCUMENTED_HALF_RATE = 41.0


def half_rate(pipeline: dict[str, Any] | None) -> tuple[float, str]:
    """The rate for the lag step: half the saturation the pipeline step sustained, or the documented one."""
    sustained = ((pipeline or {}).get("saturation") or {}).get("sustained_per_second")
    if sustained:
        return round(sustained / 2, 1), "half of this run's pipeline saturation"
    return DOCUMENTED_HALF_RATE, "no saturation measured in this run: the low end of README's half-saturation range"


def rows(report: dict[str, Any]) -> list[str]:
    """The report table's rows for the correlator (bench/report.py)."""
    lines = []
    if "correlator" in report:
        c = report["correlator"]
        ratio = c["ratio_to_faust_passthrough"]
        lines.append(
            f"| correlator throughput, a backlog of {c['alerts']} overlapping alerts ({c['sightings']} sightings) | "
            f"{c['alerts_per_second']} alerts/s, {c['correlations_per_second']} correlations/s"
            + (f", ratio {ratio} to the faust pass-through" if ratio is not None else "")
            + f"; {c['cpu_s_per_1000_alerts']} CPU-s per 1,000 alerts | |"
        )
    if "correlator_lag" in report:
        g = report["correlator_lag"]
        verdict = "flat" if g["flat"] else "**not flat**"
        lines.append(
            f"| correlator lag at {g['rate_per_second']} alerts/s for {g['seconds']} s ({g['rate_source']}) | "
            f"{verdict}: slope {g['slope_per_s']} records/s over the second half "
            f"({g['slope_share_of_arrivals']} of arrivals), max {g['max_lag']} records "
            f"({g['max_lag_s_of_arrivals']} s of arrivals); {g['cpu_cores']} cores | flat |"
        )
    return lines


async def main(args: argparse.Namespace) -> None:
    """Both steps alone, on a broker of their own (the faust baseline too, for the ratio), at `--rate`."""
    from bench.baselines import baseline_faust, prepare_input
    from bench.harness import ROOT, Broker, TimedReceivers
    from services.common.codec import Codec
    from services.common.topics import apply_topics, load_declarations

    out = ROOT / "bench" / "results" / f"correlator-{datetime.now(UTC).strftime('%Y%m%dT%H%M%SZ')}"
    codec = Codec.from_directory()
    report: dict[str, Any] = {}
    with Broker(keep_logs_in=out / "logs" / "broker-correlator") as broker:
        kafka = broker.settings(client_id_prefix="bench")
        await apply_topics(kafka, list(load_declarations().topics), replication_factor=1)
        bench = Bench(kafka, codec, TimedReceivers(), [], out, broker.pid())
        faust = None
        if args.records:
            await prepare_input(bench, args.records)
            faust = (await baseline_faust(bench, args.records))["per_second"]
            report["faust_agent"] = faust
        report["correlator"] = await correlator_throughput(bench, args.alerts, faust)
        rate, source = (args.rate, "--rate") if args.rate else half_rate(None)
        report["correlator_lag"] = await correlator_lag(bench, rate, args.seconds)
        report["correlator_lag"]["rate_source"] = source
    out.mkdir(parents=True, exist_ok=True)
    (out / "report.json").write_text(json.dumps(report, indent=2))
    print("\n".join(["| measure | value | target |", "|---|---|---|", *rows(report)]))
    print(f"report: {out}")


if __name__ == "__main__":
    from services.common.logs import configure_logging
    from services.common.settings import LogSettings

    parser = argparse.ArgumentParser(prog="python -m bench.correlator", description=__doc__.split("\n")[0])
    parser.add_argument("--alerts", type=int, default=3_000, help="backlog for the throughput step")
    parser.add_argument("--records", type=int, default=5_000, help="records for the faust baseline (0: none)")
    parser.add_argument("--rate", type=float, default=0, help="alerts/s of the lag step (0: the documented rate)")
    parser.add_argument("--seconds", type=float, default=LAG_S, help="length of the lag step")
    configure_logging(LogSettings(level="warning"), "bench")
    asyncio.run(main(parser.parse_args()))
