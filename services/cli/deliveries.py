"""`rctc deliveries replay|resend` and `rctc endpoints list|enable|disable`: what operators do by hand about
webhooks.

- replay: dead deliveries (all, one agency's, those that died in a time range) go back to the first lane,
  with their attempts reset and the same webhook-id, so a receiver that has some already drops them.
- resend: everything since a time for one agency whose receiver lost data, with the sharing policy applied
  again as of now (an agency no longer entitled gets nothing; a tightened agreement redacts more).
"""

from __future__ import annotations

import argparse
import asyncio
import json
from collections.abc import Callable
from datetime import datetime
from typing import Any

import msgspec

from services.common.codec import Codec
from services.common.kafka import produce_all, producer, read_decoded
from services.common.records import (
    AlertEnriched,
    AlertRouted,
    DeliverWebhook,
    EndpointChanged,
    EndpointState,
    utcnow,
)
from services.common.registry import Registry
from services.common.registry.publish import latest_published
from services.common.settings import KafkaSettings
from services.common.topics import (
    ALERTS_ENRICHED,
    ALERTS_ROUTED,
    DELIVERIES_DEAD,
    DELIVERIES_ENDPOINTS,
    DELIVERIES_WEBHOOK,
)
from services.dispatcher.endpoints import publish_state
from services.router.payload import recipient_copy, webhook_request
from services.router.policy import verdict_for


def add_parser(sub: Any, kafka: Callable[[argparse.Namespace], KafkaSettings]) -> None:
    deliveries = sub.add_parser("deliveries", help="dead deliveries and resends").add_subparsers(metavar="ACTION")
    p = deliveries.add_parser("replay", help="send dead deliveries again")
    p.add_argument("--agency")
    p.add_argument("--since", type=datetime.fromisoformat, help="died at or after (ISO 8601)")
    p.add_argument("--until", type=datetime.fromisoformat, help="died before (ISO 8601)")
    p.set_defaults(run=lambda a: asyncio.run(replay(kafka(a), a.agency, a.since, a.until)))
    p = deliveries.add_parser("resend", help="everything since a time for one agency, under today's policy")
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
    now = utcnow()
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
            for dead in chosen
        ),
    )
    print(f"replayed {replayed} dead deliveries")
    return 0


async def resend(kafka: KafkaSettings, agency: str, since: datetime) -> int:
    codec = Codec.from_directory()
    published = await latest_published(kafka, codec)
    if published is None:
        print("no registry is in force")
        return 1
    registry = Registry(published)
    target = registry.agencies.get(agency)
    if target is None or target.webhook is None or not target.active:
        print(f"{agency} is not an active agency with a webhook")
        return 1
    since = _utc(since) or since
    # Recipients of each alert as routed, so an Update or Cancel is resent only to who had its original.
    received = {
        r.alert_id
        for r in [r async for _, r in read_decoded(kafka, codec, ALERTS_ROUTED, AlertRouted, name="resend")]
        if any(d.agency == agency and d.delivered for d in r.decisions)
    }
    requests = []
    now = utcnow()
    async for _, enriched in read_decoded(kafka, codec, ALERTS_ENRICHED, AlertEnriched, name="resend"):
        if enriched.submitted_at < since:
            continue
        alert = enriched.alert
        if alert.msg_type != "Alert" and alert.references[0] not in received:
            continue
        # A follow-up is judged as its content would be today, like the alert it follows.
        as_alert = (
            enriched
            if alert.msg_type == "Alert"
            else msgspec.structs.replace(enriched, alert=msgspec.structs.replace(alert, msg_type="Alert"))
        )
        verdict = verdict_for(as_alert, registry, target)
        if verdict.delivered:
            requests.append(webhook_request(recipient_copy(enriched, verdict, now), alert.urgency, now))
    unique = {r.webhook_id: r for r in requests}.values()
    resent = await produce_all(
        kafka, "resend", DELIVERIES_WEBHOOK, ((f"{r.alert_id}:{agency}".encode(), codec.encode(r)) for r in unique)
    )
    print(f"resent {resent} alerts to {agency} under registry v{published.version}")
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
