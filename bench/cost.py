"""What an alert costs each service, in CPU seconds per 1,000 alerts, at given constant rates (issue 19).

`python -m bench.cost --rates 20,80 [--seconds 30] [--profile]` starts a broker of its own and the six
services as `make bench`'s pipeline step does, warms them up, then holds each rate for `--seconds` and
reports, per service and for the broker, the CPU each used per 1,000 alerts (every copy on its topic and
every webhook verified before a step counts as done), with the step's latency beside it. `make bench`
measures the same at 20/s and at half the pipeline's saturation; this is the quick loop for trying one
lever at a time, and with `--profile` it samples each service with py-spy while each step runs and names
where its CPU went (the top frames by own time, and the project's own functions by time under them).
"""

from __future__ import annotations

import argparse
import asyncio
import collections
import json
import shutil
import sys
import time
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import aiohttp

from bench.harness import ROOT, Broker, Service, TimedReceivers, between_steps, collector_off, cpu_seconds
from bench.pipeline import Latencies, Load, per_1000_alerts, services
from bench.workload import Arrivals, Bench, prepared, wait_ready
from services.common import gc_pauses
from services.common.codec import Codec
from services.common.logs import configure_logging
from services.common.records import AlertShared
from services.common.settings import LogSettings
from services.common.topics import agency_topic

WARM_UP = (20.0, 5.0)  # alerts/s, seconds: connections, metadata and the first transactions are not the cost
TOP = 12  # frames named per service in a profile


def py_spy() -> str | None:
    """py-spy, from the `bench` extra (beside this interpreter) or the PATH."""
    beside = Path(sys.executable).parent / "py-spy"
    return str(beside) if beside.exists() else shutil.which("py-spy")


async def profiled(spy: str | None, service: Service, seconds: float, out: Path) -> Path | None:
    """py-spy's samples of a running service for `seconds` (collapsed stacks, one per line with its count), or
    None without py-spy."""
    if spy is None or service.process is None:
        return None
    out.parent.mkdir(parents=True, exist_ok=True)
    proc = await asyncio.create_subprocess_exec(
        spy,
        "record",
        "--pid",
        str(service.process.pid),
        "--duration",
        str(int(seconds)),
        "--rate",
        "200",
        "--format",
        "raw",
        "--nonblocking",  # the service is not paused to be sampled: its cost stays its own
        "--output",
        str(out),
        stdout=asyncio.subprocess.DEVNULL,
        stderr=asyncio.subprocess.DEVNULL,
    )
    await proc.wait()
    return out if await asyncio.to_thread(out.exists) else None


def hot_frames(collapsed: str, top: int = TOP) -> dict[str, Any]:
    """From py-spy's collapsed stacks: the share of samples in each frame itself (`own`), and for the
    project's own functions (services/) the share of samples under them (`under`), most first. A frame is
    `function (file:line)`; the line is dropped so one function is one entry."""
    own: collections.Counter[str] = collections.Counter()
    under: collections.Counter[str] = collections.Counter()
    total = 0
    for line in collapsed.splitlines():
        stack, _, count_text = line.rpartition(" ")
        if not stack or not count_text.isdigit():
            continue
        count = int(count_text)
        total += count
        frames = [_function(f) for f in stack.split(";")]
        own[frames[-1]] += count
        for f in set(frames):
            if "services/" in f:
                under[f] += count

    def shares(counter: collections.Counter[str]) -> list[list[Any]]:
        return [[name, round(n / total, 3)] for name, n in counter.most_common(top)] if total else []

    return {"samples": total, "own": shares(own), "under": shares(under)}


def _function(frame: str) -> str:
    name, _, where = frame.partition(" (")
    path = where.rstrip(")").rsplit(":", 1)[0]
    for marker in ("site-packages/", "lib/python3", str(ROOT) + "/"):
        if marker in path:
            path = path.split(marker, 1)[1]
    return f"{name} ({path})"


async def cost(rates: list[float], seconds: float, profile: bool, out: Path, log_level: str) -> dict[str, Any]:
    codec = Codec.from_directory()
    receivers = TimedReceivers()
    await receivers.start()
    report: dict[str, Any] = {"started": datetime.now(UTC).isoformat(), "log_level": log_level, "steps": []}
    try:
        with Broker(keep_logs_in=out / "logs" / "broker") as broker:
            bench = await prepared(broker, codec, receivers, out)
            running, ports = services(bench, "cost", log_level)
            for s in running:
                await s.start()
            try:
                for s in running:
                    await wait_ready(ports[s.name])
                report["steps"] = await _steps(bench, running, ports, rates, seconds, profile)
            finally:
                for s in reversed(running):
                    await s.stop()
    finally:
        await receivers.stop()
    return report


async def _steps(
    bench: Bench, running: list[Service], ports: dict[str, int], rates: list[float], seconds: float, profile: bool
) -> list[dict[str, Any]]:
    measured = Latencies()
    codes = bench.codes
    gateway = f"http://127.0.0.1:{ports['gateway_http']}/v1/alerts"
    steps: list[dict[str, Any]] = []
    spy = py_spy() if profile else None
    async with (
        Arrivals(
            bench.kafka, bench.codec, [agency_topic(c) for c in codes], AlertShared, lambda s: (s.alert_id, s.recipient)
        ) as copies,
        aiohttp.ClientSession() as http,
    ):
        load = Load(http, gateway, measured, copies, bench.receivers, len(codes), len(bench.receivers.arrived))
        done = len(await load.run(*WARM_UP, offset=900_000))
        await load.arrived(done)
        for n, rate in enumerate(rates):
            between_steps()
            for s in running:
                s.mark()
            broker_cpu = cpu_seconds(bench.broker_pid)
            spies = (
                [
                    asyncio.create_task(
                        profiled(spy, s, seconds, bench.out / "profiles" / f"{rate:g}" / f"{s.name}.txt")
                    )
                    for s in running
                ]
                if profile
                else []
            )
            with collector_off():
                ids = await load.run(rate, seconds, offset=n * 100_000)
                done += len(ids)
                await load.arrived(done)
            measured.collect(copies.seen, bench.receivers)
            step: dict[str, Any] = {"rate_per_second": rate, "seconds": seconds, "alerts": len(ids)}
            step.update(per_1000_alerts(running, bench, broker_cpu, len(ids)))
            step.update(measured.summary(ids, len(codes)))
            step["lost_copies"] = sum(1 for a in ids for c in codes if (a, c) not in copies.seen)
            if spies:
                step["profiles"] = {}
                for s, found in zip(running, await asyncio.gather(*spies), strict=True):
                    if found is not None:
                        step["profiles"][s.name] = hot_frames(found.read_text())
            steps.append(step)
            print(_line(step), flush=True)
    return steps


def _line(step: dict[str, Any]) -> str:
    per = step["cpu_s_per_1000_alerts"]
    services_text = " ".join(f"{k} {v}" for k, v in per.items())
    topic = step["submit_to_agency_topic"].get("p99_ms")
    hook = step["submit_to_webhook"].get("p99_ms")
    return (
        f"{step['rate_per_second']:g}/s: CPU-s per 1,000 alerts: {services_text}; broker "
        f"{step.get('broker_cpu_s_per_1000_alerts')}; p99 topic {topic} ms, webhook {hook} ms"
    )


def main() -> None:
    parser = argparse.ArgumentParser(prog="python -m bench.cost", description=__doc__.split("\n")[0])
    parser.add_argument("--rates", default="20,80", help="constant rates to hold, alerts/s, comma-separated")
    parser.add_argument("--seconds", type=float, default=30, help="how long each rate is held")
    parser.add_argument("--profile", action="store_true", help="sample each service with py-spy during each step")
    parser.add_argument(
        "--log-level",
        default="info",
        choices=["info", "warning"],
        help="the services' (info: a line per unit of work, as production logs; make bench keeps warnings only)",
    )
    args = parser.parse_args()
    configure_logging(LogSettings(level="warning"), "bench")
    gc_pauses.settle()
    out = ROOT / "bench" / "results" / ("cost-" + datetime.now(UTC).strftime("%Y%m%dT%H%M%SZ"))
    began = time.time()
    rates = [float(r) for r in args.rates.split(",")]
    report = asyncio.run(cost(rates, args.seconds, args.profile, out, args.log_level))
    report["seconds"] = round(time.time() - began)
    out.mkdir(parents=True, exist_ok=True)
    (out / "cost.json").write_text(json.dumps(report, indent=2))
    print(f"written: {out / 'cost.json'}")


if __name__ == "__main__":
    main()
