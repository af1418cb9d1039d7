"""The operations endpoints every service serves: /healthz, /readyz and /metrics.

/healthz answers while the process runs its event loop; /readyz answers 200 only when every readiness
check passes (the registry is loaded, the consumer has joined its group, ...), so an orchestrator sends no
traffic to a replica that cannot serve it yet; /metrics is Prometheus' text format.
"""

from __future__ import annotations

import socket
from collections.abc import Callable

from aiohttp import web
from prometheus_client import CONTENT_TYPE_LATEST, REGISTRY, generate_latest

from services.common.settings import OpsSettings

ReadinessCheck = Callable[[], dict[str, bool]]


class OpsServer:
    def __init__(self, settings: OpsSettings, readiness: ReadinessCheck) -> None:
        self._settings = settings
        self._readiness = readiness
        self._runner: web.AppRunner | None = None
        self.port: int | None = None

    async def start(self) -> None:
        app = web.Application()
        app.router.add_get("/healthz", self._healthz)
        app.router.add_get("/readyz", self._readyz)
        app.router.add_get("/metrics", self._metrics)
        self._runner = web.AppRunner(app, access_log=None)
        await self._runner.setup()
        site = web.TCPSite(self._runner, self._settings.host, self._settings.port)
        await site.start()
        self.port = bound_port(self._runner)

    async def stop(self) -> None:
        if self._runner is not None:
            await self._runner.cleanup()
            self._runner = None

    async def _healthz(self, _: web.Request) -> web.Response:
        return web.json_response({"status": "ok"})

    async def _readyz(self, _: web.Request) -> web.Response:
        checks = self._readiness()
        ready = all(checks.values())
        return web.json_response({"ready": ready, "checks": checks}, status=200 if ready else 503)

    async def _metrics(self, _: web.Request) -> web.Response:
        return web.Response(body=generate_latest(REGISTRY), headers={"Content-Type": CONTENT_TYPE_LATEST})


def bound_port(runner: web.AppRunner) -> int:
    """The port a site actually bound (port 0 asks the OS for a free one)."""
    for site in runner.sites:
        server = getattr(site, "_server", None)
        if server is not None and server.sockets:
            return int(server.sockets[0].getsockname()[1])
    raise RuntimeError("the server is not listening")


def free_port() -> int:
    """A port nothing listens on right now, for a process started by a test or the benchmark to bind to.

    In-process servers bind port 0 and ask `bound_port` instead; a child process has to be told its port.
    """
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])
