"""What the benchmark stands on: its own broker, service processes, receivers, and their CPU and memory.

Services run as the processes production runs (`python -m services.<name>`), so their CPU time and peak
memory are read from /proc for exactly them, not for the harness that drives the load.
"""

from __future__ import annotations

import asyncio
import contextlib
import gc
import os
import shutil
import sys
import tempfile
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from aiohttp import web

from services.cli.local_broker import LocalBroker
from services.common.ops import bound_port
from services.common.settings import KafkaSettings
from services.demo.receivers import Receivers

ROOT = Path(__file__).resolve().parents[1]
CLOCK_TICKS = os.sysconf("SC_CLK_TCK")


class Broker:
    """A fresh single-node broker on a free port, in a temporary directory: secured as `make run`'s, or (only
    here, for the baseline of what security costs) `plaintext`: PLAINTEXT on 127.0.0.1, no authorizer."""

    def __init__(self, keep_logs_in: Path | None = None, *, plaintext: bool = False) -> None:
        self.dir = Path(tempfile.mkdtemp(prefix="rctc-bench-kafka-"))
        self.local: LocalBroker | None = None
        self.keep_logs_in = keep_logs_in
        self.plaintext = plaintext

    def __enter__(self) -> Broker:
        self.local = LocalBroker.start(self.dir, plaintext=self.plaintext)
        return self

    def settings(self, **fields: Any) -> KafkaSettings:
        """Settings for a client of this broker (its bootstrap admin; on a plaintext one, anyone)."""
        assert self.local is not None
        return self.local.admin_settings(**fields)

    def __exit__(self, *_: object) -> None:
        if self.local is not None:
            self.local.stop()
        if self.keep_logs_in is not None:
            self.keep_logs_in.mkdir(parents=True, exist_ok=True)
            for name in ("broker.log", "gc.log"):
                if (self.dir / name).exists():
                    shutil.copy(self.dir / name, self.keep_logs_in / name)
        shutil.rmtree(self.dir, ignore_errors=True)  # hundreds of MB of logs per run

    def pid(self) -> int:
        return int((self.dir / "broker.pid").read_text())


@contextlib.contextmanager
def collector_off() -> Iterator[None]:
    """No automatic garbage collection in the measuring process while it times latency (as timeit does).

    The harness keeps every copy it saw and every webhook it received. Past some tens of thousands of them a
    full collection stopped it for 100-230 ms every 12 s, and every copy that became readable meanwhile was
    timed late by that much: the "occasional 200 ms spike" of earlier runs, lined up to the millisecond with
    the harness's own collections by a gc callback in a focused run. Collect with `between_steps` while no
    alert is in flight. The services keep their collectors: their pauses are part of what is measured.
    """
    gc.disable()
    try:
        yield
    finally:
        gc.enable()
        gc.collect()


def between_steps() -> None:
    """Collect what the last step left, while nothing is being timed."""
    gc.collect()


def cpu_seconds(pid: int) -> float:
    """User + system CPU seconds a process has used so far."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / CLOCK_TICKS


def machine_cpu_seconds() -> float:
    """CPU seconds every core of the machine has spent busy so far (/proc/stat: all but idle and iowait;
    steal too, the time the host gave to other machines)."""
    user, nice, system, _idle, _iowait, irq, softirq, steal = (
        int(v) for v in Path("/proc/stat").read_text().split("\n", 1)[0].split()[1:9]
    )
    return (user + nice + system + irq + softirq + steal) / CLOCK_TICKS


def peak_rss_mb(pid: int) -> float:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1]) / 1024
    return 0.0


@dataclass
class Service:
    name: str
    env: dict[str, str]
    process: asyncio.subprocess.Process | None = None
    cpu_at_start: float = 0.0
    # Where the service's log lines (warnings and up) go, to explain a figure after the run.
    log_dir: Path | None = None

    async def start(self) -> None:
        out: Any = asyncio.subprocess.DEVNULL
        if self.log_dir is not None:
            self.log_dir.mkdir(parents=True, exist_ok=True)
            out = (self.log_dir / f"{self.name}.log").open("ab")
        self.process = await asyncio.create_subprocess_exec(
            sys.executable,
            "-m",
            f"services.{self.name}",
            cwd=ROOT,
            env={**os.environ, **self.env},
            stdout=out,
            stderr=asyncio.subprocess.STDOUT,
        )
        if self.log_dir is not None:
            out.close()  # the child holds its own descriptor

    def mark(self) -> None:
        """Start counting CPU from now (after start-up)."""
        assert self.process is not None
        self.cpu_at_start = cpu_seconds(self.process.pid)

    def usage(self) -> tuple[float, float]:
        """CPU seconds since mark(), peak resident MB."""
        assert self.process is not None
        return cpu_seconds(self.process.pid) - self.cpu_at_start, peak_rss_mb(self.process.pid)

    async def stop(self) -> None:
        if self.process is not None and self.process.returncode is None:
            self.process.terminate()
            await self.process.wait()


def service_env(kafka: KafkaSettings, prefix: str, **extra: str) -> dict[str, str]:
    return {
        **kafka.as_env(),
        "RCTC_KAFKA__CLIENT_ID_PREFIX": prefix,
        "RCTC_LOG__FORMAT": "json",
        "RCTC_LOG__LEVEL": "warning",
        "RCTC_ALLOW_PRIVATE_ENDPOINTS": "true",  # the dispatcher's: the bench's receivers are on 127.0.0.1
        **extra,
    }


@dataclass
class TimedReceivers:
    """Verifying receivers (standardwebhooks) that note when each webhook-id first arrived."""

    receivers: Receivers = field(default_factory=Receivers)
    arrived: dict[str, float] = field(default_factory=dict)
    runner: web.AppRunner | None = None
    port: int = 0
    # Off while the dispatcher's throughput is compared with raw POSTs, so the receiving end (on the same
    # two cores) does the same work for both; the pipeline step verifies every signature.
    verify: bool = True

    async def start(self) -> None:
        async def handle(request: web.Request) -> web.StreamResponse:
            if not self.verify:
                await request.read()
                self.arrived.setdefault(request.headers.get("webhook-id", ""), time.time())
                return web.Response(status=204)
            response = await self.receivers.receive(request)
            self.arrived.setdefault(request.headers.get("webhook-id", ""), time.time())
            return response

        async def raw(request: web.Request) -> web.StreamResponse:
            await request.read()
            return web.Response(status=204)

        app = web.Application()
        app.router.add_post("/hooks/{agency}", handle)
        app.router.add_post("/raw", raw)  # the raw-HTTP baseline: same server, no verification
        self.runner = web.AppRunner(app, access_log=None)
        await self.runner.setup()
        await web.TCPSite(self.runner, "127.0.0.1", 0).start()
        self.port = bound_port(self.runner)

    async def stop(self) -> None:
        if self.runner is not None:
            await self.runner.cleanup()


def percentiles(values: list[float]) -> dict[str, Any]:
    if not values:
        return {"count": 0}
    ordered = sorted(values)

    def at(q: float) -> float:
        return round(ordered[min(len(ordered) - 1, int(q * len(ordered)))] * 1000, 2)

    return {
        "count": len(ordered),
        "p50_ms": at(0.5),
        "p99_ms": at(0.99),
        "p99_9_ms": at(0.999),
        "max_ms": round(ordered[-1] * 1000, 2),
    }


def steady_rate(done_at: list[float], middle: float = 0.8) -> float:
    """Units per second over the middle `middle` share of a backlog, from each unit's completion time.

    Neither the first completion nor the start of the process is a fair start: a batched consumer completes
    its first transaction's records all at once (routing them took time the first timestamp does not see),
    and start-up is not throughput. The middle of the run is steady state for every side measured this way.
    """
    ordered = sorted(done_at)
    edge = (1 - middle) / 2
    first, last = int(edge * (len(ordered) - 1)), int((1 - edge) * (len(ordered) - 1))
    span = ordered[last] - ordered[first]
    if last <= first or span <= 0:
        raise ValueError(f"too few completions ({len(ordered)}) or all at once: no rate to measure")
    return (last - first) / span
