"""SSRF through the whole dispatcher on the real broker, with private endpoints off (the deployment default).

Every registry entry below says allow_private (as the demo's do) and points at a listener on 127.0.0.1,
spelled one of the ways a URL parser, IDNA or a resolver turns into loopback. The dispatcher must record
each delivery dead on its first attempt as a refused destination, escalate it, retry none, and the
listener must see no connection at all.
"""

from __future__ import annotations

import uuid

from services.common.codec import Codec
from services.common.kafka import producer
from services.common.records import DeliverWebhook, DeliveryAttempted, utcnow
from services.common.registry.publish import publish_registry
from services.common.runner import running
from services.common.settings import KafkaSettings
from services.common.topics import DELIVERIES_DEAD, DELIVERIES_EVENTS, DELIVERIES_WEBHOOK, retry_topic
from services.dispatcher.schedule import TIERS
from services.dispatcher.service import build
from services.dispatcher.settings import DispatcherSettings
from services.router.payload import recipient_copy, webhook_request
from services.router.policy import Verdict
from tests.support.world import Cast, agreement, eventually, read_topic, registry
from tests.unit.samples import enriched, sample_alert
from tests.unit.test_ssrf import REFUSED, Listener

# A form per class (the unit matrix, tests/unit/test_ssrf.py, has them all): {port} is the listener's.
FORMS = [
    "https://①②⑦.⓪.⓪.①:{port}",
    "https://\uff11\uff12\uff17.\uff10.\uff10.\uff11:{port}",
    "https://2130706433:{port}",
    "https://0177.0.0.1:{port}",
    "https://127.1:{port}",
    "https://%31%32%37.0.0.1:{port}",
    "https://evil.example@127.0.0.1:{port}",
    "https://[::ffff:7f00:1]:{port}",
    "https://[64:ff9b::7f00:1]:{port}",
    "https://[2002:7f00:1::]:{port}",
    "https://localhost:{port}",
    "https://127.0.0.1:{port}",
    "http://127.0.0.1:{port}",
]


async def test_internal_destinations_end_dead_unretried_and_unreached(kafka: KafkaSettings, codec: Codec) -> None:
    """Each form: one DeliveryAttempted, dead at attempt 1 with a refused-destination error; nothing in a
    retry tier; no connection to 127.0.0.1."""
    listener = Listener()
    await listener.start()
    cast = Cast()
    origin = cast.agency("IQ-A", "IQ")
    recipients = []
    for i, form in enumerate(FORMS):
        agency = cast.agency(f"R{i}-", "JO", webhook_url=form.format(port=listener.port))
        assert agency.webhook is not None and agency.webhook.allow_private
        recipients.append(agency)
    doc = registry([origin, *recipients], [agreement(f"S-{cast.suffix}", [a.code for a in (origin, *recipients)])])
    await publish_registry(kafka, codec, doc, source="test", replication_factor=1)

    # Scenario: the router has asked for one webhook per recipient; the dispatcher runs as deployed.
    requests = {}
    p = producer(kafka, "feed")
    await p.start()
    try:
        now = utcnow()
        for agency in recipients:
            alert_id = f"ssrf-{uuid.uuid4()}"
            verdict = Verdict(agency.code, True, "shared", "test", f"S-{cast.suffix}")
            shared = recipient_copy(enriched(sample_alert(), origin=origin.code, alert_id=alert_id), verdict, now)
            request = webhook_request(shared, "Immediate", now)
            requests[request.webhook_id] = agency.webhook.url if agency.webhook else ""
            await p.send(DELIVERIES_WEBHOOK, codec.encode(request), key=f"{alert_id}:{agency.code}".encode())
        await p.flush()
    finally:
        await p.stop()

    async def attempts() -> dict[str, list[DeliveryAttempted]]:
        seen: dict[str, list[DeliveryAttempted]] = {}
        for _, event in await read_topic(kafka, codec, DELIVERIES_EVENTS, DeliveryAttempted):
            if event.webhook_id in requests:
                seen.setdefault(event.webhook_id, []).append(event)
        return seen if len(seen) == len(requests) else {}

    settings = DispatcherSettings(kafka=kafka, shutdown_timeout_s=10.0)
    assert settings.allow_private_endpoints is False
    try:
        async with running(build(settings, codec)):
            recorded = await eventually(attempts, within_s=60)
    finally:
        assert listener.server is not None
        listener.server.close()
        await listener.server.wait_closed()

    outcomes = {
        requests[webhook_id]: [(e.attempt, e.outcome, (e.error or "").startswith(REFUSED)) for e in events]
        for webhook_id, events in recorded.items()
    }
    assert outcomes == {url: [(1, "dead", True)] for url in requests.values()}
    retried = [r.webhook_id for t in TIERS for _, r in await read_topic(kafka, codec, retry_topic(t), DeliverWebhook)]
    dead = [r.webhook_id for _, r in await read_topic(kafka, codec, DELIVERIES_DEAD, DeliverWebhook)]
    assert (set(), sorted(requests)) == (set(retried) & set(requests), sorted(set(dead) & set(requests)))
    assert listener.accepts == 0
