"""`rctc deliveries replay|resend` and `rctc endpoints list|enable|disable`: what operators do by hand about
webhooks.

- replay: dead deliveries (all, one agency's, those that died in a time range) go back to the first lane,
  with their attempts reset and the same webhook-id, so a receiver that has some already drops them. Each is
  decided again under today's registry first (router/replay.py): what is no longer permitted is dropped,
  printed and recorded on alerts.rejected (stage `replay`, the rule and reason).
- resend: everything since a time for one agency whose receiver lost data, as today's registry lets it have
  it. The command only writes the request (requests.resend); the router decides it like any routing
  (router/resend.py), so it leaves decisions in alerts.routed, audit entries and tracker rows.

The work is in functions that print nothing, for the operators' console to call as the command does:

    result = await replay_dead(kafka, "JO-GID", since, None, progress=step)    # ReplayResult
    change = await change_endpoint(kafka, "JO-GID", "disabled", "maintenance", by="operator:alice")

Each raises an RctcError whose message says what is missing (NoRegistryError, NoWebhookError).
"""

from __future__ import annotations

import argparse
import asyncio
import json
import uuid
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime
from typing import Any

import msgspec

from services.cli import render
from services.common.codec import Codec
from services.common.errors import NotReadyError, RctcError
from services.common.kafka import produce_all, producer, read_decoded
from services.common.records import (
    AlertEnriched,
    AlertRejected,
    DeliverWebhook,
    EndpointChanged,
    EndpointState,
    ResendRequested,
    utcnow,
)
from services.common.registry import Registry
from services.common.registry.model import RegistryPublished
from services.common.registry.publish import latest_published
from services.common.settings import KafkaSettings
from services.common.topics import (
    ALERTS_ENRICHED,
    ALERTS_REJECTED,
    ALERTS_ROUTED,
    DELIVERIES_DEAD,
    DELIVERIES_ENDPOINTS,
    DELIVERIES_WEBHOOK,
    REQUESTS_RESEND,
)
from services.dispatcher.endpoints import publish_state
from services.router.replay import replay_refusal


def add_parser(sub: Any, kafka: Callable[[argparse.Namespace], KafkaSettings]) -> None:
    deliveries = sub.add_parser("deliveries", help="dead deliveries and resends").add_subparsers(metavar="ACTION")
    p = deliveries.add_parser("replay", help="send dead deliveries again")
    p.add_argument("--agency")
    p.add_argument("--since", type=datetime.fromisoformat, help="died at or after (ISO 8601)")
    p.add_argument("--until", type=datetime.fromisoformat, help="died before (ISO 8601)")
    p.set_defaults(run=lambda a: asyncio.run(replay(kafka(a), a.agency, a.since, a.until)))
    why = "ask the router to send one agency again what today's policy lets it have since a time"
    p = deliveries.add_parser("resend", help=why)
    p.add_argument("--agency", required=True)
    p.add_argument("--since", type=datetime.fromisoformat, required=True, help="submitted at or after (ISO 8601)")
    p.set_defaults(run=lambda a: asyncio.run(resend(kafka(a), a.agency, a.since)))

    endpoints = sub.add_parser("endpoints", help="webhook endpoint states").add_subparsers(metavar="ACTION")
    p = endpoints.add_parser("list", help="every endpoint that left the active state, and why")
    p.set_defaults(run=lambda a: asyncio.run(list_endpoints(kafka(a))))
    for state, verb in (("active", "enable"), ("disabled", "disable")):
        p = endpoints.add_parser(verb, help=f"{verb} an agency's webhook endpoint")
        p.add_argument("agency")
        p.add_argument("--reason", default=f"{verb}d by an operator")
        p.set_defaults(run=lambda a, s=state: asyncio.run(set_endpoint(kafka(a), a.agency, s, a.reason)))


class NoRegistryError(NotReadyError):
    """No registry has been published: nothing can be decided again."""

    def __init__(self) -> None:
        super().__init__("no registry is in force")


class NoWebhookError(RctcError):
    """The agency has no webhook endpoint in the registry in force (or is not in it)."""

    def __init__(self, agency: str) -> None:
        self.agency = agency
        super().__init__(f"{agency} has no webhook endpoint in the registry")


@dataclass(frozen=True)
class ReplayResult:
    """What a replay did: how many dead deliveries went back to the first lane, a line for each one dropped
    (its webhook id, alert, agency, rule and reason, as recorded on alerts.rejected), and the registry it was
    decided under (always set on a result: without a registry, replay_dead raises NoRegistryError)."""

    replayed: int
    dropped: tuple[str, ...]
    registry_version: int | None


def _utc(value: datetime | None) -> datetime | None:
    return value.astimezone() if value is not None and value.tzinfo is None else value


async def _registry(kafka: KafkaSettings, codec: Codec) -> RegistryPublished:
    published = await latest_published(kafka, codec)
    if published is None:
        raise NoRegistryError()
    return published


async def replay(kafka: KafkaSettings, agency: str | None, since: datetime | None, until: datetime | None) -> int:
    with render.progress("reading dead deliveries, then the alerts they copy") as step:
        try:
            result = await replay_dead(kafka, agency, since, until, progress=step)
        except NoRegistryError as exc:
            print(exc)
            return 1
    for line in result.dropped:
        print(line)
    dropped = f", dropped {len(result.dropped)}" if result.dropped else ""
    print(f"replayed {result.replayed} dead deliveries{dropped}")
    return 0


async def replay_dead(
    kafka: KafkaSettings,
    agency: str | None,
    since: datetime | None,
    until: datetime | None,
    *,
    progress: Callable[[int, int], None] | None = None,
) -> ReplayResult:
    """Send the dead deliveries (of `agency`, or all; that died in [since, until)) again, each decided again
    under today's registry first; record each one dropped on alerts.rejected. `progress` is told (read, to read)
    of deliveries.dead, then of alerts.enriched (the versions the copies were made of)."""
    codec = Codec.from_directory()
    published = await _registry(kafka, codec)
    registry = Registry(published)
    since, until = _utc(since), _utc(until)
    chosen = []
    dead_topic = read_decoded(kafka, codec, DELIVERIES_DEAD, DeliverWebhook, name="replay", progress=progress)
    async for r, dead in dead_topic:
        died = datetime.fromtimestamp(r.timestamp / 1000).astimezone()
        if (
            (agency is None or dead.agency == agency)
            and (since is None or died >= since)
            and (until is None or died < until)
        ):
            chosen.append(dead)
    # Each copy is decided again under today's registry (router/replay.py), from the version it was made of.
    wanted = {dead.alert_id for dead in chosen}
    versions = {
        enriched.alert_id: enriched
        async for _, enriched in read_decoded(
            kafka, codec, ALERTS_ENRICHED, AlertEnriched, name="replay", progress=progress
        )
        if enriched.alert_id in wanted
    }
    now = utcnow()
    permitted, dropped, lines = [], [], []
    for dead in chosen:
        refusal = replay_refusal(dead, versions.get(dead.alert_id), registry)
        if refusal is None:
            permitted.append(dead)
            continue
        rule, reason = refusal
        lines.append(f"dropped {dead.webhook_id} ({dead.alert_id} to {dead.agency}): {rule}: {reason}")
        dropped.append(
            AlertRejected(
                alert_id=dead.alert_id,
                origin=dead.origin,
                stage="replay",
                reason=f"dead delivery {dead.webhook_id} to {dead.agency} not replayed under registry "
                f"v{published.version}: {rule}: {reason}",
                rejected_at=now,
            )
        )
    await produce_all(kafka, "replay", ALERTS_REJECTED, ((r.alert_id.encode(), codec.encode(r)) for r in dropped))
    replayed = await produce_all(
        kafka,
        "replay",
        DELIVERIES_WEBHOOK,
        (
            (
                f"{dead.alert_id}:{dead.agency}".encode(),
                codec.encode(
                    msgspec.structs.replace(dead, attempt=0, last_error=None, not_before=None, requested_at=now)
                ),
            )
            for dead in permitted
        ),
    )
    return ReplayResult(replayed, tuple(lines), published.version)


async def resend(kafka: KafkaSettings, agency: str, since: datetime) -> int:
    """Ask the router to decide a resend (router/resend.py): it leaves decisions, audit entries, tracker rows."""
    codec = Codec.from_directory()
    with render.progress("asking the router") as step:
        if step is not None:
            step(0, 1)
        try:
            published = await _registry(kafka, codec)
        except NoRegistryError as exc:
            print(exc)
            return 1
        if agency not in Registry(published).agencies:
            print(f"{agency} is not in the registry")
            return 1
        request = await request_resend(kafka, codec, agency, since)
        if step is not None:
            step(1, 1)
    print(
        f"resend {request.request_id} requested for {agency}: the router decides it under the registry in force "
        f"(its decisions in {ALERTS_ROUTED} carry request_id {request.request_id})"
    )
    return 0


async def request_resend(kafka: KafkaSettings, codec: Codec, agency: str, since: datetime) -> ResendRequested:
    """Write the request the router decides (router/resend.py); the caller has checked the agency is listed."""
    request = ResendRequested(
        request_id=str(uuid.uuid4()),
        agency=agency,
        since=_utc(since) or since,
        requested_by=kafka.username or "operator",
        requested_at=utcnow(),
    )
    await produce_all(kafka, "resend", REQUESTS_RESEND, [(request.request_id.encode(), codec.encode(request))])
    return request


async def list_endpoints(kafka: KafkaSettings) -> int:
    codec = Codec.from_directory()
    latest: dict[str, EndpointChanged] = {}
    async for _, change in read_decoded(kafka, codec, DELIVERIES_ENDPOINTS, EndpointChanged, name="endpoints"):
        latest[change.agency] = change
    for change in sorted(latest.values(), key=lambda c: c.agency):
        print(json.dumps(msgspec.to_builtins(change)))
    if not latest:
        print("every endpoint is active")
    return 0


async def set_endpoint(kafka: KafkaSettings, agency: str, state: EndpointState, reason: str) -> int:
    try:
        await change_endpoint(kafka, agency, state, reason, by="operator")
    except NoWebhookError as exc:
        print(exc)
        return 1
    print(f"{agency}: {state}")
    return 0


async def change_endpoint(
    kafka: KafkaSettings, agency: str, state: EndpointState, reason: str, *, by: str
) -> EndpointChanged:
    """Set the agency's webhook endpoint's state for every dispatcher (deliveries.endpoints); the change
    written. Raises NoWebhookError when the registry in force gives the agency no webhook (or has no agency by
    that code, or there is no registry)."""
    codec = Codec.from_directory()
    published = await latest_published(kafka, codec)
    target = Registry(published).agencies.get(agency) if published else None
    if target is None or target.webhook is None:
        raise NoWebhookError(agency)
    p = producer(kafka, "endpoints")
    await p.start()
    try:
        return await publish_state(p, codec, agency, target.webhook.url, state, reason, by=by)
    finally:
        await p.stop()
