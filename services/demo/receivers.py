"""`rctc demo receivers`: webhook receivers as a national center would run them, for the demo agencies.

One HTTP server, one path per agency (`/hooks/<CODE>`). Each request is verified with the published
`standardwebhooks` library and the agency's secrets from the registry file, exactly as a receiver at a
national center would, and de-duplicated on `webhook-id`. It prints one line per alert received.
"""

from __future__ import annotations

import argparse
import asyncio
import signal
from pathlib import Path
from typing import Any

from aiohttp import web
from standardwebhooks.webhooks import Webhook, WebhookVerificationError

from services.common.logs import configure_logging, get_logger
from services.common.registry import load_registry

log = get_logger("rctc.demo.receivers")


class Receivers:
    """Verifying receivers for a set of agencies; `received` keeps what arrived, by agency, de-duplicated."""

    def __init__(self, secrets: dict[str, list[str]] | None = None) -> None:
        self._verifiers: dict[str, list[Webhook]] = {}
        self.received: dict[str, dict[str, Any]] = {}
        self.rejected = 0
        self.duplicates = 0
        for code, keys in (secrets or {}).items():
            self.register(code, keys)

    def register(self, code: str, secrets: list[str]) -> None:
        """Receive for `code`, verifying with any of `secrets` (several during a rotation)."""
        self._verifiers[code] = [Webhook(s) for s in secrets]
        self.received.setdefault(code, {})

    def app(self) -> web.Application:
        app = web.Application()
        app.router.add_post("/hooks/{agency}", self.receive)
        return app

    async def receive(self, request: web.Request) -> web.Response:
        """Verify, de-duplicate and record one webhook request; 401 if no secret verifies it."""
        agency = request.match_info["agency"]
        verifiers = self._verifiers.get(agency)
        if verifiers is None:
            return web.Response(status=404)
        body = await request.read()
        payload = None
        for verifier in verifiers:
            try:
                payload = verifier.verify(body, dict(request.headers))
                break
            except WebhookVerificationError:
                continue
        if payload is None:
            self.rejected += 1
            log.warning("webhook.rejected", agency=agency, reason="signature did not verify")
            return web.Response(status=401)
        webhook_id = request.headers["webhook-id"]
        if webhook_id in self.received[agency]:
            self.duplicates += 1
            return web.Response(status=204)
        self.received[agency][webhook_id] = payload
        data = payload["data"]
        if payload["type"] == "alert.escalated":
            # An acknowledgement reminder names the alert and carries none of its content.
            log.info("webhook.reminder", agency=agency, alert_id=data["alert_id"], reason=data["reason"])
        elif data.get("alert") is None:
            # A notice: withdrawn (purge what is held of the thread) or cancelled. No content to show.
            log.info(
                "webhook.notice", agency=agency, type=payload["type"], alert_id=data["alert_id"], reason=data["reason"]
            )
        else:
            log.info(
                "webhook.received",
                agency=agency,
                type=payload["type"],
                alert_id=data["alert_id"],
                origin=data["origin"],
                title=data["alert"]["title"],
                redacted=data["redacted_fields"],
            )
        return web.Response(status=204)


def secrets_from(registry_file: Path) -> dict[str, list[str]]:
    doc = load_registry(registry_file)
    return {a.code: a.webhook.secrets for a in doc.agencies if a.webhook is not None}


async def serve(registry_file: Path, host: str, port: int) -> None:
    receivers = Receivers(secrets_from(registry_file))
    runner = web.AppRunner(receivers.app(), access_log=None)
    await runner.setup()
    await web.TCPSite(runner, host, port).start()
    log.info("receivers.started", port=port, agencies=sorted(receivers.received))
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set)
    await stop.wait()
    await runner.cleanup()


def add_parser(sub: Any) -> None:
    p = sub.add_parser("receivers", help="verifying webhook receivers for the agencies of a registry file")
    p.add_argument("--registry", type=Path, default=Path("deploy/registry/demo.yaml"))
    p.add_argument("--host", default="127.0.0.1")
    p.add_argument("--port", type=int, default=8701)
    p.set_defaults(run=_run)


def _run(args: argparse.Namespace) -> int:
    configure_logging(args.settings.log, "receivers")
    asyncio.run(serve(args.registry, args.host, args.port))
    return 0
