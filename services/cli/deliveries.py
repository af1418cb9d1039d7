"""`rctc deliveries replay|resend` and `rctc endpoints list|enable|disable`: what operators do by hand about
webhooks.

- replay: dead deliveries (all, one agency's, those that died in a time range) go back to the first lane,
  with their attempts reset and the same webhook-id, so a receiver that has some already drops them. Each is
  decided again under today's registry first (router/replay.py): what is no longer permitted is dropped,
  printed and recorded on alerts.rejected (stage `replay`, the rule and reason).
- resend: everything since a time for one agency whose receiver lost data, as today's registry lets it have
  it. The command only writes the request (requests.resend); the router decides it like any routing
  (router/resend.py), so it leaves decisions in alerts.routed, audit entries and tracker rows.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import uuid
from collections.abc import Callable
from datetime import datetime
from typing import Any

import msgspec

from services.common.codec import Codec
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


def _utc(value: datetime | None) -> datetime | None:
    return value.astimezone() if value is not None and value.tzinfo is None else value


async def replay(kafka: KafkaSettings, agency: str | None, since: datetime | None, until: datetime | None) -> int:
    codec = Codec.from_directory()
    published = await latest_published(kafka, codec)
    if published is None:
        print("no registry is in force")
        return 1
    registry = Registry(published)
    since, until = _utc(since), _utc(until)
    chosen = []
    async for r, dead in read_decoded(kafka, codec, DELIVERIES_DEAD, DeliverWebhook, name="replay"):
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
        async for _, enriched in read_decoded(kafka, codec, ALERTS_ENRICHED, AlertEnriched, name="replay")
        if enriched.alert_id in wanted
    }
    now = utcnow()
    permitted, dropped = [], []
    for dead in chosen:
        refusal = replay_refusal(dead, versions.get(dead.alert_id), registry)
        if refusal is None:
            permitted.append(dead)
            continue
        rule, reason = refusal
        print(f"dropped {dead.webhook_id} ({dead.alert_id} to {dead.agency}): {rule}: {reason}")
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
    print(f"replayed {replayed} dead deliveries" + (f", dropped {len(dropped)}" if dropped else ""))
    return 0


async def resend(kafka: KafkaSettings, agency: str, since: datetime) -> int:
    """Ask the router to decide a resend (router/resend.py): it leaves decisions, audit entries, tracker rows."""
    codec = Codec.from_directory()
    published = await latest_published(kafka, codec)
    if published is None:
        print("no registry is in force")
        return 1
    if agency not in Registry(published).agencies:
        print(f"{agency} is not in the registry")
        return 1
    request = ResendRequested(
        request_id=str(uuid.uuid4()),
        agency=agency,
        since=_utc(since) or since,
        requested_by=kafka.username or "operator",
        requested_at=utcnow(),
    )
    await produce_all(kafka, "resend", REQUESTS_RESEND, [(request.request_id.encode(), codec.encode(request))])
    print(
        f"resend {request.request_id} requested for {agency}: the router decides it under the registry in force "
        f"(its decisions in {ALERTS_ROUTED} carry request_id {request.request_id})"
    )
    return 0


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
    codec = Codec.from_directory()
    published = await latest_published(kafka, codec)
    target = Registry(published).agencies.get(agency) if published else None
    if target is None or target.webhook is None:
        print(f"{agency} has no webhook endpoint in the registry")
        return 1
    p = producer(kafka, "endpoints")
    await p.start()
    try:
        await publish_state(p, codec, agency, target.webhook.url, state, reason, by="operator")
    finally:
        await p.stop()
    print(f"{agency}: {state}")
    return 0
