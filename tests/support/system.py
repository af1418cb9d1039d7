"""The five services running in this process against the real broker, as one `System` for a test.

Each is built by its own `build` function from settings, exactly as its entry point does, and run with
`services.common.runner.running`, the start/stop the real processes use.
"""

from __future__ import annotations

import secrets
from collections.abc import AsyncIterator
from contextlib import AsyncExitStack, asynccontextmanager
from dataclasses import dataclass
from typing import Any

from pydantic import SecretStr

from services.auditor.service import Auditor
from services.auditor.service import build as build_auditor
from services.auditor.settings import AuditorSettings
from services.common.codec import Codec
from services.common.ops import free_port
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
from tests.support.audit_key import signing_key_file


@dataclass
class System:
    auditor: Auditor
    gateway: Gateway
    enricher: Enricher
    router: Router
    dispatcher: Dispatcher
    tracker: Tracker
    tracker_settings: TrackerSettings
    codec: Codec
    tracker_stack: AsyncExitStack
    internal_token: SecretStr

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.gateway.port}"

    async def restart_tracker(self) -> None:
        """Stop the tracker and start a new one on the same port, as a deployment restart would."""
        await self.tracker_stack.aclose()
        self.tracker_stack = AsyncExitStack()
        self.tracker = build_tracker(self.tracker_settings, self.codec)
        await self.tracker_stack.enter_async_context(running(self.tracker))


@asynccontextmanager
async def system(
    kafka: KafkaSettings,
    codec: Codec,
    *,
    dispatcher: dict[str, Any] | None = None,
    router: dict[str, Any] | None = None,
    tracker: dict[str, Any] | None = None,
    internal_token: SecretStr | None = None,
) -> AsyncIterator[System]:
    """Start tracker, enricher, router, auditor, dispatcher and gateway (in that order); stop them in reverse.

    The dicts override each service's settings (tests shrink time with retry_time_scale, ack_deadline_scale).
    The gateway and the tracker share one internal credential, fresh for each system unless one is given.
    """
    common: dict[str, Any] = {"kafka": kafka, "shutdown_timeout_s": 10.0}
    token = internal_token or new_internal_token()
    tracker_settings = TrackerSettings(
        **common, http=InternalHttpSettings(port=free_port()), internal_token=token, **(tracker or {})
    )
    system_: System | None = None
    tracker_stack = AsyncExitStack()
    try:
        tracker_service = build_tracker(tracker_settings, codec)
        await tracker_stack.enter_async_context(running(tracker_service))
        async with AsyncExitStack() as stack:
            enricher = build_enricher(EnricherSettings(**common), codec)
            await stack.enter_async_context(running(enricher))
            router_service = build_router(RouterSettings(**common, **(router or {})), codec)
            await stack.enter_async_context(running(router_service))
            auditor = build_auditor(AuditorSettings(**common, signing_key_file=signing_key_file()), codec)
            await stack.enter_async_context(running(auditor))
            # The test receivers listen on 127.0.0.1 (the registry marks them allow_private).
            allowed = {"allow_private_endpoints": True}
            dispatcher_settings = DispatcherSettings(**{**common, **allowed, **(dispatcher or {})})
            dispatcher_service = build_dispatcher(dispatcher_settings, codec)
            await stack.enter_async_context(running(dispatcher_service))
            gateway_settings = GatewaySettings(
                **common,
                http=HttpSettings(port=0),
                tracker_url=f"http://127.0.0.1:{tracker_settings.http.port}",
                internal_token=token,
            )
            gateway = build_gateway(gateway_settings, codec)
            await stack.enter_async_context(running(gateway))
            system_ = System(
                auditor,
                gateway,
                enricher,
                router_service,
                dispatcher_service,
                tracker_service,
                tracker_settings,
                codec,
                tracker_stack,
                token,
            )
            yield system_
    finally:
        # The tracker started first and stops last; after a restart it is the new one.
        await (system_.tracker_stack if system_ is not None else tracker_stack).aclose()


def new_internal_token() -> SecretStr:
    """A random internal credential, as `make run` makes one (RCTC_INTERNAL_TOKEN)."""
    return SecretStr(secrets.token_urlsafe(32))
