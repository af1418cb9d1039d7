"""The five services running in this process against the real broker, as one `System` for a test.

Each is built by its own `build` function from settings, exactly as its entry point does, and run with
`services.common.runner.running`, the start/stop the real processes use.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import AsyncExitStack, asynccontextmanager
from dataclasses import dataclass
from typing import Any

from services.auditor.service import Auditor
from services.auditor.service import build as build_auditor
from services.auditor.settings import AuditorSettings
from services.common.codec import Codec
from services.common.runner import running
from services.common.settings import KafkaSettings
from services.dispatcher.service import Dispatcher
from services.dispatcher.service import build as build_dispatcher
from services.dispatcher.settings import DispatcherSettings
from services.enricher.service import Enricher
from services.enricher.service import build as build_enricher
from services.enricher.settings import EnricherSettings
from services.gateway.service import Gateway
from services.gateway.service import build as build_gateway
from services.gateway.settings import GatewaySettings, HttpSettings
from services.router.service import Router
from services.router.service import build as build_router
from services.router.settings import RouterSettings
from services.tracker.service import Tracker
from services.tracker.service import build as build_tracker
from services.tracker.settings import InternalHttpSettings, TrackerSettings


@dataclass
class System:
    auditor: Auditor
    gateway: Gateway
    enricher: Enricher
    router: Router
    dispatcher: Dispatcher
    tracker: Tracker

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.gateway.port}"


@asynccontextmanager
async def system(kafka: KafkaSettings, codec: Codec, **dispatcher_options: Any) -> AsyncIterator[System]:
    """Start tracker, enricher, router, auditor, dispatcher and gateway (in that order); stop them in reverse.

    `dispatcher_options` override DispatcherSettings (tests shrink retry time with retry_time_scale).
    """
    common: dict[str, Any] = {"kafka": kafka, "shutdown_timeout_s": 10.0}
    async with AsyncExitStack() as stack:
        tracker = build_tracker(TrackerSettings(**common, http=InternalHttpSettings(port=0)), codec)
        await stack.enter_async_context(running(tracker))
        enricher = build_enricher(EnricherSettings(**common), codec)
        await stack.enter_async_context(running(enricher))
        router = build_router(RouterSettings(**common), codec)
        await stack.enter_async_context(running(router))
        auditor = build_auditor(AuditorSettings(**common), codec)
        await stack.enter_async_context(running(auditor))
        dispatcher = build_dispatcher(DispatcherSettings(**common, **dispatcher_options), codec)
        await stack.enter_async_context(running(dispatcher))
        gateway_settings = GatewaySettings(
            **common, http=HttpSettings(port=0), tracker_url=f"http://127.0.0.1:{tracker.port}"
        )
        gateway = build_gateway(gateway_settings, codec)
        await stack.enter_async_context(running(gateway))
        yield System(auditor, gateway, enricher, router, dispatcher, tracker)
