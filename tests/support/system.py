"""The six services running in this process against the real broker, as one `System` for a test (and the
correlator, the seventh, when a test asks for it: it is beside the alert path, and costs a faust app).

Each is built by its own `build` function from settings, exactly as its entry point does, and run with
`services.common.runner.running`, the start/stop the real processes use. Each connects as its own principal
(`service-<name>`) with the ACLs services/common/topics.yaml gives it, as deployed, so a topic a service uses and the
declaration forgot fails here. One difference: tests make agencies on the fly, so the router's and the
gateway's (and the tracker's) access to agency topics is granted by prefix (`agency.`) instead of topic by topic.
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
from services.common.acls import SERVICES, Acl, desired_acls, service_principal
from services.common.codec import Codec
from services.common.kafka_admin import SecurityAdmin
from services.common.ops import free_port
from services.common.runner import running
from services.common.settings import KafkaSettings
from services.common.topics import load_declarations
from services.console.service import Console
from services.console.service import build as build_console
from services.console.settings import ConsoleHttpSettings, ConsoleSettings
from services.correlator.service import Correlator
from services.correlator.service import build as build_correlator
from services.correlator.settings import CorrelatorSettings
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
    router_settings: RouterSettings | None = None
    router_stack: AsyncExitStack | None = None
    correlator: Correlator | None = None
    console: Console | None = None

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.gateway.port}"

    async def restart_tracker(self) -> None:
        """Stop the tracker and start a new one on the same port, as a deployment restart would."""
        await self.tracker_stack.aclose()
        self.tracker_stack = AsyncExitStack()
        self.tracker = build_tracker(self.tracker_settings, self.codec)
        await self.tracker_stack.enter_async_context(running(self.tracker))

    async def restart_router(self) -> None:
        """Stop the router and start a new one with the same settings, as a deployment restart would."""
        assert self.router_stack is not None and self.router_settings is not None
        await self.router_stack.aclose()
        self.router_stack = AsyncExitStack()
        self.router = build_router(self.router_settings, self.codec)
        await self.router_stack.enter_async_context(running(self.router))


@asynccontextmanager
async def system(
    kafka: KafkaSettings,
    codec: Codec,
    *,
    dispatcher: dict[str, Any] | None = None,
    router: dict[str, Any] | None = None,
    tracker: dict[str, Any] | None = None,
    internal_token: SecretStr | None = None,
    correlator: dict[str, Any] | None = None,
    console: dict[str, Any] | None = None,
) -> AsyncIterator[System]:
    """Start tracker, enricher, router, auditor, dispatcher and gateway (in that order); stop them in reverse.
    With `correlator` (its settings' overrides, `{}` for none), the correlator too, after the enricher; with
    `console` likewise the operator console, last.

    The dicts override each service's settings (tests shrink time with retry_time_scale, ack_deadline_scale).
    The gateway and the tracker share one internal credential, fresh for each system unless one is given.
    """
    principals = await service_principals(kafka)

    def common(name: str) -> dict[str, Any]:
        return {"kafka": principals[name], "shutdown_timeout_s": 10.0}

    token = internal_token or new_internal_token()
    tracker_settings = TrackerSettings(
        **common("tracker"), http=InternalHttpSettings(port=free_port()), internal_token=token, **(tracker or {})
    )
    system_: System | None = None
    tracker_stack = AsyncExitStack()
    try:
        tracker_service = build_tracker(tracker_settings, codec)
        await tracker_stack.enter_async_context(running(tracker_service))
        async with AsyncExitStack() as stack:
            enricher = build_enricher(EnricherSettings(**common("enricher")), codec)
            await stack.enter_async_context(running(enricher))
            correlator_service = None
            if correlator is not None:
                correlator_service = build_correlator(CorrelatorSettings(**common("correlator"), **correlator), codec)
                await stack.enter_async_context(running(correlator_service))
            router_settings = RouterSettings(**common("router"), **(router or {}))
            router_service = build_router(router_settings, codec)
            router_stack = AsyncExitStack()
            await router_stack.enter_async_context(running(router_service))

            async def stop_router() -> None:
                # Stopped where it started in the order; after a restart_router it is the new one.
                current = system_.router_stack if system_ is not None else None
                await (current or router_stack).aclose()

            stack.push_async_callback(stop_router)
            auditor = build_auditor(AuditorSettings(**common("auditor"), signing_key_file=signing_key_file()), codec)
            await stack.enter_async_context(running(auditor))
            # The test receivers listen on 127.0.0.1 (the registry marks them allow_private).
            allowed = {"allow_private_endpoints": True}
            dispatcher_settings = DispatcherSettings(**{**common("dispatcher"), **allowed, **(dispatcher or {})})
            dispatcher_service = build_dispatcher(dispatcher_settings, codec)
            await stack.enter_async_context(running(dispatcher_service))
            gateway_settings = GatewaySettings(
                **common("gateway"),
                http=HttpSettings(port=0),
                tracker_url=f"http://127.0.0.1:{tracker_settings.http.port}",
                internal_token=token,
            )
            gateway = build_gateway(gateway_settings, codec)
            await stack.enter_async_context(running(gateway))
            console_service = None
            if console is not None:
                console_settings = ConsoleSettings(
                    **common("console"),
                    http=ConsoleHttpSettings(port=0),
                    tracker_url=f"http://127.0.0.1:{tracker_settings.http.port}",
                    internal_token=token,
                    **console,
                )
                console_service = build_console(console_settings, codec)
                await stack.enter_async_context(running(console_service))
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
                router_settings,
                router_stack,
                correlator_service,
                console_service,
            )
            yield system_
    finally:
        # The tracker started first and stops last; after a restart it is the new one.
        await (system_.tracker_stack if system_ is not None else tracker_stack).aclose()


def new_internal_token() -> SecretStr:
    """A random internal credential, as `make run` makes one (RCTC_INTERNAL_TOKEN)."""
    return SecretStr(secrets.token_urlsafe(32))


# Passwords of the service principals, made once per broker (its bootstrap address) and test session.
_PASSWORDS: dict[str, dict[str, str]] = {}


async def service_principals(kafka: KafkaSettings) -> dict[str, KafkaSettings]:
    """Settings for each service as its own principal on `kafka`'s broker, with its ACLs in place for
    `kafka`'s client-id prefix (its groups and transactional ids). `kafka` is the bootstrap admin's."""
    admin = SecurityAdmin(kafka)
    passwords = _PASSWORDS.get(kafka.bootstrap_servers)
    if passwords is None:
        passwords = {name: secrets.token_urlsafe(24) for name in SERVICES}
        for name, password in passwords.items():
            await admin.set_password(service_principal(name), password)
        _PASSWORDS[kafka.bootstrap_servers] = passwords
    wanted = desired_acls(load_declarations(), [], client_id_prefix=kafka.client_id_prefix)
    wanted |= {
        Acl(service_principal("router"), "topic", "agency.", "prefixed", "write"),
        Acl(service_principal("tracker"), "topic", "agency.", "prefixed", "write"),  # reminders
        Acl(service_principal("gateway"), "topic", "agency.", "prefixed", "read"),
        Acl(service_principal("gateway"), "topic", "agency.", "prefixed", "write"),  # rejections
    }
    # Created, never reconciled: other tests' ACLs (their prefixes) stay, as their records do.
    await admin.create(wanted)
    return {
        name: kafka.model_copy(
            update={"username": service_principal(name), "password": SecretStr(password), "password_file": None}
        )
        for name, password in passwords.items()
    }
